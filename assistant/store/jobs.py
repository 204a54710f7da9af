"""Bridge versions, the active version, and alignment jobs: keyword-only functions over a Session.

Like ``repo``, nothing here commits: the caller's ``Store.session()`` is the transaction. Because every
write session starts with ``BEGIN IMMEDIATE`` (see ``db``), a check and the write that depends on it
(e.g. "no other job is running" then insert) cannot interleave with another writer.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import PurePath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.errors import NotFoundError, RefusedError
from assistant.store.models import (ACTIVE_JOB_STATES, BRIDGE_STATUSES, JOB_STATES, JOB_TRIGGERS,
                                    TERMINAL_JOB_STATES, ActiveBridge, AlignmentJob, BridgeVersion, utcnow)

log = logging.getLogger(__name__)

# Allowed job state changes. Terminal states (succeeded, rejected, failed, cancelled) have none: final.
JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "failed", "cancelled"}),
    "running": frozenset({"paused", "succeeded", "rejected", "failed", "cancelled"}),
    "paused": frozenset({"running", "failed", "cancelled"}),
    **{s: frozenset() for s in TERMINAL_JOB_STATES},
}
_UPDATABLE = frozenset({"state", "phase", "progress", "step", "total_steps", "data_counts", "durations", "peak_rss_mb",
                        "metrics", "candidate_version", "checkpoint_path", "error", "started_at", "finished_at"})


# --- bridge versions ---------------------------------------------------------------------------------------
def add_bridge_version(session: Session, *, version: str, kind: str, path: str, sha256: str, status: str,
                       parent_version: str | None = None, metrics: dict[str, Any] | None = None,
                       data_summary: dict[str, Any] | None = None, job_id: int | None = None,
                       created_at: datetime | None = None) -> BridgeVersion:
    """Register a version (immutable: the same name twice is refused)."""
    if status not in BRIDGE_STATUSES:
        raise RefusedError(f"unknown bridge version status {status!r}; allowed: {', '.join(BRIDGE_STATUSES)}")
    if not version or session.get(BridgeVersion, version) is not None:
        raise RefusedError(f"bridge version {version!r} already exists (or is empty); versions are immutable",
                           fix="register the new bridge under a new version name")
    row = BridgeVersion(version=version, kind=kind, path=str(path), sha256=sha256, status=status,
                        parent_version=parent_version, metrics=dict(metrics or {}),
                        data_summary=dict(data_summary or {}), job_id=job_id, created_at=created_at or utcnow())
    session.add(row)
    session.flush()
    return row


def get_bridge_version(session: Session, *, version: str) -> BridgeVersion:
    row = session.get(BridgeVersion, version)
    if row is None:
        raise NotFoundError(f"bridge version {version!r} does not exist")
    return row


def list_bridge_versions(session: Session) -> list[BridgeVersion]:
    return list(session.scalars(select(BridgeVersion).order_by(BridgeVersion.created_at, BridgeVersion.version)))


def get_active_bridge(session: Session) -> str | None:
    row = session.get(ActiveBridge, 1)
    return row.version if row is not None else None


def set_active_bridge(session: Session, *, version: str) -> ActiveBridge:
    """Make ``version`` the active one and remember the one before (for rollback). One row, one
    transaction: readers see the old or the new version, never a mix."""
    target = get_bridge_version(session, version=version)
    if target.status == "rejected":
        raise RefusedError(f"bridge version {version!r} was rejected by the gate and cannot be activated")
    row = session.get(ActiveBridge, 1)
    if row is None:
        row = ActiveBridge(id=1, version=version, changed_at=utcnow(), previous_version=None)
        session.add(row)
    elif row.version != version:
        row.previous_version, row.version, row.changed_at = row.version, version, utcnow()
    session.flush()
    log.info("active bridge: %s (previous %s)", row.version, row.previous_version)
    return row


# --- alignment jobs ------------------------------------------------------------------------------------------
def get_job(session: Session, *, job_id: int) -> AlignmentJob:
    job = session.get(AlignmentJob, job_id)
    if job is None:
        raise NotFoundError(f"alignment job {job_id} does not exist")
    return job


def running_or_paused_job(session: Session) -> AlignmentJob | None:
    """The unfinished job (queued, running or paused), if any; at start the daemon resumes or fails it."""
    q = select(AlignmentJob).where(AlignmentJob.state.in_(ACTIVE_JOB_STATES)).order_by(AlignmentJob.id.desc())
    return session.scalars(q).first()


def create_job(session: Session, *, method: str, trigger: str) -> AlignmentJob:
    """A queued job. Refused while another job is unfinished: one job at a time."""
    if trigger not in JOB_TRIGGERS:
        raise RefusedError(f"unknown job trigger {trigger!r}; allowed: {', '.join(JOB_TRIGGERS)}")
    if not method:
        raise RefusedError("a job needs a method")
    other = running_or_paused_job(session)
    if other is not None:
        raise RefusedError(f"alignment job {other.id} is {other.state}; one job runs at a time",
                           fix=f"wait for it or cancel it (job {other.id})")
    job = AlignmentJob(method=method, trigger=trigger, state="queued", progress=0.0, step=0,
                       data_counts={}, durations={}, metrics={}, cancel_requested=False, created_at=utcnow())
    session.add(job)
    session.flush()
    return job


def update_job(session: Session, *, job_id: int, **fields: Any) -> AlignmentJob:
    """Set fields of an unfinished job; a ``state`` change must follow ``JOB_TRANSITIONS``.

    ``started_at`` is set on the first change to running, ``finished_at`` on reaching a terminal state.
    JSON fields are replaced, not merged (pass the whole dict).
    """
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise TypeError(f"update_job got unknown fields {sorted(unknown)}; allowed: {sorted(_UPDATABLE)}")
    job = get_job(session, job_id=job_id)
    if job.state in TERMINAL_JOB_STATES:
        raise RefusedError(f"alignment job {job_id} already finished ({job.state}); a finished job is final")
    new = fields.get("state", job.state)
    if new not in JOB_STATES:
        raise RefusedError(f"unknown job state {new!r}; allowed: {', '.join(JOB_STATES)}")
    if new != job.state and new not in JOB_TRANSITIONS[job.state]:
        raise RefusedError(f"alignment job {job_id} cannot go from {job.state} to {new}")
    if "progress" in fields and not 0.0 <= float(fields["progress"]) <= 1.0:
        raise RefusedError(f"job progress must be within 0..1, got {fields['progress']}")
    for key, value in fields.items():
        setattr(job, key, dict(value) if isinstance(value, dict) else value)
    if new == "running" and job.started_at is None:
        job.started_at = utcnow()
    if new in TERMINAL_JOB_STATES and job.finished_at is None:
        job.finished_at = utcnow()
    session.flush()
    return job


def request_cancel(session: Session, *, job_id: int) -> AlignmentJob:
    """Ask a job to stop: a queued one is cancelled at once; a running/paused one gets
    ``cancel_requested`` and its runner stops at the next step boundary."""
    job = get_job(session, job_id=job_id)
    if job.state in TERMINAL_JOB_STATES:
        raise RefusedError(f"alignment job {job_id} already finished ({job.state})")
    job.cancel_requested = True
    if job.state == "queued":
        job.state, job.finished_at = "cancelled", utcnow()
    session.flush()
    return job


def list_jobs(session: Session, *, limit: int = 50, offset: int = 0) -> list[AlignmentJob]:
    q = select(AlignmentJob).order_by(AlignmentJob.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(q))


# --- rows as JSON for the API ------------------------------------------------------------------------------
def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def _rel(path: str | None) -> str | None:
    """Absolute paths (e.g. a bundle's base bridge) are not shown to API clients."""
    return None if path is None or PurePath(path).is_absolute() else path


def bridge_version_to_dict(v: BridgeVersion) -> dict[str, Any]:
    return {"version": v.version, "parent_version": v.parent_version, "kind": v.kind, "path": _rel(v.path),
            "sha256": v.sha256, "created_at": _iso(v.created_at), "status": v.status, "metrics": v.metrics,
            "data_summary": v.data_summary, "job_id": v.job_id}


def job_to_dict(j: AlignmentJob) -> dict[str, Any]:
    return {"id": j.id, "created_at": _iso(j.created_at), "started_at": _iso(j.started_at),
            "finished_at": _iso(j.finished_at), "state": j.state, "method": j.method, "trigger": j.trigger,
            "phase": j.phase, "progress": j.progress, "step": j.step, "total_steps": j.total_steps, "data_counts": j.data_counts,
            "durations": j.durations, "peak_rss_mb": j.peak_rss_mb, "metrics": j.metrics,
            "candidate_version": j.candidate_version, "checkpoint_path": _rel(j.checkpoint_path),
            "error": j.error, "cancel_requested": j.cancel_requested}
