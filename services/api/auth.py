"""The API token check, shared by the HTTP routes (a dependency) and the WebSockets (which check it
themselves: browsers cannot set headers on a WebSocket, so ``ws`` also reads a query parameter)."""

from __future__ import annotations

import secrets

from fastapi import Request

from assistant_services.api.errors import ApiError


def token_ok(daemon, header: str | None) -> bool:
    """Exactly ``Bearer <token>``: one space, nothing around the token."""
    if not header or not daemon.token:
        return False
    return secrets.compare_digest(header.encode(), f"Bearer {daemon.token}".encode())


async def require_token(request: Request) -> None:
    if not token_ok(request.app.state.daemon, request.headers.get("authorization")):
        raise ApiError(401, "missing or wrong token: send 'Authorization: Bearer <token>' "
                            "(the token is in <data dir>/api-token)")
