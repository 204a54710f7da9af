"""systemd's sd_notify protocol (READY, STOPPING, WATCHDOG): one datagram to $NOTIFY_SOCKET.

Without systemd (no $NOTIFY_SOCKET) every call is a no-op, so the daemon runs the same by hand.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(*fields: str) -> bool:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # abstract namespace socket
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall("\n".join(fields).encode())
        return True
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
        return False


async def watchdog_loop() -> None:
    """Ping the watchdog at half its interval from the event loop: a stuck loop stops the pings."""
    usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    if usec <= 0:
        return
    interval = usec / 1e6 / 2
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
