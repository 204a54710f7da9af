"""The personal lexicon: its bias in joint decoding, how personalization builds it, how it is saved."""

from __future__ import annotations

import pytest
import torch

from assistant.alignment.lexicon import personal_lexicon, with_lexicon
from assistant.engine.checkpoint import load_bridge, save_bridge
from assistant.engine.joint import CtcPrefixScorer, JointChooser, TokenLabels
from assistant.engine.lexicon import BiasChooser, LexiconBias, request_words

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


def test_punctuation_ends_a_word_like_a_space():
    lex = LexiconBias(["five"], 1.0)
    assert lex.walk("five.", ("", True))[1] == pytest.approx(4.0)  # "Timer set for five." keeps it
    assert lex.walk("fift.", ("", True))[1] == pytest.approx(0.0)


def test_request_words_are_what_a_reply_may_repeat():
    assert request_words("Set a timer for five minutes, please!") == ["set", "timer", "for", "five", "minutes",
                                                                      "please"]


def test_the_reply_bias_keeps_the_requests_number():
    """A reply that starts to rewrite a word of the request ("fi" -> "fifteen") is held to it ("five")."""
    letters = "abcdefghijklmnopqrstuvwxyz ."
    text = lambda i: "" if i == 0 else letters[i - 1]  # noqa: E731  (id 0: stop)

    def llm(out: str) -> torch.Tensor:  # wants "fifteen." but finds "five" nearly as likely
        x = torch.zeros(len(letters) + 1)
        nxt = {"fi": "fv", "fiv": "e"}.get(out)
        if out == "fifteen." or out == "five.":
            x[0] = 3.0
        elif nxt:  # first choice, then the runner-up
            x[1 + letters.index(nxt[0])] = 2.0
            if len(nxt) > 1:
                x[1 + letters.index(nxt[1])] = 1.5
        else:
            target = "fifteen." if out.startswith("fif") else "five."
            x[1 + letters.index(target[len(out)])] = 3.0
        return x

    def reply(bonus: float) -> str:
        ch = BiasChooser(LexiconBias(request_words("set a timer for five minutes"), bonus), text, {0}, top_k=8)
        out = ""
        for _ in range(12):
            t = ch.choose(llm(out))
            if t == 0:
                break
            out += text(t)
            ch.accept(t)
        return out

    assert reply(0.0) == "fifteen."  # the LLM alone
    assert reply(1.0) == "five."


def test_personal_lexicon_keeps_the_users_words_that_generic_speech_never_uses():
    train = ["call barnaby's phone", "weather in ullapool", "call barnaby", "set a timer"]
    generic = ["call mom", "set a timer for ten minutes", "what is the weather in paris"]
    assert personal_lexicon(train, generic) == ("barnaby", "phone", "ullapool")
    assert personal_lexicon(train, generic, min_len=6) == ("barnaby", "ullapool")


def test_personal_lexicon_takes_the_bundles_vocabulary_over_its_few_generic_transcripts():
    train = ["call barnaby's phone soon", "weather in ullapool", "happy birthday barnaby"]
    generic = ["call mom", "what is the weather in paris"]  # "soon", "happy", "phone" missing here
    vocabulary = ["call", "phone", "soon", "weather", "in", "happy", "birthday", "mom"]
    assert personal_lexicon(train, generic) == ("barnaby", "birthday", "happy", "phone", "soon", "ullapool")
    assert personal_lexicon(train, generic, vocabulary=vocabulary) == ("barnaby", "ullapool")


