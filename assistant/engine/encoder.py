"""Frozen speech encoder: any transformers speech model (HuBERT, wav2vec2, w2v-BERT...) from a local dir.

It returns per-utterance frame features (the last hidden state, ~50 Hz) and, when the model has a CTC
head, per-frame CTC logits plus the vocabulary to read them (blank = ``config.pad_token_id``, the
transformers CTC convention).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from assistant.bundle import POINTER_NAME
from assistant.engine.lora import LORA_ALPHA_PER_RANK
from assistant.errors import ModelFilesError
from assistant.units import TARGET_RATE_HZ

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncoderOutput:
    """One utterance's encoder output, unpadded."""

    features: torch.Tensor  # (frames, encoder_dim), on the encoder's device
    ctc_logits: torch.Tensor | None  # (frames, ctc_vocab) or None without a CTC head
    frame_rate_hz: float
    # (frames, lower_dim): the states below the encoder's top (a Whisper encoder's; None for others), what
    # a bridge's personal top (whisper.EncoderTop) reads instead of ``features``
    lower: torch.Tensor | None = None

    def frames(self, start: int, stop: int | None = None) -> "EncoderOutput":
        """The frames [start, stop) of every part."""
        cut = lambda t: None if t is None else t[start:stop]  # noqa: E731
        return EncoderOutput(self.features[start:stop], cut(self.ctc_logits), self.frame_rate_hz, cut(self.lower))

    @property
    def n_frames(self) -> int:
        return int(self.features.shape[0])


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def half_ok(device: torch.device) -> bool:
    """fp16 only where the device computes it natively (CUDA: Jetson Orin, desktop GPUs)."""
    return device.type == "cuda"


