"""WebSockets: /v1/events (utterance and job events) and /v1/stream (PCM from a satellite microphone).

Browsers cannot set headers on a WebSocket, so the token may also come as ``?token=...``.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from assistant_services.api.auth import token_ok

log = logging.getLogger(__name__)
router = APIRouter()


async def _authorized(ws: WebSocket) -> bool:
    d = ws.app.state.daemon
    header = ws.headers.get("authorization") or (f"Bearer {ws.query_params['token']}"
                                                 if "token" in ws.query_params else None)
    if token_ok(d, header):
        return True
    await ws.close(code=1008, reason="missing or wrong token")
    return False


@router.websocket("/events")
async def events(ws: WebSocket) -> None:
    if not await _authorized(ws):
        return
    await ws.accept()
    bus = ws.app.state.daemon.bus
    q = bus.subscribe()
    try:
        while True:
            event = await q.get()
            if event is None:  # the daemon is stopping: close first, so the server need not cut us
                await ws.close(code=1001, reason="the assistant is stopping")
                return
            if q.dropped:  # type: ignore[attr-defined]
                event = {**event, "dropped_before": q.dropped}  # type: ignore[attr-defined]
                q.dropped = 0  # type: ignore[attr-defined]
            await ws.send_json(event)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        bus.unsubscribe(q)


@router.websocket("/stream")
async def stream(ws: WebSocket) -> None:
    """A satellite: first message JSON {"format": "pcm_s16le", "sample_rate_hz": N, "channels": C},
    then binary PCM; its utterances are cut by the VAD and handled like the local microphone's."""
    if not await _authorized(ws):
        return
    from assistant_services.pipeline import run_source
    from assistant_services.sources_ws import WebSocketSource

    d = ws.app.state.daemon
    client = f"{ws.client.host}:{ws.client.port}" if ws.client else "satellite"
    source = WebSocketSource()
    consumer = asyncio.create_task(run_source(d, source))
    try:
        await source.serve(ws)
    finally:
        await source.close()
        try:
            await asyncio.wait_for(consumer, timeout=30)
        except (asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - logged, the daemon goes on
            log.warning("satellite %s: %s", client, exc)
