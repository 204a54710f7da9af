"""Thin keyword-only functions over a Session: utterances, labels, prompts, retention.

They flush but never commit: the caller's ``Store.session()`` block is the transaction, so several calls
can be one atomic change. Files follow the rows: a deleted row's files are removed only after the commit
(a rollback keeps them), and a file written for a row that is then rolled back is removed again.
Bridge versions and jobs live in ``jobs.py`` and are re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, is_dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event, func, or_, select
from sqlalchemy.orm import Session

from assistant.errors import NotFoundError, RefusedError
from assistant.store import files
from assistant.store.jobs import (add_bridge_version, bridge_version_to_dict, create_job, get_active_bridge,  # noqa: F401
                                  get_bridge_version, get_job, job_to_dict, list_bridge_versions, list_jobs,
                                  request_cancel, running_or_paused_job, set_active_bridge, update_job)
from assistant.store.models import (ACTIVATIONS, FIXED_SOURCES, LABEL_SOURCES, PENDING_STATUSES, EnrollmentPrompt,
                                    Utterance, utcnow)
from assistant.units import TARGET_RATE_HZ

log = logging.getLogger(__name__)

_ON_COMMIT, _ON_ROLLBACK = "assistant.store.remove_on_commit", "assistant.store.remove_on_rollback"
MAX_PAGE = 1000


# --- files that follow the transaction --------------------------------------------------------------------
def _file_hooks(session: Session) -> tuple[list, list]:
    info = session.info
    if _ON_COMMIT not in info:
        info[_ON_COMMIT], info[_ON_ROLLBACK] = [], []
        event.listen(session, "after_commit", _after_commit)
        event.listen(session, "after_rollback", _after_rollback)
    return info[_ON_COMMIT], info[_ON_ROLLBACK]


def _after_commit(session: Session) -> None:
    for data_dir, rels in session.info[_ON_COMMIT]:
        files.remove_files(data_dir, rels)
    session.info[_ON_COMMIT].clear()
    session.info[_ON_ROLLBACK].clear()


def _after_rollback(session: Session) -> None:
    for data_dir, rels in session.info[_ON_ROLLBACK]:
        files.remove_files(data_dir, rels)
    session.info[_ON_COMMIT].clear()
    session.info[_ON_ROLLBACK].clear()


def _aware(dt: datetime | None) -> datetime | None:
    """Filters from API input: a naive time is taken as UTC."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=timezone.utc)


def _check_source(source: str) -> None:
    if source not in FIXED_SOURCES and not (source.startswith("ws:") and len(source) > 3):
        raise RefusedError(f"unknown utterance source {source!r}; allowed: {', '.join(FIXED_SOURCES)}, 'ws:<name>'")


# --- utterances -----------------------------------------------------------------------------------------------
def add_utterance(session: Session, *, source: str, audio_path: str, audio_sha256: str, duration_s: float,
                  sample_rate_hz: int = TARGET_RATE_HZ, speech_started_at: datetime | None = None,
                  speech_ended_at: datetime | None = None, prompt_id: int | None = None,
                  label_text: str | None = None, label_source: str | None = None) -> Utterance:
    """A captured utterance whose audio file is already written (status "captured")."""
    _check_source(source)
    files.check_relpath(audio_path)
    if label_source is not None:
        label_text = _checked_label(label_text, label_source)
    u = Utterance(source=source, audio_path=audio_path, audio_sha256=audio_sha256, duration_s=float(duration_s),
                  sample_rate_hz=sample_rate_hz, speech_started_at=speech_started_at,
                  speech_ended_at=speech_ended_at, prompt_id=prompt_id, status="captured",
                  label_text=label_text, label_source=label_source,
                  labelled_at=utcnow() if label_source else None)
    session.add(u)
    session.flush()
    return u


def adopt_orphan_audio(session: Session, *, data_dir: Path) -> list[int]:
    """Audio files without a row: a crash hit between the fsync of ``audio/<id>.wav`` and the commit of its
    row. The audio was captured, so it is adopted under its own id (source "recovered", status captured)
    and gets processed like any pending utterance; an unreadable file is left alone and logged. Run at
    start, before anything records new utterances (a new row could otherwise reuse the id)."""
    import hashlib

    import soundfile as sf

    adopted = []
    audio_dir = Path(data_dir) / files.AUDIO_DIR
    for path in sorted(audio_dir.glob("*.wav")) if audio_dir.is_dir() else []:
        if not path.stem.isdigit() or session.get(Utterance, int(path.stem)) is not None:
            continue
        try:
            info = sf.info(str(path))
            data = path.read_bytes()
        except (RuntimeError, OSError) as exc:
            log.error("orphan audio %s is unreadable (%s); left in place", path, exc)
            continue
        created = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
        u = Utterance(id=int(path.stem), created_at=created, source="recovered", audio_path=files.audio_relpath(int(path.stem)),
                      audio_sha256=hashlib.sha256(data).hexdigest(), duration_s=info.frames / info.samplerate,
                      sample_rate_hz=info.samplerate, status="captured")
        session.add(u)
        session.flush()
        adopted.append(u.id)
        log.warning("adopted audio %s captured before a crash (its row was never committed)", path.name)
    return adopted


