"""Home Assistant's Wyoming protocol: our recognizer (and reply voice) as an Assist pipeline service.

With ``[wyoming] enabled``, the daemon serves ``tcp://host:port`` with the ``wyoming`` package, the
ecosystem's own library: Describe -> Info (an ``asr`` program whose model is the serving bundle and,
with ``tts``, a ``tts`` program with the reply voice); Transcribe, AudioStart, AudioChunk..., AudioStop ->
Transcript (the audio, converted to 16 kHz mono 16-bit, is stored and transcribed like any utterance,
source ``wyoming``, never answered: Home Assistant does the rest of its pipeline); Synthesize ->
AudioStart, AudioChunk..., AudioStop. A bad request (another language, too long) gets an Error event
naming the problem; the connection stays usable.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncEventHandler, AsyncTcpServer
from wyoming.tts import Synthesize

from assistant import __version__
from assistant.units import TARGET_RATE_HZ

log = logging.getLogger(__name__)

ATTRIBUTION = Attribution(name="assistant", url="https://github.com/")
WIDTH, CHANNELS = 2, 1  # int16 mono at TARGET_RATE_HZ
CHUNK_SAMPLES = 1024  # synthesized audio goes out in chunks this long
ENGLISH = (None, "", "en", "en-us", "en_us", "en-gb", "en_gb", "english")


def describe(daemon) -> Info:
    bundle = daemon.config.bundle_path().name
    engine = daemon.worker.engine if daemon.worker else None
    version = engine.bridge.version if engine is not None else None
    asr = AsrProgram(name="assistant", attribution=ATTRIBUTION, installed=True, version=__version__,
                     description="On-device recognizer personalized to its user's voice",
                     models=[AsrModel(name=bundle, attribution=ATTRIBUTION, installed=True, languages=["en"],
                                      description=f"bundle {bundle}, bridge {version}", version=version)])
    tts = [TtsProgram(name="assistant-voice", attribution=ATTRIBUTION, installed=True, version=__version__,
                      description="The assistant's reply voice",
                      voices=[TtsVoice(name=daemon.config.output.voice, attribution=ATTRIBUTION, installed=True,
                                       languages=["en"], description="the [output] voice", version=None)])] \
        if daemon.config.wyoming.tts else []
    return Info(asr=[asr], tts=tts)


class Handler(AsyncEventHandler):
    def __init__(self, daemon, *args) -> None:
        super().__init__(*args)
        self.daemon = daemon
        self._converter = AudioChunkConverter(rate=TARGET_RATE_HZ, width=WIDTH, channels=CHANNELS)
        self._pcm: list[bytes] | None = None
        self._bytes = 0
        self._refused: str | None = None

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(describe(self.daemon).event())
        elif Transcribe.is_type(event.type):
            language = Transcribe.from_event(event).language
            self._refused = None if (language or "").lower() in ENGLISH else \
                f"language {language!r} is not supported: this recognizer transcribes English"
        elif AudioStart.is_type(event.type):
            self._pcm, self._bytes = [], 0
        elif AudioChunk.is_type(event.type):
            await self._chunk(AudioChunk.from_event(event))
        elif AudioStop.is_type(event.type):
            await self._transcribe()
        elif Synthesize.is_type(event.type) and self.daemon.config.wyoming.tts:
            await self._synthesize(Synthesize.from_event(event).text)
        else:
            log.debug("wyoming: ignoring %s", event.type)
        return True

    async def _chunk(self, chunk: AudioChunk) -> None:
        if self._pcm is None:
            self._pcm, self._bytes = [], 0  # audio without AudioStart: take it
        data = self._converter.convert(chunk).audio
        limit = int(self.daemon.config.audio.max_duration_s * TARGET_RATE_HZ * WIDTH)
        if self._bytes + len(data) > limit:
            self._refused = self._refused or (f"the audio is longer than audio.max_duration_s = "
                                              f"{self.daemon.config.audio.max_duration_s} s")
            return
        self._pcm.append(data)
        self._bytes += len(data)

    async def _transcribe(self) -> None:
        from assistant.audio import from_pcm16
        from assistant.errors import AssistantError

        pcm, self._pcm = b"".join(self._pcm or []), None
        refused, self._refused = self._refused, None
        if refused:
            await self.write_event(Error(text=refused, code="refused").event())
            return
        try:
            cfg = self.daemon.config.audio
            samples = from_pcm16(pcm, max_duration_s=cfg.max_duration_s, min_duration_s=cfg.min_duration_s).samples
            self.daemon.touch()
            uid = await self.daemon.store_utterance(samples, source="wyoming")
            result = await self.daemon.submit(uid, samples, source="wyoming", captured_at=time.time(), respond=False,
                                              wait=True)
        except AssistantError as exc:  # too short, disk full, the queue full: said, the connection kept
            await self.write_event(Error(text=str(exc), code=type(exc).__name__).event())
            return
        await self.write_event(Transcript(text=result["transcript"], language="en").event())

    async def _synthesize(self, text: str) -> None:
        from assistant.errors import AssistantError
        from assistant.synth.voices import synthesize

        try:
            wave = await asyncio.to_thread(synthesize, self.daemon.config.output.voice, text)
        except AssistantError as exc:
            await self.write_event(Error(text=str(exc), code=type(exc).__name__).event())
            return
        pcm = (np.clip(wave, -1, 1) * 32767).astype("<i2")
        await self.write_event(AudioStart(rate=TARGET_RATE_HZ, width=WIDTH, channels=CHANNELS).event())
        for i in range(0, len(pcm), CHUNK_SAMPLES):
            await self.write_event(AudioChunk(rate=TARGET_RATE_HZ, width=WIDTH, channels=CHANNELS,
                                              audio=pcm[i:i + CHUNK_SAMPLES].tobytes()).event())
        await self.write_event(AudioStop().event())


async def start(daemon) -> tuple[AsyncTcpServer, int]:
    """Serve ``[wyoming] host:port`` (port 0: any free one); returns the server and its port."""
    cfg = daemon.config.wyoming
    server = AsyncTcpServer(cfg.host, cfg.port)
    await server.start(lambda reader, writer: Handler(daemon, reader, writer))
    port = server._server.sockets[0].getsockname()[1]  # the library keeps the asyncio server there
    log.info("wyoming: serving tcp://%s:%s", cfg.host, port)
    return server, port
