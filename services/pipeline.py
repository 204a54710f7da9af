"""Source -> VAD -> daemon: the loop that turns a frame stream into stored, queued utterances."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque

import numpy as np

from assistant.units import TARGET_RATE_HZ
from assistant.vad import SegmentDropped, SpeechEnded, SpeechPaused, SpeechStarted, VadSegmenter

log = logging.getLogger(__name__)


def store_source(name: str) -> str:
    """The store's source label: "mic:default" -> "mic", "file:x.wav" -> "file", "ws:host:port" stays."""
    return name if name.startswith("ws:") else name.split(":", 1)[0]


AFTER_REPLY_S = 1.2  # the reply's echo (~0.3 s latency) plus the VAD's hangover (0.6 s) end by then


class EchoGate:
    """The microphone while a reply plays (services/output.py ``Speaker``): its echo is never a request.

    Every ``HOP_S`` of microphone audio while the reply plays, the last ``WINDOW_S`` is compared with what
    was played (``Speaker.is_echo``). Two windows in a row that the reply does not explain are someone
    speaking over it: with ``barge_in`` the reply stops at once (before the VAD has even decided that
    speech started) and the segment is a turn. A segment that starts while the reply plays, or just
    after (its echo is still arriving), with no barge-in is the reply's own voice: dropped, never stored
    or transcribed. Without ``barge_in`` nothing heard while a reply plays is kept (the mic is muted).
    """

    WINDOW_S, HOP_S, MISSES = 0.1, 0.05, 2

    def __init__(self, speaker, *, barge_in: bool, publish) -> None:
        self.speaker, self.barge_in, self.publish = speaker, barge_in, publish
        self._recent: deque[np.ndarray] = deque()
        self._recent_n = 0
        self._since_check = 0
        self._misses = 0
        self.barged_at = 0.0  # monotonic time of the last barge-in
        self.barged_stream_s: float | None = None  # ... on the VAD's stream clock, in the current segment
        self.own_voice = False  # the current segment is the reply's echo
        self._stream_n = 0  # samples fed: the VAD's stream clock (both see every chunk from the start)
        # (stream sample of played sample 0, scale, the played wave it holds for): the last echo estimate
        self._echo: tuple[int, float, np.ndarray] | None = None
        self.warming = False

    def feed(self, pcm16: bytes, now: float) -> None:
        x = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0
        self._recent.append(x)
        self._recent_n += len(x)
        self._stream_n += len(x)
        while self._recent_n - len(self._recent[0]) >= int(self.WINDOW_S * TARGET_RATE_HZ):
            self._recent_n -= len(self._recent.popleft())
        self._since_check += len(x)
        if not (self.barge_in and self.speaker.playing) or self._since_check < int(self.HOP_S * TARGET_RATE_HZ):
            self._misses = 0 if not self.speaker.playing else self._misses
            return
        self._since_check = 0
        window = np.concatenate(self._recent)[-int(self.WINDOW_S * TARGET_RATE_HZ):]
        share, at, scale = self.speaker.align(window, now)
        if share >= self.speaker.echo_share and at is not None and scale > 0:
            # where the played audio sits on the stream clock: what lets a barged-into segment lose its echo
            self._echo = (self._stream_n - len(window) - at, scale, self.speaker.played)
        self._misses = 0 if share >= self.speaker.echo_share else self._misses + 1
        if self._misses >= self.MISSES:
            self._misses = 0
            self.barged_at = now
            self.barged_stream_s = self._stream_n / TARGET_RATE_HZ
            self.own_voice = False  # a segment under way is the user's from here on
            self.speaker.stop()
            self.publish("barge_in", stopped_in_s=round(time.monotonic() - now, 3))
            log.info("speech over the reply: stopped it")

    def started(self, now: float) -> None:
        recent_barge = now - self.barged_at < 1.0
        self.own_voice = self.speaker.recently_played(now) and not recent_barge

    def trimmed(self, segment):
        """A segment that began on the reply's echo and was barged into starts a little before the
        barge-in (the user's onset is one window and two hops earlier), not on the echo."""
        at, self.barged_stream_s = self.barged_stream_s, None
        if at is None:
            return segment
        # the onset is a window and two hops before the detection, or earlier when a soft first sound
        # ("s") still read as echo: 0.4 s more is kept, which the echo subtraction leaves silent
        cut = max(segment.started_at, at - self.WINDOW_S - self.MISSES * self.HOP_S - 0.4)
        skip = int(round((cut - segment.started_at) * TARGET_RATE_HZ))
        pcm = segment.pcm[skip * 2:]
        if self._echo is not None and self._echo[2] is self.speaker.played:  # this reply's estimate only
            from assistant.echo import subtract_echo

            origin, scale, _ = self._echo
            x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
            start = int(round(cut * TARGET_RATE_HZ))
            played = self.speaker.played[: self.speaker.written]  # what reached the device before the stop
            x = subtract_echo(x, played, origin - start, scale)
            pcm = (np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        return dataclasses.replace(segment, pcm=pcm, started_at=cut)

    def keep(self, now: float) -> bool:
        """At the segment's end: False when it was the reply's own voice (or heard while muted). A segment
        that goes on well past the reply's end (its echo and the VAD's hangover) holds speech after it:
        someone answered right away, and that is kept."""
        own, self.own_voice = self.own_voice, False
        return not own or (not self.speaker.playing and now - self.speaker.ended_at > AFTER_REPLY_S)


async def run_source(daemon, source) -> None:
    vad = VadSegmenter(daemon.config.vad)
    name = store_source(source.name)
    gate = EchoGate(daemon.speaker, barge_in=daemon.config.output.barge_in, publish=daemon.bus.publish) \
        if daemon.speaker is not None and name == "mic" else None
    try:
        async for chunk in source.frames():
            if gate is not None:
                if not gate.speaker.ready.is_set() and not gate.warming:
                    gate.warming = True
                    gate.speaker.warm_up()  # the microphone is open now: play while it records, once
                gate.feed(chunk, time.monotonic())
            for event in vad.feed(chunk):
                if gate is not None and isinstance(event, SpeechStarted):
                    gate.started(time.monotonic())
                if gate is not None and gate.own_voice and isinstance(event, (SpeechStarted, SpeechPaused)):
                    continue  # the reply's echo: not activity, nothing to encode while it lasts
                if gate is not None and isinstance(event, SpeechEnded) and not gate.keep(time.monotonic()):
                    daemon.stream_drop(name)
                    daemon.bus.publish("own_voice_dropped", duration_s=round(event.segment.duration_s, 2))
                    log.info("dropped %.2f s heard while the reply played (its own voice)",
                             event.segment.duration_s)
                    continue
                if gate is not None and isinstance(event, SpeechEnded):
                    event = SpeechEnded(gate.trimmed(event.segment))
                await _handle(daemon, event, store_source(source.name))
            if vad.active and not (gate is not None and gate.own_voice):  # encoded while it is spoken
                daemon.stream_audio(store_source(source.name), vad.take_new_pcm())
        for event in vad.flush():
            await _handle(daemon, event, store_source(source.name))
        log.info("source %s finished", source.name)
    except asyncio.CancelledError:
        # Shutdown: an utterance still being spoken is stored (nothing captured is lost).
        for event in vad.flush():
            if isinstance(event, SpeechEnded):
                await asyncio.shield(daemon.handle_segment(event.segment, store_source(source.name)))
        raise


async def _handle(daemon, event, source_name: str) -> None:
    if isinstance(event, SpeechStarted):
        daemon.touch()
        daemon.stream_begin(source_name)
        daemon.bus.publish("utterance_started", source=source_name, at_s=event.at_s)
    elif isinstance(event, SpeechPaused):
        daemon.stream_pause(source_name, event.samples)
    elif isinstance(event, SpeechEnded):
        await daemon.handle_segment(event.segment, source_name)
    elif isinstance(event, SegmentDropped):
        daemon.stream_drop(source_name)
        log.debug("dropped a %.2f s sound (%s)", event.duration_s, event.reason)
