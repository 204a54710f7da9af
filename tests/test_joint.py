"""Joint CTC/LLM decoding: the CTC prefix scorer against brute force, and the chooser in decode."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from assistant.engine.decode import decode
from assistant.engine.joint import CtcPrefixScorer, JointChooser, TokenLabels

from conftest import noise_wave

BLANK = 0


def collapse(path) -> tuple[int, ...]:
    out, prev = [], None
    for p in path:
        if p != prev and p != BLANK:
            out.append(p)
        prev = p
    return tuple(out)


def brute(log_probs: torch.Tensor) -> dict[tuple[int, ...], float]:
    """P(collapsed output) for every output, by enumerating all frame paths."""
    T, V = log_probs.shape
    probs: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(V), repeat=T):
        p = math.exp(sum(float(log_probs[t, v]) for t, v in enumerate(path)))
        key = collapse(path)
        probs[key] = probs.get(key, 0.0) + p
    return probs


def prefix_prob(probs, prefix) -> float:
    return sum(p for out, p in probs.items() if out[: len(prefix)] == tuple(prefix))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prefix_scores_match_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    lp = torch.log_softmax(torch.randn(6, 4, generator=g) * 2, -1)
    probs = brute(lp)
    scorer = CtcPrefixScorer(lp, BLANK)
    seqs = [[1], [2], [3], [1, 1], [1, 2], [2, 1, 3], []]
    deltas, states = scorer.score(seqs)
    for seq, d in zip(seqs, deltas):
        assert d == pytest.approx(math.log(prefix_prob(probs, seq)), abs=1e-6), seq
    assert scorer.end_score() == pytest.approx(math.log(probs[()]), abs=1e-6)
    scorer.advance(states[4])  # prefix (1, 2)
    (d,), _ = scorer.score([[1]])
    assert d == pytest.approx(math.log(prefix_prob(probs, (1, 2, 1)) / prefix_prob(probs, (1, 2))), abs=1e-6)
    assert scorer.end_score() == pytest.approx(math.log(probs.get((1, 2), 0.0) / prefix_prob(probs, (1, 2))),
                                               abs=1e-6)


def test_one_frame_utterance():
    lp = torch.log_softmax(torch.tensor([[0.1, 2.0, -1.0]]), -1)
    scorer = CtcPrefixScorer(lp, BLANK)
    (d1, d2), _ = scorer.score([[1], [1, 2]])
    assert d1 == pytest.approx(float(lp[0, 1])) and d2 == -math.inf


class Chars:
    """A character 'LLM vocabulary': ids 0..2 special (0 = stop), then the letters and a space."""

    alphabet = " abc,"

    def text(self, i: int) -> str:
        return "" if i < 3 else self.alphabet[i - 3]

    def id(self, ch: str) -> int:
        return 3 + self.alphabet.index(ch)


def ctc_saying(labels: list[int], vocab: int = 5, frames_per: int = 2) -> torch.Tensor:
    """Confident CTC log-probs spelling ``labels`` (CTC ids: 0 blank, 1 = delimiter, 2.. = a, b, c)."""
    rows = []
    for lab in labels:
        rows += [lab] * frames_per + [BLANK]
    logits = torch.full((len(rows), vocab), -6.0)
    logits[torch.arange(len(rows)), torch.tensor(rows)] = 0.0
    return torch.log_softmax(logits, -1)


def chooser(lp: torch.Tensor, weight: float) -> JointChooser:
    chars = Chars()
    labels = TokenLabels(chars.text, {"|": 1, "a": 2, "b": 3, "c": 4}, "|")
    return JointChooser(CtcPrefixScorer(lp, BLANK), labels, {0}, weight, top_k=8)


def run(ch: JointChooser, llm_logits, steps: int = 12) -> str:
    out = []
    for _ in range(steps):
        t = ch.choose(llm_logits(out))
        if t == 0:
            break
        out.append(t)
        ch.accept(t)
    return "".join(Chars().text(t) for t in out)


def test_the_ctc_spelling_wins_over_an_indifferent_llm_and_ends_the_transcript():
    chars = Chars()
    lp = ctc_saying([2, 3, 1, 4])  # "ab c"

    def indifferent(out):  # every token alike; punctuation (",") and stop slightly preferred
        x = torch.zeros(8)
        x[chars.id(",")] = 0.5
        x[0] = 0.3
        return x

    assert run(chooser(lp, 0.5), indifferent) == "ab c"


def test_weight_zero_is_the_llm_argmax():
    chars = Chars()

    def wants_cab(out):
        target = "cab"
        x = torch.zeros(8)
        x[chars.id(target[len(out)]) if len(out) < 3 else 0] = 5.0
        return x

    assert run(chooser(ctc_saying([2, 3]), 0.0), wants_cab) == "cab"


def test_engine_joint_decoding_with_and_without_the_draft_is_identical(tiny_engine):
    tiny_engine.ctc_weight = 0.5
    try:
        for seed in range(6):
            wave = noise_wave(0.6 + seed * 0.3, 40 + seed)
            enc = tiny_engine.encode([wave])[0]
            dur = len(wave) / 16000
            plain, pres, _, _ = tiny_engine.transcribe_encoded(enc, dur, speculative=False)
            spec, sres, _, _ = tiny_engine.transcribe_encoded(enc, dur, speculative=True)
            assert spec == plain and sres.passes <= pres.passes
    finally:
        tiny_engine.ctc_weight = 0.0


def test_decode_with_an_argmax_chooser_equals_greedy(tiny_engine):
    class Argmax:
        def choose(self, logits):
            return int(logits.argmax())

        def accept(self, token):
            pass

    lm = tiny_engine.llm
    prefix = torch.randn(1, 10, lm.dim, generator=torch.Generator().manual_seed(3))
    plain = decode(lm.model, prefix, max_new_tokens=25, stop_ids=set())
    with_chooser = decode(lm.model, prefix, max_new_tokens=25, stop_ids=set(), chooser=Argmax(),
                          draft=plain.token_ids[:10] + [7, 8] + plain.token_ids[12:])
    assert with_chooser.token_ids == plain.token_ids and with_chooser.passes < plain.passes
    early = decode(lm.model, prefix, max_new_tokens=25, stop_ids=set(), chooser=Argmax(),
                   draft=plain.token_ids[:10] + [7, 8] + plain.token_ids[12:], first_proposal=48)
    assert early.token_ids == plain.token_ids and early.passes < with_chooser.passes


def exhaustive_choice(ch: JointChooser, logits: torch.Tensor) -> int:
    """The chooser's rule with every candidate scored (what the pruning in ``choose`` must reproduce)."""
    logp = torch.log_softmax(logits.float(), -1)
    cands = [int(t) for t in logp.topk(min(ch.top_k, logp.shape[-1])).indices.tolist()]
    cands += [s for s in ch.stop_ids if s not in cands]
    content = [c for c in cands if c not in ch.stop_ids and ch._labels_here(c)]
    deltas, _ = ch.scorer.score([ch._labels_here(c) for c in content])
    ctc = dict(zip(content, deltas))
    best, best_score = cands[0], -math.inf
    for c in cands:
        d = ch.scorer.end_score() if c in ch.stop_ids else ctc.get(c, -math.inf)
        s = (1 - ch.weight) * float(logp[c]) + ch.weight * d
        if ch.lexicon is not None:
            s += ch.lexicon.adjust("" if c in ch.stop_ids else Chars().text(c), stop=c in ch.stop_ids)
        if s > best_score:
            best, best_score = c, s
    return best


@pytest.mark.parametrize("lexicon", [False, True])
@pytest.mark.parametrize("weight", [0.3, 0.5, 0.9, 1.0])
def test_pruned_choice_equals_scoring_every_candidate(weight, lexicon):
    from assistant.engine.lexicon import LexiconBias

    g = torch.Generator().manual_seed(int(weight * 10))
    lp = torch.log_softmax(torch.randn(40, 5, generator=g) * 3, -1)
    ch = chooser(lp, weight)
    if lexicon:  # the bias may be positive: the bound must hold with it
        ch.lexicon = LexiconBias(["abc", "cab", "bb"], 0.7)
    for step in range(25):
        logits = torch.randn(8, generator=g) * (0.5 + step % 4)
        want = exhaustive_choice(ch, logits)
        got = ch.choose(logits)
        assert got == want, f"step {step}"
        if got == 0:
            break
        ch.accept(got)
