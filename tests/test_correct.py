"""Vocabulary correction of CTC readings (engine/correct.py) on hand-made CTC posteriors."""

from __future__ import annotations

import torch

from assistant.engine.correct import Corrector, edit_distance

CHARS = "|abcdefghijklmnopqrstuvwxyz'"
VOCAB = {c: i + 1 for i, c in enumerate(CHARS)}  # 0 is the blank
DELIM = VOCAB["|"]


def ctc_ids(text: str) -> list[int]:
    return [DELIM if c == " " else VOCAB[c] for c in " ".join(text.split()) if c == " " or c in VOCAB]


def posteriors(frames: list[dict[str, float]]) -> torch.Tensor:
    """Log-probabilities per frame from {symbol: prob} ('_' is the blank; the rest share what is left)."""
    out = torch.full((len(frames), len(VOCAB) + 1), 1e-4)
    for t, probs in enumerate(frames):
        for sym, p in probs.items():
            out[t, 0 if sym == "_" else VOCAB[sym]] = p
    return torch.log(out / out.sum(-1, keepdim=True))


def spelled(text: str, doubt: dict[int, str] | None = None) -> list[dict[str, float]]:
    """Frames of ``text``: each character then two blanks; ``doubt[k]`` puts 0.3 on a letter in the second
    blank after character k (the head half hears it again)."""
    frames = []
    for k, c in enumerate(text):
        frames.append({"|" if c == " " else c: 0.95})
        frames.append({"_": 0.95})
        frames.append({"_": 0.65, doubt[k]: 0.3} if doubt and k in doubt else {"_": 0.95})
    return frames


def test_edit_distance_with_a_limit():
    assert edit_distance("wil", "will", 2) == 1 and edit_distance("kitten", "sitting", 3) == 3
    assert edit_distance("a", "abcdef", 2) == 3  # over the limit: limit + 1


def test_an_out_of_vocabulary_word_becomes_the_word_its_frames_nearly_fit():
    lp = posteriors(spelled("it wil snow", doubt={5: "l"}))  # a blank after "wil" half hears a second l
    c = Corrector(["it", "will", "well", "snow"], ctc_ids, 0, DELIM, tolerance=5.0)
    assert c("it wil snow", lp) == "it will snow"
    assert Corrector(["it", "will", "snow"], ctc_ids, 0, DELIM, tolerance=0.0)("it wil snow", lp) == "it wil snow"


def test_known_words_are_never_touched_and_unknown_ones_without_a_near_word_stay():
    lp = posteriors(spelled("call zork"))
    c = Corrector(["call", "cool"], ctc_ids, 0, DELIM, tolerance=50.0)
    assert c("call zork", lp) == "call zork"


def test_joined_and_split_words_are_found():
    c = Corrector(["turn", "the", "heater", "off", "snow"], ctc_ids, 0, DELIM, tolerance=50.0)
    assert c("turn the heateroff", posteriors(spelled("turn the heateroff"))) == "turn the heater off"
    assert c("s now", posteriors(spelled("s now"))) == "snow"


def test_a_reading_without_word_breaks_is_split_into_several_words():
    words = ["i", "need", "a", "reminder", "remind", "near"]
    c = Corrector(words, ctc_ids, 0, DELIM, tolerance=20.0)
    assert "i need a reminder" in c.splits("ineedareminder")
    # the head half heard the breaks (0.3 in a blank frame) but read none of them
    lp = posteriors(spelled("ineedareminder", doubt={0: "|", 4: "|", 5: "|"}))
    assert c("ineedareminder", lp) == "i need a reminder"
    # with the breaks unheard each costs its blank frame (~9 nats here): too much for a small tolerance
    lp = posteriors(spelled("ineedareminder"))
    assert Corrector(words, ctc_ids, 0, DELIM, tolerance=5.0)("ineedareminder", lp) == "ineedareminder"


def test_the_word_lm_settles_between_candidates_the_frames_fit_alike():
    from assistant.engine.wordlm import WordLM

    words = ["what's", "to", "days", "today's", "date"]
    lp = posteriors(spelled("what's todays date", doubt={8: "|"}))  # a break after "to" half heard
    acoustic = Corrector(words, ctc_ids, 0, DELIM, tolerance=50.0)
    assert acoustic("what's todays date", lp) == "what's to days date"
    lm = WordLM.from_texts(["what's today's date", "in two days", "what's the date"])
    # the frames favour "to days" by ~2 nats; the LM, "today's" by ~7 nats (x 3)
    with_lm = Corrector(words, ctc_ids, 0, DELIM, tolerance=50.0, lm=lm, lm_weight=3.0, word_bonus=0.0)
    assert with_lm("what's todays date", lp) == "what's today's date"
