"""Source -> VAD -> daemon: the loop that turns a frame stream into stored, queued utterances."""

from __future__ import annotations

import asyncio
import logging

from assistant.vad import SegmentDropped, SpeechEnded, SpeechStarted, VadSegmenter

log = logging.getLogger(__name__)


async def run_source(daemon, source) -> None:
    vad = VadSegmenter(daemon.config.vad)
    name = source.name
    try:
        async for chunk in source.frames():
            for event in vad.feed(chunk):
                await _handle(daemon, event, name)
        for event in vad.flush():
            await _handle(daemon, event, name)
        log.info("source %s finished", name)
    except asyncio.CancelledError:
        # Shutdown: an utterance still being spoken is stored (nothing captured is lost).
        for event in vad.flush():
            if isinstance(event, SpeechEnded):
                await asyncio.shield(daemon.handle_segment(event.segment, name))
        raise


async def _handle(daemon, event, source_name: str) -> None:
    if isinstance(event, SpeechStarted):
        daemon.touch()
        daemon.bus.publish("utterance_started", source=source_name, at_s=event.at_s)
    elif isinstance(event, SpeechEnded):
        await daemon.handle_segment(event.segment, source_name)
    elif isinstance(event, SegmentDropped):
        log.debug("dropped a %.2f s sound (%s)", event.duration_s, event.reason)
