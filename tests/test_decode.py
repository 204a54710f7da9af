"""Speculative (CTC-draft) decoding gives exactly plain greedy's output, in fewer LLM passes."""

from __future__ import annotations

import random

import pytest
import torch

from assistant.engine.decode import decode

from conftest import noise_wave


@pytest.fixture(scope="module")
def lm(tiny_engine):
    return tiny_engine.llm


def _prefix(lm, seed: int, positions: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, positions, lm.dim, generator=g)


def _edit(tokens: list[int], rng: random.Random, vocab: int, n_edits: int) -> list[int]:
    """A draft with substitutions, insertions and deletions, like a CTC reading with a few errors."""
    out = list(tokens)
    for _ in range(n_edits):
        if not out:
            break
        i = rng.randrange(len(out))
        op = rng.choice(["sub", "ins", "del"])
        if op == "sub":
            out[i] = rng.randrange(6, vocab)
        elif op == "ins":
            out.insert(i, rng.randrange(6, vocab))
        else:
            del out[i]
    return out


def test_greedy_without_draft_counts_one_pass_per_token(lm):
    res = decode(lm.model, _prefix(lm, 0), max_new_tokens=20, stop_ids=set())
    assert res.stopped_by == "max_tokens" and len(res.token_ids) == 20
    assert res.passes == 20  # prefill gives token 1, each further token one pass; the last is never fed


def test_exact_draft_needs_two_passes(lm):
    plain = decode(lm.model, _prefix(lm, 1), max_new_tokens=30, stop_ids=set())
    spec = decode(lm.model, _prefix(lm, 1), max_new_tokens=30, stop_ids=set(), draft=plain.token_ids)
    assert spec.token_ids == plain.token_ids
    # prefill, then proposals of 16 and 32 tokens (the span doubles while the draft agrees)
    assert spec.passes == 3 and spec.accepted_tokens == 28  # 2 of the 30 came as the pass-opening token


def test_speculative_equals_greedy_on_many_inputs_and_saves_passes(lm):
    rng = random.Random(1234)
    vocab = len(lm.tokenizer)
    saved = 0
    cases = 0
    for seed in range(40):
        prefix = _prefix(lm, 100 + seed, positions=rng.randrange(3, 40))
        budget = rng.randrange(5, 60)
        stop = {rng.randrange(6, vocab)} if seed % 3 == 0 else set()
        plain = decode(lm.model, prefix, max_new_tokens=budget, stop_ids=stop)
        drafts = [
            plain.token_ids,
            _edit(plain.token_ids, rng, vocab, 1),
            _edit(plain.token_ids, rng, vocab, 3),
            [rng.randrange(6, vocab) for _ in range(rng.randrange(0, 50))],  # unrelated draft
            plain.token_ids[: len(plain.token_ids) // 2],
        ]
        for draft in drafts:
            spec = decode(lm.model, prefix, max_new_tokens=budget, stop_ids=stop, draft=draft)
            assert spec.token_ids == plain.token_ids, (seed, draft)
            assert spec.stopped_by == plain.stopped_by
            assert spec.passes <= plain.passes  # a draft never costs a pass
            saved += plain.passes - spec.passes
            cases += 1
        # a draft with a few errors still saves passes when the output is long enough to speculate on
        if len(plain.token_ids) >= 12:
            near = decode(lm.model, prefix, max_new_tokens=budget, stop_ids=stop,
                          draft=_edit(plain.token_ids, random.Random(seed), vocab, 1))
            assert near.passes < plain.passes
    assert saved > cases  # on average well over one pass saved per decode


def test_a_trusted_draft_rides_in_the_prefill(lm):
    plain = decode(lm.model, _prefix(lm, 2), max_new_tokens=30, stop_ids=set())
    spec = decode(lm.model, _prefix(lm, 2), max_new_tokens=30, stop_ids=set(), draft=plain.token_ids,
                  first_proposal=48)
    assert spec.token_ids == plain.token_ids
    assert spec.passes == 1 and spec.accepted_tokens == 30  # the prefill checked every token


@pytest.mark.parametrize("first_proposal", [1, 16, 48])
def test_drafts_in_the_prefill_keep_the_greedy_output(lm, first_proposal):
    """Exact, edited, unrelated, shifted (other variant) and half drafts in the prefill: same output as
    plain greedy, and never more passes."""
    rng = random.Random(99 + first_proposal)
    vocab = len(lm.tokenizer)
    for seed in range(15):
        prefix = _prefix(lm, 300 + seed, positions=rng.randrange(3, 30))
        budget = rng.randrange(3, 50)
        stop = {rng.randrange(6, vocab)} if seed % 3 == 0 else set()
        plain = decode(lm.model, prefix, max_new_tokens=budget, stop_ids=stop)
        for draft in (plain.token_ids, _edit(plain.token_ids, rng, vocab, 2),
                      [rng.randrange(6, vocab) for _ in range(20)], plain.token_ids[: len(plain.token_ids) // 2]):
            for variants in ([draft], [[rng.randrange(6, vocab)] + draft, draft]):
                spec = decode(lm.model, prefix, max_new_tokens=budget, stop_ids=stop, draft_variants=variants,
                              first_proposal=first_proposal)
                assert spec.token_ids == plain.token_ids and spec.stopped_by == plain.stopped_by, (seed, draft)
                assert spec.passes <= plain.passes


def test_draft_variants_pick_the_one_matching_the_first_token(lm):
    plain = decode(lm.model, _prefix(lm, 7), max_new_tokens=25, stop_ids=set())
    wrong_start = [plain.token_ids[0] + 1 if plain.token_ids[0] + 1 < len(lm.tokenizer) else 6] + plain.token_ids[1:]
    spec = decode(lm.model, _prefix(lm, 7), max_new_tokens=25, stop_ids=set(),
                  draft_variants=[wrong_start, plain.token_ids])
    assert spec.token_ids == plain.token_ids and spec.passes == 3


def test_engine_speculative_transcripts_equal_plain(tiny_engine):
    """End to end through the encoder's real CTC draft: same transcript with and without it."""
    for seed in range(12):
        wave = noise_wave(0.5 + seed * 0.3, seed)
        enc = tiny_engine.encode([wave])[0]
        dur = len(wave) / 16000
        plain, pres, _, _ = tiny_engine.transcribe_encoded(enc, dur, speculative=False)
        spec, sres, _, _ = tiny_engine.transcribe_encoded(enc, dur, speculative=True)
        assert spec == plain
        assert sres.passes <= pres.passes
        assert sres.draft_tokens > 0 and pres.draft_tokens == 0
