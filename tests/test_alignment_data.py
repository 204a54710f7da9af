"""Alignment data, bridge registry and quality gate, on the tiny bundle and a real store."""

from __future__ import annotations

import copy
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from assistant.alignment import data, gate, registry
from assistant.config import AlignmentConfig
from assistant.engine.checkpoint import LoadedBridge, read_bridge_config
from assistant.engine.encoder import EncoderOutput
from assistant.errors import ModelFilesError, RefusedError
from assistant.store import complete_turn, list_bridge_versions, open_store, record_utterance, write_encoded
from tests.conftest import REPO, noise_wave


@pytest.fixture()
def store(tmp_path):
    s = open_store(tmp_path / "data")
    yield s
    s.close()


def add(store, text: str | None, *, seed: int, cache: EncoderOutput | None = None, seconds: float = 0.4) -> int:
    """A recorded utterance (labelled when ``text``), with a cached encoder output when ``cache``."""
    with store.session() as s:
        u = record_utterance(s, data_dir=store.data_dir, samples=noise_wave(seconds, seed), source="enrollment",
                             label_text=text, label_source="enrollment" if text else None)
        if cache is not None:
            rel, frames = write_encoded(store.data_dir, u.id, cache)
            complete_turn(s, utterance_id=u.id, transcript=text or "", response=None, timings={},
                          bridge_version="random-0", activation="logged_only", encoded_path=rel,
                          encoded_frames=frames)
        return u.id


def encode(engine, seed: int, seconds: float = 0.4) -> EncoderOutput:
    return engine.encode([noise_wave(seconds, seed)])[0]


def own_bridge(engine) -> LoadedBridge:
    # write_version rewrites the config of the bridge it saves: never hand it the shared engine's bridge.
    return LoadedBridge(module=copy.deepcopy(engine.bridge.module), config=engine.bridge.config)


# --- data ------------------------------------------------------------------------------------------------
def test_split_is_stable_and_near_the_share():
    first = {i: data.split_of(i, 0.2) for i in range(1, 1001)}
    assert first == {i: data.split_of(i, 0.2) for i in range(1, 1001)}
    share = sum(v == "heldout" for v in first.values()) / 1000
    assert 0.16 <= share <= 0.24
    assert set(first.values()) == {"train", "heldout"}


