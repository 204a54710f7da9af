"""`assistant transcribe` / `respond` with a data dir serve the personalized bridge its store names active,
as the daemon does, and fall back to the bundle's bridge, with a warning, when it cannot be used."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import soundfile as sf
import torch

from conftest import noise_wave
from test_cli import run_cli


@pytest.fixture()
def personalized(tiny_bundle, tiny_engine, tmp_path):
    """A data dir whose store has the bundle's base bridge and a trained v0001 (active), and a WAV."""
    from assistant.alignment import registry
    from assistant.engine.checkpoint import LoadedBridge
    from assistant.store import open_store, repo

    data = tmp_path / "data"
    base = tiny_engine.bridge  # the bundle's default (conv) bridge
    trained = LoadedBridge(module=copy.deepcopy(base.module), config=dataclasses.replace(base.config, training={}))
    with torch.no_grad():
        for p in trained.module.parameters():
            p.add_(0.5 * torch.randn_like(p))
    store = open_store(data)
    try:
        with store.session() as s:
            repo.add_bridge_version(s, version=base.version, kind=base.kind, path=str(tiny_bundle / "bridge" / "conv"),
                                    sha256=base.config.sha256, status="base")
            repo.set_active_bridge(s, version=base.version)
        path = registry.write_version(trained, data, "v0001", parent_version=base.version, metrics={}, training={},
                                      data_summary={})
        registry.record_version(store, version="v0001", path=path, bridge_config=trained.config, status="accepted",
                                metrics={}, data_summary={}, job_id=None, parent_version=base.version)
        with store.session() as s:
            repo.set_active_bridge(s, version="v0001")
    finally:
        store.close()
    wav = tmp_path / "a.wav"
    sf.write(wav, noise_wave(1.0, 3), 16000)
    return data, path, wav


def test_transcribe_and_respond_serve_the_active_personalized_bridge(tiny_bundle, personalized):
    data, _, wav = personalized
    for verb in ("transcribe", "respond"):
        res = run_cli(verb, "--json", "--bundle", str(tiny_bundle), "--data-dir", str(data), str(wav))
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["bridge_version"] == "v0001", verb
        assert "serving the personalized bridge v0001" in res.stderr, res.stderr
    # without the data dir's store (another data dir): the bundle's own bridge, and nothing said about it
    res = run_cli("transcribe", "--json", "--bundle", str(tiny_bundle), "--data-dir", str(data.parent / "other"),
                  str(wav))
    assert res.returncode == 0 and json.loads(res.stdout)["bridge_version"] == "random-0"
    assert "personalized" not in res.stderr and "warning" not in res.stderr
    assert not (data.parent / "other").exists()  # reading the store creates nothing


def test_an_active_bridge_that_cannot_be_loaded_is_warned_about_and_the_bundle_s_serves(tiny_bundle, personalized):
    data, path, wav = personalized
    weights = path / "bridge.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"corrupt!")
    res = run_cli("transcribe", "--json", "--bundle", str(tiny_bundle), "--data-dir", str(data), str(wav))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["bridge_version"] == "random-0"
    assert "warning: the active bridge v0001" in res.stderr and "corrupt" in res.stderr
    assert "serving the bundle's bridge random-0" in res.stderr
