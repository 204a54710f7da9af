"""The shipped demo bundle really understands espeak-ng speech (a real check, run in CI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import soundfile as sf

from assistant.config import demo_bundle_dir

from conftest import REPO

DEMO = demo_bundle_dir()
pytestmark = pytest.mark.skipif(not (DEMO / "manifest.json").is_file() and not os.environ.get("CI"),
                                reason="no demo bundle built yet (python -m bench.demo.build)")


@pytest.fixture(scope="module")
def engine():
    from assistant.engine.engine import Engine

    return Engine.from_bundle(DEMO, device="cpu")


@pytest.fixture(scope="module")
def held_out_clips(tmp_path_factory):
    """Three sentences from the test split (never in any training text), spoken by a training voice."""
    from assistant.synth import text as tx
    from assistant.synth.voices import synthesize
    from assistant.synth.voices_sets import train_voice_for

    d = tmp_path_factory.mktemp("demo")
    out = []
    for u in tx.base_sentences(0)["test"][100:103]:
        path = d / f"{u.id}.wav"
        sf.write(path, synthesize(train_voice_for(u.id, 0), u.text, seed=0), 16000)
        out.append((path, u.text))
    return out


def test_demo_bundle_is_small_complete_and_documents_its_build():
    size = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert size <= 25 * 1024 * 1024, f"demo bundle is {size / 2**20:.1f} MB"
    manifest = json.loads((DEMO / "manifest.json").read_text())
    assert not manifest["is_noise"] and manifest["default_bridge"] in manifest["bridges"]
    assert manifest["build"]["command"].startswith("python -m bench.demo.build")
    for name in ("test-seen", "test-heldout", "flite", "festival", "sox"):
        assert 0 <= manifest["metrics"][name]["wer"] and manifest["metrics"][name]["n"] >= 30


def test_demo_transcribes_held_out_sentences(engine, held_out_clips):
    from assistant.audio import load_audio
    from assistant.metrics import wer

    hyps = [engine.run(load_audio(p).samples, respond=False).transcript for p, _ in held_out_clips]
    refs = [t for _, t in held_out_clips]
    assert wer(refs, hyps).rate <= 0.20, list(zip(refs, hyps))


def test_both_shipped_bridges_load_and_the_regression_set_matches(engine):
    from assistant.alignment.regression import load_regression_set
    from assistant.engine.engine import Engine

    for kind in engine.bundle.manifest.bridges:
        assert Engine.load_bridge_for(engine.bundle.bridge_dir(kind), engine.encoder, engine.llm).kind == kind
    items = load_regression_set(DEMO / "regression", encoder_id=engine.encoder.identity,
                               ctc_head=engine.encoder.ctc_head)
    assert len(items) >= 100 and all(i.text for i in items)
    text, _, _, _ = engine.transcribe_encoded(items[0].encoded, items[0].duration_s)
    assert isinstance(text, str)


def test_cli_respond_uses_the_demo_bundle_by_default(held_out_clips, tmp_path):
    path, _ = held_out_clips[0]
    env = {**os.environ, "ASSISTANT_DATA_DIR": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    env.pop("ASSISTANT_CONFIG", None)
    res = subprocess.run([sys.executable, "-m", "services.cli", "respond", "--json", str(path)], cwd=REPO,
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    row = json.loads(res.stdout)
    assert row["transcript"] and row["response"] and row["bridge_version"].startswith("base-")
