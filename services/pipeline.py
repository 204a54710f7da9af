"""Source -> VAD -> daemon: the loop that turns a frame stream into stored, queued utterances."""

from __future__ import annotations

import asyncio
import logging

from assistant.vad import SegmentDropped, SpeechEnded, SpeechPaused, SpeechStarted, VadSegmenter

log = logging.getLogger(__name__)


def store_source(name: str) -> str:
    """The store's source label: "mic:default" -> "mic", "file:x.wav" -> "file", "ws:host:port" stays."""
    return name if name.startswith("ws:") else name.split(":", 1)[0]


async def run_source(daemon, source) -> None:
    vad = VadSegmenter(daemon.config.vad)
    try:
        async for chunk in source.frames():
            for event in vad.feed(chunk):
                await _handle(daemon, event, store_source(source.name))
            if vad.active:  # the encoder may start on the utterance while it is spoken
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
