"""Which names the API answers to: the ``Host`` of every request and the ``Origin`` a browser adds.

The API listens on loopback by default, yet a web page the user opens can still reach it: through DNS
rebinding (a name of the attacker's that resolves to 127.0.0.1, sent as ``Host``) or, for a WebSocket,
directly (browsers let any page open one and add its ``Origin``). The token stops both from acting, but
a request that names another host or comes from another site's page is refused before any route runs:
400 for HTTP, close code 1008 before the handshake for a WebSocket.

Allowed: the loopback names, the bind address (``api.host``) and ``api.allowed_hosts``. A daemon bound to
every interface (``0.0.0.0`` / ``::``) with no ``allowed_hosts`` checks no Host (its LAN names are
unknown to it) and still refuses a foreign ``Origin``. Requests without an ``Origin`` (curl, Home
Assistant, the CLI) are not browser pages and pass that check.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from assistant_services.api.bodylimit import refuse

LOOPBACK = ("localhost", "127.0.0.1", "::1")
ANY = ("0.0.0.0", "::", "")


def _hostname(value: str) -> str:
    """The host part of a Host header or an Origin's netloc: no port, no brackets, lowercase."""
    return (urlsplit("//" + value).hostname or "").lower()


class HostGuard:
    def __init__(self, app: ASGIApp, *, bind_host: str, allowed_hosts: tuple[str, ...] = ()) -> None:
        self.app = app
        self.allowed = {*LOOPBACK, *(h.lower() for h in allowed_hosts)}
        if bind_host not in ANY:
            self.allowed.add(_hostname(bind_host))
        self.check_host = bind_host not in ANY or bool(allowed_hosts)

    def refusal(self, scope: Scope) -> str | None:
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if self.check_host and _hostname(host) not in self.allowed:
            return (f"the Host {host!r} is not a name this assistant answers to (DNS rebinding?); "
                    "add it to api.allowed_hosts in the config if it is yours")
        origin = headers.get(b"origin", b"").decode("latin-1")
        if origin and origin != "null" and _hostname(urlsplit(origin).netloc) not in self.allowed:
            return (f"requests from a page of {origin!r} are refused; add its host to api.allowed_hosts in "
                    "the config if it is yours")
        if origin == "null":
            return "requests from a page without an origin (a file or sandboxed page) are refused"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        why = self.refusal(scope)
        if why is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})
        else:
            await refuse(send, 400, why)
