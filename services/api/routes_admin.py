"""Enrollment prompts, bridge versions (list, activate = rollback), alignment jobs (wired to the store)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from pydantic import Field

from assistant.errors import AssistantError, NotFoundError, RefusedError
from assistant_services.api.params import RowId, StrictBody, Text
from assistant_services.api.uploads import multipart_doc, read_audio_upload

router = APIRouter()


async def _in_session(request: Request, fn, *, write: bool = True):
    def run():  # read-only routes use deferred transactions: they never take the write lock
        with request.app.state.daemon.store.session(write=write) as s:
            return fn(s)

    return await asyncio.to_thread(run)


# --- enrollment ---------------------------------------------------------------------------------------
@router.get("/enrollment/prompts", tags=["enrollment"])
async def list_prompts(request: Request) -> dict:
    """The prompts (shipped ones first, then the user's), how many utterances are labelled (``labelled``:
    enrollment recordings, corrections and confirmations) and about how many a personalization job needs
    (``labels_needed``: its gate needs ``alignment.min_heldout`` of them held out)."""
    from assistant.alignment.data import labels_needed
    from assistant.store import repo

    def read(s):  # the shipped prompts are in the store since the daemon started (services/startup.py)
        return [repo.prompt_to_dict(p) for p in repo.list_prompts(s)], repo.count_labels_since(s)

    prompts, labelled = await _in_session(request, read, write=False)
    return {"prompts": prompts, "labelled": labelled,
            "labels_needed": labels_needed(request.app.state.daemon.config.alignment)}


class PromptIn(StrictBody):
    text: Text = Field(min_length=2, max_length=300, description="a sentence to read aloud, e.g. with a contact's name")


@router.post("/enrollment/prompts", tags=["enrollment"], status_code=201)
async def add_prompt(request: Request, body: PromptIn) -> dict:
    from assistant.store import repo

    return await _in_session(request, lambda s: repo.prompt_to_dict(repo.add_prompt(s, text=body.text.strip())))


@router.post("/enrollment/prompts/{prompt_id}/recording", tags=["enrollment"], status_code=201,
             openapi_extra=multipart_doc())
async def record_prompt(request: Request, prompt_id: RowId) -> dict:
    """Multipart ``audio``: the user reading the prompt; stored as a labelled utterance (label = prompt)."""
    from assistant.store import EnrollmentPrompt, repo

    d = request.app.state.daemon

    def get_prompt(s):
        p = s.get(EnrollmentPrompt, prompt_id)
        if p is None:
            raise NotFoundError(f"enrollment prompt {prompt_id} does not exist")
        return p.text

    text = await _in_session(request, get_prompt)
    audio = await read_audio_upload(request, d)
    d.touch()
    uid = await d.store_utterance(audio.samples, source="enrollment", label_text=text,
                                  label_source="enrollment", prompt_id=prompt_id)
    await _in_session(request, lambda s: repo.attach_recording(s, prompt_id=prompt_id, utterance_id=uid))
    # Transcribed (and its encoder output cached for training) but never answered.
    # Not live speech: never dropped by the live queue's bound (it only caches the encoder output).
    await d.submit(uid, audio.samples, source="enrollment", captured_at=time.time(), respond=False, backlog=True)
    d.bus.publish("label", utterance_id=uid, label_source="enrollment")
    return {"utterance_id": uid, "prompt_id": prompt_id, "label": text, "duration_s": audio.duration_s}


# --- bridges ------------------------------------------------------------------------------------------
@router.get("/bridges", tags=["bridges"])
async def list_bridges(request: Request) -> dict:
    from assistant.store import repo

    def run(s):
        return {"active": repo.get_active_bridge(s),
                "versions": [repo.bridge_version_to_dict(b) for b in repo.list_bridge_versions(s)]}

    return await _in_session(request, run, write=False)


@router.post("/bridges/{version}/activate", tags=["bridges"])
async def activate(request: Request, version: str) -> dict:
    """Make ``version`` the serving bridge (a rollback is the same swap): loaded and checked first, then
    swapped between utterances, then recorded as active."""
    from assistant_services.bridges import activate_now

    d = request.app.state.daemon
    swapped = await activate_now(d, version)
    d.bus.publish("bridge_activated", version=version, previous=swapped.previous)
    return swapped.to_json()


# --- alignment jobs -----------------------------------------------------------------------------------
class JobIn(StrictBody):
    method: str | None = Field(default=None, description="training method (default: the configured one)")


@router.get("/alignment/jobs", tags=["alignment"])
async def list_jobs(request: Request) -> dict:
    from assistant.store import repo

    return await _in_session(request, lambda s: {"jobs": [repo.job_to_dict(j) for j in repo.list_jobs(s)]},
                             write=False)


@router.post("/alignment/jobs", tags=["alignment"], status_code=201)
async def create_job(request: Request, body: JobIn | None = None) -> dict:
    from assistant.store import repo

    from assistant.alignment.trainers import METHODS

    d = request.app.state.daemon
    if not d.config.alignment.enabled:
        raise RefusedError("personalization is disabled", fix="set alignment.enabled = true in the config")
    method = (body.method if body else None) or d.config.alignment.method
    if method not in METHODS:
        raise AssistantError(f"unknown alignment method {method!r}; allowed: {', '.join(METHODS)}")
    job = await _in_session(request, lambda s: repo.job_to_dict(repo.create_job(s, method=method, trigger="api")))
    d.bus.publish("job", job_id=job["id"], state=job["state"])
    return job


@router.get("/alignment/jobs/{job_id}", tags=["alignment"])
async def get_job(request: Request, job_id: RowId) -> dict:
    from assistant.store import repo

    def run(s):
        return repo.job_to_dict(repo.get_job(s, job_id=job_id))

    return await _in_session(request, run, write=False)


@router.post("/alignment/jobs/{job_id}/cancel", tags=["alignment"])
async def cancel_job(request: Request, job_id: RowId) -> dict:
    from assistant.store import repo

    def run(s):
        return repo.job_to_dict(repo.request_cancel(s, job_id=job_id))

    return await _in_session(request, run)
