"""The user's labelled utterances as training / held-out examples for bridge alignment.

Training reads the cached encoder output of every labelled turn (``encoded/<id>.safetensors``): the
encoder is frozen, so running it again would only cost time (it is the most expensive stage on a
Jetson). Rows without a usable cache fall back to decoding the stored audio and re-encoding it; the
count is reported so a caller can see when the cache is not doing its job.

The train / held-out split is a pure function of the utterance id: a row never moves between the two
as labels arrive, so the gate never scores a candidate on utterances an earlier version trained on.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from assistant.engine.encoder import EncoderOutput
from assistant.errors import AssistantError
from assistant.store import files, repo
from assistant.store.models import LABEL_SOURCES

if TYPE_CHECKING:
    from assistant.engine.encoder import SpeechEncoder
    from assistant.store.db import Store

log = logging.getLogger(__name__)

TRAIN, HELDOUT = "train", "heldout"
# Stored audio was accepted when it was captured; the loader's default 30 s cap is for untrusted input.
_MAX_STORED_AUDIO_S = 600.0


def split_of(utterance_id: int, heldout_share: float) -> str:
    """"train" or "heldout", from a hash of the id alone (stable whatever else is in the store)."""
    digest = hashlib.sha256(str(int(utterance_id)).encode("ascii")).digest()
    fraction = int.from_bytes(digest[:8], "big") / float(1 << 64)  # uniform in [0, 1)
    return HELDOUT if fraction < heldout_share else TRAIN


def labels_needed(config: Any) -> int:
    """About how many labelled utterances a personalization job needs: the least count at which the
    expected held-out share (``heldout_share`` of them, ``split_of``) reaches ``min_heldout`` (fewer and
    the gate rejects the job) and at least 2 are expected to be left for training.

    ``config``: the ``AlignmentConfig`` or a whole ``Config``. "About": the split goes by a hash of each
    utterance id, so the real held-out count scatters around the expected one.
    """
    a = getattr(config, "alignment", config)
    share, min_heldout = float(a.heldout_share), int(a.min_heldout)
    eps = 1e-9  # 10 / 0.2 must give 50, not 51, whatever the float rounding
    return max(math.ceil(min_heldout / share - eps), math.ceil(2 / (1 - share) - eps), min_heldout + 2)


@dataclass(frozen=True)
class Example:
    utterance_id: int
    text: str
    encoded: EncoderOutput
    duration_s: float


@dataclass(frozen=True)
class LabelledSet:
    train: list[Example]
    heldout: list[Example]
    cached: int  # examples read from the encoder-output cache
    reencoded: int  # examples whose audio had to go through the encoder again
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (utterance id, why)

    def summary(self) -> dict[str, object]:
        """Counts for a job's ``data_counts`` / a version's ``data_summary``."""
        return {"train": len(self.train), "heldout": len(self.heldout), "cached": self.cached,
                "reencoded": self.reencoded, "skipped": len(self.skipped),
                "train_s": round(sum(e.duration_s for e in self.train), 2),
                "heldout_s": round(sum(e.duration_s for e in self.heldout), 2)}


@dataclass(frozen=True)
class _Row:
    """The columns we need, copied out of the session (ORM objects must not outlive it)."""

    id: int
    text: str
    encoded_path: str | None
    audio_path: str
    duration_s: float


def _ctc_vocab(encoder: "SpeechEncoder") -> int | None:
    if not encoder.has_ctc:
        return None
    return int(getattr(encoder.model.config, "vocab_size", 0) or 0) or None


def cache_problem(enc: EncoderOutput, encoder: "SpeechEncoder") -> str | None:
    """Why a cached output cannot stand in for this encoder's output (None: it can).

    The cache file does not record which encoder wrote it, so the checks are what can be seen: feature
    width, CTC head presence and vocabulary, frame rate. Two encoders alike in all of these (e.g. two
    fine-tunes of one base model) cannot be told apart here.
    """
    if enc.features.ndim != 2 or enc.features.shape[0] == 0:
        return f"features shaped {tuple(enc.features.shape)}"
    if enc.features.shape[1] != encoder.dim:
        return f"feature dim {enc.features.shape[1]}, encoder's is {encoder.dim}"
    if encoder.has_ctc != (enc.ctc_logits is not None):
        return "CTC logits " + ("missing" if encoder.has_ctc else "present but the encoder has no CTC head")
    vocab = _ctc_vocab(encoder)
    if enc.ctc_logits is not None and vocab is not None and enc.ctc_logits.shape[-1] != vocab:
        return f"CTC vocabulary {enc.ctc_logits.shape[-1]}, encoder's is {vocab}"
    if abs(enc.frame_rate_hz - encoder.frame_rate_hz) > 1e-3 * encoder.frame_rate_hz:
        return f"frame rate {enc.frame_rate_hz:g} Hz, encoder's is {encoder.frame_rate_hz:g} Hz"
    if not torch.isfinite(enc.features).all():
        return "non-finite features"
    if getattr(encoder, "top_layers", 0) and (enc.lower is None or enc.lower.shape[0] != enc.features.shape[0]):
        return "no lower encoder states (cached before the encoder kept them)"  # a personal top trains on them
    return None


def _read_rows(store: "Store", since_id: int | None) -> list[_Row]:
    # Read-only (deferred) transaction: never takes the write lock the serving side needs.
    with store.session(write=False) as s:
        rows = repo.labelled_utterances(s, since_id=since_id)
        return [_Row(u.id, (u.label_text or "").strip(), u.encoded_path, u.audio_path, float(u.duration_s))
                for u in rows if u.label_source in LABEL_SOURCES]


def _cpu(enc: EncoderOutput) -> EncoderOutput:
    # Re-encoded outputs live on the encoder's device; keep the whole set on the CPU like the cached ones
    # (a large set must not pin accelerator memory; trainers move batches themselves).
    if enc.features.device.type == "cpu":
        return enc
    logits = None if enc.ctc_logits is None else enc.ctc_logits.cpu()
    return EncoderOutput(features=enc.features.cpu(), ctc_logits=logits, frame_rate_hz=enc.frame_rate_hz)


def load_labelled(store: "Store", data_dir: Path | str, *, encoder: "SpeechEncoder", heldout_share: float,
                  since_id: int | None = None, batch: int = 16) -> LabelledSet:
    """Every labelled utterance (``since_id`` exclusive) as an Example, split by id.

    Rows are read from the cache when it fits ``encoder``; otherwise the stored audio is re-encoded
    (counted in ``reencoded``). Rows with neither a usable cache nor readable audio, or with an empty
    label, are ``skipped`` with the reason; nothing here raises for one bad row.
    """
    from assistant.audio import load_audio

    data_dir = Path(data_dir)
    loaded: dict[int, EncoderOutput] = {}
    skipped: list[tuple[int, str]] = []
    to_encode: list[_Row] = []
    rows = _read_rows(store, since_id)
    for row in rows:
        if not row.text:
            skipped.append((row.id, "empty label"))
            continue
        if row.encoded_path:
            try:
                enc = files.load_encoded(files.resolve(data_dir, row.encoded_path))
                problem = cache_problem(enc, encoder)
            except AssistantError as exc:  # StoreError (missing/unreadable), RefusedError (bad path)
                problem = str(exc)
            if problem is None:
                loaded[row.id] = enc
                continue
            log.info("utterance %d: cached encoder output unusable (%s); re-encoding its audio", row.id, problem)
        to_encode.append(row)
    cached = len(loaded)

    waves, wave_rows = [], []
    for row in to_encode:
        try:
            audio = load_audio(files.resolve(data_dir, row.audio_path), max_duration_s=_MAX_STORED_AUDIO_S)
        except AssistantError as exc:  # AudioError (missing, truncated...) or RefusedError (bad path)
            skipped.append((row.id, f"no usable encoder cache and the audio cannot be read: {exc}"))
            continue
        waves.append(audio.samples)
        wave_rows.append(row)
    if waves:
        for row, enc in zip(wave_rows, encoder.encode_many(waves, batch=batch)):
            loaded[row.id] = _cpu(enc)
    reencoded = len(wave_rows)

    train: list[Example] = []
    heldout: list[Example] = []
    for row in rows:  # id order, as the store returned them
        enc = loaded.get(row.id)
        if enc is None:
            continue
        ex = Example(utterance_id=row.id, text=row.text, encoded=enc, duration_s=row.duration_s)
        (heldout if split_of(row.id, heldout_share) == HELDOUT else train).append(ex)
    for uid, why in skipped:
        log.warning("utterance %d left out of alignment: %s", uid, why)
    log.info("labelled set: %d train, %d held-out (%d cached, %d re-encoded, %d skipped)",
             len(train), len(heldout), cached, reencoded, len(skipped))
    return LabelledSet(train=train, heldout=heldout, cached=cached, reencoded=reencoded, skipped=skipped)
