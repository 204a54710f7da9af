"""Audio sources: converter and queue, the mic path on a fake sounddevice, files, WebSocket satellites,
and a real microphone recorded through a private PulseAudio server."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import threading
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import numpy as np
import pytest
import soundfile as sf
import uvicorn
from fastapi import FastAPI, WebSocket  # module level: FastAPI resolves the route's string annotations here

from assistant.config import VadConfig
from assistant.errors import AudioError
from assistant.vad import SpeechEnded, VadSegmenter
from pulse import pulse_server  # noqa: F401 - fixture
from assistant_services import sources
from assistant_services.sources import GAP_S, FileSource, FrameQueue, MicSource, PcmConverter, silence_pcm
from assistant_services.sources_ws import WebSocketSource
from speech import espeak_wav

GAP = silence_pcm(GAP_S)


def run(coro, timeout: float = 20.0):
    """Every test's event loop, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


def sine(rate: int, seconds: float, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


def peak_hz(pcm: bytes) -> float:
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    return float(np.argmax(np.abs(np.fft.rfft(x))) * 16000 / len(x))


# -- converter and queue ----------------------------------------------------------------------------


def test_converter_48k_stereo_odd_chunks():
    data = sine(48000, 1.0, channels=2).tobytes()
    conv, out, off, rng = PcmConverter(48000, 2), [], 0, np.random.default_rng(0)
    while off < len(data):
        n = int(rng.integers(1, 5000))  # odd sizes cut samples and frames in half
        out.append(conv(data[off:off + n]))
        off += n
    out.append(conv.flush())
    pcm = b"".join(out)
    assert len(pcm) == 2 * 16000
    assert abs(peak_hz(pcm) - 440) < 2
    assert PcmConverter(16000, 1)(b"\1\0\2") == b"\1\0"  # pass-through keeps the half sample


def test_queue_drops_oldest_and_logs_once_per_burst(caplog):
    async def main():
        q = FrameQueue(4, "t")
        for i in range(10):
            q.put(bytes([i]))
        assert q.dropped == 6
        assert [await q.get() for _ in range(4)] == [bytes([i]) for i in (6, 7, 8, 9)]
        q.put(b"x")  # caught up: the burst summary
        q.interrupt()
        assert await q.get() == b"x" and await q.get() is None
        with pytest.raises(asyncio.TimeoutError):
            await FrameQueue(2, "u").get(timeout=0.05)

    with caplog.at_level(logging.WARNING, logger="assistant_services.pcm"):
        run(main())
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("too slow" in m for m in msgs) == 1 and "t: dropped 6 audio blocks" in msgs


def test_a_consumer_cancelled_as_a_block_arrives_is_cancelled():
    """The race that hung the daemon's shutdown: the consumer's task is cancelled in the same loop turn
    as a block wakes it (a live microphone makes this likely); the cancellation must not be swallowed."""
    async def main():
        q = FrameQueue(4, "t")
        consumer = asyncio.create_task(q.get(timeout=5))
        await asyncio.sleep(0)  # the consumer now waits for a block
        q.put(b"x")  # wakes it ...
        consumer.cancel()  # ... as it is cancelled
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert await q.get(timeout=1) == b"x"  # the block stays queued

    run(main())


# -- microphone on a fake sounddevice -------------------------------------------------------------


class FakeStream:
    """Calls the callback from its own thread with blocks of a 440 Hz sine, paced in real time."""

    def __init__(self, sd: "FakeSD", samplerate, blocksize, device, channels, dtype, callback, finished_callback):
        assert channels == 1 and dtype == "int16"
        self.sd, self.rate, self.block, self.device = sd, int(samplerate), int(blocksize), device
        self.callback, self.finished_callback = callback, finished_callback
        self.signal = sine(self.rate, 30.0).tobytes()
        self.limit = int(sd.stream_seconds * self.rate) if sd.stream_seconds else None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()

    def _run(self):
        sent, t0 = 0, time.monotonic()
        while not self._stop.is_set() and self.device in self.sd.present():
            n = self.block if self.limit is None else min(self.block, self.limit - sent)
            if n <= 0:
                break
            off = (sent * 2) % (len(self.signal) - 2 * n)
            self.callback(self.signal[off:off + 2 * n], n, None, 0)
            sent += n
            time.sleep(max(0.0, t0 + sent / self.rate - time.monotonic()))
        if not self._stop.is_set():
            self.finished_callback()

    def close(self, ignore_errors=True):
        self._stop.set()
        self.thread.join(timeout=2)


class FakeSD:
    class PortAudioError(Exception):
        pass

    def __init__(self):
        self.devices: list[dict[str, Any]] = [{"name": "Built-in Output", "max_input_channels": 0,
                                               "default_samplerate": 48000.0, "rates": (48000,)}]
        self.refreshes = 0
        self.stream_seconds = 0.0  # 0: endless streams
        self.streams: list[FakeStream] = []

    def add_mic(self, name="USB Mic", rates=(16000, 44100, 48000)):
        self.devices.append({"name": name, "max_input_channels": 1, "default_samplerate": float(max(rates)),
                             "rates": tuple(rates)})

    def present(self) -> list[int]:
        return list(range(len(self.devices)))

    def query_devices(self, device=None, kind=None):
        if kind == "input":
            for i, d in enumerate(self.devices):
                if d["max_input_channels"]:
                    return dict(d, index=i)
            raise self.PortAudioError("Error querying device -1")
        return [dict(d) for d in self.devices]

    def check_input_settings(self, device, channels, dtype, samplerate):
        if samplerate not in self.devices[device]["rates"]:
            raise self.PortAudioError("Invalid sample rate [PaErrorCode -9997]")

    def RawInputStream(self, **kw):
        if kw["samplerate"] not in self.devices[kw["device"]]["rates"]:
            raise self.PortAudioError("Invalid sample rate")
        s = FakeStream(self, **kw)
        self.streams.append(s)
        return s

    def _terminate(self):
        self.refreshes += 1

    def _initialize(self):
        pass


@pytest.fixture()
def fake_sd(monkeypatch) -> FakeSD:
    fake = FakeSD()
    monkeypatch.setattr(sources, "sd", fake)
    return fake


async def collect(src, out: list[bytes]) -> None:
    async for chunk in src.frames():
        out.append(chunk)


def test_mic_waits_for_a_missing_device_then_runs(fake_sd, caplog):
    async def main():
        src, out = MicSource("usb mic", reopen_interval_s=0.05), []
        task = asyncio.create_task(collect(src, out))
        await until(lambda: src.state() == "waiting_for_device", 2, "waiting_for_device")
        await until(lambda: fake_sd.refreshes >= 4, 2, "retries")  # re-enumerated on every retry
        assert out == []
        fake_sd.add_mic("USB Mic (hw:1,0)")
        await until(lambda: sum(map(len, out)) >= 2 * 4800, 3, "audio after the device appeared")
        assert src.state() == "running" and src.opened_rate_hz == 16000
        await src.close()
        await asyncio.wait_for(task, 3)
        assert src.state() == "stopped"
        assert abs(peak_hz(b"".join(out)[: 2 * 4800]) - 440) < 5

    with caplog.at_level(logging.INFO, logger="assistant_services.sources"):
        run(main())
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("no input device matching" in m for m in msgs) == 1, msgs  # logged once, not per retry
    assert sum("recording from 'USB Mic (hw:1,0)'" in m for m in msgs) == 1


def test_mic_44k_only_device_is_resampled(fake_sd):
    fake_sd.add_mic("Cheap 44k mic", rates=(44100,))
    fake_sd.stream_seconds = 1.0  # the stream "ends" after 1 s; MicSource flushes, inserts a gap, reopens

    async def main():
        src, out = MicSource("cheap", reopen_interval_s=0.05), []
        task = asyncio.create_task(collect(src, out))
        await until(lambda: GAP in out, 4, "the end of the first 1 s stream")
        await src.close()
        await asyncio.wait_for(task, 3)
        return src, b"".join(out[: out.index(GAP)])

    src, pcm = run(main())
    assert src.opened_rate_hz == 44100 and fake_sd.streams[0].rate == 44100
    assert abs(len(pcm) / 2 - 16000) <= 160, len(pcm) / 2  # 1 s -> 16000 samples +- 1 %
    assert abs(peak_hz(pcm) - 440) < 3


def test_mic_unplugged_reopens_when_back(fake_sd, caplog):
    fake_sd.add_mic()

    async def main():
        src, out = MicSource("", reopen_interval_s=0.05), []
        task = asyncio.create_task(collect(src, out))
        await until(lambda: len(out) >= 3, 3, "audio")
        mic = fake_sd.devices.pop()  # unplug: the stream finishes, the device is gone
        await until(lambda: src.state() == "waiting_for_device", 2, "waiting after unplug")
        await until(lambda: GAP in out, 2, "the gap that closes an utterance in progress")
        await asyncio.sleep(0.2)
        fake_sd.devices.append(mic)
        n = len(out)
        await until(lambda: len(out) >= n + 3 and src.state() == "running", 3, "audio after replug")
        await src.close()
        await asyncio.wait_for(task, 3)
        return len(fake_sd.streams)

    with caplog.at_level(logging.INFO, logger="assistant_services.sources"):
        assert run(main()) == 2
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("device unplugged" in m for m in msgs) == 1


# -- files ----------------------------------------------------------------------------------------


def test_file_source_folder(tmp_path):
    espeak_wav("hello there", tmp_path / "b.wav")  # 22.05 kHz mono
    sf.write(tmp_path / "a.wav", sine(48000, 0.5, channels=2), 48000, subtype="PCM_16")
    (tmp_path / "notes.txt").write_text("not audio")
    src = FileSource(tmp_path, gap_s=0.25)
    assert [p.name for p in src.files()] == ["a.wav", "b.wav"]

    async def main():
        out = []
        await collect(src, out)
        return b"".join(out)

    pcm = run(main())
    assert src.state() == "finished"
    b_len = int(round(sf.info(tmp_path / "b.wav").duration * 16000))
    assert abs(len(pcm) // 2 - (8000 + 4000 + b_len + 4000)) <= 2
    assert abs(peak_hz(pcm[:16000]) - 440) < 3
    assert pcm[16000:24000] == bytes(8000)  # the gap after a.wav
    assert pcm[-8000:] == bytes(8000)  # and after the last file, so the VAD closes the utterance


def test_file_source_realtime_and_errors(tmp_path):
    sf.write(tmp_path / "x.wav", sine(16000, 0.4), 16000, subtype="PCM_16")

    async def main():
        out, t0 = [], time.monotonic()
        await collect(FileSource(tmp_path / "x.wav", realtime=True, gap_s=0.2), out)
        return time.monotonic() - t0

    assert 0.55 <= run(main()) < 1.5  # 0.6 s of audio paced like a microphone
    missing = FileSource(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="does not exist"):
        run(collect(missing, []))
    assert missing.state().startswith("error: ")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioError, match="no .wav files"):
        FileSource(tmp_path / "empty").files()

    async def closing():
        src, out = FileSource(tmp_path / "x.wav", realtime=True), []
        task = asyncio.create_task(collect(src, out))
        await until(lambda: len(out) >= 2, 2, "first blocks")
        await src.close()
        await asyncio.wait_for(task, 1)
        return src.state()

    assert run(closing()) == "stopped"


# -- WebSocket satellites --------------------------------------------------------------------------


@asynccontextmanager
async def ws_app(source: WebSocketSource) -> AsyncIterator[str]:
    """A real FastAPI app on uvicorn, 127.0.0.1, a free port; yields the ws:// URL."""
    app = FastAPI()

    @app.websocket("/satellite")
    async def satellite(websocket: WebSocket) -> None:
        await source.serve(websocket)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await until(lambda: server.started or task.done(), 5, "uvicorn start")
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/satellite"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5)
        sock.close()


def test_websocket_48k_stereo_is_16k_mono():
    from websockets.asyncio.client import connect

    async def main():
        src, out = WebSocketSource(), []
        task = asyncio.create_task(collect(src, out))
        async with ws_app(src) as url:
            async with connect(url, open_timeout=5, close_timeout=2) as ws:
                await ws.send(json.dumps({"format": "pcm_s16le", "sample_rate_hz": 48000, "channels": 2}))
                ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert ack["ok"] is True and ack["name"].startswith("ws:127.0.0.1:")
                data, off, sizes = sine(48000, 1.0, channels=2).tobytes(), 0, itertools.cycle([1001, 3, 7777])
                while off < len(data):  # odd sizes: half samples and half frames wait for the next message
                    n = next(sizes)
                    await ws.send(data[off:off + n])
                    off += n
                await until(lambda: src.state() == "running", 2, "running")
                busy = await connect(url, open_timeout=5, close_timeout=2)  # a second satellite is refused
                assert "another satellite" in json.loads(await asyncio.wait_for(busy.recv(), 5))["error"]
                await asyncio.wait_for(busy.wait_closed(), 5)
                assert busy.close_code == 1013
            await until(lambda: GAP in out, 5, "the gap after the satellite left")
            assert src.state() == "waiting_for_device" and src.name == ack["name"]
        await src.close()
        await asyncio.wait_for(task, 2)
        return b"".join(out[: out.index(GAP)])

    pcm = run(main())
    assert abs(len(pcm) // 2 - 16000) <= 160, len(pcm) // 2
    assert abs(peak_hz(pcm) - 440) < 3


@pytest.mark.parametrize("header, field", [
    ({"format": "opus", "sample_rate_hz": 16000, "channels": 1}, "format"),
    ({"format": "pcm_s16le", "sample_rate_hz": 96000, "channels": 1}, "sample_rate_hz"),
    ({"format": "pcm_s16le", "sample_rate_hz": 16000, "channels": 6}, "channels"),
    (b"\0\0\0\0", "header"),
    ("not json", "header"),
])
def test_websocket_bad_header_closes_1003(header, field):
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async def main():
        src = WebSocketSource()
        async with ws_app(src) as url:
            async with connect(url, open_timeout=5, close_timeout=2) as ws:
                await ws.send(header if isinstance(header, (bytes, str)) else json.dumps(header))
                err = json.loads(await asyncio.wait_for(ws.recv(), 5))
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                return err, ws.close_code, ws.close_reason, src.state()

    err, code, reason, state = run(main())
    assert code == 1003 and err["field"] == field and err["allowed"], err
    assert field == "header" or field in err["error"]
    assert err["error"].startswith(reason[:40]) and state == "waiting_for_device"
    if field == "sample_rate_hz":
        assert err["allowed"] == "8000..48000" and "96000" in err["error"]


# -- a real microphone: PulseAudio virtual source -> ALSA pulse plugin -> PortAudio -> MicSource -----


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x ** 2))) if len(x) else 0.0


