"""A size cap on request bodies other than audio uploads (JSON), enforced before they are read.

Uploads (``multipart/form-data``) have their own limit, ``api.max_upload_mb`` (``uploads.py``). Every
other body is small by design (a label, a prompt, a job request), so ``api.max_json_kb`` caps it: a
``Content-Length`` over the cap is answered 413 without reading a byte, and a body without one is
counted as it arrives and refused once it passes the cap. Memory stays at the cap, whatever is sent.
A JSON body is read whole (within the cap) and checked first, so that bytes that are not UTF-8 and
nesting that would exhaust the parser's recursion get a message naming the problem, not the parser's
"There was an error parsing the body".
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def _too_large(limit: int) -> str:
    return (f"request body over the limit of {limit // 1024} KiB: labels, prompts and job requests are small "
            "(audio goes as a multipart upload; raise api.max_json_kb in the config if you must)")


MAX_JSON_DEPTH = 32  # our bodies are flat objects; a deep one is an attack on the parser's recursion


def json_body_problem(body: bytes) -> str | None:
    """Why ``body`` cannot be a JSON body of ours before parsing it, or None: bytes that are not UTF-8,
    or arrays/objects nested deeper than MAX_JSON_DEPTH (the parser would fail with a generic message)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the body is not UTF-8 text: byte {exc.start} is 0x{body[exc.start]:02x}; send JSON encoded as UTF-8"
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels; the API's bodies are flat objects"
        elif ch in "]}":
            depth -= 1
    return None


async def refuse(send: Send, status: int, message: str) -> None:
    """Answer an HTTP request with ``{"error": message}`` before any route has seen it."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": json.dumps({"error": message}).encode()})


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        kind = headers.get(b"content-type", b"").lower()
        if kind.startswith(b"multipart/form-data"):
            await self.app(scope, receive, send)  # uploads.py counts these against api.max_upload_mb
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await refuse(send, 413, _too_large(self.max_bytes))
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

        if not kind.startswith(b"application/json"):
            await self.app(scope, counted, send)
            return
        # JSON: read it whole (bounded by the cap) and say what is wrong with it before the parser does
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
            if sum(map(len, chunks)) > self.max_bytes:
                await refuse(send, 413, _too_large(self.max_bytes))
                return
        body = b"".join(chunks)
        problem = json_body_problem(body)
        if problem is not None:
            await refuse(send, 400, problem)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
