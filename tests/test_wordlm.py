"""The word LM (engine/wordlm.py) and CTC beam search with it (engine/beam.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from assistant.engine.beam import BeamSettings, beam_search
from assistant.engine.wordlm import FILE_NAME, WordLM, load_word_lm
from assistant.errors import ModelFilesError

TEXTS = ["set a timer for five minutes", "set a timer for ten minutes", "set an alarm for five",
         "call mom", "call the office"] * 3
CHARS = ["<blank>", "|", *"abcdefghijklmnopqrstuvwxyz'"]
BLANK, DELIM = 0, 1


def frames(spelled: list[dict[str, float]]) -> np.ndarray:
    """Log-probs: each step a dict char -> probability (the rest to blank), then a blank frame."""
    rows = []
    for step in spelled:
        p = np.full(len(CHARS), 1e-6)
        for ch, q in step.items():
            p[CHARS.index("|" if ch == " " else ch)] = q
        p[BLANK] += max(0.0, 1 - p.sum())
        rows.append(p / p.sum())
        blank = np.full(len(CHARS), 1e-6)
        blank[BLANK] = 1.0
        rows.append(blank / blank.sum())
    return np.log(np.array(rows))


def clear(text: str) -> list[dict[str, float]]:
    return [{c: 0.98} for c in text]


def labels() -> list[str | None]:
    return [None, " ", *CHARS[2:]]


def test_the_lm_is_normalized_and_prefers_what_its_text_says():
    lm = WordLM.from_texts(TEXTS)
    history = ("<s>", "set")
    total = sum(math.exp(lm.log_prob(history, w)) for w in lm.vocabulary)
    assert total == pytest.approx(1.0, abs=0.03)  # the unknown share sits apart, outside the vocabulary
    assert lm.log_prob(history, "a") > lm.log_prob(history, "mom") > lm.log_prob(history, "zebra") - 10
    assert lm.sentence_log_prob("set a timer for five minutes") > lm.sentence_log_prob("set a timer for mom minutes")


def test_the_lm_saves_and_loads_the_same_counts(tmp_path):
    lm = WordLM.from_texts(TEXTS)
    lm.save(tmp_path)
    again = load_word_lm(tmp_path)
    assert again.counts == lm.counts
    assert again.log_prob(("<s>", "call"), "mom") == lm.log_prob(("<s>", "call"), "mom")
    assert load_word_lm(tmp_path / "elsewhere") is None


def test_a_damaged_lm_file_names_the_file_and_the_fix(tmp_path):
    (tmp_path / FILE_NAME).write_text('{"format": "something-else"}')
    with pytest.raises(ModelFilesError, match=FILE_NAME) as exc:
        load_word_lm(tmp_path)
    assert "bench.real.word_lm" in exc.value.fix


def test_added_texts_raise_their_words():
    lm = WordLM.from_texts(TEXTS)
    mine = WordLM.from_texts(["call barnaby"], weight=3, base=lm)
    assert mine.log_prob(("<s>", "call"), "barnaby") > lm.log_prob(("<s>", "call"), "barnaby") + 2


def test_beam_search_reads_clear_frames_as_spelled():
    lm = WordLM.from_texts(TEXTS)
    lp = frames(clear("set a timer"))
    assert beam_search(lp, labels(), BLANK, DELIM, lm, BeamSettings(lm_weight=0.0, word_bonus=0.0)) == "set a timer"
    assert beam_search(lp, labels(), BLANK, DELIM, lm) == "set a timer"


def test_repeated_letters_need_a_blank_between_them():
    lm = WordLM.from_texts(TEXTS)
    p = np.full((3, len(CHARS)), 1e-6)
    p[0, CHARS.index("m")] = p[1, CHARS.index("m")] = 1.0  # "mm" without a blank: one m
    p[2, CHARS.index("o")] = 1.0
    got = beam_search(np.log(p / p.sum(1, keepdims=True)), labels(), BLANK, DELIM, lm,
                      BeamSettings(lm_weight=0.0, word_bonus=0.0))
    assert got == "mo"


def test_the_lm_settles_what_the_frames_leave_open():
    lm = WordLM.from_texts(TEXTS)
    spelled = clear("set a tim") + [{"e": 0.45, "a": 0.5}] + clear("r")  # acoustically "timar", barely
    lp = frames(spelled)
    assert beam_search(lp, labels(), BLANK, DELIM, lm, BeamSettings(lm_weight=0.0, word_bonus=0.0)) == "set a timar"
    assert beam_search(lp, labels(), BLANK, DELIM, lm, BeamSettings(lm_weight=0.5, word_bonus=1.0)) == "set a timer"


def test_a_word_the_lm_never_saw_is_kept_when_the_frames_are_clear():
    lm = WordLM.from_texts(TEXTS)
    assert beam_search(frames(clear("call barnaby")), labels(), BLANK, DELIM, lm) == "call barnaby"

