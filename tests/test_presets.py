"""Presets: pull fails fast and cleanly without network; listing tolerates broken bundles.

No test downloads anything: the only network use is the connectivity check against an
unreachable hub (this machine has no route to huggingface.co) or a closed local port.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from assistant import hub, presets
from assistant.bundle import BundleManifest, ComponentSpec, PromptFormat, load_bundle, save_manifest
from assistant.errors import ModelFilesError, NetworkError
from assistant.hub import pull
from assistant.presets import DEFAULT_PRESET, PRESETS, format_bundle_table, list_bundles

HUB_HOST = "huggingface.co"


@pytest.fixture(autouse=True)
def _clean_hub_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def no_demo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hide the shipped demo bundle so listings only show what the test made."""
    monkeypatch.setattr(presets, "demo_bundle_dir", lambda: tmp_path / "no-demo")


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: connecting is refused


def _hub_reachable() -> bool:
    try:
        socket.create_connection((HUB_HOST, 443), timeout=3).close()
        return True
    except OSError:
        return False


def _assert_no_bundle(data_dir: Path, name: str) -> None:
    assert not (data_dir / "bundles" / name).exists()
    assert not (data_dir / "bundles" / name / "manifest.json").exists()


def _fake_bundle(root: Path, **changes) -> Path:
    for comp in ("encoder", "llm"):
        (root / comp).mkdir(parents=True)
        (root / comp / "config.json").write_text("{}\n")
    manifest = BundleManifest(
        name=root.name,
        encoder=ComponentSpec(path="encoder", id="enc@0000000000000000"),
        llm=ComponentSpec(path="llm", id="llm@0000000000000000"),
        prompt=PromptFormat(),
    )
    save_manifest(root, replace(manifest, **changes))
    load_bundle(root)  # the fake must pass the real loader
    return root


# --------------------------------------------------------------------------- presets


def test_presets_are_well_formed() -> None:
    assert DEFAULT_PRESET == "wav2vec2-base-qwen2.5-0.5b"
    assert {"wav2vec2-base-qwen2.5-0.5b", "hubert-large-qwen2.5-0.5b"} <= set(PRESETS)
    assert PRESETS["wav2vec2-base-qwen2.5-0.5b"].encoder_repo == "facebook/wav2vec2-base-960h"
    assert PRESETS["hubert-large-qwen2.5-0.5b"].encoder_repo == "facebook/hubert-large-ls960-ft"
    for name, p in PRESETS.items():
        assert p.name == name
        assert p.llm_repo == "Qwen/Qwen2.5-0.5B-Instruct"
        assert p.prompt.response == "chat" and p.prompt.speech_bos is False and p.prompt.draft_case == "lower"
        assert 500 < p.approx_download_mb < 5000


def test_allow_patterns_pick_one_weight_format() -> None:
    both = presets.allow_patterns("encoder")
    assert "config.json" in both and "*.safetensors" in both and "pytorch_model*.bin" in both
    st = presets.allow_patterns("llm", ["config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json"])
    assert "*.safetensors" in st and "pytorch_model*.bin" not in st
    assert {"tokenizer.json", "generation_config.json", "merges.txt", "vocab.json"} <= set(st)
    pt = presets.allow_patterns("encoder", ["config.json", "pytorch_model.bin", "preprocessor_config.json"])
    assert "pytorch_model*.bin" in pt and "*.safetensors" not in pt and "preprocessor_config.json" in pt