def record_utterance(session: Session, *, data_dir: Path, samples: Any, source: str,
                     sample_rate_hz: int = TARGET_RATE_HZ, speech_started_at: datetime | None = None,
                     speech_ended_at: datetime | None = None, prompt_id: int | None = None,
                     label_text: str | None = None, label_source: str | None = None) -> Utterance:
    """Row + ``audio/<id>.wav`` in one go: the id names the file, so the row is flushed first, then the
    WAV is written and fsynced; the commit of the caller's session makes both visible. A rollback removes
    the file again."""
    n = len(samples.samples) if hasattr(samples, "samples") else len(samples)
    rate = getattr(samples, "sample_rate_hz", sample_rate_hz)
    u = add_utterance(session, source=source, audio_path=files.audio_relpath(0), audio_sha256="",
                      duration_s=n / rate, sample_rate_hz=rate, speech_started_at=speech_started_at,
                      speech_ended_at=speech_ended_at, prompt_id=prompt_id, label_text=label_text,
                      label_source=label_source)
    _file_hooks(session)[1].append((Path(data_dir), [files.audio_relpath(u.id)]))
    u.audio_path, u.audio_sha256 = files.write_audio(data_dir, u.id, samples, sample_rate_hz=rate)
    session.flush()
    return u


def get_utterance(session: Session, *, utterance_id: int) -> Utterance:
    u = session.get(Utterance, utterance_id)
    if u is None:
        raise NotFoundError(f"utterance {utterance_id} does not exist")
    return u


def _transition(session: Session, utterance_id: int, allowed: tuple[str, ...], new: str) -> Utterance:
    u = get_utterance(session, utterance_id=utterance_id)
    if u.status not in allowed:
        raise RefusedError(f"utterance {utterance_id} is {u.status}; it cannot become {new}")
    u.status = new
    return u


def mark_processing(session: Session, *, utterance_id: int) -> Utterance:
    """The worker took it. Also allowed again after a crash (processing) or to retry failed/skipped ones."""
    u = _transition(session, utterance_id, ("captured", "processing", "failed", "skipped"), "processing")
    session.flush()
    return u


def complete_turn(session: Session, *, utterance_id: int, transcript: str, response: str | None,
                  timings: Mapping[str, float] | Any, bridge_version: str, activation: str,
                  encoded_path: str | None = None, encoded_frames: int | None = None,
                  action: Mapping[str, Any] | None = None, action_outcome: Mapping[str, Any] | None = None
                  ) -> Utterance:
    """Record a finished turn. ``timings``: a dict or an engine ``StageTimings``; ``action`` /
    ``action_outcome``: what the request asked to be done and what was (assistant/skills)."""
    if activation not in ACTIVATIONS:
        raise RefusedError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
    if encoded_path is not None:
        files.check_relpath(encoded_path)
    raw = asdict(timings) if is_dataclass(timings) and not isinstance(timings, type) else dict(timings)
    u = _transition(session, utterance_id, PENDING_STATUSES, "done")
    u.transcript, u.response, u.bridge_version, u.activation = transcript, response, bridge_version, activation
    u.timings = {k: float(v) for k, v in raw.items()}
    u.encoded_path, u.encoded_frames, u.error = encoded_path, encoded_frames, None
    u.action = dict(action) if action is not None else None
    u.action_outcome = dict(action_outcome) if action_outcome is not None else None
    session.flush()
    return u


def fail_utterance(session: Session, *, utterance_id: int, error: str) -> Utterance:
    u = _transition(session, utterance_id, PENDING_STATUSES, "failed")
    u.error = error
    session.flush()
    return u


def skip_utterance(session: Session, *, utterance_id: int, reason: str | None = None) -> Utterance:
    """Stored but not answered (e.g. dropped by a full queue); ``reason`` goes to ``error``."""
    u = _transition(session, utterance_id, PENDING_STATUSES, "skipped")
    u.error = reason
    session.flush()
    return u


def pending_utterances(session: Session) -> list[Utterance]:
    """Captured or processing, oldest first: what a crash left for the worker to re-queue."""
    q = select(Utterance).where(Utterance.status.in_(PENDING_STATUSES)).order_by(Utterance.id)
    return list(session.scalars(q))


