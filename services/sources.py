"""Audio sources behind one small interface: chunks of 16 kHz mono int16 PCM for an asyncio consumer.

- ``MicSource``: a sounddevice input stream; a missing or unplugged device is waited for, not fatal.
- ``FileSource``: a WAV file or a folder of them, optionally paced in real time.
- ``WebSocketSource`` (``services/sources_ws.py``): one satellite microphone at a time.

Chunks may have any size; the VAD re-frames them. ``FrameQueue`` and ``PcmConverter`` (shared with
the WebSocket source) live in ``services/pcm.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Protocol

import numpy as np

from assistant.audio import load_audio
from assistant.errors import AssistantError, AudioError
from assistant.units import TARGET_RATE_HZ
from assistant_services.pcm import GAP_S, FrameQueue, PcmConverter, silence_pcm

__all__ = ["AudioSource", "FileSource", "MicSource", "FrameQueue", "PcmConverter", "GAP_S",
           "silence_pcm", "find_input_device", "refresh_devices"]

_SD_ERROR = ""
try:
    import sounddevice as sd
except OSError as _e:  # libportaudio2 missing: files and satellites still work
    sd = None
    _SD_ERROR = str(_e)

log = logging.getLogger(__name__)

_MAX_FILE_S = 3600.0  # FileSource: the CLI's 30 s cap is for uploads, not for test recordings


class AudioSource(Protocol):
    name: str

    def state(self) -> str:  # "running" | "waiting_for_device" | "finished" | "stopped" | "error: ..."
        ...

    # Implemented as ``async def frames(self)`` with ``yield``: calling it returns the iterator.
    def frames(self) -> AsyncIterator[bytes]:  # 16 kHz mono int16 chunks, any size
        ...

    async def close(self) -> None:
        ...


# -- microphone ---------------------------------------------------------------------------------------


def refresh_devices() -> None:
    """Make PortAudio enumerate devices again (it lists them once, at initialization).

    sounddevice has no public call for this; ``_terminate(); _initialize()`` is the documented-in-issues
    way (spatialaudio/python-sounddevice#125). Only safe with no stream open, which is when we call it.
    """
    if sd is None or not hasattr(sd, "_terminate"):
        return
    try:
        sd._terminate()
        sd._initialize()
    except Exception as e:  # noqa: BLE001 - a failed refresh is one more "device missing" retry
        log.debug("PortAudio refresh failed: %s", e)


def find_input_device(spec: str) -> tuple[int, dict[str, Any]] | None:
    """(index, info) of the input device named by ``spec`` (index, exact name, or name substring)."""
    try:
        if not spec:
            info = dict(sd.query_devices(kind="input"))  # raises when there is no default input
            return int(info["index"]), info
        devices = [dict(d, index=i) for i, d in enumerate(sd.query_devices())]
    except (sd.PortAudioError, ValueError):
        return None
    inputs = [d for d in devices if d.get("max_input_channels", 0) > 0]
    s = spec.strip()
    if s.isdigit():
        hit = [d for d in inputs if d["index"] == int(s)]
    else:
        hit = ([d for d in inputs if d["name"].lower() == s.lower()]
               or [d for d in inputs if s.lower() in d["name"].lower()])
    return (hit[0]["index"], hit[0]) if hit else None


class MicSource:
    """A sounddevice ``RawInputStream`` (int16, mono) as 16 kHz chunks, reopened whenever it goes away.

    ``state()`` is "stopped" until ``frames()`` runs and after ``close()``. One-shot: after ``close()``,
    ``frames()`` ends at once. Iterate ``frames()`` from one task only.
    """

    def __init__(self, device: str = "", reopen_interval_s: float = 2.0, block_ms: int = 30, *,
                 queue_s: float = 3.0, stall_timeout_s: float = 5.0) -> None:
        self.device = device
        self.name = f"mic:{device or 'default'}"
        self.reopen_interval_s = reopen_interval_s
        self.block_ms = block_ms
        # The first PortAudio callback can come ~1.3 s after opening (ALSA->PulseAudio): keep this well above.
        self.stall_timeout_s = stall_timeout_s
        self.overflows = 0  # PortAudio input-overflow flags seen (audio lost before it reached us)
        self.opened_rate_hz = 0
        self._queue = FrameQueue(int(queue_s * 1000 / block_ms), self.name)
        self._state = "stopped"
        self._closed = False
        self._closing = asyncio.Event()
        self._stream: Any = None
        self._generation = 0  # callbacks of an older stream are ignored
        self._lock = threading.Lock()

    @property
    def dropped(self) -> int:
        return self._queue.dropped

    def state(self) -> str:
        return self._state

    def _set_state(self, state: str, message: str = "", level: int = logging.INFO) -> None:
        # Log transitions only: a device missing for an hour is one line, not 1800.
        if state != self._state:
            self._state = state
            if message:
                log.log(level, "%s: %s", self.name, message)

    async def frames(self) -> AsyncIterator[bytes]:
        if sd is None:
            self._set_state(f"error: PortAudio is not available ({_SD_ERROR})", "PortAudio library missing "
                            "(apt-get install libportaudio2)", logging.ERROR)
            return
        loop = asyncio.get_running_loop()
        attempts = 0
        try:
            while not self._closed:
                err = await asyncio.to_thread(self._open_blocking, loop, attempts > 0)
                attempts += 1
                if self._closed:
                    break
                if err is not None:
                    await self._sleep(self.reopen_interval_s)
                    continue
                async for block in self._drain():
                    yield block
                await self._close_stream()
                if not self._closed:
                    yield silence_pcm(GAP_S)  # the VAD must not glue speech across the outage
        finally:
            self._closed = True  # one-shot; also tells an open still running in its thread to undo itself
            await self._close_stream()
            self._set_state("stopped", "stopped")

    async def close(self) -> None:
        self._closed = True
        self._closing.set()
        self._queue.interrupt()
        await self._close_stream()
        self._set_state("stopped", "stopped")

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _drain(self) -> AsyncIterator[bytes]:
        while True:
            try:
                block = await self._queue.get(timeout=self.stall_timeout_s)
            except asyncio.TimeoutError:
                self._set_state("error: stream stalled", f"no audio for {self.stall_timeout_s:g} s; reopening",
                                logging.WARNING)
                return
            if block is None:
                if not self._closed and self._state == "running":
                    self._set_state("waiting_for_device", "input stream ended (device unplugged?); reopening",
                                    logging.WARNING)
                return
            yield block

    def _open_blocking(self, loop: asyncio.AbstractEventLoop, refresh: bool) -> str | None:
        """Find and open the device (runs in a worker thread: PortAudio calls can block). None = opened."""
        if refresh:
            refresh_devices()
        found = find_input_device(self.device)
        if found is None:
            self._set_state("waiting_for_device", f"no input device matching {self.device or '(default)'!r}; "
                            f"retrying every {self.reopen_interval_s:g} s", logging.WARNING)
            return "missing"
        index, info = found
        try:
            rate = TARGET_RATE_HZ
            try:
                sd.check_input_settings(device=index, channels=1, dtype="int16", samplerate=TARGET_RATE_HZ)
            except (sd.PortAudioError, ValueError):
                rate = int(info["default_samplerate"])  # e.g. a 44.1/48 kHz-only USB mic: resample here
            with self._lock:
                self._generation += 1
                gen = self._generation
            convert = PcmConverter(rate)
            stream = sd.RawInputStream(
                samplerate=rate, blocksize=rate * self.block_ms // 1000, device=index, channels=1,
                dtype="int16", callback=self._make_callback(loop, gen, convert),
                finished_callback=self._make_finished(loop, gen, convert))
            stream.start()
            if self._closed:  # closed (or cancelled) while we were opening: nobody would close it
                stream.close(ignore_errors=True)
                return "closed"
        except (sd.PortAudioError, ValueError, OSError) as e:
            self._set_state(f"error: {e}", f"cannot open {info['name']!r}: {e}; retrying every "
                            f"{self.reopen_interval_s:g} s", logging.WARNING)
            return str(e)
        self._stream = stream
        self.opened_rate_hz = rate
        self._queue.clear_interrupt()
        note = "" if rate == TARGET_RATE_HZ else f", resampled {rate} -> {TARGET_RATE_HZ} Hz"
        self._set_state("running", f"recording from {info['name']!r} (index {index}){note}")
        return None

    def _make_callback(self, loop: asyncio.AbstractEventLoop, gen: int,
                       convert: PcmConverter) -> Callable[..., None]:
        def callback(indata: Any, frames: int, time_info: Any, status: Any) -> None:
            # PortAudio's thread: convert (tens of microseconds) and hand over; never block here.
            if status:
                self.overflows += 1
            out = convert(bytes(indata))
            if out:
                self._from_thread(loop, self._deliver, gen, out)

        return callback

    def _make_finished(self, loop: asyncio.AbstractEventLoop, gen: int,
                       convert: PcmConverter) -> Callable[[], None]:
        def finished() -> None:
            # PortAudio's thread, after the last callback: hand over what the resampler still holds.
            tail = convert.flush()
            if tail:
                self._from_thread(loop, self._deliver, gen, tail)
            self._from_thread(loop, self._stream_finished, gen)

        return finished

    @staticmethod
    def _from_thread(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: we are shutting down
            pass

    def _deliver(self, gen: int, block: bytes) -> None:
        if gen == self._generation and not self._closed:
            self._queue.put(block)

    def _stream_finished(self, gen: int) -> None:
        if gen == self._generation:
            self._queue.interrupt()

    async def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        with self._lock:
            self._generation += 1  # its late callbacks (and its finished_callback) are now ignored
        try:
            # Bounded: a wedged driver must not hang shutdown; the thread is left behind if it does.
            await asyncio.wait_for(asyncio.to_thread(stream.close, ignore_errors=True), 5.0)
        except asyncio.TimeoutError:
            log.warning("%s: closing the input stream took over 5 s; abandoned", self.name)


# -- files ----------------------------------------------------------------------------------------


class FileSource:
    """A WAV file or a folder of WAVs (sorted by name) as one stream, ``gap_s`` of silence after each."""

    def __init__(self, path: str | os.PathLike[str], *, realtime: bool = False, gap_s: float = 1.0,
                 block_ms: int = 30) -> None:
        self.path = Path(path).expanduser()
        self.name = f"file:{self.path.name}"
        self.realtime = realtime
        self.gap_s = gap_s
        self.block_bytes = 2 * TARGET_RATE_HZ * block_ms // 1000
        self._state = "stopped"
        self._closed = False

    def state(self) -> str:
        return self._state

    def files(self) -> list[Path]:
        if self.path.is_dir():
            found = sorted(p for p in self.path.iterdir() if p.suffix.lower() == ".wav" and p.is_file())
            if not found:
                raise AudioError(f"no .wav files in {self.path}", fix="put WAV files there or change source.path")
            return found
        if not self.path.is_file():
            raise AudioError(f"audio source {self.path} does not exist", fix="check source.path")
        return [self.path]

    async def frames(self) -> AsyncIterator[bytes]:
        try:
            files = self.files()
        except AssistantError as e:
            self._state = f"error: {e}"
            log.error("%s: %s", self.name, e)
            raise
        if self._closed:
            return
        self._state = "running"
        loop = asyncio.get_running_loop()
        t0, sent = loop.time(), 0
        for path in files:
            try:
                # Decoding a long file takes a moment: keep the loop responsive.
                audio = await asyncio.to_thread(load_audio, path, max_duration_s=_MAX_FILE_S, min_duration_s=1e-6)
            except AudioError as e:
                log.error("%s: skipping %s: %s", self.name, path.name, e)
                continue
            pcm = np.clip(np.rint(audio.samples * 32768.0), -32768, 32767).astype("<i2").tobytes()
            log.info("%s: playing %s (%.1f s)", self.name, path.name, audio.duration_s)
            for data in (pcm, silence_pcm(self.gap_s)):
                for off in range(0, len(data), self.block_bytes):
                    if self._closed:
                        self._state = "stopped"
                        return
                    block = data[off:off + self.block_bytes]
                    sent += len(block) // 2
                    # Real time: hand out a block once the clock has reached its end, like a mic would.
                    await asyncio.sleep(max(0.0, t0 + sent / TARGET_RATE_HZ - loop.time()) if self.realtime else 0)
                    yield block
        self._state = "finished"
        log.info("%s: finished", self.name)

    async def close(self) -> None:
        self._closed = True
        if self._state != "finished":
            self._state = "stopped"
