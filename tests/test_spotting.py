"""Word spotting (assistant/engine/spotting.py): the CTC Viterbi alignment, and respelling a transcript
with a lexicon word only where the frames say that word."""

from __future__ import annotations

import numpy as np
import torch

from assistant.engine.spotting import Spotter, ctc_align

BLANK, DELIM = 0, 1
LETTERS = "abcdefghijklmnopqrstuvwxyz'"


def ids(text: str) -> list[int]:
    return [DELIM if c == " " else 2 + LETTERS.index(c) for c in " ".join(text.lower().split()) if c == " " or c in LETTERS]


def frames_saying(text: str, *, confidence: float = 4.0, seed: int = 0) -> torch.Tensor:
    """CTC log-probs of a head that hears ``text``: two frames per label, a blank between labels."""
    rng = np.random.default_rng(seed)
    seq = []
    for label in ids(text):
        seq += [label, label, BLANK]
    logits = rng.normal(0, 0.5, (len(seq) + 2, 2 + len(LETTERS)))
    for t, label in enumerate([BLANK] + seq + [BLANK]):
        logits[t, label] += confidence
    return torch.log_softmax(torch.tensor(logits, dtype=torch.float32), -1)


def test_ctc_align_gives_each_label_its_frames():
    lp = frames_saying("ab b").numpy()
    labels = ids("ab b")
    spans = ctc_align(lp, labels, BLANK)
    # frame 0 is blank, then 2 frames + 1 blank per label
    assert spans == [(1 + 3 * k, 2 + 3 * k) for k in range(len(labels))]
    assert ctc_align(lp[:3], labels, BLANK) is None  # too few frames for four labels
    assert ctc_align(frames_saying("aa").numpy()[:2], ids("aa"), BLANK) is None  # a repeat needs a blank


def test_a_misheard_name_is_respelled_and_other_words_stay():
    spot = Spotter(["barnaby", "ullapool", "any"], ids, BLANK, DELIM)
    heard = frames_saying("can you call barnaby please")
    # the LLM wrote three wrong words where the head heard the name
    assert spot("can you call ben a bee please", heard) == "can you call barnaby please"
    # what the head hears as the transcript says stays, even with lexicon words around
    plain = frames_saying("can you call mom please")
    assert spot("can you call mom please", plain) == "can you call mom please"
    # the possessive is a form of the lexicon word
    assert spot("what is bar nabis number", frames_saying("what is barnaby's number")) == "what is barnaby's number"
    # words under four letters are never spotted: too often a real word of another request
    assert all(len(w.rstrip("'s")) >= 4 for w, _ in spot.candidates)
    assert Spotter([], ids, BLANK, DELIM)("call ben", heard) == "call ben"


def test_a_margin_keeps_the_transcript_when_the_evidence_is_weak():
    heard = frames_saying("call barnaby", confidence=0.3, seed=3)  # a head that barely hears anything
    assert Spotter(["barnaby"], ids, BLANK, DELIM, margin=50.0)("call ben a bee", heard) == "call ben a bee"
