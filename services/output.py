"""The output device: spoken replies, and what lets the microphone tell them from the user.

``play(wave, rate, device, stop)`` writes a sound in blocks of ``BLOCK_S`` so a stop is heard within one
block; the ring (services/timers.py) and the ``Speaker`` both use it. ``Speaker.say(text)`` synthesizes
the reply with a voice spec (``[output] voice``, assistant/synth: espeak-ng by default) and plays it on
a thread of its own; ``stop()`` silences it. While it plays, it keeps what it played on a timeline
(``played_between``) so the microphone path can ask ``is_echo(window, end_time)``: whether a window of
microphone audio is only the reply coming back (assistant/echo.py), or someone speaking over it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import numpy as np

from assistant.echo import QUIET_RMS, best_alignment
from assistant.units import TARGET_RATE_HZ

log = logging.getLogger(__name__)

BLOCK_S = 0.02
# Output + input latency searched for the echo: ~0.1-0.3 s through PulseAudio, but the first streams a
# process opens through ALSA's pulse plugin can stall ~1.6 s, microphone included (the search is an FFT
# over this much played audio: ~3 ms per check)
MAX_LATENCY_S = 2.5
TAIL_S = 0.4  # after the last block, the echo is still on its way to the microphone


def output_device(spec: str):
    return int(spec) if spec.isdigit() else (spec or None)


def play(wave: np.ndarray, rate: int, device: str, stop: threading.Event,
         on_block: Callable[[int], None] | None = None) -> None:
    """Play ``wave`` (float32 mono) until it ends or ``stop`` is set. ``on_block(samples_written)``
    after each block (the timeline of what was played)."""
    from assistant_services.sources import sd

    if sd is None:
        raise RuntimeError("sounddevice cannot load libportaudio2 (install it: apt install libportaudio2)")
    block = int(rate * BLOCK_S)
    # latency "low": a short device buffer, so a stop is heard at once (and, through ALSA's pulse plugin, the
    # default high latency also stalled a microphone stream opened beside it for seconds)
    with sd.OutputStream(samplerate=rate, channels=1, dtype="float32", device=output_device(device),
                         latency="low") as out:
        done = 0
        while done < len(wave) and not stop.is_set():
            chunk = wave[done:done + block]
            out.write(np.ascontiguousarray(chunk, dtype=np.float32).reshape(-1, 1))
            done += len(chunk)
            if on_block is not None:
                on_block(done)
        if stop.is_set():
            out.abort()  # drop what is buffered: a stop is heard now, not after the device's buffer


class Speaker:
    """Says replies through the output device, one at a time (a new reply replaces the one playing)."""

    def __init__(self, *, voice: str, device: str = "", echo_share: float = 0.85,
                 synthesize: Callable[[str], np.ndarray] | None = None) -> None:
        self.voice, self.device, self.echo_share = voice, device, echo_share
        self._synthesize = synthesize or self._synth
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wave = np.zeros(0, np.float32)
        self._t0 = 0.0  # monotonic time at which the first block was written
        self._written = 0
        self._ended_at = 0.0  # monotonic time the last reply stopped or ended
        self.on_event: Callable[..., None] = lambda kind, **data: None
        self.ready = threading.Event()  # set once warm_up has opened the output

    def _synth(self, text: str) -> np.ndarray:
        from assistant.synth.voices import synthesize

        return synthesize(self.voice, text)

    @property
    def playing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def ended_at(self) -> float:
        """Monotonic time the last reply ended or was stopped."""
        return self._ended_at

    def recently_played(self, now: float | None = None) -> bool:
        """Playing, or stopped so recently that its echo may still arrive."""
        now = time.monotonic() if now is None else now
        return self.playing or now - self._ended_at < TAIL_S

    def say(self, text: str) -> None:
        self.stop()
        with self._lock:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(text, self._stop), name="speak", daemon=True)
            self._thread.start()

    def stop(self) -> bool:
        """Silence the reply now (the player aborts its stream within one block; closing the device
        finishes on the player's thread); True if one was playing."""
        with self._lock:
            was = self.playing
            self._stop.set()
        return was

    def join(self, timeout_s: float) -> bool:
        """Wait until the reply in flight has ended and its device is closed; True if it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        return not self.playing

    def _run(self, text: str, stop: threading.Event) -> None:
        try:
            wave = self._synthesize(text)
            if stop.is_set():
                return
            self._wave, self._t0, self._written = wave, time.monotonic(), 0
            self.on_event("speaking", text=text, seconds=round(len(wave) / TARGET_RATE_HZ, 2))
            play(wave, TARGET_RATE_HZ, self.device, stop, on_block=self._mark)
            self.on_event("speaking_ended", interrupted=stop.is_set())
        except Exception as exc:  # noqa: BLE001 - no device, no voice: the reply is still in the turn
            log.warning("could not speak the reply through %r with %s: %s (set [output] device and voice, or "
                        "speak = false)", self.device or "the default output", self.voice, exc)
        finally:
            self._ended_at = time.monotonic()

    @property
    def written(self) -> int:
        """Samples of the last reply handed to the device (all of it, or up to the stop)."""
        return self._written

    def _mark(self, written: int) -> None:
        self._written = written
        # A blocking write returns when the device has taken the samples before it: the timeline is
        # re-anchored at every block, so a stall of the device (the first stream a process opens through
        # ALSA's pulse plugin stalls ~1.6 s) shifts it instead of breaking the echo comparison.
        self._t0 = time.monotonic() - written / TARGET_RATE_HZ

    def warm_up(self) -> None:
        """Open the output once with a moment of silence, in the background, once the microphone is open:
        the first time a process plays while it records through ALSA's pulse plugin, both can stall for
        seconds, which is better at start than on the first reply. Sets ``ready``."""
        def run():
            try:
                play(np.zeros(int(0.1 * TARGET_RATE_HZ), np.float32), TARGET_RATE_HZ, self.device, threading.Event())
            except Exception as exc:  # noqa: BLE001 - reported again, with the fix, when a reply is said
                log.warning("the output device %r cannot be opened: %s", self.device or "default", exc)
            finally:
                self.ready.set()

        threading.Thread(target=run, name="speak-warm-up", daemon=True).start()

    @property
    def played(self) -> np.ndarray:
        """The last reply's samples (16 kHz): what the microphone may hear back."""
        return self._wave

    def align(self, window: np.ndarray, end_time: float) -> tuple[float, int | None, float]:
        """(share of ``window`` explained by what was played, the played sample under the window's first
        sample, the echo's scale) for 16 kHz microphone audio that ended at monotonic ``end_time``,
        searched over every latency up to MAX_LATENCY_S; (share, None, 0) when nothing played is there."""
        n = len(window)
        end = int((end_time - self._t0) * TARGET_RATE_HZ)  # the played sample at the window's end, zero latency
        lo, hi = max(0, end - n - int(MAX_LATENCY_S * TARGET_RATE_HZ)), min(len(self._wave), end + int(0.05 * TARGET_RATE_HZ))
        if hi - lo < n:  # the window is mostly after the reply's end: only silence there is still "echo"
            quiet = not n or float(np.sqrt(np.mean(np.square(window)))) < QUIET_RMS
            return (1.0 if quiet else 0.0), None, 0.0
        share, k, scale = best_alignment(window, self._wave[lo:hi])
        return share, lo + k, scale

    def is_echo(self, window: np.ndarray, end_time: float) -> bool:
        return self.align(window, end_time)[0] >= self.echo_share
