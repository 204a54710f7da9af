"""Word and character error rates, with a bootstrap confidence interval.

Rates are corpus-level (total edits / total reference words), the usual ASR convention, so long
utterances weigh more. Texts are compared after ``normalize`` (lowercase, letters, digits,
apostrophes), so punctuation and case never count as errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

_KEEP = re.compile(r"[^a-z0-9' ]+")


def normalize(text: str) -> str:
    return " ".join(_KEEP.sub(" ", text.lower().replace("-", " ")).split())


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


@dataclass(frozen=True)
class ErrorRate:
    rate: float  # edits / reference units, may exceed 1 (insertions)
    ci95: tuple[float, float]  # bootstrap 95% interval over utterances
    edits: int
    units: int
    n_utterances: int

    @property
    def half_width(self) -> float:
        return (self.ci95[1] - self.ci95[0]) / 2


def _per_utterance(refs: Sequence[str], hyps: Sequence[str], unit: str) -> tuple[np.ndarray, np.ndarray]:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    edits, units = [], []
    for r, h in zip(refs, hyps):
        r, h = normalize(r), normalize(h)
        rs, hs = (r.split(), h.split()) if unit == "word" else (list(r), list(h))
        edits.append(edit_distance(rs, hs))
        units.append(len(rs))
    return np.asarray(edits, dtype=np.int64), np.asarray(units, dtype=np.int64)


def error_rate(refs: Sequence[str], hyps: Sequence[str], *, unit: str = "word", n_boot: int = 1000,
               seed: int = 0) -> ErrorRate:
    """Corpus WER (``unit="word"``) or CER (``unit="char"``) with a percentile bootstrap interval."""
    edits, units = _per_utterance(refs, hyps, unit)
    total_units = int(units.sum())
    if total_units == 0:
        raise ValueError("the references hold no words: an error rate is undefined")
    rate = float(edits.sum()) / total_units
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(edits), size=(n_boot, len(edits)))
    boot = edits[idx].sum(1) / np.maximum(units[idx].sum(1), 1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return ErrorRate(rate, (float(lo), float(hi)), int(edits.sum()), total_units, len(edits))


def wer(refs: Sequence[str], hyps: Sequence[str], **kw) -> ErrorRate:
    return error_rate(refs, hyps, unit="word", **kw)


def cer(refs: Sequence[str], hyps: Sequence[str], **kw) -> ErrorRate:
    return error_rate(refs, hyps, unit="char", **kw)


def contains_all(hyp: str, words: Sequence[str]) -> bool:
    """True when every word (normalized) appears in the hypothesis as a whole word or phrase."""
    h = f" {normalize(hyp)} "
    return all(f" {normalize(w)} " in h for w in words)
