"""Home Assistant's Wyoming protocol: the ``wyoming`` package's own client against a real daemon on
127.0.0.1 (shipped bundle): describe, transcribe espeak-ng speech sent as 44.1 kHz stereo chunks,
synthesize, and the errors a bad request gets without losing the connection."""

from __future__ import annotations

import asyncio
import json
import os

import httpx
import numpy as np
import pytest

from assistant.config import demo_bundle_dir
from assistant.synth.voices import synthesize
from daemon_proc import DaemonProcess

DEMO = demo_bundle_dir()
pytestmark = pytest.mark.skipif(not (DEMO / "manifest.json").is_file() and not os.environ.get("CI"),
                                reason="no shipped bundle built yet (python -m bench.real.build)")
SAID = "set a timer for ten minutes"


def test_home_assistant_s_client_describes_transcribes_and_synthesizes(tmp_path):
    import soxr
    from wyoming.asr import Transcribe, Transcript
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.error import Error
    from wyoming.info import Describe, Info
    from wyoming.tts import Synthesize

    d = DaemonProcess(tmp_path / "data", DEMO, extra_config="[alignment]\nenabled = false\n[actions]\nring = false\n"
                                                            "[wyoming]\nenabled = true\nport = 0\n").start(timeout_s=300)
    port = json.loads((d.data_dir / "daemon.json").read_text())["wyoming_port"]
    wave = soxr.resample(synthesize("espeak-ng:en-us", SAID), 16000, 44100)  # as a satellite might send it
    pcm = (np.stack([wave, wave], 1) * 32767).astype("<i2").tobytes()

    async def run():
        async with AsyncTcpClient("127.0.0.1", port, connect_timeout=10, read_timeout=60) as client:
            await client.write_event(Describe().event())
            info = Info.from_event(await client.read_event())
            await client.write_event(Transcribe(language="en").event())
            fmt = {"rate": 44100, "width": 2, "channels": 2}
            await client.write_event(AudioStart(**fmt).event())
            for i in range(0, len(pcm), 4096):
                await client.write_event(AudioChunk(audio=pcm[i:i + 4096], **fmt).event())
            await client.write_event(AudioStop().event())
            transcript = Transcript.from_event(await client.read_event())
            await client.write_event(Transcribe(language="fr").event())  # refused, the connection kept
            await client.write_event(AudioStart(**fmt).event())
            await client.write_event(AudioChunk(audio=pcm[:44100 * 4], **fmt).event())
            await client.write_event(AudioStop().event())
            refused = Error.from_event(await client.read_event())
            await client.write_event(Synthesize(text="hello there").event())
            events = [await client.read_event()]
            while events[-1].type != "audio-stop":
                events.append(await client.read_event())
            return info, transcript, refused, events

    try:
        info, transcript, refused, events = asyncio.run(run())
        rows = httpx.get(d.url + "/v1/utterances", headers=d.headers).json()["utterances"]
    finally:
        assert d.stop() == 0, d.log.read_text()[-3000:]
    assert info.asr[0].models[0].name == DEMO.name and info.asr[0].models[0].languages == ["en"]
    assert info.tts[0].voices[0].name == "espeak-ng:en-us"
    assert transcript.text == SAID
    assert "English" in refused.text
    assert events[0].type == "audio-start" and AudioStart.from_event(events[0]).rate == 16000
    audio = b"".join(AudioChunk.from_event(e).audio for e in events if e.type == "audio-chunk")
    assert len(audio) > 16000  # half a second or more of 16-bit speech
    assert [(r["source"], r["transcript"], r["activation"]) for r in rows] == [("wyoming", SAID, "logged_only")]
