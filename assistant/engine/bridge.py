"""The trainable bridge: encoder frames -> LLM input embeddings.

Two kinds:
- ``conv`` (Nue-ASR): [LayerNorm] -> Conv1d(k4, s2) + GELU -> Conv1d(k4, s2) + GELU -> Linear; 4x fewer
  positions (50 Hz frames -> 12.5 Hz).
- ``ctc``: drop the frames whose CTC argmax is blank, merge each run of one label into the mean of its
  features (one position per emitted CTC symbol), then LayerNorm -> projection (Linear, or a
  Linear-GELU-Linear MLP when ``hidden_dim > 0``).

A checkpoint is a directory ``bridge.safetensors`` + ``bridge.json`` (see checkpoint.py); the module is
rebuilt from the JSON alone.
"""

from __future__ import annotations

import torch
from torch import nn

BRIDGE_KINDS = ("conv", "ctc")
MIN_FRAMES = 4  # the two stride-2 convolutions need 4 frames (80 ms) to emit one position


def ctc_compress(features: torch.Tensor, logits: torch.Tensor, blank_id: int) -> torch.Tensor:
    """(frames, dim), (frames, vocab) -> (segments, dim); see ``ctc_segments``."""
    return ctc_segments(features, logits, blank_id)[0]


def ctc_segments(features: torch.Tensor, logits: torch.Tensor, blank_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames, dim), (frames, vocab) -> (segments, dim) and each segment's CTC label (segments,).

    A segment is a maximal run of consecutive frames with the same non-blank argmax; a blank between
    two runs of one label keeps them apart (as in CTC decoding). An utterance with no non-blank frame
    becomes one segment, the mean of all frames, so the LLM always gets a speech prompt.
    """
    if features.shape[0] != logits.shape[0]:
        raise ValueError(f"features have {features.shape[0]} frames but logits {logits.shape[0]}")
    labels = logits.argmax(-1)
    keep = labels != blank_id
    if not bool(keep.any()):
        return features.mean(0, keepdim=True), labels.new_full((1,), blank_id)
    prev_label = torch.cat([labels.new_full((1,), -1), labels[:-1]])
    prev_keep = torch.cat([keep.new_zeros(1), keep[:-1]])
    starts = keep & ((labels != prev_label) | ~prev_keep)
    seg = torch.cumsum(starts.long(), 0) - 1
    n = int(starts.sum())
    sums = features.new_zeros(n, features.shape[1]).index_add_(0, seg[keep], features[keep])
    counts = torch.bincount(seg[keep], minlength=n).to(features.dtype).unsqueeze(1)
    return sums / counts, labels[starts]


def _valid(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(batch,) lengths -> (batch, frames, 1) mask of real frames."""
    return (torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]).unsqueeze(-1)