def list_utterances(session: Session, *, limit: int = 50, offset: int = 0, since: datetime | None = None,
                    until: datetime | None = None, has_label: bool | None = None, text: str | None = None,
                    status: str | None = None) -> tuple[list[Utterance], int]:
    """Newest first; ``since`` inclusive, ``until`` exclusive; ``text``: case-insensitive substring of the
    transcript or the label. Returns (one page of rows, total matching)."""
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise RefusedError(f"limit must be 1..{MAX_PAGE} and offset >= 0 (got {limit}, {offset})")
    conds: list[Any] = []
    if since is not None:
        conds.append(Utterance.created_at >= _aware(since))
    if until is not None:
        conds.append(Utterance.created_at < _aware(until))
    if has_label is not None:
        conds.append(Utterance.label_source.is_not(None) if has_label else Utterance.label_source.is_(None))
    if status is not None:
        conds.append(Utterance.status == status)
    if text:
        needle = text.casefold()
        conds.append(or_(func.py_casefold(Utterance.transcript).contains(needle, autoescape=True),
                         func.py_casefold(Utterance.label_text).contains(needle, autoescape=True)))
    total = session.scalar(select(func.count()).select_from(Utterance).where(*conds)) or 0
    q = (select(Utterance).where(*conds).order_by(Utterance.created_at.desc(), Utterance.id.desc())
         .limit(limit).offset(offset))
    return list(session.scalars(q)), int(total)


def delete_utterance(session: Session, *, utterance_id: int, data_dir: Path) -> None:
    """Delete the row now and its audio/encoded files after the commit (missing files are fine)."""
    u = get_utterance(session, utterance_id=utterance_id)
    _delete_rows(session, Path(data_dir), [(u.id, u.audio_path, u.encoded_path)])


def _delete_rows(session: Session, data_dir: Path, rows: list[tuple[int, str | None, str | None]]) -> None:
    ids = [r[0] for r in rows]
    for i in range(0, len(ids), 500):  # stay far below SQLite's bound-parameter limit
        session.execute(delete(Utterance).where(Utterance.id.in_(ids[i:i + 500])),
                        execution_options={"synchronize_session": "fetch"})
    # ON DELETE SET NULL happened in SQLite, not in loaded objects: reload their link on next access.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, EnrollmentPrompt) and obj.recorded_utterance_id in ids:
            session.expire(obj, ["recorded_utterance_id"])
    _file_hooks(session)[0].append((data_dir, [p for r in rows for p in r[1:] if p]))


# --- labels ----------------------------------------------------------------------------------------------------
def _checked_label(text: str | None, source: str) -> str:
    if source not in LABEL_SOURCES:
        raise RefusedError(f"unknown label source {source!r}; allowed: {', '.join(LABEL_SOURCES)}")
    text = (text or "").strip()
    if not text:
        raise RefusedError(f"a {source} label needs a non-empty text")
    return text


def set_label(session: Session, *, utterance_id: int, text: str | None = None, source: str) -> Utterance:
    """"correction"/"enrollment": ``text`` is the label; "confirmed": the transcript becomes the label."""
    u = get_utterance(session, utterance_id=utterance_id)
    if source == "confirmed":
        if not (u.transcript or "").strip():
            raise RefusedError(f"utterance {utterance_id} has no transcript to confirm",
                               fix="send a correction with the text instead")
        text = u.transcript
    u.label_text, u.label_source, u.labelled_at = _checked_label(text, source), source, utcnow()
    session.flush()
    return u


def labelled_utterances(session: Session, *, since_id: int | None = None) -> list[Utterance]:
    """Labelled utterances by id (``since_id`` exclusive): the training data."""
    q = select(Utterance).where(Utterance.label_source.is_not(None))
    if since_id is not None:
        q = q.where(Utterance.id > since_id)
    return list(session.scalars(q.order_by(Utterance.id)))


def label_texts(session: Session) -> list[str]:
    """The text of every label (enrollment prompts read, corrections, confirmations), oldest first."""
    q = select(Utterance.label_text).where(Utterance.label_source.is_not(None)).order_by(Utterance.labelled_at)
    return [t for t in session.scalars(q) if t]


def count_labels_since(session: Session, *, after: datetime | None = None) -> int:
    q = select(func.count()).select_from(Utterance).where(Utterance.label_source.is_not(None))
    if after is not None:
        q = q.where(Utterance.labelled_at > _aware(after))
    return int(session.scalar(q) or 0)


