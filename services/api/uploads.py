"""Size-limited audio uploads (a multipart file field, ``audio`` by default): the limit holds even without
Content-Length."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from assistant.audio import Audio, load_audio
from assistant_services.api.errors import ApiError


def multipart_doc(field: str = "audio", **text_fields: str) -> dict:
    """The OpenAPI ``requestBody`` of a route that reads its multipart form itself (``read_upload``), so
    /docs shows the file field and can send one: ``openapi_extra=multipart_doc(...)``."""
    props = {field: {"type": "string", "format": "binary",
                     "description": "the audio: WAV, FLAC or OGG, any sample rate and channels"},
             **{name: {"type": "string", "description": desc} for name, desc in text_fields.items()}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "required": [field], "properties": props}}}}}


class _TooLarge(Exception):
    pass


async def read_audio_upload(request: Request, daemon, field: str = "audio") -> Audio:
    return (await read_upload(request, daemon, field))[0]


async def read_upload(request: Request, daemon, field: str = "audio", max_fields: int = 8) -> tuple[Audio, dict]:
    """The decoded audio of the multipart file ``field`` and the form's other (text) fields."""

    limit = int(daemon.config.api.max_upload_mb * 1024 * 1024)
    too_big = ApiError(413, f"upload is larger than api.max_upload_mb = {daemon.config.api.max_upload_mb} MB; "
                            "send a shorter clip or raise the limit in the config")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise too_big
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise ApiError(400, f"expected multipart/form-data with a file field '{field}', got "
                            f"'{ctype or 'no content type'}'")
    received = 0
    receive = request.receive

    async def limited():
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit + 64 * 1024:  # multipart framing adds a little
            raise _TooLarge()
        return message

    try:
        form = await Request(request.scope, limited).form(max_files=1, max_fields=max_fields)
    except _TooLarge:
        raise too_big from None
    except ClientDisconnect:
        raise ApiError(400, "the client disconnected during the upload") from None
    except Exception as exc:  # malformed multipart body
        raise ApiError(400, f"malformed multipart body: {exc}") from exc
    upload = form.get(field)
    if not isinstance(upload, UploadFile):
        raise ApiError(400, f"multipart field '{field}' with an audio file is missing")
    data = await upload.read()
    if len(data) > limit:
        raise too_big
    cfg = daemon.config.audio
    import asyncio

    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    audio = await asyncio.to_thread(load_audio, data, max_duration_s=cfg.max_duration_s,
                                    min_duration_s=cfg.min_duration_s)
    return audio, fields
