"""Is what the microphone hears the assistant's own voice? A comparison with what the speaker played.

While a reply plays, the microphone hears it back (through the room, or exactly, through a loopback).
``explained_share(mic, played)`` is the share of the microphone window's energy that the best-aligned,
best-scaled copy of the played audio explains: near 1 when the window is only the echo, lower when the
user speaks over it (barge-in). It searches every lag in ``played`` (the caller passes the played audio
from a little before the window to the longest output + input latency before it), so the device's
latency need not be known. It is a single-path model: a room's reverberation lowers the share of a pure
echo, so the threshold is the caller's (``services/output.py``) and this is no acoustic echo canceller.
"""

from __future__ import annotations

import numpy as np

QUIET_RMS = 0.003  # a window this quiet holds no one's speech: it counts as echo (nothing to interrupt)


def explained_share(mic: np.ndarray, played: np.ndarray) -> float:
    """max over lags k of corr(mic, played[k:k+n])^2 / (|mic|^2 |played[k:k+n]|^2), in [0, 1];
    ``played`` must be at least as long as ``mic``. 1.0 for a window too quiet to hold speech."""
    return best_alignment(mic, played)[0]


def best_alignment(mic: np.ndarray, played: np.ndarray) -> tuple[float, int, float]:
    """(share explained, the lag k into ``played``, the scale a) of the best match ``a * played[k:k+n]``
    (see ``explained_share``); the lag and scale let a caller subtract the echo (``subtract_echo``)."""
    mic = np.asarray(mic, dtype=np.float64)
    played = np.asarray(played, dtype=np.float64)
    n = len(mic)
    if n == 0 or np.sqrt(np.mean(mic**2)) < QUIET_RMS:
        return 1.0, 0, 0.0
    if len(played) < n:
        return 0.0, 0, 0.0
    size = 1 << int(np.ceil(np.log2(len(played) + n)))
    corr = np.fft.irfft(np.fft.rfft(played, size) * np.conj(np.fft.rfft(mic, size)), size)[: len(played) - n + 1]
    csum = np.concatenate([[0.0], np.cumsum(played**2)])
    ref_energy = csum[n:] - csum[:-n]  # |played[k:k+n]|^2 for every lag k
    mic_energy = float(mic @ mic)
    ok = ref_energy > 1e-9 * n
    if not ok.any():
        return 0.0, 0, 0.0
    share = np.zeros_like(corr)
    share[ok] = corr[ok] ** 2 / (ref_energy[ok] * mic_energy)
    k = int(np.argmax(share))
    return float(min(1.0, share[k])), k, float(corr[k] / ref_energy[k]) if ok[k] else 0.0


def subtract_echo(mic: np.ndarray, played: np.ndarray, offset: int, scale: float) -> np.ndarray:
    """``mic`` less ``scale * played[i - offset]`` at each sample i that has a played sample under it:
    the single-path echo estimate removed from audio recorded while the reply played."""
    out = np.asarray(mic, dtype=np.float32).copy()
    lo, hi = max(0, offset), min(len(out), offset + len(played))
    if hi > lo:
        out[lo:hi] -= np.float32(scale) * played[lo - offset:hi - offset]
    return out
