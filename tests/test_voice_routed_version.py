"""A voice-routed bridge, written as a version, says so in its JSON (``voice_routing`` true, in the config
and in the training record that the gate's routing follows) and loads back routed."""

from __future__ import annotations

import copy
import dataclasses
import json

import torch

from conftest import noise_wave


def _grown(tiny_engine, tiny_bundle):
    """A ctc candidate with a personal head and adapter, its training record as a trainer writes it when the
    gate (voice_routing = "auto"), not the trainer, does the routing."""
    from assistant.alignment.trainers.base import candidate_of

    parent = tiny_engine.load_bridge_for(tiny_bundle / "bridge" / "ctc", tiny_engine.encoder, tiny_engine.llm)
    cand = candidate_of(parent, encoder_head=tiny_engine.encoder.ctc_head, adapter_dim=8, adapter_kernel=3)
    record = {"method": "ctc", "voice_routing": False, "personal_head": True, "steps_done": 1}
    return dataclasses.replace(cand.config, training=record), cand.module


def test_a_routed_bridge_written_as_a_version_says_voice_routing_true(tiny_engine, tiny_bundle, tmp_path):
    from assistant.alignment import registry
    from assistant.alignment.trainers.base import routed_by_voice
    from assistant.engine.checkpoint import LoadedBridge

    config, module = _grown(tiny_engine, tiny_bundle)
    encs = tiny_engine.encoder.encode_many([noise_wave(0.6 + 0.1 * i, 200 + i) for i in range(6)])
    routed = routed_by_voice(LoadedBridge(module=module, config=config), [e.features for e in encs[:3]],
                             [e.features * 3.0 for e in encs[3:]])
    assert routed.module.voice_routing
    path = registry.write_version(routed, tmp_path, "v0001", parent_version="random-0", metrics={"accepted": True},
                                  training={**routed.config.training, "job_id": 1}, data_summary={"train": 3})
    written = json.loads((path / "bridge.json").read_text())
    assert written["voice_routing"] is True
    assert written["training"]["voice_routing"] is True  # not the trainer's own False
    loaded = registry.verify_version(path, engine=tiny_engine)
    assert loaded.config.voice_routing and loaded.module.voice_routing
    assert torch.equal(loaded.module.voice_user.cpu(), routed.module.voice_user.cpu())


def test_write_version_follows_the_weights_when_a_routed_module_comes_with_an_unrouted_config(tiny_engine,
                                                                                              tiny_bundle, tmp_path):
    from assistant.alignment import registry
    from assistant.engine.checkpoint import LoadedBridge

    config, module = _grown(tiny_engine, tiny_bundle)
    module = copy.deepcopy(module)
    dim = tiny_engine.encoder.dim
    module.set_voice(torch.zeros(dim), torch.ones(dim), 0.9)  # routed weights, config still says False
    assert not config.voice_routing
    path = registry.write_version(LoadedBridge(module=module, config=config), tmp_path, "v0002",
                                  parent_version="random-0", metrics={}, training=dict(config.training),
                                  data_summary={})
    written = json.loads((path / "bridge.json").read_text())
    assert written["voice_routing"] is True and written["training"]["voice_routing"] is True
    assert registry.verify_version(path, engine=tiny_engine).module.voice_routing  # its centroids load back
