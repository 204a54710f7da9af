"""The personal lexicon: its bias in joint decoding, how personalization builds it, how it is saved."""

from __future__ import annotations

import pytest
import torch

from assistant.alignment.lexicon import personal_lexicon, with_lexicon
from assistant.engine.checkpoint import load_bridge, save_bridge
from assistant.engine.joint import CtcPrefixScorer, JointChooser, TokenLabels
from assistant.engine.lexicon import LexiconBias

from test_joint import BLANK, Chars, ctc_saying, run


def test_a_lexicon_word_keeps_its_bonus_a_mere_prefix_gives_it_back():
    lex = LexiconBias(["cab"], 1.0)
    assert lex.walk("cab ", ("", True))[1] == pytest.approx(3.0)  # a whole word: 3 characters of bonus
    assert lex.walk("ca ", ("", True))[1] == pytest.approx(0.0)  # a prefix that ends: taken back
    assert lex.walk("cat", ("", True))[1] == pytest.approx(0.0)  # leaves the word: taken back
    assert lex.walk("ca", ("", True), stop=True)[1] == pytest.approx(0.0)
    assert lex.walk("cab's", ("", True))[1] == pytest.approx(5.0)  # the possessive counts
    assert lex.walk("b", ("", True))[1] == 0.0  # not a prefix: no bonus at all
    lex.accept("ca")
    assert lex.adjust("b") == pytest.approx(1.0) and lex.adjust(" ") == pytest.approx(-2.0)


def test_personal_lexicon_keeps_the_users_words_that_generic_speech_never_uses():
    train = ["call barnaby's phone", "weather in ullapool", "call barnaby", "set a timer"]
    generic = ["call mom", "set a timer for ten minutes", "what is the weather in paris"]
    assert personal_lexicon(train, generic) == ("barnaby", "phone", "ullapool")
    assert personal_lexicon(train, generic, min_len=6) == ("barnaby", "ullapool")


def chooser(lp, weight, words=(), bonus=0.0):
    labels = TokenLabels(Chars().text, {"|": 1, "a": 2, "b": 3, "c": 4}, "|")
    bias = LexiconBias(words, bonus) if words else None
    return JointChooser(CtcPrefixScorer(lp, BLANK), labels, {0}, weight, top_k=8, lexicon=bias)


def test_the_bias_tips_an_unsure_reading_toward_the_users_word():
    chars = Chars()
    # the audio: "c", then a blurred letter (a or b alike), then "b"
    logits = torch.full((9, 5), -6.0)
    for t, lab in enumerate([4, 4, 0, 2, 3, 0, 3, 3, 0]):
        logits[t, lab] = 0.0
    logits[3, 3] = logits[4, 2] = -0.2  # frames 3-4 could be "a" or "b"
    lp = torch.log_softmax(logits, -1)

    def llm_prefers_cbb(out):
        x = torch.zeros(8)
        x[chars.id("cbb"[len(out)]) if len(out) < 3 else 0] = 1.0
        return x

    assert run(chooser(lp, 0.5), llm_prefers_cbb) == "cbb"
    assert run(chooser(lp, 0.5, ["cab"], 1.0), llm_prefers_cbb) == "cab"


def test_the_bias_cannot_make_up_a_word_the_audio_does_not_hold():
    chars = Chars()
    lp = ctc_saying([4, 3])  # clearly "cb"

    def indifferent(out):
        return torch.zeros(8)

    assert run(chooser(lp, 0.5, ["cab"], 1.0), indifferent) == "cb"


def test_a_bridge_saves_and_loads_its_lexicon(tiny_engine, tmp_path):
    b = with_lexicon(tiny_engine.bridge, ("barnaby", "ullapool"), 0.5)
    assert b.module is tiny_engine.bridge.module and tiny_engine.bridge.config.lexicon == ()
    save_bridge(b, tmp_path / "v")
    got = load_bridge(tmp_path / "v", encoder_id=tiny_engine.encoder.identity, llm_id=tiny_engine.llm.identity,
                      encoder_dim=tiny_engine.encoder.dim, llm_dim=tiny_engine.llm.dim,
                      ctc_blank_id=tiny_engine.encoder.blank_id if tiny_engine.encoder.has_ctc else None)
    assert got.config.lexicon == ("barnaby", "ullapool") and got.config.lexicon_bonus == 0.5
    assert with_lexicon(tiny_engine.bridge, (), 1.0) is tiny_engine.bridge