@pytest.mark.slow
def test_real_microphone_through_pulseaudio(pulse_server, tmp_path):  # noqa: F811 - the fixture
    wav = espeak_wav("Turn on the kitchen light please", tmp_path / "say.wav")
    speech_s = sf.info(wav).duration
    timings: dict[str, float] = {"server_start_s": pulse_server.started_in_s}

    async def main():
        src, out = MicSource("pulse", reopen_interval_s=0.5), []
        t0 = time.monotonic()
        task = asyncio.create_task(collect(src, out))
        await until(lambda: src.state() == "running", 8, "the stream to open")
        timings["stream_open_s"] = time.monotonic() - t0
        await until(lambda: out, 8, "the first PortAudio callback (about 1.3 s on some machines)")
        timings["first_audio_s"] = time.monotonic() - t0
        await until(lambda: sum(map(len, out)) >= 2 * 8000, 5, "0.5 s of silence before playing")
        n_before = len(out)
        timings["paplay_s"] = await asyncio.to_thread(pulse_server.play_into_mic, wav)
        await asyncio.sleep(0.6)  # the tail and the device latency
        await src.close()
        await asyncio.wait_for(task, 5)
        timings["total_s"] = time.monotonic() - t0
        return src, b"".join(out[:n_before]), b"".join(out[n_before:])

    src, before, after = run(main(), timeout=40)
    print("real mic timings:", {k: round(v, 2) for k, v in timings.items()})
    assert src.opened_rate_hz == 16000
    assert rms(before) < 30, rms(before)  # the null sink's monitor: near digital silence
    windows = [rms(after[i:i + 3200]) for i in range(0, len(after) - 3199, 3200)]  # 100 ms windows
    loud = [w for w in windows if w > 500]
    assert max(windows) > 2000, windows
    assert abs(len(loud) * 0.1 - speech_s) < 1.0, (len(loud), speech_s)
    vad = VadSegmenter(VadConfig())
    segments = [e for e in vad.feed(before + after) + vad.flush() if isinstance(e, SpeechEnded)]
    assert len(segments) == 1, segments
