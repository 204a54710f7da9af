"""A satellite microphone over a WebSocket, as an ``AudioSource``.

A FastAPI/Starlette route hands the connection to ``WebSocketSource.serve``. Protocol:

1. the client's FIRST message is JSON text ``{"format": "pcm_s16le", "sample_rate_hz": N, "channels": C}``
   (N in 8000..48000, C in 1, 2); a bad header gets a JSON text ``{"error", "field", "allowed"}`` and a
   close with code 1003 (unsupported data); a good one gets ``{"ok": true, "name": ...}``;
2. then binary messages of interleaved little-endian int16 PCM, any size (a half sample waits for the
   next message). They are downmixed and resampled to 16 kHz mono and queued for ``frames()``.

One satellite at a time: a second connection is closed with 1013 (try again later). ``frames()`` runs
across satellites until ``close()``; when one disconnects, ``GAP_S`` of silence is queued so the VAD ends
an utterance in progress instead of gluing it to the next satellite's audio.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator

from assistant_services.pcm import GAP_S, FrameQueue, PcmConverter, silence_pcm

log = logging.getLogger(__name__)

FORMATS = ("pcm_s16le",)
MIN_RATE_HZ, MAX_RATE_HZ = 8000, 48000
CHANNELS = (1, 2)
CLOSE_UNSUPPORTED = 1003
CLOSE_TRY_AGAIN = 1013


class HeaderError(ValueError):
    def __init__(self, field: str, allowed: Any, problem: str) -> None:
        super().__init__(problem)
        self.field, self.allowed = field, allowed

    def payload(self) -> dict[str, Any]:
        return {"error": str(self), "field": self.field, "allowed": self.allowed}


def parse_header(text: str | None) -> tuple[int, int]:
    """(sample_rate_hz, channels) from the first message, or HeaderError naming the bad field."""
    if text is None:
        raise HeaderError("header", '{"format": "pcm_s16le", "sample_rate_hz": N, "channels": C}',
                          "the first message must be JSON text describing the audio, not binary data")
    try:
        head = json.loads(text)
    except ValueError:
        head = None
    if not isinstance(head, dict):
        raise HeaderError("header", '{"format": "pcm_s16le", "sample_rate_hz": N, "channels": C}',
                          "the first message is not a JSON object")
    fmt, rate, ch = head.get("format"), head.get("sample_rate_hz"), head.get("channels")
    if fmt not in FORMATS:
        raise HeaderError("format", list(FORMATS), f"format {fmt!r} is not supported; allowed: pcm_s16le")
    # bool is an int in Python; "sample_rate_hz": true is not a rate.
    if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
        raise HeaderError("sample_rate_hz", f"{MIN_RATE_HZ}..{MAX_RATE_HZ}",
                          f"sample_rate_hz {rate!r} is not allowed; allowed: integers {MIN_RATE_HZ}..{MAX_RATE_HZ}")
    if not isinstance(ch, int) or isinstance(ch, bool) or ch not in CHANNELS:
        raise HeaderError("channels", list(CHANNELS), f"channels {ch!r} is not allowed; allowed: 1, 2")
    return rate, ch


class WebSocketSource:
    """Audio from one connected satellite at a time; ``state()`` is "waiting_for_device" between them."""

    def __init__(self, *, queue_s: float = 3.0, header_timeout_s: float = 10.0) -> None:
        self.name = "ws"
        self.header_timeout_s = header_timeout_s
        self._queue = FrameQueue(int(queue_s * 1000 / 30), "ws")
        self._state = "waiting_for_device"
        self._busy = False
        self._closed = False
        self._ws: Any = None  # the connected satellite, so close() can end it

    @property
    def dropped(self) -> int:
        return self._queue.dropped

    def state(self) -> str:
        return self._state

    async def frames(self) -> AsyncIterator[bytes]:
        while True:
            block = await self._queue.get()
            if block is None:
                return
            yield block

    async def close(self) -> None:
        self._closed = True
        self._state = "stopped"
        self._queue.interrupt()
        ws, self._ws = self._ws, None
        if ws is not None:
            try:  # 1001 "going away": the satellite should reconnect later, not give up
                await asyncio.wait_for(ws.close(code=1001, reason="source closed"), 5.0)
            except Exception as e:  # noqa: BLE001 - it may be gone already; closing is best effort
                log.debug("%s: close: %s", self.name, e)

    async def serve(self, websocket: Any) -> None:
        """Run one satellite connection to its end (a Starlette/FastAPI ``WebSocket``)."""
        from starlette.websockets import WebSocketDisconnect, WebSocketState

        if websocket.application_state == WebSocketState.CONNECTING:
            await websocket.accept()
        client = f"{websocket.client.host}:{websocket.client.port}" if websocket.client else "unknown"
        if self._closed or self._busy:
            why = "the source is closed" if self._closed else "another satellite is connected"
            await websocket.send_text(json.dumps({"error": why}))
            await websocket.close(code=CLOSE_TRY_AGAIN, reason=why)
            log.warning("ws:%s refused: %s", client, why)
            return
        self._busy = True
        self._ws = websocket
        try:
            try:
                first = await asyncio.wait_for(websocket.receive(), self.header_timeout_s)
                if first["type"] == "websocket.disconnect":
                    return
                rate, channels = parse_header(first.get("text"))
            except asyncio.TimeoutError:
                await self._refuse(websocket, client, HeaderError(
                    "header", "JSON text first", f"no header within {self.header_timeout_s:g} s"))
                return
            except HeaderError as e:
                await self._refuse(websocket, client, e)
                return
            self.name = f"ws:{client}"
            convert = PcmConverter(rate, channels)
            await websocket.send_text(json.dumps({"ok": True, "name": self.name}))
            self._state = "running"
            log.info("%s: satellite connected, %d Hz x%d", self.name, rate, channels)
            received = 0
            while not self._closed:
                msg = await websocket.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                data = msg.get("bytes")
                if data is None:
                    log.debug("%s: ignoring a text message after the header", self.name)
                    continue
                received += len(data)
                self._queue.put(convert(data))
            self._queue.put(convert.flush())
            self._queue.put(silence_pcm(GAP_S))
            log.info("%s: satellite disconnected after %.1f s of audio", self.name,
                     received / (2 * channels * rate))
        except WebSocketDisconnect:
            pass
        except RuntimeError as e:  # Starlette: receive() after close() (our close() raced the loop)
            log.debug("%s: %s", self.name, e)
        finally:
            self._busy = False
            self._ws = None
            if not self._closed:
                self._state = "waiting_for_device"

    async def _refuse(self, websocket: Any, client: str, e: HeaderError) -> None:
        log.warning("ws:%s bad header: %s", client, e)
        await websocket.send_text(json.dumps(e.payload()))
        # A close reason must fit in 123 bytes; the JSON above carries the full message.
        await websocket.close(code=CLOSE_UNSUPPORTED, reason=str(e)[:120])
