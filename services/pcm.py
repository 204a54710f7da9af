"""PCM plumbing shared by the audio sources: format conversion to 16 kHz mono int16 and a bounded queue.

``PcmConverter`` is streaming (block edges leave no clicks); ``FrameQueue`` drops the oldest block when the
consumer falls behind, because a live assistant wants the newest audio.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import numpy as np
import soxr

from assistant.units import TARGET_RATE_HZ

log = logging.getLogger(__name__)

GAP_S = 1.0  # silence pushed when an input goes away mid-stream, so the VAD closes the utterance


def silence_pcm(seconds: float) -> bytes:
    return bytes(2 * int(round(seconds * TARGET_RATE_HZ)))


class PcmConverter:
    """Interleaved int16 PCM at any rate/channel count -> 16 kHz mono int16, one block at a time.

    A half sample (or half frame) at the end of a block waits for the next one; the resampler keeps its
    filter state between blocks.
    """

    def __init__(self, rate_hz: int, channels: int = 1) -> None:
        self.rate_hz, self.channels = rate_hz, channels
        self._frame_bytes = 2 * channels
        self._carry = b""
        self._resampler = (soxr.ResampleStream(rate_hz, TARGET_RATE_HZ, 1, dtype="float32", quality="HQ")
                           if rate_hz != TARGET_RATE_HZ else None)

    def __call__(self, data: bytes) -> bytes:
        data = self._carry + data if self._carry else bytes(data)
        whole = len(data) // self._frame_bytes * self._frame_bytes
        self._carry = data[whole:]
        if not whole:
            return b""
        if self.channels == 1 and self._resampler is None:
            return data[:whole]
        x = np.frombuffer(data, dtype="<i2", count=whole // 2).reshape(-1, self.channels)
        mono = x.mean(axis=1, dtype=np.float32) / 32768.0 if self.channels > 1 else x[:, 0] / np.float32(32768.0)
        return self._resample(mono.astype(np.float32), last=False)

    def flush(self) -> bytes:
        """End of input: what the resampler still holds (its filter delay)."""
        self._carry = b""
        return self._resample(np.zeros(0, np.float32), last=True) if self._resampler is not None else b""

    def _resample(self, mono: np.ndarray, last: bool) -> bytes:
        y = self._resampler.resample_chunk(mono, last=last) if self._resampler is not None else mono
        return np.clip(np.rint(y * 32768.0), -32768, 32767).astype("<i2").tobytes()


class FrameQueue:
    """Bounded queue of PCM blocks, filled in the event loop (threads use ``loop.call_soon_threadsafe``).

    When full the OLDEST block goes: a live assistant wants the newest audio. Drops are counted and
    logged once per burst (a warning when it starts, a summary when the consumer catches up).
    ``interrupt()`` wakes the consumer without data (stream died, source closed).
    """

    def __init__(self, max_blocks: int, label: str) -> None:
        self.max_blocks = max(1, max_blocks)
        self.label = label
        self.dropped = 0
        self._burst = 0
        self._items: deque[bytes] = deque()
        self._ready = asyncio.Event()
        self._interrupted = False

    def put(self, block: bytes) -> None:
        if not block:
            return
        if len(self._items) >= self.max_blocks:
            self._items.popleft()
            self.dropped += 1
            if not self._burst:
                log.warning("%s: the consumer is too slow, dropping the oldest audio", self.label)
            self._burst += 1
        elif self._burst:
            log.warning("%s: dropped %d audio blocks", self.label, self._burst)
            self._burst = 0
        self._items.append(block)
        self._ready.set()

    def interrupt(self) -> None:
        self._interrupted = True
        self._ready.set()

    def clear_interrupt(self) -> None:
        self._interrupted = False

    async def get(self, timeout: float | None = None) -> bytes | None:
        """The next block; None once interrupted (data queued before the interrupt comes first).

        Raises ``asyncio.TimeoutError`` when nothing arrives within ``timeout`` seconds.
        """
        while not self._items:
            if self._interrupted:
                return None
            self._ready.clear()
            # not asyncio.wait_for: before Python 3.12 it returns the result instead of raising when its
            # task is cancelled as the awaited event is set, which a microphone does every 30 ms, and the
            # daemon's shutdown then waited forever on a source task that had swallowed its cancellation
            waiter = asyncio.ensure_future(self._ready.wait())
            try:
                done, _ = await asyncio.wait({waiter}, timeout=timeout)
            finally:
                waiter.cancel()
            if not done:
                raise asyncio.TimeoutError
        return self._items.popleft()
