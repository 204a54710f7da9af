"""A size cap on request bodies other than audio uploads (JSON), enforced before they are read.

Uploads (``multipart/form-data``) have their own limit, ``api.max_upload_mb`` (``uploads.py``). Every
other body is small by design (a label, a prompt, a job request), so ``api.max_json_kb`` caps it: a
``Content-Length`` over the cap is answered 413 without reading a byte, and a body without one is
counted as it arrives and refused once it passes the cap. Memory stays at the cap, whatever is sent.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _too_large(limit: int) -> str:
    return (f"request body over the limit of {limit // 1024} KiB: labels, prompts and job requests are small "
            "(audio goes as a multipart upload; raise api.max_json_kb in the config if you must)")


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data"):
            await self.app(scope, receive, send)  # uploads.py counts these against api.max_upload_mb
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            body = json.dumps({"error": _too_large(self.max_bytes)}).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, _too_large(self.max_bytes))
            return message

        await self.app(scope, counted, send)
