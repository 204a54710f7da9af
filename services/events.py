"""Event bus: the daemon's threads publish, WebSocket clients (and tests) subscribe.

``publish`` is safe from any thread (the inference worker, PortAudio callbacks): it hops onto the
event loop with ``call_soon_threadsafe``. Each subscriber has a bounded queue; a slow client loses
its oldest events rather than slowing the daemon (and is told so with a ``dropped`` count).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

log = logging.getLogger(__name__)


class EventBus:
    def __init__(self, loop: asyncio.AbstractEventLoop, *, queue_max: int = 256) -> None:
        self._loop = loop
        self._queue_max = queue_max
        self._subscribers: set[asyncio.Queue] = set()
        self.closed = False
        self._gone = asyncio.Event()  # after close(): every subscriber has unsubscribed

    def publish(self, kind: str, /, **data: Any) -> None:  # positional: a field may be named "kind"
        event = {"type": kind, "at": time.time(), **data}
        try:
            self._loop.call_soon_threadsafe(self._fan_out, event)
        except RuntimeError:  # loop closed during shutdown: nobody is listening any more
            pass

    def _fan_out(self, event: dict) -> None:
        for q in list(self._subscribers):
            if q.full():
                try:
                    q.get_nowait()
                    q.dropped += 1  # type: ignore[attr-defined]
                except asyncio.QueueEmpty:
                    pass
            q.put_nowait(event)

    def subscribe(self) -> asyncio.Queue:
        """A queue of events; ``None`` in it means the bus closed (the daemon is stopping)."""
        q: asyncio.Queue = asyncio.Queue(maxsize=self._queue_max)
        q.dropped = 0  # type: ignore[attr-defined]
        if self.closed:
            q.put_nowait(None)
        else:
            self._subscribers.add(q)
        return q

    def close(self) -> None:
        """The daemon is stopping (event loop thread): every subscriber gets ``None`` and goes
        (``unsubscribe``; ``drained`` waits for that)."""
        self.closed = True
        for q in list(self._subscribers):
            if q.full():
                q.get_nowait()
            q.put_nowait(None)
        if not self._subscribers:
            self._gone.set()

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._subscribers.discard(q)
        if self.closed and not self._subscribers:
            self._gone.set()

    async def drained(self, timeout_s: float) -> bool:
        """After ``close``: wait until every subscriber has unsubscribed (an events WebSocket has sent its
        own close frame, 1001), at most ``timeout_s``; the server stopping first would cut it (1012)."""
        try:
            await asyncio.wait_for(self._gone.wait(), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
