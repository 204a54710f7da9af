"""The `assistant` command line, end to end in subprocesses, on the tiny bundle."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, noise_wave


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "assistant_services.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_help_answers_without_importing_torch():
    code = ("import sys; from assistant_services.cli import build_parser; build_parser().format_help(); "
            "heavy = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
    res = run_cli("--help")
    assert res.returncode == 0 and "transcribe" in res.stdout and "models" in res.stdout


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("wavs")
    good = d / "good.wav"
    sf.write(good, noise_wave(1.5, 0), 16000)
    stereo44 = d / "stereo44.flac"
    sf.write(stereo44, np.stack([noise_wave(1.0, 1)] * 2, 1)[: 44100], 44100)
    return d, good, stereo44


def test_respond_json_prints_one_object_per_file(tiny_bundle, wavs):
    _, good, stereo44 = wavs
    res = run_cli("respond", "--json", "--bundle", str(tiny_bundle), str(good), str(stereo44))
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["file"] for r in rows] == [str(good), str(stereo44)]
    for r in rows:
        assert isinstance(r["transcript"], str) and isinstance(r["response"], str)
        assert set(r["timings"]) >= {"encoder_s", "bridge_s", "transcript_s", "response_s", "total_s"}
        assert r["bridge_version"] == "random-0"
    assert "random weights" in res.stderr  # the tiny bundle says its output is noise


def test_respond_plain_and_transcribe(tiny_bundle, wavs):
    _, good, _ = wavs
    res = run_cli("respond", "--bundle", str(tiny_bundle), str(good))
    assert res.returncode == 0 and "you said:" in res.stdout and "assistant:" in res.stdout
    res = run_cli("transcribe", "--json", "--bundle", str(tiny_bundle), "--bridge-kind", "ctc", str(good))
    row = json.loads(res.stdout)
    assert res.returncode == 0 and "transcript" in row and "response" not in row


def _bad_inputs(d):
    cases = {}
    (d / "text.wav").write_text("this is not audio\n")
    cases["not audio"] = (d / "text.wav", "not a readable audio file")
    sf.write(d / "full.wav", noise_wave(2.0, 3), 16000, subtype="PCM_16")
    raw = (d / "full.wav").read_bytes()
    (d / "cut.wav").write_bytes(raw[: len(raw) // 2])
    cases["truncated"] = (d / "cut.wav", "truncated")
    sf.write(d / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    cases["empty"] = (d / "empty.wav", "no samples")
    sf.write(d / "long.wav", np.zeros(16000 * 5, dtype=np.float32), 16000)
    cases["too long"] = (d / "long.wav", "audio.max_duration_s")
    x = noise_wave(1.0, 4)
    x[100] = np.nan
    sf.write(d / "nan.wav", x, 16000, subtype="FLOAT")
    cases["nan"] = (d / "nan.wav", "NaN")
    cases["missing"] = (d / "nope.wav", "not found")
    return cases


def test_each_bad_input_gives_one_clear_line_and_nonzero_exit(tiny_bundle, wavs, tmp_path):
    d, good, _ = wavs
    cfg = tmp_path / "config.toml"
    cfg.write_text("[audio]\nmax_duration_s = 3.0\n")
    cases = _bad_inputs(tmp_path)
    files = [str(p) for p, _ in cases.values()]
    res = run_cli("--config", str(cfg), "transcribe", "--bundle", str(tiny_bundle), *files, str(good))
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(cases)
    for (path, needle), line in zip(cases.values(), errors):
        assert str(path) in line and needle in line, line
    assert f"{good}:" in res.stdout  # the good file was still transcribed
    assert "Traceback" not in res.stderr


def test_missing_bundle_and_bad_config_are_one_line_errors(tmp_path, wavs):
    _, good, _ = wavs
    res = run_cli("transcribe", "--bundle", str(tmp_path / "none"), str(good))
    assert res.returncode == 2 and "no model bundle at" in res.stderr and "Traceback" not in res.stderr
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[engine]\ndevice = 'gpu'\n")
    res = run_cli("--config", str(cfg), "transcribe", str(good))
    assert res.returncode == 2 and "engine.device" in res.stderr
    cfg.write_text("[engine\n")
    res = run_cli("--config", str(cfg), "config", "show")
    assert res.returncode == 2 and "not valid TOML" in res.stderr


def test_models_pull_offline_fails_fast_with_a_clear_message(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    res = run_cli("models", "pull", "wav2vec2-base-qwen2.5-0.5b", "--data-dir", str(tmp_path),
                  env={"HF_ENDPOINT": f"http://127.0.0.1:{port}"}, timeout=60)
    assert time.monotonic() - t0 < 30
    assert res.returncode == 2 and "unreachable" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "bundles" / "wav2vec2-base-qwen2.5-0.5b").exists()


def test_models_list_shows_presets_and_noise_bundles(tiny_bundle, tmp_path):
    import shutil

    shutil.copytree(tiny_bundle, tmp_path / "bundles" / "tiny")
    res = run_cli("models", "list", "--data-dir", str(tmp_path))
    assert res.returncode == 0
    assert "wav2vec2-base-qwen2.5-0.5b" in res.stdout and "random weights" in res.stdout
    assert "not pulled" in res.stdout  # presets are listed even before a pull (no-bridge note: test_presets)


def test_the_cli_finds_the_system_service_s_daemon_or_says_how_to_join_its_group(tmp_path, monkeypatch):
    import json as _json

    from assistant.errors import AssistantError
    from assistant_services import client as client_mod

    service = tmp_path / "var-lib-assistant"
    service.mkdir()
    (service / "daemon.json").write_text(_json.dumps({"pid": 1, "host": "0.0.0.0", "port": 8765}))
    (service / "api-token").write_text("tok\n")
    monkeypatch.setattr(client_mod, "SERVICE_DATA_DIR", service)
    c = client_mod.DaemonClient.from_data_dir(tmp_path / "my-own")  # none of mine runs: the service's
    assert (c.base_url, c.token) == ("http://127.0.0.1:8765", "tok")
    if os.geteuid() != 0:  # root reads anything: the refusal cannot be shown as root
        service.chmod(0o700)
        (service / "daemon.json").chmod(0o600)
    else:
        monkeypatch.setattr(client_mod.os, "access", lambda *a: False)
        (service / "daemon.json").unlink()
    with pytest.raises(AssistantError, match="usermod -aG assistant"):
        client_mod.DaemonClient.from_data_dir(tmp_path / "my-own")
