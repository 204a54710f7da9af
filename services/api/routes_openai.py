"""OpenAI-compatible speech endpoints, for clients written against OpenAI's audio API (the official
``openai`` package, speaches / LocalAI / whisper.cpp-server clients): the API token is the API key.

``POST /v1/audio/transcriptions``: multipart ``file`` (WAV/FLAC/OGG), ``model`` (any name: there is one
recognizer, the user's personalized one), ``language`` (English only), ``prompt`` and ``temperature``
(accepted; the decoding does not use them), ``response_format`` json | text | verbose_json | srt | vtt.
The audio is stored and transcribed like any utterance (source ``api``, never answered): it is the
user's speech too. ``POST /v1/audio/speech``: ``{"model", "input", "voice", "response_format"}`` -> the
reply voice's audio as wav, flac or pcm (24 kHz 16-bit mono, as OpenAI's pcm). Errors use OpenAI's
shape, ``{"error": {"message", "type", "param", "code"}}`` (services/api/app.py).
"""

from __future__ import annotations

import asyncio
import io
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import Field

from assistant_services.api.params import StrictBody, Text
from assistant_services.api.uploads import multipart_doc, read_upload
from assistant_services.api.errors import ApiError

router = APIRouter(tags=["openai"])
FORMATS = ("json", "text", "verbose_json", "srt", "vtt")
ENGLISH = ("", "en", "english")
PREFIX = "/v1/audio/"  # routes whose errors take OpenAI's shape


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


@router.post("/audio/transcriptions", openapi_extra=multipart_doc(
    "file", model="any name (one recognizer serves)", language="en, or omitted", prompt="accepted, unused",
    response_format="json | text | verbose_json | srt | vtt", temperature="accepted, unused"))
async def transcriptions(request: Request):
    """OpenAI's ``audio.transcriptions.create``: the transcript of the uploaded file."""

    daemon = request.app.state.daemon
    audio, form = await read_upload(request, daemon, field="file", max_fields=16)
    fmt = form.get("response_format", "json")
    if fmt not in FORMATS:
        raise ApiError(400, f"response_format {fmt!r} is not supported; use one of {', '.join(FORMATS)}")
    if form.get("language", "").strip().lower() not in ENGLISH:
        raise ApiError(400, f"language {form['language']!r} is not supported: this assistant transcribes English "
                            "(omit language, or send 'en')")
    daemon.touch()
    uid = await daemon.store_utterance(audio.samples, source="api")
    result = await daemon.submit(uid, audio.samples, source="api", captured_at=time.time(), respond=False, wait=True)
    text, seconds = result["transcript"], round(audio.duration_s, 3)
    if fmt == "json":
        return {"text": text}
    if fmt == "text":
        return PlainTextResponse(text + "\n")
    if fmt == "verbose_json":
        return {"task": "transcribe", "language": "english", "duration": seconds, "text": text,
                "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": text, "tokens": [],
                              "temperature": 0.0, "avg_logprob": 0.0, "compression_ratio": 0.0,
                              "no_speech_prob": 0.0}],
                "utterance_id": uid}
    if fmt == "srt":
        return PlainTextResponse(f"1\n{_stamp(0, ',')} --> {_stamp(seconds, ',')}\n{text}\n\n")
    return PlainTextResponse(f"WEBVTT\n\n{_stamp(0, '.')} --> {_stamp(seconds, '.')}\n{text}\n\n",
                             media_type="text/vtt")


class SpeechBody(StrictBody):
    model: str = Field(max_length=100)
    input: Text = Field(min_length=1, max_length=4096)
    voice: str = Field(default="", max_length=100)
    response_format: str = "wav"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(default=None, max_length=4096)


OPENAI_VOICES = ("", "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")
SPEECH_FORMATS = {"wav": "audio/wav", "flac": "audio/flac", "pcm": "audio/pcm"}


@router.post("/audio/speech")
async def speech(request: Request, body: SpeechBody):
    """OpenAI's ``audio.speech.create``: ``input`` spoken by the reply voice (``[output] voice``), or by
    ``voice`` when it is one of our voice specs ("flite:slt"); OpenAI's voice names take the reply voice."""
    import numpy as np
    import soundfile as sf
    import soxr

    from assistant.synth.voices import synthesize
    from assistant.units import TARGET_RATE_HZ

    if body.response_format not in SPEECH_FORMATS:
        raise ApiError(400, f"response_format {body.response_format!r} is not supported here; use "
                            f"{', '.join(SPEECH_FORMATS)}")
    voice = request.app.state.daemon.config.output.voice if body.voice in OPENAI_VOICES else _plain_voice(body.voice)
    wave = await asyncio.to_thread(synthesize, voice, body.input)
    if body.response_format == "pcm":  # OpenAI's pcm: 24 kHz, 16-bit little-endian, mono
        pcm = soxr.resample(wave, TARGET_RATE_HZ, 24000)
        data = (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()
    else:
        buf = io.BytesIO()
        sf.write(buf, wave, TARGET_RATE_HZ, format=body.response_format.upper(), subtype="PCM_16")
        data = buf.getvalue()
    return Response(data, media_type=SPEECH_FORMATS[body.response_format])


def _plain_voice(text: str) -> str:
    """A voice spec of ours from a client: an engine and voice only (no sox chain, no added noise: those
    run programs with the client's arguments)."""
    from assistant.synth.voice_spec import parse

    spec = parse(text)
    if spec.sox_effects or spec.noise_snr_db is not None:
        raise ApiError(400, f"voice {text!r}: only an engine and a voice (e.g. 'espeak-ng:en-us', 'flite:slt'), "
                            "or one of OpenAI's voice names")
    return str(spec)


def openai_error(status: int, message: str) -> JSONResponse:
    kind = {401: "invalid_request_error", 404: "invalid_request_error", 413: "invalid_request_error",
            429: "rate_limit_error", 503: "server_error"}.get(status, "invalid_request_error" if status < 500
                                                                 else "server_error")
    code = {401: "invalid_api_key"}.get(status)
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status_code=status)
