"""Does an utterance start with the wake phrase? Asked of the CTC posteriors, not of the transcript.

The recognizer reads the request domain's words; a wake phrase such as "hey assistant" is not one of
them, and its transcript comes out as "hey sistont" or "hey six ten" although the frames say the phrase
well. ``phrase_start`` scores the phrase's CTC labels (with a word delimiter after it) as a prefix of the
utterance: for every frame t, the log-probability that frames 0..t read exactly the phrase (CTC
forward), against the best unconstrained path over the same frames (the frame-wise maxima); the best
t's gap per frame is the score. Near 0 the frames say the phrase; a request that does not start with it
is nats per frame away. The caller decides the threshold (``WAKE_MAX_GAP``) and gets the frame where
the phrase ends, to take the request after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# nats per frame. "hey assistant" + a request, 7 voices x 4 requests: 0.01-0.48 but flite slt 0.62, 0.71;
# 7 other requests (not "hey it's a stunt", which sounds the same): 0.75 and more, but one 0.55
WAKE_MAX_GAP = 0.65
# Uncertain frames match anything closely (noise: gap 0.25): the best path itself must be sure. Speech,
# all 7 voices: -0.06 to -0.23 nats per frame over the phrase; noise -0.52; a random model about -3.
MIN_BEST_PATH = -0.4


@dataclass(frozen=True)
class PhraseStart:
    gap_per_frame: float  # best t: (max-path log-prob - phrase log-prob) / (t + 1)
    end_frame: int  # the last frame of the phrase (its delimiter included)
    best_path_per_frame: float = 0.0  # the unconstrained best path's log-prob per frame over 0..end_frame

    @property
    def heard(self) -> bool:
        return self.gap_per_frame <= WAKE_MAX_GAP and self.best_path_per_frame >= MIN_BEST_PATH


def phrase_start(log_probs: np.ndarray, words: list[int], delimiter: int, blank: int) -> PhraseStart | None:
    """Score the phrase's labels ``words`` as the reading of the first frames of ``log_probs`` (T, V):
    followed by the word ``delimiter`` (more words come), or filling the whole utterance (the phrase
    alone); None when the utterance is too short for it."""
    ahead = _prefix(log_probs, [*words, delimiter], blank, anywhere=True)
    alone = _prefix(log_probs, list(words), blank, anywhere=False)
    found = [r for r in (ahead, alone) if r is not None]
    return min(found, key=lambda r: r.gap_per_frame) if found else None


def _prefix(log_probs: np.ndarray, labels: list[int], blank: int, *, anywhere: bool) -> PhraseStart | None:
    """The best end frame t (only the last one unless ``anywhere``) for ``labels`` read by frames 0..t."""
    T, n = log_probs.shape[0], len(labels)
    if n == 0 or T < n:
        return None
    ext = [blank]
    for lab in labels:
        ext += [lab, blank]
    S = len(ext)
    neg = -np.inf
    alpha = np.full(S, neg)
    alpha[0], alpha[1] = log_probs[0, blank], log_probs[0, ext[1]]
    best_path = np.cumsum(log_probs.max(axis=1))
    best: PhraseStart | None = None
    allow_skip = np.array([s >= 2 and ext[s] != blank and ext[s] != ext[s - 2] for s in range(S)])
    emit = np.array(ext)
    for t in range(T):
        if t > 0:
            prev = alpha
            stay = prev
            step = np.concatenate([[neg], prev[:-1]])
            skip = np.where(allow_skip, np.concatenate([[neg, neg], prev[:-2]]), neg)
            alpha = np.logaddexp(np.logaddexp(stay, step), skip) + log_probs[t, emit]
        done = np.logaddexp(alpha[-1], alpha[-2])  # the phrase read through frame t (trailing blank or not)
        if np.isfinite(done) and (anywhere or t == T - 1):
            gap = float(best_path[t] - done) / (t + 1)
            if best is None or gap < best.gap_per_frame:
                best = PhraseStart(gap, t, float(best_path[t]) / (t + 1))
    return best
