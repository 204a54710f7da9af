"""The peer: faster-whisper (CTranslate2) on the same Whisper weights and the same audio as ours.

Every benchmark that measures recognition runs it beside our engine. Greedy (beam 1), English, no
timestamps, no VAD filter (the clips are already cut), int8 on the CPU as a user would run it.

Whisper writes numbers as digits and punctuates ("Set an alarm for 7:45."); our references are words
("set an alarm for seven forty five"). ``peer_words`` spells digits, times, percentages and decimals
as our templates say them, then applies the one transcript normalization (``normalize_text``), so the
peer is not charged for formatting.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np

from assistant.skills.words import ONES, number_words, ordinal_words
from assistant.synth.text import normalize_text

_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_ORD = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_DEC = re.compile(r"\b(\d+)\.(\d+)\b")
_NUM = re.compile(r"\b\d+\b")


def _minutes(mm: int) -> str:
    if mm == 0:
        return "o'clock"
    return f"oh {ONES[mm]}" if mm < 10 else number_words(mm)


def peer_words(text: str) -> str:
    s = text.replace("%", " percent").replace("&", " and ")
    s = re.sub(r"\b(a|p)\.m\.", r"\1 m", s, flags=re.I)
    s = _TIME.sub(lambda m: f"{number_words(int(m.group(1)))} {_minutes(int(m.group(2)))}", s)
    s = _ORD.sub(lambda m: ordinal_words(int(m.group(1))) if int(m.group(1)) < 1_000_000 else m.group(0), s)
    s = _DEC.sub(lambda m: f"{number_words(int(m.group(1)))} point "
                 + " ".join(ONES[int(d)] for d in m.group(2)) if int(m.group(1)) < 1_000_000 else m.group(0), s)
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)
    s = _NUM.sub(lambda m: number_words(int(m.group(0))) if int(m.group(0)) < 1_000_000 else m.group(0), s)
    return normalize_text(s)


@dataclass(frozen=True)
class PeerResult:
    text: str  # normalized words
    raw: str  # what faster-whisper wrote
    seconds: float  # transcribe() wall time, log-mel included


class FasterWhisper:
    """faster-whisper over a pretrained source's CTranslate2 files (assistant/pretrained)."""

    def __init__(self, source: str, data_dir, *, compute_type: str = "int8", threads: int = 0) -> None:
        from faster_whisper import WhisperModel

        from assistant.pretrained.assemble import ct2_dir

        self.source = source
        self.model = WhisperModel(str(ct2_dir(source, data_dir)), device="cpu", compute_type=compute_type,
                                  cpu_threads=threads)
        self.english_only = source.endswith(".en")

    def transcribe(self, wave: np.ndarray) -> PeerResult:
        t0 = time.perf_counter()
        segments, _ = self.model.transcribe(np.asarray(wave, dtype=np.float32), beam_size=1, language="en",
                                            without_timestamps=True, vad_filter=False,
                                            condition_on_previous_text=False)
        raw = " ".join(s.text.strip() for s in segments)
        return PeerResult(text=peer_words(raw), raw=raw, seconds=time.perf_counter() - t0)


def whisper_source_of(bundle_dir) -> str | None:
    """The pretrained Whisper source a bundle's encoder stands on (its pretrained.json), or None."""
    import json
    from pathlib import Path

    from assistant.bundle import POINTER_NAME, load_bundle

    pointer = load_bundle(Path(bundle_dir)).encoder_dir / POINTER_NAME
    try:
        return str(json.loads(pointer.read_text())["source"]) if pointer.is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def bare(word: str) -> str:
    """``word`` without a possessive 's."""
    return word[:-2] if word.endswith("'s") else word


def names_right(hyp: str, names: list[str]) -> bool:
    """Every name in ``hyp``, possessive or not ("barnaby's" holds "barnaby"; the 's is the WER's business)."""
    from assistant.metrics import contains_all

    return contains_all(" ".join(bare(w) for w in hyp.split()), names)


def peer_row(source: str, data_dir, waves, refs, names: list[list[str]] | None = None) -> dict:
    """faster-whisper's WER, CER, names accuracy and time per utterance on the same audio."""
    from assistant.metrics import cer, wer

    peer = FasterWhisper(source, data_dir)
    results = [peer.transcribe(w) for w in waves]
    hyps = [r.text for r in results]
    w, c = wer(refs, hyps), cer(refs, hyps)
    named = [(h, ws) for h, ws in zip(hyps, names or []) if ws]
    return {"wer": round(w.rate, 4), "wer_ci95": [round(x, 4) for x in w.ci95], "cer": round(c.rate, 4),
            "names_acc": round(sum(names_right(h, ws) for h, ws in named) / len(named), 4) if named else float("nan"),
            "seconds_per_utt": round(sum(r.seconds for r in results) / max(len(results), 1), 3), "hyps": hyps}
