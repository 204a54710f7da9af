"""The personalization job as one library function (assistant/alignment/personalize.py), on the tiny
bundle: preconditions checked before any training, the gate's decision forced through its scorer, the
model lock held per step and per decode, a pause leaving a checkpoint the next call resumes from."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from conftest import noise_wave

from assistant.alignment.data import Example, LabelledSet
from assistant.alignment.personalize import (ACCEPTED, GATING, PAUSED, REJECTED, TRAINED, TRAINING, personalize,
                                             shortfall)
from assistant.config import AlignmentConfig
from assistant.metrics import ErrorRate

TEXTS = ["turn on the light", "what time is it", "call leocadia", "play some music", "set a timer for ten minutes"]
CFG = AlignmentConfig(max_steps=4, batch_size=4, min_heldout=2, lexicon_spotting=False, voice_routing="off",
                      gradient_checkpointing=False)


@pytest.fixture(scope="module")
def data(tiny_engine) -> LabelledSet:
    waves = [noise_wave(0.6 + 0.05 * i, 300 + i) for i in range(8)]
    ex = [Example(i, TEXTS[i % len(TEXTS)], e, len(w) / 16000)
          for i, (e, w) in enumerate(zip(tiny_engine.encoder.encode_many(waves), waves))]
    return LabelledSet(train=ex[:6], heldout=ex[6:], cached=8, reencoded=0)


def rate(r: float) -> ErrorRate:
    return ErrorRate(rate=r, ci95=(r, r), edits=0, units=1, n_utterances=1)


def forced(engine, active_wer: float, candidate_wer: float, calls: list | None = None):
    """A scorer giving the engine's active bridge one WER and any other bridge another (the gate's input)."""
    active = engine.bridge.version

    def score(bridge, items):
        if calls is not None:
            calls.append(bridge.version)
        return rate(active_wer if bridge.version == active else candidate_wer)
    return score


def test_too_few_labels_are_refused_before_any_training(tiny_engine, data):
    few = LabelledSet(train=data.train, heldout=data.heldout[:1], cached=7, reencoded=0)
    steps = []
    out = personalize(tiny_engine, few, CFG, method="backprop", seed=0, on_progress=steps.append)
    assert out.state == REJECTED and out.candidate is None and steps == []
    assert "only 1 held-out utterance of 7 labelled" in out.reason and "alignment.min_heldout" in out.reason
    assert shortfall(LabelledSet(train=data.train[:1], heldout=data.heldout, cached=3, reencoded=0), CFG) \
        .startswith("only 1 labelled training utterance of 3")
    assert shortfall(data, CFG) is None


@pytest.mark.parametrize("active_wer, candidate_wer, state", [(0.5, 0.2, ACCEPTED), (0.5, 0.6, REJECTED)])
def test_the_gate_decides_with_the_scorer_it_is_given(tiny_engine, data, active_wer, candidate_wer, state):
    calls, phases = [], []
    score = forced(tiny_engine, active_wer, candidate_wer, calls)
    out = personalize(tiny_engine, data, replace(CFG, generic_tolerance=0.0), method="backprop", seed=0,
                      score=score, generic=data.heldout, replay=[], on_progress=lambda p: phases.append(p.phase))
    assert out.state == state and out.gate.user_wer_before == active_wer and out.gate.user_wer_after == candidate_wer
    assert out.candidate is not None and out.candidate.version != tiny_engine.bridge.version
    assert phases[0] == TRAINING and phases[-1] == GATING and phases.count(TRAINING) == CFG.max_steps
    assert calls.count(tiny_engine.bridge.version) == 2  # the active bridge: once per set (user, generic)


def test_ungated_runs_stop_after_training_with_every_variant(tiny_engine, data):
    out = personalize(tiny_engine, LabelledSet(train=data.train, heldout=[], cached=6, reencoded=0), CFG,
                      method="backprop", seed=0, gated=False, generic=[], replay=[])
    assert out.state == TRAINED and out.gate is None and out.variants == (out.candidate,)


class CountingLock:
    """The daemon's model lock, counting how often the job held it (and never held twice)."""

    def __init__(self) -> None:
        self.lock, self.held, self.entries = threading.Lock(), False, 0

    def __enter__(self):
        assert self.lock.acquire(blocking=False), "taken while already held"
        self.held, self.entries = True, self.entries + 1

    def __exit__(self, *exc):
        self.held = False
        self.lock.release()


