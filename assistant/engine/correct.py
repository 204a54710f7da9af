"""Vocabulary correction of a CTC reading: out-of-vocabulary words respelled as the words the frames fit.

A character CTC head spells what it hears ("wil", "befor", "julliy", "heterroff"); most of those are one
or two letters from a word the assistant knows. Each reading word that is not in the vocabulary (the
bundle's training text, plus the user's own words from a personalized bridge) is compared, on its own
frames (CTC Viterbi alignment, as spotting.py does), with the vocabulary words close to it in spelling,
and also joined with its right neighbour ("s noww" -> "snow") and split into up to ``MAX_SPLIT`` words
each near a vocabulary word ("heterroff" -> "heater off", "indnedareminder" -> "i need a reminder":
the head often marks no word break between short words).

Each candidate is scored as the beam search scores a reading (beam.py): its CTC log-likelihood on those
frames, plus, with the bundle's word LM, ``lm_weight`` x the LM's log-probability of its words in their
place (the two words before, the word after) and ``word_bonus`` per word, all relative to the reading's
own. The best replaces the reading when it scores at most ``tolerance`` below it: the reading is the
CTC's best guess by construction, so real words that explain the frames almost as well are taken, and
the LM settles which ("to days date" or "today's date"). Without an LM the score is acoustic alone.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from assistant.engine.spotting import word_windows
from assistant.engine.wordlm import BOS, EOS, WordLM

MAX_CANDIDATES = 24
MAX_SPLIT = 4  # words one reading word may be split into
MAX_SPLITS = 6  # splits tried per word, fewest spelling edits first
MAX_PART = 14  # letters of the longest part a split looks up


def _deletions(word: str, depth: int) -> set[str]:
    """``word`` with up to ``depth`` letters deleted (SymSpell's index keys)."""
    out, frontier = {word}, {word}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1:] for w in frontier for i in range(len(w))}
        out |= frontier
    return out


def _part_limit(part: str) -> int:
    """Spelling edits allowed for one part of a split: none for 1-2 letters, then 1, from 6 letters 2."""
    return 0 if len(part) <= 2 else 1 if len(part) <= 5 else 2


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
                 delimiter: int, *, tolerance: float = 2.0, lm: WordLM | None = None, lm_weight: float = 0.0,
                 word_bonus: float = 0.0) -> None:
        self.words = sorted({w.lower() for w in vocabulary if w.strip()})
        self.known = set(self.words)
        self.ctc_ids, self.blank, self.delimiter, self.tolerance = ctc_ids, blank, delimiter, tolerance
        self.lm = lm if lm is not None and lm_weight > 0 else None
        self.lm_weight, self.word_bonus = (lm_weight, word_bonus) if self.lm is not None else (0.0, 0.0)
        self._near: dict[str, list[str]] = {}
        self._index: dict[str, list[str]] = {}  # deletion key -> words (SymSpell), for the parts of splits
        for w in self.words:
            for key in _deletions(w, 2):
                self._index.setdefault(key, []).append(w)
        self._parts: dict[str, list[tuple[int, str]]] = {}

    def near(self, text: str) -> list[str]:
        """Vocabulary words within a spelling distance that grows with length, then splits into words."""
        got = self._near.get(text)
        if got is None:
            limit = 1 if len(text) <= 4 else 2 if len(text) <= 8 else 3
            scored = [(edit_distance(text, w, limit), w) for w in self.words]
            out = [w for d, w in sorted(scored) if d <= limit][:MAX_CANDIDATES]
            got = self._near[text] = out + [s for s in self.splits(text) if s not in out]
        return got

    def part_matches(self, part: str) -> list[tuple[int, str]]:
        """(edits, word) of the vocabulary words within ``_part_limit`` edits of ``part``, nearest first."""
        got = self._parts.get(part)
        if got is None:
            limit = _part_limit(part)
            seen = {w for key in _deletions(part, limit) for w in self._index.get(key, ())}
            scored = sorted((edit_distance(part, w, limit), w) for w in seen)
            got = self._parts[part] = [(d, w) for d, w in scored if d <= limit][:3]
        return got

    def splits(self, text: str) -> list[str]:
        """``text`` read as 2..MAX_SPLIT words, each near a vocabulary word ("indnedareminder" -> "i need a
        reminder"): the fewest edits in all first, at most 1 + len/5 of them."""
        budget = 1 + len(text) // 5
        best: list[list[tuple[int, tuple[str, ...]]]] = [[] for _ in range(len(text) + 1)]
        best[0] = [(0, ())]
        for j in range(1, len(text) + 1):
            options = []
            for i in range(max(0, j - MAX_PART), j):
                if not best[i]:
                    continue
                for d, w in self.part_matches(text[i:j]):
                    options += [(c + d, words + (w,)) for c, words in best[i]
                                if c + d <= budget and len(words) < MAX_SPLIT]
            best[j] = sorted(set(options), key=lambda o: (o[0], len(o[1])))[:MAX_SPLITS]
        return list(dict.fromkeys(" ".join(words) for _, words in best[-1] if len(words) > 1))

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
                after = words[b + 1] if b + 1 < len(words) else EOS
                pick = self._best(lp[window[a][0]:window[b][1] + 1], own, cands, (BOS, *out[-2:]), after)
                if pick is not None and (best is None or pick[0] > best[0]):
                    best = (pick[0], b, pick[1])
            if best is None:
                out.append(words[i])
                i += 1
            else:
                out.append(best[2])
                i = best[1] + 1
        return " ".join(out)

    def _best(self, lp: torch.Tensor, own: str, cands: list[str], before: tuple[str, ...] = (BOS,),
              after: str = EOS) -> tuple[float, str] | None:
        """(score relative to ``own``, candidate) of the best candidate within the tolerance, or None."""
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
        gains = torch.nan_to_num(float(loss[0]) - loss[1:], nan=-float("inf"), posinf=-float("inf")).tolist()
        if self.lm is not None:
            mine = self._lm_score(before, own, after)
            gains = [g + self.lm_weight * (self._lm_score(before, w, after) - mine)
                     + self.word_bonus * (len(w.split()) - len(own.split())) for g, (w, _) in zip(gains, pool[1:])]
        k = max(range(len(gains)), key=gains.__getitem__)
        return (gains[k], pool[k + 1][0]) if gains[k] >= -self.tolerance else None

    def _lm_score(self, before: tuple[str, ...], text: str, after: str) -> float:
        """The LM's log-probability of ``text``'s words and the word after them, following ``before``."""
        history, total = list(before), 0.0
        for w in [*text.split(), after]:
            total += self.lm.log_prob(history, w)
            history.append(w)
        return total