def test_a_negative_spot_margin_writes_a_users_word_the_head_only_half_heard():
    from assistant.engine.spotting import Spotter

    ids = {"|": 1, "a": 2, "b": 3, "c": 4}
    def spell(word: str) -> list[int]:  # no ids for a word with letters outside the table ("caba's")
        return [ids[c] for c in word.replace(" ", "|")] if set(word) <= set("abc ") else []

    lp = ctc_saying(spell("cab"))  # frames that say "cab" ...
    spoken = Spotter(["caba"], spell, BLANK, 1, margin=0.0)
    assert spoken("cab", lp) == "cab"  # ... which a 4-letter name explains worse
    assert Spotter(["caba"], spell, BLANK, 1, margin=-30.0)("cab", lp) == "caba"  # the prior takes it


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
    assert not got.config.lexicon_spotting
    assert with_lexicon(tiny_engine.bridge, (), 1.0) is tiny_engine.bridge
    assert with_lexicon(tiny_engine.bridge, ("barnaby",), 0.0) is tiny_engine.bridge  # neither use: unchanged
    spot = with_lexicon(tiny_engine.bridge, ("barnaby",), 0.0, spotting=True, spot_margin=1.5)
    save_bridge(spot, tmp_path / "s")
    got = load_bridge(tmp_path / "s", encoder_id=tiny_engine.encoder.identity, llm_id=tiny_engine.llm.identity,
                      encoder_dim=tiny_engine.encoder.dim, llm_dim=tiny_engine.llm.dim,
                      ctc_blank_id=tiny_engine.encoder.blank_id if tiny_engine.encoder.has_ctc else None)
    assert (got.config.lexicon, got.config.lexicon_bonus, got.config.lexicon_spotting,
            got.config.lexicon_spot_margin) == (("barnaby",), 0.0, True, 1.5)


def test_the_engine_spots_a_bridges_lexicon_words_after_decoding(tiny_engine, monkeypatch):
    """A bridge whose config asks for spotting gets its transcript respelled with the CTC head's log-probs
    (spotting.Spotter, built once per bridge); without it the transcript is the decoder's."""
    import assistant.engine.engine as engine_mod
    from conftest import noise_wave

    if not tiny_engine.encoder.has_ctc:
        pytest.skip("the tiny bundle's encoder has no CTC head")
    enc = tiny_engine.encoder.encode([noise_wave(0.8, 7)])[0]
    plain = tiny_engine.transcribe_encoded(enc, 0.8)[0]
    seen = []

    class Recording(engine_mod.Spotter):
        def __call__(self, text, log_probs):
            seen.append((text, tuple(log_probs.shape)))
            return "barnaby"

    monkeypatch.setattr(engine_mod, "Spotter", Recording)
    spot = with_lexicon(tiny_engine.bridge, ("barnaby",), 0.0, spotting=True)
    assert tiny_engine.transcribe_encoded(enc, 0.8, bridge=spot)[0] == "barnaby"
    assert tiny_engine.transcribe_encoded(enc, 0.8, bridge=spot)[0] == "barnaby"
    assert seen[0] == (plain, (enc.n_frames, enc.ctc_logits.shape[1]))
    assert len(tiny_engine._spotters) == 1  # built once for this lexicon
    assert tiny_engine.transcribe_encoded(enc, 0.8)[0] == plain and len(seen) == 2


def test_engine_replies_with_the_bias_set_in_the_bundle_prompt(tiny_engine):
    import dataclasses

    from assistant.engine.decode import decode

    prompt = tiny_engine.llm.prompt
    try:
        tiny_engine.llm.prompt = dataclasses.replace(prompt, response_copy_bonus=10.0)
        tiny_engine.reset_history()
        biased, _ = tiny_engine.respond_text("call barnaby")
        tiny_engine.llm.prompt = prompt
        ids = tiny_engine.llm.response_ids("call barnaby", [])
        plain = decode(tiny_engine.llm.model, tiny_engine.llm.embed_ids(ids), stop_ids=tiny_engine.llm.response_stop_ids,
                       max_new_tokens=prompt.response_max_new_tokens)
        # random weights: the LLM alone writes noise; a huge bonus makes it spell the request's words
        assert "barnaby" in biased.lower() or "call" in biased.lower()
        assert tiny_engine.llm.decode_text(plain.token_ids) != biased
    finally:
        tiny_engine.llm.prompt = prompt
        tiny_engine.reset_history()
