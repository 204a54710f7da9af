"""A bias toward the user's own words (contacts, places) in joint CTC/LLM decoding.

Why: a small LLM never saw the user's names, and an acoustic model trained without them spells them
loosely ("tobermory" -> "tobuary"), so neither writes them on its own. Personalization knows them: they
are in the user's labels. A ``LexiconBias`` adds ``bonus`` per character while the word being written
is a prefix of one of those words, and takes that bonus back when the word ends (or leaves every
prefix) without being one of them: only complete lexicon words keep it (shallow fusion with a prefix
tree and failure arcs, as in contextual biasing for end-to-end ASR). The bonus is a bridge setting
(``BridgeConfig.lexicon`` / ``lexicon_bonus``), so the quality gate measures a candidate with it.
"""

from __future__ import annotations

from typing import Iterable

WordState = tuple[str, bool]  # (the partial word at the end of the transcript, still a lexicon prefix?)


def normalize_word(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalpha() or ch == "'").strip("'")


class LexiconBias:
    def __init__(self, words: Iterable[str], bonus: float) -> None:
        base = {w for w in (normalize_word(x) for x in words) if w}
        self.words = base | {w + "'s" for w in base if not w.endswith("'s")}  # "call barnaby's phone"
        self.prefixes = {w[:i] for w in self.words for i in range(1, len(w) + 1)}
        self.bonus = bonus
        self.state: WordState = ("", True)

    def _close(self, word: str, live: bool) -> float:
        """A word ends: a lexicon prefix that is not a lexicon word gives its bonus back."""
        return -self.bonus * len(word) if live and word and word not in self.words else 0.0

    def walk(self, text: str, state: WordState, *, stop: bool = False) -> tuple[WordState, float]:
        """(state after appending ``text``, the score change), without changing ``self``."""
        word, live = state
        delta = 0.0
        for ch in text.lower():
            if not (ch.isalpha() or ch == "'"):  # a space or punctuation ends the word ("five.")
                delta += self._close(word, live)
                word, live = "", True
            elif live and word + ch in self.prefixes:
                word += ch
                delta += self.bonus
            else:
                if live:
                    delta -= self.bonus * len(word)  # left every lexicon word: the bonus goes back
                word, live = word + ch, False
        if stop:
            delta += self._close(word, live)
        return (word, live), delta

    def adjust(self, text: str, *, stop: bool = False) -> float:
        return self.walk(text, self.state, stop=stop)[1]

    def accept(self, text: str) -> None:
        self.state = self.walk(text, self.state)[0]


class BiasChooser:
    """Greedy decoding with a ``LexiconBias``: the LLM's log-probability plus the bias, over its top
    ``top_k`` tokens and the stop tokens (decode.py's ``chooser``). Used for replies, with the request's
    own words as the lexicon: a reply that repeats a number or a name keeps it as the user said it."""

    def __init__(self, bias: LexiconBias, token_text, stop_ids: set[int], top_k: int = 32) -> None:
        self.bias, self.token_text, self.stop_ids, self.top_k = bias, token_text, stop_ids, top_k

    def choose(self, logits) -> int:
        import torch

        logp = torch.log_softmax(logits.float(), -1)
        top = logp.topk(min(self.top_k, logp.shape[-1])).indices.tolist()
        cands = top + [s for s in self.stop_ids if s not in top and s < logp.shape[-1]]
        best, best_score = cands[0], float("-inf")
        for c in cands:  # first in LLM order wins ties
            stop = c in self.stop_ids
            score = float(logp[c]) + self.bias.adjust("" if stop else self.token_text(c), stop=stop)
            if score > best_score:
                best, best_score = c, score
        return best

    def accept(self, token: int) -> None:
        if token not in self.stop_ids:
            self.bias.accept(self.token_text(token))


def request_words(transcript: str, min_letters: int = 3) -> list[str]:
    """The words of a request a reply may repeat: numbers, names, places (3+ letters)."""
    return [w for w in (normalize_word(x) for x in transcript.split()) if len(w) >= min_letters]
