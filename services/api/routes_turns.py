"""Turns and status: POST /v1/turns (an uploaded utterance, logged like a spoken one), GET /v1/status,
POST /v1/listen (push-to-talk window)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from pydantic import Field

from assistant_services.api.params import StrictBody
from assistant_services.api.uploads import multipart_doc, read_audio_upload

router = APIRouter(tags=["turns"])


@router.post("/turns", openapi_extra=multipart_doc())
async def post_turn(request: Request) -> dict:
    """Multipart field ``audio`` (WAV/FLAC/OGG, any rate/channels) -> the turn: utterance id, transcript,
    response, bridge version and per-stage timings."""
    daemon = request.app.state.daemon
    audio = await read_audio_upload(request, daemon)
    daemon.touch()
    uid = await daemon.store_utterance(audio.samples, source="api")
    result = await daemon.submit(uid, audio.samples, source="api", captured_at=time.time(), respond=True,
                                 wait=True)
    daemon.touch()
    return result


@router.get("/status", tags=["status"])
async def status(request: Request) -> dict:
    d = request.app.state.daemon
    from assistant.store import repo

    def read():
        with d.store.session(write=False) as s:
            job = repo.running_or_paused_job(s)
            return repo.get_active_bridge(s), (None if job is None else {"id": job.id, "state": job.state,
                                                                          "method": job.method,
                                                                          "progress": job.progress})

    active, job = await asyncio.to_thread(read)
    engine = d.worker.engine if d.worker else None
    return {
        "uptime_s": round(time.time() - d.started_at, 1),
        "source": {"kind": d.config.source.kind, "state": d.source.state() if d.source else "none"},
        "queue_depth": d.worker.depth if d.worker else 0,  # all waiting utterances
        "speaker": None if d.speaker is None else {"ready": d.speaker.ready.is_set(), "speaking": d.speaker.playing},
        # those the bound counts (live speech, API turns); enrollment and a restart's backlog never drop
        "queue_bounded": d.worker.bounded_depth if d.worker else 0,
        "queue_max": d.config.daemon.queue_max,
        "busy": d.worker.busy_since is not None if d.worker else False,
        "active_bridge": active or (engine.bridge.version if engine else None),
        "serving_bridge": engine.bridge.version if engine else None,
        # the user's own words the serving bridge spots (alignment.spot_user_words, or a job's)
        "user_words": list(engine.bridge.config.lexicon) if engine else [],
        "bundle": str(d.config.bundle_path()),
        "idle_s": round(time.time() - d.last_activity, 1),
        "activation": d.config.daemon.activation,
        "listening_until": d.activation.window_open_until() or None,
        "quiet_until": d.activation.quiet_until() or None,
        "running_job": job,
    }


class ListenRequest(StrictBody):
    seconds: float | None = Field(default=None, gt=0, le=300, description="window length (default: config)")


class QuietRequest(StrictBody):
    seconds: float = Field(ge=0, le=600, description="how long; 0 ends a quiet window now")


@router.post("/quiet")
async def quiet(request: Request, body: QuietRequest) -> dict:
    """Answer nothing captured by the microphone for ``seconds``: it is still stored (logged only). What
    `assistant enroll` asks while the user reads a prompt aloud, so the prompt is not taken for a request."""
    d = request.app.state.daemon
    return {"quiet_until": d.activation.quiet(body.seconds) or None}


@router.post("/listen")
async def listen(request: Request, body: ListenRequest | None = None) -> dict:
    """Push-to-talk: utterances that start within the window get a response."""
    d = request.app.state.daemon
    until = d.activation.open_window(body.seconds if body else None)
    d.touch()
    return {"listening_until": until, "activation": d.config.daemon.activation}
