"""Synthesized test speech (espeak-ng) and the rule for missing system tools.

A tool missing on a developer machine skips the test; in CI (``$CI`` set) it fails, so a broken
image cannot turn the audio tests into silent skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

RATE = 16000


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (apt-get install {name})"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must run this test")
        pytest.skip(msg)
    return path


def espeak_wav(text: str, path: Path, *, voice: str = "en", speed_wpm: int = 160) -> Path:
    """Write ``text`` spoken by espeak-ng to ``path`` (WAV, espeak's native 22.05 kHz)."""
    exe = require_tool("espeak-ng")
    subprocess.run([exe, "-v", voice, "-s", str(speed_wpm), "-w", str(path), text], check=True,
                   timeout=30, capture_output=True)
    return path


def speech_bounds(samples: np.ndarray, threshold: float = 0.02) -> tuple[float, float]:
    """(first, last) time in seconds where |sample| exceeds ``threshold``: the sentence without espeak's padding."""
    loud = np.nonzero(np.abs(samples) > threshold)[0]
    return loud[0] / RATE, (loud[-1] + 1) / RATE


def to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * RATE)), np.float32)


def with_noise(samples: np.ndarray, dbfs: float = -50.0, seed: int = 0) -> np.ndarray:
    """Add white noise at ``dbfs`` RMS so 'silence' is not digital zero (real microphones never are)."""
    rng = np.random.default_rng(seed)
    return samples + (rng.standard_normal(len(samples)) * 10 ** (dbfs / 20)).astype(np.float32)


def espeak(text: str, voice: str = "espeak-ng:en-us") -> np.ndarray:
    """``text`` spoken by a synthetic voice (a voice spec, assistant/synth), 16 kHz mono float32."""
    from assistant.synth.voices import synthesize

    require_tool(voice.split(":", 1)[0])
    return synthesize(voice, text)