def test_the_models_are_held_per_step_and_free_between_steps_and_after(tiny_engine, data):
    lock, seen_free = CountingLock(), []

    def should_pause() -> bool:  # asked between steps: the lock must be free then
        seen_free.append(not lock.held)
        return False

    out = personalize(tiny_engine, data, CFG, method="backprop", seed=0, should_pause=should_pause, models=lock,
                      generic=[], replay=[])
    assert out.state in (ACCEPTED, REJECTED) and all(seen_free) and len(seen_free) == CFG.max_steps
    # setup + one per step + one per decoded held-out utterance (active and candidate)
    assert lock.entries == 1 + CFG.max_steps + 2 * len(data.heldout) and not lock.held


def test_a_pause_saves_a_checkpoint_the_next_call_resumes(tiny_engine, data, tmp_path):
    asked = []

    def after_two_steps() -> bool:
        asked.append(1)
        return len(asked) > 2

    out = personalize(tiny_engine, data, CFG, method="backprop", seed=3, should_pause=after_two_steps,
                      checkpoint_to=tmp_path / "ckpt", generic=[], replay=[], score=forced(tiny_engine, 0.5, 0.2))
    assert out.state == PAUSED and out.candidate is None and out.checkpoint.exists()
    steps = []
    done = personalize(tiny_engine, data, CFG, method="backprop", seed=3, resume_from=out.checkpoint, generic=[],
                       replay=[], score=forced(tiny_engine, 0.5, 0.2),
                       on_progress=lambda p: steps.append(p.done) if p.phase == TRAINING else None)
    assert done.state == ACCEPTED and steps == [3, 4]  # steps 1 and 2 came from the checkpoint
    with pytest.raises(ValueError, match="checkpoint_to"):
        personalize(tiny_engine, data, CFG, method="backprop", seed=3, should_pause=lambda: True, generic=[],
                    replay=[])


def test_a_bridge_with_nothing_to_train_is_refused_before_training(tiny_engine, data):
    import copy

    import torch

    from assistant.engine.checkpoint import LoadedBridge

    bare = copy.copy(tiny_engine)  # the same models, serving a bridge without weights (like a shipped ctc bridge)
    bare.bridge = LoadedBridge(module=torch.nn.Identity(), config=tiny_engine.bridge.config)
    out = personalize(bare, data, CFG, method="zo", seed=0, generic=[], replay=[])
    assert out.state == REJECTED and out.candidate is None and "no weights of its own" in out.reason
    assert "alignment.personal_head" in out.reason


def test_methods_through_the_llm_are_refused_on_a_text_input_bridge(tiny_engine, data):
    import copy

    import torch

    from assistant.engine.checkpoint import LoadedBridge

    module = torch.nn.Linear(2, 2)
    module.text_input = True  # hands the LLM text (the shipped bundle's ctc bridge): only its head learns
    textual = copy.copy(tiny_engine)
    textual.bridge = LoadedBridge(module=module, config=tiny_engine.bridge.config)
    for method in ("backprop", "zo", "embed"):
        out = personalize(textual, data, CFG, method=method, seed=0, generic=[], replay=[])
        assert out.state == REJECTED and out.candidate is None and "use 'ctc' or 'default'" in out.reason


def test_the_gate_compares_both_bridges_with_the_training_labels_words(tiny_engine, data):
    """The serving bridge may spot every label's words (held-out ones too); the gate must not let that
    count for it: both sides are scored with the words of the training labels alone."""
    import copy
    from dataclasses import replace as dc_replace

    from assistant.engine.checkpoint import LoadedBridge

    serving = copy.copy(tiny_engine)
    serving.bridge = LoadedBridge(module=tiny_engine.bridge.module,
                                  config=dc_replace(tiny_engine.bridge.config, lexicon=("zzheldoutname",),
                                                    lexicon_spotting=True))
    seen = {}

    def score(bridge, items):
        seen.setdefault(bridge.version, set()).add(bridge.config.lexicon)
        return rate(0.5 if bridge.version == serving.bridge.version else 0.2)

    cfg = replace(CFG, lexicon_spotting=True)
    out = personalize(serving, data, cfg, method="backprop", seed=0, score=score, generic=[], replay=[])
    words = {w for e in data.train for w in e.text.split() if len(w) >= 3}
    assert out.state == ACCEPTED and out.candidate.config.lexicon and set(out.candidate.config.lexicon) <= words
    assert seen[serving.bridge.version] == {out.candidate.config.lexicon}  # the active, with the same words
    assert "zzheldoutname" not in out.candidate.config.lexicon
