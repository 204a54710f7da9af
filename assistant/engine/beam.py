"""CTC prefix beam search with a word language model (wordlm.py): the transcript the frames and the
word order agree on best.

Greedy CTC takes each frame's best label; this keeps the ``beam`` best prefixes, merging the paths that
spell the same text (blanks and repeats, Graves' CTC rules), and when a word ends (the word delimiter, or
the last frame) adds ``lm_weight`` x log P(word | two words before) + ``word_bonus``, the bonus
offsetting the LM's cost per word so that short words are not dropped. Labels below ``prune`` nats under
a frame's best are not tried: most frames are confidently blank, so a 3 s utterance costs a few ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from assistant.engine.wordlm import BOS, EOS, WordLM

NEG = -math.inf


def _add(a: float, b: float) -> float:
    if a == NEG:
        return b
    if b == NEG:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


@dataclass
class _Beam:
    blank: float = NEG  # log P(the frames so far, ending in blank | this text)
    label: float = NEG  # ... ending in the text's last label
    lm: float = 0.0  # weighted LM score + word bonuses of the completed words
    words: tuple[str, ...] = (BOS,)
    partial: str = ""  # the word being spelled

    @property
    def acoustic(self) -> float:
        return _add(self.blank, self.label)


@dataclass(frozen=True)
class BeamSettings:
    lm_weight: float = 0.5
    word_bonus: float = 1.0
    beam: int = 12
    prune: float = 8.0  # nats under the frame's best label


def beam_search(log_probs: np.ndarray, labels: Sequence[str | None], blank: int, delimiter: int, lm: WordLM,
                settings: BeamSettings = BeamSettings()) -> str:
    """The best text for ``log_probs`` (frames x labels, natural log). ``labels[i]``: label i's character
    (None: a label that spells nothing, e.g. a special token)."""
    s = settings
    beams: dict[str, _Beam] = {"": _Beam(blank=0.0)}
    last_of = {}  # text -> its last label id (for the repeat rule)

    def completed(b: _Beam) -> float:
        """``b``'s LM score with its partial word completed."""
        return b.lm + s.lm_weight * lm.log_prob(b.words, b.partial) + s.word_bonus

    for frame in np.asarray(log_probs, dtype=np.float64):
        best = float(frame.max())
        tried = [int(i) for i in np.nonzero(frame >= best - s.prune)[0]]
        nxt: dict[str, _Beam] = {}

        def get(text: str, like: _Beam) -> _Beam:
            b = nxt.get(text)
            if b is None:
                b = nxt[text] = _Beam(lm=like.lm, words=like.words, partial=like.partial)
            return b

        for text, b in beams.items():
            total = b.acoustic
            for i in tried:
                p = float(frame[i])
                if i == blank:
                    nb = get(text, b)
                    nb.blank = _add(nb.blank, total + p)
                    continue
                char = " " if i == delimiter else labels[i]
                if char is None:
                    continue
                if char == " " and (not b.partial):  # a delimiter before any word, or twice: no new text
                    nb = get(text, b)
                    nb.blank = _add(nb.blank, total + p)
                    continue
                if last_of.get(text) == i:  # the same label again: a repeat unless a blank came between
                    same = get(text, b)
                    same.label = _add(same.label, b.label + p)
                    if b.blank == NEG:
                        continue
                    from_prev = b.blank + p
                else:
                    from_prev = total + p
                new_text = text + char
                nb = nxt.get(new_text)
                if nb is None:
                    if char == " ":
                        nb = _Beam(lm=completed(b), words=(*b.words[-2:], b.partial), partial="")
                    else:
                        nb = _Beam(lm=b.lm, words=b.words, partial=b.partial + char)
                    nxt[new_text] = nb
                    last_of[new_text] = i
                nb.label = _add(nb.label, from_prev)
        beams = dict(sorted(nxt.items(), key=lambda kv: kv[1].acoustic + kv[1].lm, reverse=True)[:s.beam])

    def final(b: _Beam) -> float:
        if not b.partial:
            return b.acoustic + b.lm + s.lm_weight * lm.log_prob(b.words, EOS)
        return b.acoustic + completed(b) + s.lm_weight * lm.log_prob((*b.words[-2:], b.partial), EOS)

    text = max(beams.items(), key=lambda kv: final(kv[1]))[0]
    return " ".join(text.split())
