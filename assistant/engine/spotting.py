"""Word spotting: put the user's own words (contacts, places) back into a decoded transcript.

Joint CTC/LLM decoding writes what the LLM finds likely. A contact's name that the LLM never saw
comes out as a few wrong words ("ben an auga" for "barnaby"), and a prefix bias in decoding
(``lexicon.LexiconBias``) only helps once the first letters are already right. The CTC head did hear
the name, though, so after decoding each stretch of the transcript is checked against the lexicon:

1. the transcript is force-aligned to the head's frames (CTC Viterbi), which gives each word's frames;
2. for every span of 1..``max_span`` consecutive words, the CTC log-likelihood of the span's own text on
   its frames (widened into the silence up to its neighbours) is compared with that of each lexicon
   word (and its possessive) on the same frames;
3. a lexicon word whose log-likelihood beats the span's by more than ``margin`` nats replaces the span;
   overlapping candidates are settled best gain first.

Both sides are scored by the same head on the same frames, so a word the user never enrolled is never
written. The transcript is close to the head's own best reading, so a name the head half-heard
("elipul" for "ullapool") rarely beats it: a negative margin is a prior for the user's words, which they
say far more often than any one stranger's word. The lexicon holds only words the bundle does not know
(``alignment/lexicon.py``), so the prior favours names and places only, and the quality gate measures
what it costs on generic speech.
The personalization job puts the lexicon in the candidate bridge's config and the quality gate scores
the candidate with spotting on (generic speech included), so a lexicon that hurts is rejected with it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

MIN_WORD_LEN = 4  # shorter lexicon words ("any", "see") are too often real words of other requests
_NEG = -1e30


def ctc_align(log_probs: np.ndarray, labels: Sequence[int], blank: int) -> list[tuple[int, int]] | None:
    """Best CTC path of ``labels`` through ``log_probs`` (frames, vocab): each label's (first, last) frame;
    None when the frames are too few for the labels."""
    frames = log_probs.shape[0]
    ext = np.full(2 * len(labels) + 1, blank, dtype=np.int64)
    ext[1::2] = labels
    states = len(ext)
    repeats = sum(1 for a, b in zip(labels, labels[1:]) if a == b)
    if frames < len(labels) + repeats or not len(labels):
        return None
    skip = np.zeros(states, dtype=bool)  # a label may follow the previous label directly across a blank
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    score = np.full(states, _NEG)
    score[:2] = log_probs[0, ext[:2]]
    back = np.zeros((frames, states), dtype=np.int8)
    for t in range(1, frames):
        stay, step = score, np.concatenate(([_NEG], score[:-1]))
        jump = np.where(skip, np.concatenate(([_NEG, _NEG], score[:-2])), _NEG)
        moves = np.stack([stay, step, jump])
        back[t] = moves.argmax(0)
        score = moves[back[t], np.arange(states)] + log_probs[t, ext]
    s = states - 1 if states == 1 or score[-1] >= score[-2] else states - 2
    spans: list[list[int]] = [[-1, -1] for _ in labels]
    for t in range(frames - 1, -1, -1):
        if s % 2 == 1:
            k = s // 2
            spans[k][0] = t
            if spans[k][1] < 0:
                spans[k][1] = t
        s -= int(back[t, s])
    if any(a < 0 for a, _ in spans):
        return None
    return [(a, b) for a, b in spans]


def word_windows(words: Sequence[str], ctc_ids: Callable[[str], list[int]], log_probs: np.ndarray, blank: int,
                 delimiter: int) -> dict[int, list[int]] | None:
    """Each word's frames [first, last] in a CTC Viterbi alignment of the words to ``log_probs``: its own
    frames plus the blanks around them, up to the delimiters that part it from its neighbours (a
    delimiter's frames would favour longer words, which absorb them). Words without CTC labels have no
    window; None when the words cannot be aligned to these frames."""
    labels: list[int] = []
    owner: list[int] = []  # label -> word index (-1: a delimiter)
    for i, w in enumerate(words):
        w_ids = ctc_ids(w)
        if not w_ids:
            continue
        if labels:
            labels.append(delimiter)
            owner.append(-1)
        labels += w_ids
        owner += [i] * len(w_ids)
    spans = ctc_align(log_probs, labels, blank)
    if spans is None:
        return None
    window: dict[int, list[int]] = {}
    for k, ((a, b), i) in enumerate(zip(spans, owner)):
        if i < 0:
            continue
        if i not in window:
            window[i] = [spans[k - 1][1] + 1 if k > 0 else 0, b]
        window[i][1] = spans[k + 1][0] - 1 if k + 1 < len(spans) else log_probs.shape[0] - 1
    return window


class Spotter:
    """Respells a transcript with the lexicon words its CTC frames support (module docstring)."""

    def __init__(self, lexicon: Sequence[str], ctc_ids: Callable[[str], list[int]], blank: int, delimiter: int,
                 *, margin: float = 0.0, max_span: int = 3) -> None:
        self.ctc_ids, self.blank, self.delimiter = ctc_ids, blank, delimiter
        self.margin, self.max_span = margin, max_span
        words = [w for w in dict.fromkeys(w.lower() for w in lexicon) if len(w) >= MIN_WORD_LEN]
        forms = [f for w in words for f in (w, w + "'s")]
        self.candidates = [(f, ids) for f, ids in ((f, ctc_ids(f)) for f in forms) if ids]

    def __call__(self, text: str, log_probs: torch.Tensor) -> str:
        """``text`` with supported replacements; ``log_probs``: (frames, vocab) CTC log-softmax."""
        words = text.split()
        if not words or not self.candidates:
            return text
        lp = log_probs.detach().float().cpu()
        window = word_windows(words, self.ctc_ids, lp.numpy(), self.blank, self.delimiter)
        if window is None:
            return text
        found = []
        aligned = sorted(window)
        for n, i in enumerate(aligned):
            for m in range(n, min(len(aligned), n + self.max_span)):
                j = aligned[m]
                if j - i >= self.max_span:
                    break
                lo, hi = window[i][0], window[j][1]
                best = self._best(lp[lo:hi + 1], " ".join(words[i:j + 1]))
                if best is not None:
                    found.append((best[0], i, j, best[1]))
        return _apply(words, found)

    def _best(self, lp: torch.Tensor, span: str) -> tuple[float, str] | None:
        """(gain in nats, word) of the lexicon word that beats ``span`` most on these frames, or None."""
        own = self.ctc_ids(span)
        pool = [(span, own)] + [c for c in self.candidates if c[0] != span.lower()]
        n = lp.shape[0]
        pool = [(w, t) for w, t in pool if 0 < len(t) <= n]
        if not pool or pool[0][0] != span:
            return None
        loss = torch.nn.functional.ctc_loss(
            lp.unsqueeze(1).expand(n, len(pool), lp.shape[1]), torch.tensor([i for _, t in pool for i in t]),
            torch.full((len(pool),), n, dtype=torch.long), torch.tensor([len(t) for _, t in pool]),
            blank=self.blank, reduction="none", zero_infinity=False)  # inf: the word cannot fit these frames
        gains = float(loss[0]) - loss[1:]
        if not torch.isfinite(loss[0]) or len(pool) == 1:
            return None
        k = int(torch.nan_to_num(gains, nan=-np.inf, posinf=-np.inf).argmax())
        gain = float(gains[k])
        return (gain, pool[k + 1][0]) if np.isfinite(gain) and gain > self.margin else None


def _apply(words: list[str], found: list[tuple[float, int, int, str]]) -> str:
    taken: set[int] = set()
    replace: dict[int, tuple[int, str]] = {}
    for _, i, j, w in sorted(found, key=lambda f: -f[0]):
        if taken.isdisjoint(range(i, j + 1)):
            taken.update(range(i, j + 1))
            replace[i] = (j, w)
    out, i = [], 0
    while i < len(words):
        if i in replace:
            j, w = replace[i]
            out.append(w)
            i = j + 1
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)
