"""Vocabulary correction of a CTC reading: out-of-vocabulary words respelled as the words the frames fit.

A character CTC head spells what it hears ("wil", "befor", "julliy", "heterroff"); most of those are one
or two letters from a word the assistant knows. Each reading word that is not in the vocabulary (the
bundle's training text, plus the user's own words from a personalized bridge) is compared, on its own
frames (CTC Viterbi alignment, as spotting.py does), with the vocabulary words close to it in spelling,
and also joined with its right neighbour ("s noww" -> "snow") and split in two ("heterroff" -> "heater
off"). The candidate with the best CTC log-likelihood replaces it when it is at most ``tolerance`` nats
worse than the reading itself: the reading is the CTC's best guess by construction, so a real word
that explains the frames almost as well is taken; one that does not, is not.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from assistant.engine.spotting import word_windows

MAX_CANDIDATES = 24


def edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance, or ``limit + 1`` as soon as it must exceed ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
        if min(cur) > limit:
            return limit + 1
        prev = cur
    return prev[-1]


class Corrector:
    def __init__(self, vocabulary: Sequence[str], ctc_ids: Callable[[str], list[int]], blank: int,
                 delimiter: int, *, tolerance: float = 2.0) -> None:
        self.words = sorted({w.lower() for w in vocabulary if w.strip()})
        self.known = set(self.words)
        self.ctc_ids, self.blank, self.delimiter, self.tolerance = ctc_ids, blank, delimiter, tolerance
        self._near: dict[str, list[str]] = {}

    def near(self, text: str) -> list[str]:
        """Vocabulary words (and splits into two) within a spelling distance that grows with length."""
        got = self._near.get(text)
        if got is None:
            limit = 1 if len(text) <= 4 else 2 if len(text) <= 8 else 3
            scored = [(edit_distance(text, w, limit), w) for w in self.words]
            out = [w for d, w in sorted(scored) if d <= limit][:MAX_CANDIDATES]
            for k in range(2, len(text) - 1):  # "heterroff" -> "heater off"
                left, right = self._closest(text[:k]), self._closest(text[k:])
                if left and right:
                    out.append(f"{left} {right}")
            got = self._near[text] = out
        return got

    def _closest(self, part: str) -> str | None:
        limit = 0 if len(part) <= 3 else 1
        best = min(((edit_distance(part, w, limit), w) for w in self.words), default=(limit + 1, ""))
        return best[1] if best[0] <= limit else None

    def __call__(self, text: str, log_probs: torch.Tensor) -> str:
        words = text.split()
        if not words or all(w in self.known for w in words):
            return text
        lp = log_probs.detach().float().cpu()
        window = word_windows(words, self.ctc_ids, lp.numpy(), self.blank, self.delimiter)
        if window is None:
            return text
        out, i = [], 0
        while i < len(words):
            if words[i] in self.known or i not in window:
                out.append(words[i])
                i += 1
                continue
            options = [(i, i, words[i], self.near(words[i]))]
            if i + 1 < len(words) and i + 1 in window:  # "s noww" -> "snow": the word joined with the next
                joined = words[i] + words[i + 1]
                options.append((i, i + 1, f"{words[i]} {words[i + 1]}", [w for w in self.near(joined) if " " not in w]))
            best = None
            for a, b, own, cands in options:
                if not cands:
                    continue
                pick = self._best(lp[window[a][0]:window[b][1] + 1], own, cands)
                if pick is not None and (best is None or pick[0] > best[0]):
                    best = (pick[0], b, pick[1])
            if best is None:
                out.append(words[i])
                i += 1
            else:
                out.append(best[2])
                i = best[1] + 1
        return " ".join(out)

    def _best(self, lp: torch.Tensor, own: str, cands: list[str]) -> tuple[float, str] | None:
        pool = [(w, self.ctc_ids(w)) for w in [own, *cands]]
        n = lp.shape[0]
        pool = [(w, t) for w, t in pool if 0 < len(t) <= n]
        if len(pool) < 2 or pool[0][0] != own:
            return None
        loss = torch.nn.functional.ctc_loss(
            lp.unsqueeze(1).expand(n, len(pool), lp.shape[1]), torch.tensor([i for _, t in pool for i in t]),
            torch.full((len(pool),), n, dtype=torch.long), torch.tensor([len(t) for _, t in pool]),
            blank=self.blank, reduction="none", zero_infinity=False)
        if not torch.isfinite(loss[0]):
            return None
        gains = torch.nan_to_num(float(loss[0]) - loss[1:], nan=-float("inf"), posinf=-float("inf"))
        k = int(gains.argmax())
        gain = float(gains[k])
        return (gain, pool[k + 1][0]) if gain >= -self.tolerance else None