def _pad(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([s.shape[0] for s in seqs], device=seqs[0].device)
    return nn.utils.rnn.pad_sequence(seqs, batch_first=True), lengths


class ConvBridge(nn.Module):
    def __init__(self, encoder_dim: int, llm_dim: int, hidden_dim: int, input_norm: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(encoder_dim) if input_norm else nn.Identity()
        self.conv1 = nn.Conv1d(encoder_dim, hidden_dim, kernel_size=4, stride=2, padding=1)
        self.conv2 = nn.Conv1d(hidden_dim, hidden_dim, kernel_size=4, stride=2, padding=1)
        self.proj = nn.Linear(hidden_dim, llm_dim)
        self.act = nn.GELU()

    @staticmethod
    def out_lengths(lengths: torch.Tensor) -> torch.Tensor:
        # k=4, s=2, p=1 gives floor(T / 2) per convolution
        return torch.div(torch.div(lengths, 2, rounding_mode="floor"), 2, rounding_mode="floor")

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, frames, encoder_dim), (batch,) -> (batch, frames // 4, llm_dim), (batch,)."""
        if features.shape[1] < MIN_FRAMES:
            features = nn.functional.pad(features, (0, 0, 0, MIN_FRAMES - features.shape[1]))
            lengths = lengths.clamp(min=MIN_FRAMES)
        # Zero everything past each utterance's end, after each layer, so a padded batch gives exactly
        # what each utterance alone gives (the convolutions' own zero padding).
        x = self.norm(features) * _valid(lengths, features.shape[1])
        x = self.act(self.conv1(x.transpose(1, 2))).transpose(1, 2)
        half = torch.div(lengths, 2, rounding_mode="floor")
        x = x * _valid(half, x.shape[1])
        x = self.act(self.conv2(x.transpose(1, 2))).transpose(1, 2)
        return self.proj(x), self.out_lengths(lengths)


class CtcBridge(nn.Module):
    """With ``ctc_vocab > 0`` each segment also gets a learned embedding of its CTC label (the label
    table, initialised from the LLM's own embeddings of those characters by ``init_label_table``): the
    LLM then starts from reading a noisy transcript, which a small LLM trained to copy noisy text reads
    well, and the projection of the acoustic features adds what the label alone misses."""

    def __init__(self, encoder_dim: int, llm_dim: int, hidden_dim: int, blank_id: int, input_norm: bool = True,
                 ctc_vocab: int = 0) -> None:
        super().__init__()
        self.blank_id = blank_id
        self.label_embed = nn.Embedding(ctc_vocab, llm_dim) if ctc_vocab > 0 else None
        if self.label_embed is not None:
            nn.init.zeros_(self.label_embed.weight)
        self.norm = nn.LayerNorm(encoder_dim) if input_norm else nn.Identity()
        if hidden_dim > 0:
            self.proj = nn.Sequential(nn.Linear(encoder_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, llm_dim))
        else:
            self.proj = nn.Linear(encoder_dim, llm_dim)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor,
                ctc_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, frames, dim), (batch,), (batch, frames, vocab) -> (batch, segments, llm_dim), (batch,)."""
        if ctc_logits is None:
            raise ValueError("the ctc bridge needs the encoder's CTC logits")
        outs = [self.forward_segments(*ctc_segments(features[i, :n], ctc_logits[i, :n], self.blank_id))
                for i, n in enumerate(lengths.tolist())]
        return _pad(outs)

    def forward_segments(self, segments: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Project already-compressed segments (and their CTC labels, used by the label table)."""
        out = self.proj(self.norm(segments))
        if self.label_embed is not None:
            if labels is None:
                raise ValueError("this ctc bridge has a label table: pass the segments' CTC labels")
            out = out + self.label_embed(labels)
        return out


def init_label_table(module: nn.Module, ctc_tokens: list[str], delimiter: str, llm) -> int:
    """Set the label table rows to the LLM's input embeddings of the same characters (the CTC word
    delimiter -> a space); returns how many labels found a token. ``llm`` is a CausalLM."""
    table = getattr(module, "label_embed", None)
    if table is None:
        return 0
    found = 0
    with torch.no_grad():
        for i, tok in enumerate(ctc_tokens[: table.num_embeddings]):
            ch = " " if tok == delimiter else tok
            ids = llm.tokenizer(ch, add_special_tokens=False).input_ids if len(ch) == 1 else []
            if len(ids) == 1:
                table.weight[i] = llm.embed_ids(ids)[0, 0].to(table.weight.dtype)
                found += 1
    return found


def build_bridge(kind: str, *, encoder_dim: int, llm_dim: int, hidden_dim: int,
                 blank_id: int | None = None, input_norm: bool = True, ctc_vocab: int = 0) -> nn.Module:
    if kind == "conv":
        return ConvBridge(encoder_dim, llm_dim, hidden_dim, input_norm=input_norm)
    if kind == "ctc":
        if blank_id is None:
            raise ValueError("a ctc bridge needs the CTC blank id")
        return CtcBridge(encoder_dim, llm_dim, hidden_dim, blank_id, input_norm=input_norm, ctc_vocab=ctc_vocab)
    raise ValueError(f"unknown bridge kind {kind!r}; allowed: {', '.join(BRIDGE_KINDS)}")


def run_bridge(module: nn.Module, features: list[torch.Tensor],
               ctc_logits: list[torch.Tensor | None] | None = None) -> list[torch.Tensor]:
    """Batch unpadded per-utterance inputs through a bridge; returns unpadded outputs."""
    feats, lengths = _pad(features)
    if isinstance(module, CtcBridge):
        if ctc_logits is None or any(x is None for x in ctc_logits):
            raise ValueError("the ctc bridge needs the encoder's CTC logits")
        logits, _ = _pad(ctc_logits)  # type: ignore[arg-type]
        out, out_len = module(feats, lengths, logits)
    else:
        out, out_len = module(feats, lengths)
    return [out[i, :n] for i, n in enumerate(out_len.tolist())]
