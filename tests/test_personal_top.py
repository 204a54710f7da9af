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


def test_a_lora_top_shares_the_encoders_layers_and_computes_its_features(engine, speech):
    import copy

    from assistant.engine.lora import LoraLinear

    top = engine.encoder.personal_top(8)
    frozen = engine.encoder.frozen_top()
    e = speech[0][2]
    with torch.no_grad():
        assert torch.allclose(top(e.lower), e.features, atol=1e-4)  # the update starts at zero
    lora = [m for m in top.modules() if isinstance(m, LoraLinear)]
    assert len(lora) == 12  # q, k, v, out, fc1, fc2 of two Whisper layers
    # the pretrained weights are the encoder's own tensors: not copied, not saved, not trained, not deep-copied
    assert lora[0].base.module.weight is frozen.layers[0].self_attn.k_proj.weight
    assert copy.deepcopy(top).layers[0].self_attn.k_proj.base.module.weight is lora[0].base.module.weight
    assert not any(k.endswith("proj.weight") and k.startswith("layers.") for k in top.state_dict())
    assert not any(p.requires_grad for p in frozen.layers.parameters())
    assert sum(p.numel() for p in top.parameters()) < 0.15 * sum(p.numel() for p in frozen.parameters())


def test_a_job_with_a_top_rank_trains_the_update_and_its_version_loads_back(engine, speech, tmp_path):
    from assistant.alignment.data import Example, LabelledSet
    from assistant.alignment.personalize import TRAINED, personalize
    from assistant.alignment.spoken import spoken_set
    from assistant.config import AlignmentConfig
    from assistant.engine.checkpoint import WEIGHTS_NAME, save_bridge

    replay = spoken_set(engine, "replay", limit=8)
    examples = [Example(i, t, e, e.n_frames / e.frame_rate_hz) for i, (_, t, e) in enumerate(speech)]
    data = LabelledSet(train=examples[:12], heldout=examples[12:], cached=len(examples), reencoded=0)
    cfg = dataclasses.replace(AlignmentConfig(), personal_top=True, top_rank=8, max_steps=4, voice_routing="off")
    pretrained = engine.encoder.frozen_top().layers[0].fc1.weight.clone()
    out = personalize(engine, data, cfg, method="default", seed=0, generic=replay, replay=replay, gated=False)
    assert out.state == TRAINED
    cand = out.candidate
    assert cand.config.top_layers == 2 and cand.config.top_rank == 8 and cand.config.training["top_rank"] == 8
    assert float(cand.module.top.layers[0].fc1.lora_b.abs().max()) > 0, "the update trained"
    assert torch.equal(engine.encoder.frozen_top().layers[0].fc1.weight, pretrained), "the encoder did not"
    save_bridge(cand, tmp_path / "v")
    assert (tmp_path / "v" / WEIGHTS_NAME).stat().st_size < 6 * 2**20  # the update, not two Whisper layers
    loaded = engine.load_bridge_for(tmp_path / "v", engine.encoder, engine.llm)
    wave, _, e = speech[1]
    with torch.no_grad():
        assert torch.allclose(loaded.module.top(e.lower), cand.module.top(e.lower), atol=1e-5)
    assert engine.transcribe_encoded(e, len(wave) / 16000, bridge=loaded)[0] == \
        engine.transcribe_encoded(e, len(wave) / 16000, bridge=cand)[0]


def test_spoken_sets_hold_compact_tensors_that_training_shares_and_encoder_outputs_are_copied(engine, speech):
    import copy

    from assistant.alignment.spoken import spoken_set
    from assistant.alignment.trainers.batches import BridgeInputs

    item = spoken_set(engine, "replay", limit=3)[1]
    e = item.encoded
    for t in (e.features, e.lower):  # not a view keeping the whole padded encoder batch alive
        assert not t.is_inference() and t.untyped_storage().nbytes() == t.numel() * t.element_size()
    assert e.lower.dtype == torch.float16
    module = copy.deepcopy(_with_top(engine).module).train().requires_grad_(True)
    cpu = torch.device("cpu")
    shared = BridgeInputs(module, [item], cpu, ctc_ids=engine.encoder.ctc_ids)
    assert shared.lowers[0].data_ptr() == e.lower.data_ptr() and shared.items[0].data_ptr() == e.features.data_ptr()
    _, text, fresh = speech[0]
    assert fresh.lower.is_inference()  # the encoder's own output: autograd could not save it
    copied = BridgeInputs(module, [type("Ex", (), {"encoded": fresh, "text": text})()], cpu,
                          ctc_ids=engine.encoder.ctc_ids)
    assert not copied.lowers[0].is_inference() and copied.lowers[0].data_ptr() != fresh.lower.data_ptr()
    for inputs in (shared, copied):
        module.zero_grad()
        inputs.ctc_loss(module, [0]).backward()
        assert module.top.layers[0].fc1.weight.grad is not None
