"""Shared fixtures: tiny random-weight bundles built from configs (no downloads), fixed seeds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Pretrained weights are assembled from their packages once (keyed by their sha256) and shared by every
# test's data directory and daemon subprocess, instead of once per data directory (assistant/pretrained).
os.environ.setdefault("ASSISTANT_PRETRAINED_DIR",
                      str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "assistant" / "pretrained"))

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """The tiny bundle, built through the real CLI (`assistant models tiny DIR`) in a subprocess."""
    path = tmp_path_factory.mktemp("bundles") / "tiny"
    subprocess.run([sys.executable, "-m", "assistant_services.cli", "models", "tiny", str(path)], check=True, cwd=REPO,
                   timeout=120, capture_output=True)
    return path


@pytest.fixture(scope="session")
def tiny_chat_bundle(tmp_path_factory) -> Path:
    from assistant.modelgen import build_bundle

    return build_bundle(tmp_path_factory.mktemp("bundles") / "tiny-chat", chat=True, seed=1)


@pytest.fixture(scope="session")
def tiny_engine(tiny_bundle):
    from assistant.engine.engine import Engine

    return Engine.from_bundle(tiny_bundle, device="cpu")


@pytest.fixture()
def bundle_copy(tiny_bundle, tmp_path) -> Path:
    """A private copy of the tiny bundle that a test may damage."""
    dst = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, dst)
    return dst


def noise_wave(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)
