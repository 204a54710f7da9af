"""Timers and alarms in the store: thin keyword-only functions over a Session, like ``repo``.

A row is the whole truth about a timer: the daemon keeps no copy, so a restart (or a crash) loses
nothing and a timer that fell due while the daemon was down is found by ``due_timers`` at start.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.errors import NotFoundError, RefusedError
from assistant.store.models import ACTIVE_TIMER_STATES, Timer, utcnow

MAX_ACTIVE = 100  # a bound on what one user can have pending (a runaway client cannot fill the table)


def add_timer(session: Session, *, kind: str, due_at: datetime, label: str | None = None,
              duration_s: float | None = None, time_of_day: str | None = None, repeat: str | None = None,
              utterance_id: int | None = None) -> Timer:
    active = session.scalar(select(Timer.id).where(Timer.state.in_(ACTIVE_TIMER_STATES)).offset(MAX_ACTIVE - 1))
    if active is not None:
        raise RefusedError(f"{MAX_ACTIVE} timers and alarms are already set",
                           fix="cancel some (DELETE /v1/timers/{id} or `assistant timers cancel ID`)")
    row = Timer(kind=kind, label=label, due_at=due_at, duration_s=duration_s, time_of_day=time_of_day,
                repeat=repeat, utterance_id=utterance_id, state="pending", created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def get_timer(session: Session, *, timer_id: int) -> Timer:
    row = session.get(Timer, timer_id)
    if row is None:
        raise NotFoundError(f"no timer or alarm {timer_id}", fix="list them with GET /v1/timers")
    return row


def list_timers(session: Session, *, active_only: bool = True, kind: str | None = None,
                limit: int = 100) -> list[Timer]:
    q = select(Timer)
    if active_only:
        q = q.where(Timer.state.in_(ACTIVE_TIMER_STATES))
    if kind is not None:
        q = q.where(Timer.kind == kind)
    order = (Timer.due_at, Timer.id) if active_only else (Timer.id.desc(),)
    return list(session.scalars(q.order_by(*order).limit(limit)))


def find_active(session: Session, *, kind: str, label: str | None = None, time_of_day: str | None = None
                ) -> list[Timer]:
    """Active timers/alarms matching a spoken reference: by label, by local time, else all of ``kind``."""
    rows = list_timers(session, kind=kind)
    if label is not None:
        rows = [r for r in rows if r.label == label]
    if time_of_day is not None:
        hh, mm = (int(x) for x in time_of_day.split(":"))
        twelve = f"{(hh + 12) % 24:02d}:{mm:02d}"  # "seven thirty" names 07:30 or 19:30
        rows = [r for r in rows if r.time_of_day in (time_of_day, twelve)]
    return rows


def cancel_timer(session: Session, *, timer_id: int) -> Timer:
    row = get_timer(session, timer_id=timer_id)
    if row.state not in ACTIVE_TIMER_STATES:
        raise RefusedError(f"{row.kind} {timer_id} is already {row.state}", fix="only a pending or paused one "
                                                                                 "can be cancelled")
    row.state = "cancelled"
    session.flush()
    return row


def pause_timer(session: Session, *, row: Timer, now: datetime) -> None:
    if row.state == "pending":
        row.remaining_s = max(0.0, (row.due_at - now).total_seconds())
        row.state = "paused"
        session.flush()


def resume_timer(session: Session, *, row: Timer, now: datetime) -> None:
    if row.state == "paused":
        row.due_at = now + timedelta(seconds=row.remaining_s or 0.0)
        row.remaining_s, row.state = None, "pending"
        session.flush()


def due_timers(session: Session, *, now: datetime) -> list[Timer]:
    """Pending timers and alarms due at or before ``now``, oldest first."""
    q = select(Timer).where(Timer.state == "pending", Timer.due_at <= now).order_by(Timer.due_at, Timer.id)
    return list(session.scalars(q))


def next_due_at(session: Session) -> datetime | None:
    return session.scalar(select(Timer.due_at).where(Timer.state == "pending").order_by(Timer.due_at).limit(1))


def mark_fired(session: Session, *, row: Timer, now: datetime, next_due: datetime | None = None) -> None:
    """Record that ``row`` rang at ``now`` (late by ``now - due_at``); a repeating alarm is pending again
    at ``next_due``."""
    row.fired_at = now
    row.late_s = round(max(0.0, (now - row.due_at).total_seconds()), 3)
    if next_due is not None:
        row.due_at, row.state = next_due, "pending"
    else:
        row.state = "fired"
    session.flush()


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat()


def timer_to_dict(row: Timer, *, now: datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    left = row.remaining_s if row.state == "paused" else \
        max(0.0, (row.due_at - now).total_seconds()) if row.state == "pending" else None
    return {"id": row.id, "kind": row.kind, "label": row.label, "state": row.state, "due_at": _iso(row.due_at),
            "remaining_s": None if left is None else round(left, 1), "duration_s": row.duration_s,
            "time_of_day": row.time_of_day, "repeat": row.repeat, "created_at": _iso(row.created_at),
            "fired_at": _iso(row.fired_at), "late_s": row.late_s, "utterance_id": row.utterance_id}