def test_load_labelled_uses_the_cache_and_reencodes_the_rest(store, tiny_engine, monkeypatch):
    enc = tiny_engine.encoder
    cached_ids = [add(store, f"cached {i}", seed=i, cache=encode(tiny_engine, i)) for i in range(3)]
    plain_ids = [add(store, f"plain {i}", seed=10 + i) for i in range(2)]
    other_dim = EncoderOutput(torch.randn(20, enc.dim // 2), None, enc.frame_rate_hz)  # another encoder
    foreign_id = add(store, "foreign cache", seed=20, cache=other_dim)
    add(store, None, seed=30)  # unlabelled: not training data

    encoded_waves: list[int] = []
    real = enc.encode_many

    def spy(waves, batch=16):
        encoded_waves.append(len(waves))
        return real(waves, batch)

    monkeypatch.setattr(enc, "encode_many", spy)
    got = data.load_labelled(store, store.data_dir, encoder=enc, heldout_share=0.5)

    assert (got.cached, got.reencoded, got.skipped) == (3, 3, [])
    assert sum(encoded_waves) == 3  # only the rows without a usable cache went through the encoder
    examples = {e.utterance_id: e for e in got.train + got.heldout}
    assert sorted(examples) == sorted(cached_ids + plain_ids + [foreign_id])
    for e in got.train:
        assert data.split_of(e.utterance_id, 0.5) == "train"
    for e in got.heldout:
        assert data.split_of(e.utterance_id, 0.5) == "heldout"
    e0 = examples[cached_ids[0]]
    assert e0.text == "cached 0" and e0.duration_s == pytest.approx(0.4)
    assert torch.allclose(e0.encoded.features, encode(tiny_engine, 0).features.cpu(), atol=1e-2)
    foreign = examples[foreign_id].encoded
    assert foreign.features.shape[1] == enc.dim and foreign.ctc_logits is not None
    assert got.summary()["reencoded"] == 3


def test_split_does_not_move_when_rows_arrive(store, tiny_engine):
    for i in range(6):
        add(store, f"first {i}", seed=i, cache=encode(tiny_engine, i))
    before = data.load_labelled(store, store.data_dir, encoder=tiny_engine.encoder, heldout_share=0.3)
    for i in range(6, 12):
        add(store, f"later {i}", seed=i, cache=encode(tiny_engine, i))
    after = data.load_labelled(store, store.data_dir, encoder=tiny_engine.encoder, heldout_share=0.3)
    old = {e.utterance_id for e in before.heldout}
    assert old == {e.utterance_id for e in after.heldout if e.utterance_id <= 6}
    assert len(after.train) + len(after.heldout) == 12
    newer = data.load_labelled(store, store.data_dir, encoder=tiny_engine.encoder, heldout_share=0.3, since_id=6)
    assert {e.utterance_id for e in newer.train + newer.heldout} == set(range(7, 13))


def test_missing_audio_is_skipped_unless_cached(store, tiny_engine):
    lost = add(store, "no cache no audio", seed=1)
    kept = add(store, "cache but no audio", seed=2, cache=encode(tiny_engine, 2))
    for uid in (lost, kept):
        (store.data_dir / f"audio/{uid}.wav").unlink()
    got = data.load_labelled(store, store.data_dir, encoder=tiny_engine.encoder, heldout_share=0.2)
    assert [e.utterance_id for e in got.train + got.heldout] == [kept]
    assert (got.cached, got.reencoded) == (1, 0)
    assert len(got.skipped) == 1 and got.skipped[0][0] == lost and "not found" in got.skipped[0][1]


# --- registry --------------------------------------------------------------------------------------------
def test_write_version_is_immutable_and_verifiable(store, tiny_engine):
    b = own_bridge(tiny_engine)
    path = registry.write_version(b, store.data_dir, "v0001", parent_version="random-0", metrics={"wer": 0.5},
                                  training={"steps": 3}, data_summary={"train": 7})
    assert path == store.data_dir / "bridges" / "v0001"
    assert sorted(p.name for p in path.iterdir()) == ["bridge.json", "bridge.safetensors"]
    assert [p.name for p in path.parent.iterdir()] == ["v0001"]  # no temp dir left
    cfg = read_bridge_config(path)
    assert (cfg.version, cfg.parent_version, cfg.metrics) == ("v0001", "random-0", {"wer": 0.5})
    assert cfg.training == {"steps": 3, "data_summary": {"train": 7}} and b.config == cfg
    weights = (path / "bridge.safetensors").read_bytes()

    with pytest.raises(RefusedError, match="immutable"):
        registry.write_version(own_bridge(tiny_engine), store.data_dir, "v0001", parent_version=None, metrics={},
                               training={}, data_summary={})
    assert (path / "bridge.safetensors").read_bytes() == weights
    assert [p.name for p in path.parent.iterdir()] == ["v0001"]
    with pytest.raises(RefusedError):
        registry.write_version(b, store.data_dir, "../escape", parent_version=None, metrics={}, training={},
                               data_summary={})

    loaded = registry.verify_version(path, engine=tiny_engine)
    assert loaded.version == "v0001" and loaded.kind == tiny_engine.bridge.kind

    row = registry.record_version(store, version="v0001", path=path, bridge_config=cfg, status="accepted",
                                  metrics={"wer": 0.5}, data_summary={"train": 7}, job_id=None,
                                  parent_version="random-0")
    assert row.path == "bridges/v0001" and row.sha256 == cfg.sha256
    assert registry.next_version(store) == "v0002"

    raw = bytearray(weights)
    raw[len(raw) // 2] ^= 0xFF
    (path / "bridge.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ModelFilesError, match=r"bridge version v0001 .*corrupt"):
        registry.verify_version(path, engine=tiny_engine)


def test_partial_versions_are_cleaned_and_skipped(store, tiny_engine):
    assert registry.next_version(store) == "v0001"
    path = registry.write_version(own_bridge(tiny_engine), store.data_dir, "v0001", parent_version=None,
                                  metrics={}, training={}, data_summary={})
    registry.record_version(store, version="v0001", path=path, bridge_config=read_bridge_config(path),
                            status="rejected", metrics={}, data_summary={}, job_id=None, parent_version=None)
    # a crash before the rename: a temp dir with half the files
    tmp = store.data_dir / "bridges" / ".tmp-v0003-x"
    tmp.mkdir()
    (tmp / "bridge.safetensors").write_bytes((path / "bridge.safetensors").read_bytes()[:100])
    assert registry.next_version(store) == "v0002"
    assert registry.clean_partial(store.data_dir) == 1
    assert not tmp.exists() and path.is_dir()
    assert registry.next_version(store) == "v0002"
    # a crash after the rename but before the row: the name stays taken
    registry.write_version(own_bridge(tiny_engine), store.data_dir, "v0002", parent_version="v0001", metrics={},
                           training={}, data_summary={})
    assert registry.next_version(store) == "v0003"
    with store.session(write=False) as s:
        assert [(v.version, v.status) for v in list_bridge_versions(s)] == [("v0001", "rejected")]


def test_a_version_left_without_its_row_is_adopted_with_its_gate_verdict(store, tiny_engine, caplog):
    """A kill between the rename and the row: the next start records it (loudly), as the gate judged it."""
    for version, accepted in (("v0001", True), ("v0002", False)):
        registry.write_version(own_bridge(tiny_engine), store.data_dir, version, parent_version="random-0",
                               metrics={"accepted": accepted, "user_wer_after": 0.2}, training={"method": "ctc"},
                               data_summary={"train": 40})
    broken = store.data_dir / "bridges" / "v0003"
    broken.mkdir()  # not one of ours: no readable bridge.json
    with caplog.at_level("WARNING"):
        assert registry.adopt_orphan_versions(store) == ["v0001", "v0002"]
    assert "v0001" in caplog.text and "adopted as accepted" in caplog.text and "v0003" in caplog.text
    with store.session(write=False) as s:
        rows = {v.version: v for v in list_bridge_versions(s)}
    assert {v: r.status for v, r in rows.items()} == {"v0001": "accepted", "v0002": "rejected"}
    assert rows["v0001"].metrics["adopted_at_start"] and rows["v0001"].parent_version == "random-0"
    assert rows["v0001"].data_summary == {"train": 40}
    assert registry.adopt_orphan_versions(store) == []  # once
    assert broken.is_dir()  # left for the user to look at, never deleted


def test_diff_versions(tmp_path, tiny_engine):
    a = registry.write_version(own_bridge(tiny_engine), tmp_path, "v0001", parent_version=None,
                               metrics={"wer": 0.4}, training={}, data_summary={})
    changed = own_bridge(tiny_engine)
    with torch.no_grad():
        first = next(iter(changed.module.parameters()))
        first.add_(0.1 * first.abs().mean() + 0.01)
    b = registry.write_version(changed, tmp_path, "v0002", parent_version="v0001", metrics={"wer": 0.3},
                               training={}, data_summary={})
    d = registry.diff_versions(a, b)
    assert d["a"]["metrics"] == {"wer": 0.4} and d["b"]["metrics"] == {"wer": 0.3}
    assert d["a"]["intact"] and d["b"]["intact"] and d["b"]["parent_version"] == "v0001"
    assert d["total_relative_change"] > 0 and sum(v > 0 for v in d["tensors"].values()) == 1
    assert registry.diff_versions(a, a)["total_relative_change"] == 0.0


KILL_SCRIPT = """
import sys
from assistant.alignment.registry import write_version
from assistant.engine.checkpoint import load_bridge, read_bridge_config
src, data = sys.argv[1], sys.argv[2]
c = read_bridge_config(src)
b = load_bridge(src, encoder_id=c.encoder_id, llm_id=c.llm_id, encoder_dim=c.encoder_dim, llm_dim=c.llm_dim,
                ctc_blank_id=c.ctc_blank_id)
print("ready", flush=True)
for i in range(1, 400):
    write_version(b, data, f"v{i:04d}", parent_version=None, metrics={"i": i}, training={}, data_summary={})
"""


def test_kill_9_leaves_no_partial_version(tmp_path, tiny_engine):
    src = tiny_engine.bundle.bridge_dir(tiny_engine.bridge.kind)
    rng = random.Random(5)
    for run in range(4):
        data_dir = tmp_path / f"run{run}"
        proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(src), str(data_dir)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
            time.sleep(rng.uniform(0.0, 0.2))
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=30)
        root = data_dir / "bridges"
        entries = list(root.iterdir()) if root.exists() else []
        for p in entries:
            if p.name.startswith(".tmp-"):
                continue
            assert registry.version_number(p.name) is not None
            assert registry.verify_version(p, engine=tiny_engine).version == p.name
        registry.clean_partial(data_dir)
        if root.exists():
            assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]


# --- gate ------------------------------------------------------------------------------------------------
DECIDE = dict(min_heldout=10, min_improvement=0.05, generic_tolerance=0.02)


@pytest.mark.parametrize("kw, accepted, words", [
    (dict(user_before=0.30, user_after=0.20, generic_before=0.10, generic_after=0.101, heldout_n=12), True,
     "30.0 % -> 20.0 %"),
    (dict(user_before=0.30, user_after=0.20, generic_before=None, generic_after=None, heldout_n=12), True,
     "no generic"),
    (dict(user_before=0.30, user_after=0.20, generic_before=0.10, generic_after=0.103, heldout_n=12), False,
     "generic WER rose 10.0 % -> 10.3 %"),
    (dict(user_before=0.30, user_after=0.29, generic_before=0.10, generic_after=0.10, heldout_n=12), False,
     "needs <= 28.5 %"),
    (dict(user_before=0.30, user_after=0.285, generic_before=0.10, generic_after=0.10, heldout_n=12), True,
     "30.0 % -> 28.5 %"),
    (dict(user_before=0.30, user_after=0.10, generic_before=0.10, generic_after=0.10, heldout_n=9), False,
     "only 9 held-out utterances; need 10"),
    (dict(user_before=0.0, user_after=0.0, generic_before=0.10, generic_after=0.10, heldout_n=12), False,
     "nothing to improve"),
])
def test_decide(kw, accepted, words):
    ok, reason = gate.decide(**kw, **DECIDE)
    assert ok is accepted
    assert words in reason


def test_evaluate_same_bridge_is_rejected(tiny_engine):
    items = [data.Example(i, text, encode(tiny_engine, 40 + i, 0.5), 0.5)
             for i, text in enumerate(["turn on the light", "what time is it", "play music"])]
    generic = items[:2]
    config = AlignmentConfig(min_heldout=3)
    candidate = own_bridge(tiny_engine)
    res = gate.evaluate(gate.scorer(tiny_engine), active=tiny_engine.bridge, candidate=candidate, heldout=items,
                        generic=generic, config=config)
    assert res.user_wer_before == res.user_wer_after and res.generic_wer_before == res.generic_wer_after
    assert not res.accepted and (res.heldout_n, res.generic_n) == (3, 2)
    assert res.to_json()["reason"] == res.reason
    few = gate.evaluate(gate.scorer(tiny_engine), active=tiny_engine.bridge, candidate=candidate, heldout=[],
                        generic=None, config=config)
    assert not few.accepted and "only 0 held-out" in few.reason and few.to_json()["user_wer_before"] is None
    with pytest.raises(ValueError):
        gate.wer_of(tiny_engine, candidate, [])


def test_choose_keeps_the_better_variant_that_passes():
    """The gate scores the active bridge once and each variant of the candidate; an accepted variant beats
    a rejected one even with a lower user WER, the lowest user WER wins among accepted ones."""
    from dataclasses import replace

    from assistant.metrics import ErrorRate

    base = own_bridge_config()
    active = LoadedBridge(module=torch.nn.Linear(1, 1), config=replace(base, version="v1"))
    names = ["forgets", "routed-a", "routed-b"]
    cands = [LoadedBridge(module=torch.nn.Linear(1, 1), config=replace(base, version=n, voice_routing=i > 0))
             for i, n in enumerate(names)]
    # (user WER, generic WER) per bridge: "forgets" has the best user WER but breaks generic speech
    table = {"v1": (0.50, 0.10), "forgets": (0.20, 0.20), "routed-a": (0.40, 0.101), "routed-b": (0.30, 0.10)}
    calls = []

    def fake_wer(bridge, items):
        calls.append(bridge.version)
        user, generic = table[bridge.version]
        r = user if items[0] == "u" else generic
        return ErrorRate(rate=r, ci95=(r, r), edits=0, units=1, n_utterances=len(items))

    cfg = AlignmentConfig(min_heldout=2)
    idx, res = gate.choose(fake_wer, active=active, candidates=cands, heldout=["u", "u"], generic=["g"], config=cfg)
    assert idx == 2 and res.accepted and res.user_wer_after == 0.30
    assert calls.count("v1") == 2  # the active bridge is scored once per set, not once per variant
    assert "voice-routed" in res.reason and "also tried" in res.reason and "generic 20.0 %" in res.reason
    table["routed-a"] = (0.30, 0.095)  # the same user WER: the lower generic WER wins
    assert gate.choose(fake_wer, active=active, candidates=cands, heldout=["u", "u"], generic=["g"], config=cfg)[0] == 1
    table["routed-a"] = table["routed-b"] = (0.49, 0.10)  # nobody passes: the first is kept, with its reason
    idx, res = gate.choose(fake_wer, active=active, candidates=cands, heldout=["u", "u"], generic=["g"], config=cfg)
    assert idx == 0 and not res.accepted and "generic WER rose" in res.reason


def own_bridge_config():
    from assistant.engine.checkpoint import BridgeConfig

    return BridgeConfig(kind="ctc", encoder_dim=4, llm_dim=4, hidden_dim=0, encoder_id="e", llm_id="l",
                        ctc_blank_id=0)