# --- enrollment prompts -----------------------------------------------------------------------------------
def ensure_shipped_prompts(session: Session, *, texts: Iterable[str]) -> int:
    """Insert the shipped prompts not stored yet (idempotent); returns how many were added."""
    existing = set(session.scalars(select(EnrollmentPrompt.text)))
    added = 0
    for t in (t.strip() for t in texts):
        if t and t not in existing:
            session.add(EnrollmentPrompt(text=t, source="shipped"))
            existing.add(t)
            added += 1
    session.flush()
    return added


def add_prompt(session: Session, *, text: str) -> EnrollmentPrompt:
    """A user prompt; the same text again returns the stored prompt."""
    text = (text or "").strip()
    if not text:
        raise RefusedError("a prompt needs a non-empty text")
    found = session.scalar(select(EnrollmentPrompt).where(EnrollmentPrompt.text == text))
    if found is not None:
        return found
    p = EnrollmentPrompt(text=text, source="user")
    session.add(p)
    session.flush()
    return p


def list_prompts(session: Session, *, unrecorded_only: bool = False) -> list[EnrollmentPrompt]:
    q = select(EnrollmentPrompt).order_by(EnrollmentPrompt.id)
    if unrecorded_only:
        q = q.where(EnrollmentPrompt.recorded_utterance_id.is_(None))
    return list(session.scalars(q))


def attach_recording(session: Session, *, prompt_id: int, utterance_id: int) -> EnrollmentPrompt:
    """Link a recording to its prompt; an unlabelled recording gets the prompt text as its label."""
    p = session.get(EnrollmentPrompt, prompt_id)
    if p is None:
        raise NotFoundError(f"enrollment prompt {prompt_id} does not exist")
    u = get_utterance(session, utterance_id=utterance_id)
    p.recorded_utterance_id, u.prompt_id = u.id, p.id
    if u.label_source is None:
        u.label_text, u.label_source, u.labelled_at = p.text, "enrollment", utcnow()
    session.flush()
    return p


# --- retention ----------------------------------------------------------------------------------------------
def apply_retention(session: Session, *, data_dir: Path, max_age_days: float | None, max_bytes: int | None,
                    now: datetime | None = None) -> dict[str, int]:
    """Delete processed, unlabelled utterances older than ``max_age_days``, then the oldest of them until
    audio + encoded files fit in ``max_bytes`` (0/None: no limit). Labelled and not-yet-processed ones are
    never deleted, even when they alone exceed the cap. Files go after the commit."""
    data_dir = Path(data_dir)
    rows = session.execute(select(Utterance.id, Utterance.created_at, Utterance.audio_path, Utterance.encoded_path,
                                  Utterance.status, Utterance.label_source)
                           .order_by(Utterance.created_at, Utterance.id)).all()
    sizes = {r.id: files.file_size(data_dir, r.audio_path) + files.file_size(data_dir, r.encoded_path) for r in rows}
    total = sum(sizes.values())
    cutoff = (_aware(now) or utcnow()) - timedelta(days=max_age_days) if max_age_days else None
    victims = []
    for r in rows:
        if r.label_source is not None or r.status in PENDING_STATUSES:
            continue
        if (cutoff is not None and r.created_at < cutoff) or (max_bytes and total > max_bytes):
            victims.append((r.id, r.audio_path, r.encoded_path))
            total -= sizes[r.id]
    if victims:
        _delete_rows(session, data_dir, victims)
        log.info("retention: deleting %d utterances", len(victims))
    return {"deleted": len(victims), "freed_bytes": sum(sizes[v[0]] for v in victims), "remaining_bytes": total}


# --- rows as JSON for the API (relative paths only) ----------------------------------------------------------
def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def utterance_to_dict(u: Utterance) -> dict[str, Any]:
    return {
        "id": u.id, "created_at": _iso(u.created_at), "speech_started_at": _iso(u.speech_started_at),
        "speech_ended_at": _iso(u.speech_ended_at), "source": u.source, "duration_s": u.duration_s,
        "sample_rate_hz": u.sample_rate_hz, "status": u.status, "activation": u.activation,
        "transcript": u.transcript, "response": u.response, "timings": u.timings,
        "bridge_version": u.bridge_version, "audio_path": u.audio_path, "audio_sha256": u.audio_sha256,
        "encoded_path": u.encoded_path, "encoded_frames": u.encoded_frames, "error": u.error,
        "label": None if u.label_source is None else
        {"text": u.label_text, "source": u.label_source, "labelled_at": _iso(u.labelled_at)},
        "prompt_id": u.prompt_id, "action": u.action, "action_outcome": u.action_outcome,
    }


def prompt_to_dict(p: EnrollmentPrompt) -> dict[str, Any]:
    return {"id": p.id, "text": p.text, "source": p.source, "created_at": _iso(p.created_at),
            "recorded_utterance_id": p.recorded_utterance_id}
