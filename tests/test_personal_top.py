"""A bridge's personal top: a trained copy of the shipped encoder's top (its last Whisper layers and our CTC
module) that reads the Whisper states below it. Real weights: the shipped bundle, as in CI."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from assistant.config import demo_bundle_dir

DEMO = demo_bundle_dir()
pytestmark = pytest.mark.skipif(not (DEMO / "manifest.json").is_file() and not os.environ.get("CI"),
                                reason="no shipped bundle built yet (python -m bench.real.build)")

SENTENCES = ["set a timer for ten minutes", "call leocadia on her mobile", "turn off the kitchen lights",
             "what is the weather in denver tomorrow", "play some jazz in the living room",
             "remind me to water the plants at six", "wake me up at seven thirty", "add milk to my shopping list",
             "how much is twelve times eight", "text barnaby that i am running late", "dim the bedroom lights",
             "what day is it today", "skip this song", "open the garage door", "set an alarm for noon",
             "call my sister", "is it going to rain in boston", "turn the heating up"]


@pytest.fixture(scope="module")
def engine():
    from assistant.engine.engine import Engine

    return Engine.from_bundle(DEMO, device="cpu")


@pytest.fixture(scope="module")
def speech(engine):
    """(wave, text, encoder output) of every sentence, in flite slt's voice (a new user's)."""
    from assistant.synth.voices import synthesize

    waves = [synthesize("flite:slt", t, seed=0) for t in SENTENCES]
    return list(zip(waves, SENTENCES, engine.encoder.encode_many(waves)))


def _with_top(engine):
    from assistant.engine.bridge import with_personal_head, with_personal_top
    from assistant.engine.checkpoint import LoadedBridge

    module = with_personal_top(with_personal_head(engine.bridge.module, engine.encoder.ctc_head, 16, 9, 0.3),
                               engine.encoder.personal_top())
    cfg = dataclasses.replace(engine.bridge.config, adapter_dim=16, adapter_kernel=9, adapter_dropout=0.3,
                              head_vocab=module.head.out_features, top_layers=engine.encoder.top_layers,
                              version="with-top")
    return LoadedBridge(module=module.eval().requires_grad_(False), config=cfg)


def test_a_fresh_top_computes_the_encoders_own_features_alone_and_batched(engine, speech):
    top = engine.encoder.personal_top()
    outs = [e for _, _, e in speech[:3]]
    with torch.no_grad():
        for e in outs:
            assert e.lower is not None and e.lower.shape == (e.n_frames, 512)
            assert torch.allclose(top(e.lower), e.features, atol=1e-4)
        batch = torch.nn.utils.rnn.pad_sequence([e.lower for e in outs], batch_first=True)
        got = top(batch, torch.tensor([e.n_frames for e in outs]))
    for i, e in enumerate(outs):  # padding never reaches a shorter utterance's frames
        assert torch.allclose(got[i, :e.n_frames], e.features, atol=1e-4)


def test_a_bridge_with_a_fresh_top_hears_what_its_parent_hears_and_loads_back(engine, speech, tmp_path):
    from assistant.engine.checkpoint import ModelFacts, check_compatible, save_bridge
    from assistant.errors import BridgeMismatchError

    bridge = _with_top(engine)
    for wave, _, e in speech[:3]:
        seconds = len(wave) / 16000
        assert engine.transcribe_encoded(e, seconds, bridge=bridge)[0] == engine.transcribe_encoded(e, seconds)[0]
    save_bridge(bridge, tmp_path / "v")
    loaded = engine.load_bridge_for(tmp_path / "v", engine.encoder, engine.llm)
    assert loaded.module.owns_top and loaded.config.top_layers == 2
    wave, _, e = speech[0]
    assert engine.transcribe_encoded(e, len(wave) / 16000, bridge=loaded)[0] == \
        engine.transcribe_encoded(e, len(wave) / 16000)[0]
    # an encoder that offers no top (another kind of encoder) is named in the refusal
    other = ModelFacts(engine.encoder.identity, engine.encoder.dim, engine.encoder.blank_id, top_layers=0)
    with pytest.raises(BridgeMismatchError, match="personal top of 2 encoder layers"):
        check_compatible(loaded.config, other, engine.llm)
    # an utterance without lower states cannot be heard through the top: a clear error, not a wrong transcript
    with pytest.raises(ValueError, match="lower states"):
        engine.transcribe_encoded(dataclasses.replace(e, lower=None), 1.0, bridge=loaded)


def test_streamed_and_cached_outputs_keep_the_lower_states(engine, speech, tmp_path):
    from assistant.alignment.data import cache_problem
    from assistant.engine.streaming import StreamingEncoder
    from assistant.store.files import load_encoded, write_encoded

    wave, _, whole = speech[3]
    stream = StreamingEncoder(engine.encoder, chunk_s=1.0, context_s=1.0, lookahead_s=0.5)
    assert len(wave) > 24000 and stream.push(wave[:24000]) == 1
    assert stream.partial() is not None and stream.partial().lower.shape[0] == stream.partial().n_frames
    out = stream.finish_for(wave)
    assert out.lower is not None and out.lower.shape == (out.n_frames, 512) and out.n_frames == whole.n_frames
    rel, _ = write_encoded(tmp_path, 7, whole)
    back = load_encoded(tmp_path / rel)
    assert torch.allclose(back.lower, whole.lower, atol=1e-2, rtol=1e-3)
    assert cache_problem(back, engine.encoder) is None
    # a cache written before the encoder kept its lower states is encoded again for a job
    assert "lower" in cache_problem(dataclasses.replace(back, lower=None), engine.encoder)


def test_a_job_trains_a_personal_top_and_the_gate_judges_it_on_spoken_generic_speech(engine, speech):
    from assistant.alignment.data import Example, LabelledSet
    from assistant.alignment.personalize import REJECTED, personalize
    from assistant.alignment.spoken import spoken_set
    from assistant.config import AlignmentConfig

    generic = spoken_set(engine, "regression", limit=12)
    replay = spoken_set(engine, "replay", limit=12)
    assert len(generic) == 12 and all(g.encoded.lower is not None for g in generic)
    examples = [Example(i, t, e, e.n_frames / e.frame_rate_hz) for i, (_, t, e) in enumerate(speech)]
    data = LabelledSet(train=examples[:12], heldout=examples[12:], cached=len(examples), reencoded=0)
    # a cut no candidate can make: the gate must reject, and the serving bridge stays as it was
    cfg = dataclasses.replace(AlignmentConfig(), personal_top=True, max_steps=4, min_heldout=6,
                              min_improvement=1.0, voice_routing="off")
    before = engine.bridge
    out = personalize(engine, data, cfg, method="default", seed=0, generic=generic, replay=replay)
    assert out.state == REJECTED and out.gate is not None and out.gate.generic_n == 12
    assert engine.bridge is before and not getattr(before.module, "owns_top", False)
    cand = out.candidate
    assert cand.module.owns_top and cand.config.top_layers == 2
    assert cand.config.training["personal_top"] and cand.config.training["steps_done"] == 4
    fresh = engine.encoder.personal_top()
    moved = [not torch.equal(a, b) for a, b in zip(cand.module.top.parameters(), fresh.parameters())]
    assert all(moved), "every weight of the top trained"
    wave, text, e = speech[0]
    assert engine.transcribe_encoded(e, len(wave) / 16000, bridge=cand)[0].strip()
