"""The utterance log: list, read, audio, label (correct / confirm), delete."""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import Field, model_validator

from assistant_services.api.params import MAX_SQLITE_INT, RowId, SearchText, StrictBody, Text
from assistant_services.api.errors import ApiError

router = APIRouter(tags=["utterances"])


def _store(request: Request):
    return request.app.state.daemon.store


async def _in_session(request: Request, fn, *, write: bool = True):
    def run():  # read-only routes use deferred transactions: they never take the write lock
        with _store(request).session(write=write) as s:
            return fn(s)

    return await asyncio.to_thread(run)


@router.get("/utterances")
async def list_utterances(request: Request, limit: int = Query(50, ge=1, le=500),
                          offset: int = Query(0, ge=0, le=MAX_SQLITE_INT),
                          since: datetime | None = None, until: datetime | None = None,
                          has_label: bool | None = None, q: SearchText = None) -> dict:
    """Newest first; ``q`` searches transcripts and labels; times are ISO 8601."""
    from assistant.store import repo

    def run(s):
        rows, total = repo.list_utterances(s, limit=limit, offset=offset, since=since, until=until,
                                           has_label=has_label, text=q)
        return {"total": total, "limit": limit, "offset": offset,
                "utterances": [repo.utterance_to_dict(r) for r in rows]}

    return await _in_session(request, run, write=False)


@router.get("/utterances/{uid}")
async def get_utterance(request: Request, uid: RowId) -> dict:
    from assistant.store import repo

    def run(s):
        return repo.utterance_to_dict(repo.get_utterance(s, utterance_id=uid))

    return await _in_session(request, run, write=False)


@router.get("/utterances/{uid}/audio")
async def get_audio(request: Request, uid: RowId):
    from assistant.store import repo

    def run(s):
        return repo.get_utterance(s, utterance_id=uid).audio_path

    rel = await _in_session(request, run, write=False)
    path = request.app.state.daemon.data_dir / rel
    if not path.is_file():
        raise ApiError(410, f"the audio of utterance {uid} is no longer on disk")
    return FileResponse(path, media_type="audio/wav", filename=f"utterance-{uid}.wav")


class LabelPatch(StrictBody):
    label: Text | None = Field(default=None, min_length=1, max_length=2000,
                              description="the correct transcript (a correction)")
    confirm: bool | None = Field(default=None, description="true: the transcript was right")

    @model_validator(mode="after")
    def _one(self):
        if (self.label is None) == (not self.confirm):
            raise ValueError('send either {"label": "..."} or {"confirm": true}')
        return self


@router.patch("/utterances/{uid}")
async def patch_utterance(request: Request, uid: RowId, body: LabelPatch) -> dict:
    from assistant.store import repo

    def run(s):
        if body.label is not None:
            row = repo.set_label(s, utterance_id=uid, text=body.label, source="correction")
        else:
            row = repo.set_label(s, utterance_id=uid, text=None, source="confirmed")
        return repo.utterance_to_dict(row)

    result = await _in_session(request, run)
    request.app.state.daemon.bus.publish("label", utterance_id=uid, label_source=result["label"]["source"])
    return result


@router.delete("/utterances/{uid}")
async def delete_utterance(request: Request, uid: RowId) -> dict:
    from assistant.store import repo

    data_dir = request.app.state.daemon.data_dir

    def run(s):
        repo.delete_utterance(s, utterance_id=uid, data_dir=data_dir)
        return {"deleted": uid}

    return await _in_session(request, run)