class SpeechEncoder:
    def __init__(self, model: torch.nn.Module, feature_extractor, ctc_tokenizer, *, identity: str,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.model = model
        self.feature_extractor = feature_extractor
        self.ctc_tokenizer = ctc_tokenizer
        self.identity = identity
        self.device = device
        self.dtype = dtype
        self._base = getattr(model, model.base_model_prefix, model)
        self._head = getattr(model, "lm_head", None)
        self.dim = int(model.config.hidden_size)
        self.blank_id: int | None = model.config.pad_token_id if self._head is not None else None
        self._whisper = type(feature_extractor).__name__.startswith("Whisper")  # speech length (whisper.py)
        self.frame_rate_hz = self._measure_frame_rate()

    @property
    def has_ctc(self) -> bool:
        return self._head is not None and self.blank_id is not None

    @property
    def top_layers(self) -> int:
        """How many pretrained layers a personal top copies (0: this encoder offers none)."""
        return int(getattr(self._base, "top_layers", 0))

    def personal_top(self, rank: int = 0) -> torch.nn.Module:
        """A trainable float32 personal top (whisper.EncoderTop), on the encoder's device: a copy of the
        encoder's top, or with ``rank`` > 0 the frozen Whisper layers shared with a low-rank update each
        (``WhisperBackbone.top_lora``)."""
        if not self.top_layers:
            raise ValueError(f"the speech encoder {self.identity} has no top a bridge can own (only a "
                             "Whisper encoder with our CTC module has)")
        top = self._base.top_lora(rank, LORA_ALPHA_PER_RANK * rank) if rank > 0 else self._base.top_copy()
        return top.to(self.device)

    def frozen_top(self) -> torch.nn.Module:
        """The encoder's own top (no copy; frozen): what a fresh personal top equals."""
        if not self.top_layers:
            raise ValueError(f"the speech encoder {self.identity} has no top")
        return self._base.top_view()

    @property
    def ctc_head(self) -> torch.nn.Module | None:
        """The CTC output layer (hidden -> labels), or None; a personal bridge head starts as its copy."""
        return self._head if self.has_ctc else None

    @property
    def word_delimiter_id(self) -> int:
        """The CTC label between words (the vocabulary's word delimiter, "|" by default); -1 without one."""
        if self.ctc_tokenizer is None:
            return -1
        delim = getattr(self.ctc_tokenizer, "word_delimiter_token", None) or "|"
        return int(self.ctc_tokenizer.get_vocab().get(delim, -1))

    def ctc_ids(self, text: str) -> list[int]:
        """A transcript as CTC label ids (lower case, spaces -> the word delimiter, unknown characters
        dropped): the targets of a personal CTC head."""
        if self.ctc_tokenizer is None:
            return []
        vocab = self.ctc_tokenizer.get_vocab()
        delim = getattr(self.ctc_tokenizer, "word_delimiter_token", None) or "|"
        ids = [vocab[delim] if c == " " else vocab.get(c) for c in " ".join(text.lower().split())]
        return [i for i in ids if i is not None]

    @classmethod
    def load(cls, model_dir: str | Path, *, identity: str, device: str | torch.device = "auto",
             data_dir: str | Path | None = None) -> "SpeechEncoder":
        """A transformers speech encoder, or (``pretrained.json`` in the directory) a pretrained Whisper
        encoder with our CTC module (whisper.py), its weights assembled into ``data_dir`` on first use."""
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForCTC, AutoTokenizer

        model_dir = Path(model_dir)
        dev = pick_device(device) if isinstance(device, str) else device
        try:
            if (model_dir / POINTER_NAME).is_file():
                from assistant.engine.whisper import load_whisper_ctc
                from assistant.pretrained.assemble import resolve_pointer

                model = load_whisper_ctc(model_dir, resolve_pointer(model_dir, data_dir) / "encoder")
                is_ctc = True
            else:
                config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
                is_ctc = any(a.endswith("ForCTC") for a in (config.architectures or []))
                auto = AutoModelForCTC if is_ctc else AutoModel
                model = auto.from_pretrained(model_dir, local_files_only=True)
            fe = AutoFeatureExtractor.from_pretrained(model_dir, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFilesError(
                f"cannot load the speech encoder from {model_dir}: {exc}",
                fix="check the directory holds config.json, the weights and preprocessor_config.json",
            ) from exc
        tok = None
        if is_ctc:
            try:
                tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("encoder %s has a CTC head but no readable CTC vocabulary (%s): no CTC text", model_dir, exc)
        dtype = torch.float16 if half_ok(dev) else torch.float32
        model = model.to(device=dev, dtype=dtype).eval().requires_grad_(False)
        return cls(model, fe, tok, identity=identity, device=dev, dtype=dtype)

    def _prepare(self, waves: Sequence[np.ndarray]) -> tuple[dict, torch.Tensor]:
        if self._whisper:
            from assistant.engine.whisper import whisper_inputs

            feats, mask = whisper_inputs(self.feature_extractor, [np.asarray(w, dtype=np.float32) for w in waves])
            return {"input_features": feats.to(self.device, self.dtype), "attention_mask": mask.to(self.device)}, \
                mask.sum(-1)
        inputs = self.feature_extractor(
            [np.asarray(w, dtype=np.float32) for w in waves],
            sampling_rate=TARGET_RATE_HZ,
            return_tensors="pt",
            padding=True,
        )
        main = "input_values" if "input_values" in inputs else "input_features"
        mask = inputs.get("attention_mask")
        if mask is not None:
            in_lengths = mask.sum(-1)
        else:  # models that take no mask (group-norm HuBERT/wav2vec2): raw lengths
            in_lengths = torch.tensor([len(w) for w in waves])
        batch = {main: inputs[main].to(self.device, self.dtype)}
        if mask is not None:
            batch["attention_mask"] = mask.to(self.device)
        return batch, in_lengths

    def _out_lengths(self, in_lengths: torch.Tensor) -> torch.Tensor:
        fn = getattr(self._base, "_get_feat_extract_output_lengths", None)
        return fn(in_lengths).long() if fn is not None else in_lengths.long()

    def frames_for(self, n_samples: int) -> int:
        """Frames the encoder gives for ``n_samples`` of audio (its own length formula; cached)."""
        cache = self.__dict__.setdefault("_frames_cache", {})
        if n_samples not in cache:
            if n_samples <= 0:
                cache[n_samples] = 0
            else:
                _, in_len = self._prepare([np.zeros(n_samples, dtype=np.float32)])
                cache[n_samples] = max(0, int(self._out_lengths(in_len)[0]))
        return cache[n_samples]

    def _measure_frame_rate(self) -> float:
        # From the feature extractor and the model's length formula: no forward pass needed.
        seconds = 4.0
        _, in_len = self._prepare([np.zeros(int(seconds * TARGET_RATE_HZ), dtype=np.float32)])
        return float(self._out_lengths(in_len)[0]) / seconds

    @torch.inference_mode()
    def encode(self, waves: Sequence[np.ndarray]) -> list[EncoderOutput]:
        """Encode a batch of 16 kHz mono float32 waveforms; one output per input, unpadded."""
        if not waves:
            return []
        batch, in_lengths = self._prepare(waves)
        out = self._base(**batch)
        hidden = out.last_hidden_state
        lower = getattr(out, "lower_states", None)
        logits = self._head(hidden) if self.has_ctc else None
        lengths = self._out_lengths(in_lengths).clamp(max=hidden.shape[1]).tolist()
        return [
            EncoderOutput(
                features=hidden[i, :n].float(),
                ctc_logits=None if logits is None else logits[i, :n].float(),
                frame_rate_hz=self.frame_rate_hz,
                lower=None if lower is None else lower[i, :n].float(),
            )
            for i, n in enumerate(lengths)
        ]

    def encode_many(self, waves: Sequence[np.ndarray], batch: int = 16) -> list[EncoderOutput]:
        """Encode many utterances in length-sorted batches (little padding); results in input order."""
        order = sorted(range(len(waves)), key=lambda i: len(waves[i]))
        out: list[EncoderOutput | None] = [None] * len(waves)
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            for i, enc in zip(idx, self.encode([waves[i] for i in idx])):
                out[i] = enc
        return out  # type: ignore[return-value]

    def ctc_text(self, logits: torch.Tensor) -> str:
        """Greedy CTC reading: argmax per frame, merge repeats, drop blanks, map to text."""
        if self.ctc_tokenizer is None or self.blank_id is None:
            return ""
        ids = torch.unique_consecutive(logits.argmax(-1)).tolist()
        ids = [i for i in ids if i != self.blank_id]
        tok = self.ctc_tokenizer
        pieces = tok.convert_ids_to_tokens(ids)
        delim = getattr(tok, "word_delimiter_token", None) or "|"
        special = set(getattr(tok, "all_special_tokens", [])) - {delim}  # transformers 5 lists "|" as special
        text = "".join(" " if p == delim else p for p in pieces if p not in special)
        return " ".join(text.split())