def test_module_does_not_import_heavy_libraries() -> None:
    import subprocess

    code = (
        "import sys, assistant.presets, assistant.hub; "
        "bad = [m for m in ('torch', 'transformers', 'huggingface_hub') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# --------------------------------------------------------------------------- pull


def test_unknown_preset_lists_known_names(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesError) as info:
        pull("no-such-preset", tmp_path, progress=lambda _m: None)
    msg = str(info.value)
    assert "unknown preset 'no-such-preset'" in msg
    for name in PRESETS:
        assert name in msg
    assert not (tmp_path / "bundles").exists()


def test_pull_without_network_fails_fast(tmp_path: Path) -> None:
    if _hub_reachable():
        pytest.skip(f"{HUB_HOST} is reachable here; this test needs a machine without internet")
    t0 = time.monotonic()
    with pytest.raises(NetworkError) as info:
        pull(DEFAULT_PRESET, tmp_path, timeout_s=5.0, progress=lambda _m: None)
    elapsed = time.monotonic() - t0
    assert elapsed < 15.0, f"pull took {elapsed:.1f} s to fail"
    msg = str(info.value)
    assert HUB_HOST in msg and "unreachable" in msg
    assert "on a machine with internet" in msg and str(tmp_path / "bundles" / DEFAULT_PRESET) in msg
    assert "manifest" in msg
    _assert_no_bundle(tmp_path, DEFAULT_PRESET)


def test_pull_offline_mode_is_immediate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_socket(*_a, **_k):
        raise AssertionError("offline mode must not touch the network")

    monkeypatch.setattr(socket, "create_connection", no_socket)
    t0 = time.monotonic()
    with pytest.raises(NetworkError) as info:
        pull("hubert-large-qwen2.5-0.5b", tmp_path, progress=lambda _m: None)
    assert time.monotonic() - t0 < 1.0
    msg = str(info.value)
    assert "offline mode is on" in msg and "HF_HUB_OFFLINE=1" in msg
    assert "on a machine with internet" in msg
    _assert_no_bundle(tmp_path, "hubert-large-qwen2.5-0.5b")


def test_pull_connection_refused_is_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _closed_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    t0 = time.monotonic()
    with pytest.raises(NetworkError) as info:
        pull(DEFAULT_PRESET, tmp_path, timeout_s=5.0, progress=lambda _m: None)
    assert time.monotonic() - t0 < 5.0
    msg = str(info.value)
    assert f"127.0.0.1:{port}" in msg and "connection refused" in msg
    _assert_no_bundle(tmp_path, DEFAULT_PRESET)


def test_pull_timeout_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hub that never answers (hung DNS or SYN) fails after about timeout_s, not later."""
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")

    def hang(*_a, **_k):
        time.sleep(30)

    monkeypatch.setattr(socket, "create_connection", hang)
    t0 = time.monotonic()
    with pytest.raises(NetworkError) as info:
        pull(DEFAULT_PRESET, tmp_path, timeout_s=1.0, progress=lambda _m: None)
    assert time.monotonic() - t0 < 3.0
    assert "no answer within 1 s" in str(info.value)
    _assert_no_bundle(tmp_path, DEFAULT_PRESET)


def test_already_pulled_bundle_needs_no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bundle = _fake_bundle(tmp_path / "bundles" / DEFAULT_PRESET)
    assert pull(DEFAULT_PRESET, tmp_path, progress=lambda _m: None) == bundle


def test_failed_download_leaves_no_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the connectivity check, a download error keeps only the resumable .partial dir."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub.utils import LocalEntryNotFoundError

    monkeypatch.setattr(hub, "check_connectivity", lambda *a, **k: None)

    class Info:
        sha = "0" * 40
        siblings = []

    def fake_snapshot(repo_id, *, local_dir, **_kw):
        local = Path(local_dir)
        local.mkdir(parents=True, exist_ok=True)
        (local / "config.json").write_text("{}")
        if "Qwen" in repo_id:  # the encoder "arrives", the LLM download breaks off
            raise LocalEntryNotFoundError("connection reset")
        (local / "model.safetensors").write_bytes(b"x")
        return str(local)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, *a, **k: Info())
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    with pytest.raises(NetworkError) as info:
        pull(DEFAULT_PRESET, tmp_path, progress=lambda _m: None)
    assert "Qwen/Qwen2.5-0.5B-Instruct" in str(info.value)
    _assert_no_bundle(tmp_path, DEFAULT_PRESET)
    partial = tmp_path / "bundles" / (DEFAULT_PRESET + ".partial")
    assert partial.is_dir() and not (partial / "manifest.json").exists()
    names = [r["name"] for r in list_bundles(tmp_path)]
    assert names.count(DEFAULT_PRESET) == 1 and DEFAULT_PRESET + ".partial" not in names


def test_pull_writes_manifest_and_renames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub, "check_connectivity", lambda *a, **k: None)
    seen: dict[str, list[str]] = {}

    class Info:
        sha = "a" * 40
        siblings = []

    def fake_snapshot(repo_id, *, local_dir, allow_patterns, revision, **_kw):
        assert revision == "a" * 40
        seen[repo_id] = allow_patterns
        local = Path(local_dir)
        assert local.parent.name.endswith(".partial")
        (local / ".cache" / "huggingface").mkdir(parents=True)
        config = {"repo": repo_id, "hidden_size": 896}
        if "wav2vec2" in repo_id:
            config |= {"architectures": ["Wav2Vec2ForCTC"], "hidden_size": 768, "pad_token_id": 0}
        (local / "config.json").write_text(json.dumps(config))
        (local / "model.safetensors").write_bytes(repo_id.encode())
        return str(local)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, *a, **k: Info())
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    path = pull(DEFAULT_PRESET, tmp_path, progress=lambda _m: None)
    assert path == tmp_path / "bundles" / DEFAULT_PRESET
    assert not (tmp_path / "bundles" / (DEFAULT_PRESET + ".partial")).exists()
    assert not (path / "encoder" / ".cache").exists()
    m = load_bundle(path).manifest
    assert m.bridges == {"ctc": "bridge/ctc"} and m.default_bridge == "ctc" and not m.is_noise
    bridge = json.loads((path / "bridge" / "ctc" / "bridge.json").read_text())
    assert bridge["text_input"] and bridge["encoder_id"] == m.encoder.id and bridge["llm_id"] == m.llm.id
    assert m.encoder.id.startswith("facebook/wav2vec2-base-960h@main@")
    assert m.llm.id.startswith("Qwen/Qwen2.5-0.5B-Instruct@main@")
    assert m.build["preset"] == DEFAULT_PRESET and m.build["llm_commit"] == "a" * 40 and m.build["pulled_at"]
    assert m.prompt == PRESETS[DEFAULT_PRESET].prompt
    assert "tokenizer.json" in seen["Qwen/Qwen2.5-0.5B-Instruct"]


# --------------------------------------------------------------------------- list


def test_list_presets_not_pulled(tmp_path: Path, no_demo: None) -> None:
    rows = list_bundles(tmp_path / "data")
    assert [r["name"] for r in rows] == list(PRESETS)
    for r in rows:
        assert r["kind"] == "preset" and r["pulled"] is False and r["path"] is None and r["bridges"] == []
        assert "not pulled" in r["note"]
    table = format_bundle_table(rows)
    assert table.splitlines()[0].split() == ["NAME", "KIND", "PULLED", "BRIDGES", "PATH", "NOTE"]
    assert len(table.splitlines()) == len(rows) + 1


def test_list_bundles_notes_and_broken_manifest(tmp_path: Path, no_demo: None) -> None:
    bundles = tmp_path / "bundles"
    _fake_bundle(bundles / "mine")
    _fake_bundle(bundles / "noisy", is_noise=True, bridges={"conv": "bridge/conv"}, default_bridge="conv")
    _fake_bundle(bundles / DEFAULT_PRESET)
    (bundles / "corrupt").mkdir()
    (bundles / "corrupt" / "manifest.json").write_text("{not json")
    (bundles / "listy").mkdir()
    (bundles / "listy" / "manifest.json").write_text("[1, 2]")
    (bundles / "empty-dir").mkdir()  # no manifest: not a bundle, not listed

    rows = {r["name"]: r for r in list_bundles(tmp_path)}
    assert "empty-dir" not in rows

    mine = rows["mine"]
    assert mine["kind"] == "bundle" and mine["pulled"] and mine["path"] == str(bundles / "mine")
    assert mine["bridges"] == [] and "no trained bridge yet: run personalized alignment" in mine["note"]

    noisy = rows["noisy"]
    assert noisy["bridges"] == ["conv"] and "random weights: output is noise" in noisy["note"]
    assert "no trained bridge" not in noisy["note"]

    pulled = rows[DEFAULT_PRESET]
    assert pulled["kind"] == "preset" and pulled["pulled"] and "no trained bridge yet" in pulled["note"]
    assert rows["hubert-large-qwen2.5-0.5b"]["pulled"] is False

    for bad in ("corrupt", "listy"):
        assert rows[bad]["note"].startswith("unreadable manifest: "), rows[bad]["note"]
    assert "not valid JSON" in rows["corrupt"]["note"]

    table = format_bundle_table(rows.values())
    assert "unreadable manifest" in table and "mine" in table


def test_list_shows_demo_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    demo = _fake_bundle(tmp_path / "demo", name="demo-synthetic", is_noise=False)
    monkeypatch.setattr(presets, "demo_bundle_dir", lambda: demo)
    rows = [r for r in list_bundles(tmp_path / "data") if r["kind"] == "demo"]
    assert len(rows) == 1 and rows[0]["name"] == "demo-synthetic" and rows[0]["path"] == str(demo)
    assert "no trained bridge yet" in rows[0]["note"]


def _fake_hub(monkeypatch: pytest.MonkeyPatch, files: dict[str, Path]) -> None:
    """The hub as ``pull`` sees it, serving local model directories (``files``: repo substring -> dir)."""
    huggingface_hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(hub, "check_connectivity", lambda *a, **k: None)

    class Info:
        sha = "b" * 40
        siblings = []

    def fake_snapshot(repo_id, *, local_dir, **_kw):
        src = next(d for key, d in files.items() if key in repo_id)
        shutil.copytree(src, local_dir, dirs_exist_ok=True)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, *a, **k: Info())
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)


def test_pulled_preset_serves_with_the_zero_shot_bridge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        tiny_chat_bundle: Path, no_demo: None) -> None:
    """Real pull code against a fake hub of tiny real models: the pulled bundle answers a turn at once."""
    from assistant.engine.engine import Engine
    from tests.conftest import noise_wave

    _fake_hub(monkeypatch, {"wav2vec2": tiny_chat_bundle / "encoder", "Qwen": tiny_chat_bundle / "llm"})
    path = pull(DEFAULT_PRESET, tmp_path, progress=lambda _m: None)
    turn = Engine.from_bundle(path, device="cpu").run(noise_wave(1.0, 3))
    assert isinstance(turn.transcript, str) and turn.transcript == turn.transcript.lower()
    assert isinstance(turn.response, str)
    row = next(r for r in list_bundles(tmp_path) if r["name"] == DEFAULT_PRESET)
    assert row["pulled"] and row["bridges"] == ["ctc"] and "serves with its ctc bridge" in row["note"]


def test_pull_of_an_encoder_without_ctc_head_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      tiny_chat_bundle: Path) -> None:
    no_head = tmp_path / "no-head"
    shutil.copytree(tiny_chat_bundle / "encoder", no_head)
    cfg = json.loads((no_head / "config.json").read_text())
    cfg["architectures"] = ["HubertModel"]
    (no_head / "config.json").write_text(json.dumps(cfg))
    _fake_hub(monkeypatch, {"wav2vec2": no_head, "Qwen": tiny_chat_bundle / "llm"})
    with pytest.raises(ModelFilesError, match="has no CTC head"):
        pull(DEFAULT_PRESET, tmp_path / "data", progress=lambda _m: None)
    _assert_no_bundle(tmp_path / "data", DEFAULT_PRESET)
