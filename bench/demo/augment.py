"""Waveform augmentation for the demo encoder: channel and speaker perturbations of the espeak corpus.

An encoder trained on clean espeak-ng only hears other synthesizers and any warped channel as noise
(flite/festival/sox voices near 100 % WER in the first build), and then its frozen features give the
personalization of the bridge almost nothing to work with. Each augmented copy of a training utterance
gets, drawn per utterance from (seed, index) so the build stays reproducible:

- speed/pitch: resampled by a factor in [0.85, 1.15] and read back at 16 kHz (tempo and vocal-tract
  length together, like Kaldi's speed perturbation);
- band limits (p 0.5): a high-pass at 50..400 Hz and a low-pass at 3..7 kHz (telephone-like channels);
- reverb (p 0.4): a synthetic room, exponentially decaying noise with RT60 0.1..0.6 s;
- noise (p 0.6): white or pink noise at 5..30 dB SNR.

Only numpy and soxr (both already dependencies). Nothing here is used at run time.
"""

from __future__ import annotations

import numpy as np

RATE = 16000


def _band(x: np.ndarray, lo_hz: float, hi_hz: float) -> np.ndarray:
    """Band-pass by an FFT mask with 100 Hz cosine edges (no scipy here)."""
    n = len(x)
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(n, 1 / RATE)
    mask = np.clip((f - lo_hz) / 100 + 0.5, 0, 1) * np.clip((hi_hz - f) / 100 + 0.5, 0, 1)
    mask = 0.5 - 0.5 * np.cos(np.pi * mask)
    return np.fft.irfft(spec * mask, n).astype(np.float32)


def _reverb(x: np.ndarray, rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(rt60_s * RATE)) / RATE
    ir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60_s)  # -60 dB at rt60
    ir[0] = 1.0 / 0.3  # the direct path dominates (wet/dry ~ 0.3)
    ir /= np.sqrt(np.sum(ir ** 2))
    n = len(x) + len(ir) - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)[: len(x)]
    return y.astype(np.float32)


def _noise(n: int, pink: bool, rng: np.random.Generator) -> np.ndarray:
    w = rng.standard_normal(n)
    if pink:
        spec = np.fft.rfft(w)
        f = np.fft.rfftfreq(n, 1 / RATE)
        spec /= np.sqrt(np.maximum(f, 20.0))
        w = np.fft.irfft(spec, n)
    return (w / (np.std(w) + 1e-9)).astype(np.float32)


def augment(wave: np.ndarray, seed: int, index: int) -> np.ndarray:
    """One perturbed copy of a 16 kHz mono float32 wave (deterministic in seed and index)."""
    import soxr

    rng = np.random.default_rng([seed, index, 0xA06])
    factor = rng.uniform(0.85, 1.15)
    x = soxr.resample(wave.astype(np.float32), RATE, RATE / factor).astype(np.float32)
    if rng.random() < 0.5:
        x = _band(x, rng.uniform(50, 400), rng.uniform(3000, 7000))
    if rng.random() < 0.4:
        x = _reverb(x, rng.uniform(0.1, 0.6), rng)
    if rng.random() < 0.6:
        power = float(np.mean(x ** 2)) + 1e-12
        snr_db = rng.uniform(5, 30)
        x = x + _noise(len(x), bool(rng.random() < 0.5), rng) * np.sqrt(power / 10 ** (snr_db / 10))
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak > 0.99:
        x = x * (0.99 / peak)
    return x.astype(np.float32)


def augmented_copies(waves: list[np.ndarray], copies: int, seed: int) -> list[np.ndarray]:
    """``copies`` perturbed versions of every wave, copy-major: [all of copy 1, all of copy 2, ...]."""
    return [augment(w, seed, c * len(waves) + i) for c in range(copies) for i, w in enumerate(waves)]


def room_padded(wave: np.ndarray, seed: int, index: int, max_pad_s: float) -> np.ndarray:
    """``wave`` as the daemon's VAD hands it over: up to ``max_pad_s`` of a quiet room before and after
    the speech (the VAD keeps a pre-roll and half its hangover) and the room's hiss under all of it.

    espeak-ng clips start and end on the speech, and the encoder's features are normalized per
    utterance: an encoder that never heard silence around speech misreads it (the first demo bundle
    read 0.3 s of leading silence as extra words: 8 % -> 21 % WER on the same sentences).
    """
    if max_pad_s <= 0:
        return wave
    rng = np.random.default_rng([seed, index, 0x5AD])
    lead, tail = (int(rng.uniform(0, max_pad_s) * RATE) for _ in range(2))
    x = np.concatenate([np.zeros(lead, np.float32), wave.astype(np.float32), np.zeros(tail, np.float32)])
    if rng.random() < 0.8:  # hiss at -80..-45 dBFS; the rest stay digitally silent, as a muted line is
        x = x + _noise(len(x), bool(rng.random() < 0.5), rng) * 10 ** (rng.uniform(-80, -45) / 20)
    return np.clip(x, -1, 1).astype(np.float32)


def vad_framed(wave: np.ndarray, index: int) -> np.ndarray:
    """An evaluation clip as the daemon's VAD (default config) hands it over: 0.3 s of pre-roll before
    the speech, 0.3 s of hangover after it, -55 dBFS hiss throughout."""
    rng = np.random.default_rng([index, 0xEAD])
    pad = np.zeros(int(0.3 * RATE), np.float32)
    x = np.concatenate([pad, wave.astype(np.float32), pad])
    return np.clip(x + rng.standard_normal(len(x)).astype(np.float32) * 10 ** (-55 / 20), -1, 1).astype(np.float32)
