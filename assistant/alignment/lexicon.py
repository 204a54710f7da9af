"""The user's own words for a personalized bridge: the names and places in their labels.

``personal_lexicon`` keeps the words of the training labels that the bundle does not know: those outside
its vocabulary (the words of its training text) when it ships one, else those its generic speech (the
replay and regression transcripts) never uses. On the shipped bundle that is exactly the user's contacts
and places, which no base training saw; a few hundred generic transcripts miss common words ("soon",
"happy", "saturday"), which a negative spotting margin would then write where they were not said. ``with_lexicon`` puts them, with the bias per character, into
the candidate's config; joint decoding then favours them (``assistant/engine/lexicon.py``) and the
quality gate scores the candidate with that bias, so a lexicon that hurts is rejected with it.
Held-out labels never feed the lexicon: the gate's figures stay honest.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Iterable

from assistant.engine.checkpoint import LoadedBridge
from assistant.engine.lexicon import normalize_word

MAX_WORDS = 500


def _words(text: str) -> list[str]:
    out = []
    for raw in text.split():
        w = normalize_word(raw)
        out.append(w[:-2] if w.endswith("'s") else w)
    return [w for w in out if w]


def personal_lexicon(train_texts: Iterable[str], generic_texts: Iterable[str], *, vocabulary: Iterable[str] = (),
                     min_len: int = 3, max_words: int = MAX_WORDS) -> tuple[str, ...]:
    """Words of ``train_texts`` the bundle does not know, at least ``min_len`` letters, most frequent first:
    not in ``vocabulary`` when it is given (the bundle's words), else not in ``generic_texts``."""
    known = {normalize_word(w) for w in vocabulary}
    generic = known or {w for t in generic_texts for w in _words(t)}
    counts = Counter(w for t in train_texts for w in _words(t) if len(w) >= min_len and w not in generic)
    return tuple(w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_words])


def with_lexicon(bridge: LoadedBridge, words: tuple[str, ...], bonus: float, *, spotting: bool = False,
                 spot_margin: float = 0.0) -> LoadedBridge:
    """The same bridge (module shared) whose config carries the lexicon: for the decoding bias (``bonus``
    per character) and/or for word spotting after decoding (``engine/spotting.py``); no words, or neither
    use: unchanged."""
    if not words or (bonus <= 0 and not spotting):
        return bridge
    return LoadedBridge(module=bridge.module,
                        config=dataclasses.replace(bridge.config, lexicon=tuple(words), lexicon_bonus=max(bonus, 0.0),
                                                   lexicon_spotting=spotting, lexicon_spot_margin=spot_margin))


def words_only(bridge: LoadedBridge, words: tuple[str, ...], config) -> LoadedBridge:
    """``bridge`` (module shared) spotting exactly ``words`` as ``[alignment]`` says (``config``: an
    ``AlignmentConfig``); no words: no lexicon at all. The gate compares bridges with the same words, and
    the serving bridge spots the user's words before any training (``services/scheduler.py``)."""
    spotting = bool(words) and config.lexicon_spotting
    return LoadedBridge(module=bridge.module,
                        config=dataclasses.replace(bridge.config, lexicon=tuple(words),
                                                   lexicon_bonus=config.lexicon_bonus if words else 0.0,
                                                   lexicon_spotting=spotting,
                                                   lexicon_spot_margin=config.lexicon_spot_margin))
