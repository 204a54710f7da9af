"""A word trigram language model of the bundle's training text, for CTC beam search (beam.py).

A character CTC head spells each word from its own frames and knows nothing of which words follow which:
"set a timer for five minutes" comes out "set a tim for five minits". The request domain is narrow, so
the words of the bundle's training text, and their order, say a lot about what was said. Interpolated
absolute discounting (Ney's), orders 3 -> 2 -> 1, with a fixed share of the unigram mass kept for words
the text never had: a name the user says is allowed, just less likely than a word the assistant knows.

Stored as ``language_model.json`` in the bundle (format ``assistant-word-lm``): the n-gram counts of the
training text, nothing else, so the model is rebuilt identically from them.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

from assistant.errors import ModelFilesError

FORMAT = "assistant-word-lm"
FILE_NAME = "language_model.json"
BOS, EOS = "<s>", "</s>"


class WordLM:
    def __init__(self, counts: dict[tuple[str, ...], int], *, discount: float = 0.75,
                 unknown_share: float = 0.02) -> None:
        self.counts = dict(counts)
        self.discount, self.unknown_share = discount, unknown_share
        self._context: dict[tuple[str, ...], int] = Counter()  # c(history ·)
        self._types: dict[tuple[str, ...], int] = Counter()  # N1+(history ·)
        for gram, c in self.counts.items():
            self._context[gram[:-1]] += c
            self._types[gram[:-1]] += 1
        self.vocabulary = {g[0] for g in self.counts if len(g) == 1}
        self._unigram_total = sum(c for g, c in self.counts.items() if len(g) == 1)
        self._cache: dict[tuple[str, ...], float] = {}

    @classmethod
    def from_texts(cls, texts: Iterable[str], *, weight: int = 1, base: "WordLM | None" = None) -> "WordLM":
        """Counts of ``texts`` (lowercase words), each ``weight`` times, added to ``base``'s counts."""
        counts: Counter = Counter(base.counts if base is not None else {})
        for text in texts:
            words = [BOS, *text.lower().split(), EOS]
            for n in (1, 2, 3):  # every n-gram that ends on a word ("<s>" is only ever history)
                for i in range(max(n - 1, 1), len(words)):
                    counts[tuple(words[i - n + 1:i + 1])] += weight
        return cls(counts, **({"discount": base.discount, "unknown_share": base.unknown_share} if base else {}))

    def _unigram(self, word: str) -> float:
        if word in self.vocabulary:
            return (1 - self.unknown_share) * self.counts[(word,)] / self._unigram_total
        return self.unknown_share

    def _prob(self, history: tuple[str, ...], word: str) -> float:
        if not history:
            return self._unigram(word)
        lower = self._prob(history[1:], word)
        total = self._context.get(history, 0)
        if total == 0:
            return lower
        c = self.counts.get((*history, word), 0)
        return max(c - self.discount, 0) / total + self.discount * self._types[history] / total * lower

    def log_prob(self, history: Iterable[str], word: str) -> float:
        """Natural log P(word | the last two words of history); history starts with "<s>"."""
        h = tuple(history)[-2:]
        key = (*h, word)
        got = self._cache.get(key)
        if got is None:
            if len(self._cache) > 200_000:
                self._cache.clear()
            got = self._cache[key] = math.log(self._prob(h, word))
        return got

    def sentence_log_prob(self, text: str) -> float:
        words, h, total = text.lower().split(), [BOS], 0.0
        for w in [*words, EOS]:
            total += self.log_prob(h, w)
            h.append(w)
        return total

    def save(self, directory: str | Path) -> Path:
        grams: dict[str, dict[str, int]] = defaultdict(dict)
        for g, c in sorted(self.counts.items()):
            grams[str(len(g))][" ".join(g)] = c
        path = Path(directory) / FILE_NAME
        path.write_text(json.dumps({"format": FORMAT, "discount": self.discount,
                                    "unknown_share": self.unknown_share, "counts": grams}), encoding="utf-8")
        return path


def load_word_lm(directory: str | Path) -> WordLM | None:
    """The bundle's word LM, or None when it has none; a damaged file is a ModelFilesError."""
    path = Path(directory) / FILE_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, not {FORMAT!r}")
        counts = {tuple(k.split(" ")): int(c) for grams in data["counts"].values() for k, c in grams.items()}
        return WordLM(counts, discount=float(data["discount"]), unknown_share=float(data["unknown_share"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelFilesError(f"{path} is not a word language model: {exc}",
                              fix="rebuild the bundle's language model (python -m bench.real.word_lm)") from exc
