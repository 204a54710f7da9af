"""ORM tables (SQLAlchemy 2.0 typed style). The schema itself is created only by the Alembic migrations
in ``migrations/versions``; these classes must describe the same tables (a test compares them).

Times are timezone-aware UTC in Python and naive UTC in SQLite (``UTCDateTime``), so SQL comparisons
of stored times are plain string comparisons in one format.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (JSON, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, MetaData,
                        String, Text, TypeDecorator)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from assistant.units import TARGET_RATE_HZ

# Named constraints: SQLite cannot ALTER constraints, so later migrations rebuild tables in Alembic's
# batch mode, which needs every constraint to have a stable name to drop or keep it.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UTTERANCE_STATUSES = ("captured", "processing", "done", "failed", "skipped")
PENDING_STATUSES = ("captured", "processing")
ACTIVATIONS = ("responded", "logged_only")
LABEL_SOURCES = ("enrollment", "correction", "confirmed")
FIXED_SOURCES = ("mic", "file", "api", "enrollment", "recovered", "wyoming")  # plus "ws:<name>"
# "recovered": audio fsynced just before a crash whose row was not committed yet (adopt_orphan_audio)
BRIDGE_STATUSES = ("accepted", "rejected", "base")
JOB_STATES = ("queued", "running", "paused", "succeeded", "rejected", "failed", "cancelled")
TERMINAL_JOB_STATES = ("succeeded", "rejected", "failed", "cancelled")
ACTIVE_JOB_STATES = ("queued", "running", "paused")
JOB_TRIGGERS = ("idle", "api", "cli")
PROMPT_SOURCES = ("shipped", "user")
TIMER_KINDS = ("timer", "alarm", "reminder")
TIMER_STATES = ("pending", "paused", "fired", "cancelled")
ACTIVE_TIMER_STATES = ("pending", "paused")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def in_list(column: str, values: tuple[str, ...]) -> str:
    """SQL text for a CHECK that ``column`` is one of ``values`` (shared with the migration)."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored as naive UTC (SQLite has no time zones).

    A naive datetime is refused rather than guessed: local time on a device moves with DST.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass a timezone-aware datetime")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Utterance(Base):
    __tablename__ = "utterances"
    __table_args__ = (
        CheckConstraint(in_list("status", UTTERANCE_STATUSES), name="status"),
        CheckConstraint(f"activation IS NULL OR {in_list('activation', ACTIVATIONS)}", name="activation"),
        CheckConstraint(f"label_source IS NULL OR {in_list('label_source', LABEL_SOURCES)}", name="label_source"),
        Index("ix_utterances_created_at", "created_at"),
        Index("ix_utterances_status", "status"),
        Index("ix_utterances_label_source", "label_source"),
        # AUTOINCREMENT: ids are never reused after a delete, so a stale audio/<id>.wav or a client's
        # cached id can never point at a newer utterance.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    speech_started_at: Mapped[datetime | None]
    speech_ended_at: Mapped[datetime | None]
    source: Mapped[str] = mapped_column(String(64))
    audio_path: Mapped[str] = mapped_column(String(255))  # relative to the data dir
    audio_sha256: Mapped[str] = mapped_column(String(64))
    duration_s: Mapped[float] = mapped_column(Float)
    sample_rate_hz: Mapped[int] = mapped_column(Integer, default=TARGET_RATE_HZ)
    status: Mapped[str] = mapped_column(String(16), default="captured")
    activation: Mapped[str | None] = mapped_column(String(16))
    transcript: Mapped[str | None] = mapped_column(Text)
    response: Mapped[str | None] = mapped_column(Text)
    timings: Mapped[dict[str, Any] | None]
    bridge_version: Mapped[str | None] = mapped_column(String(64))
    encoded_path: Mapped[str | None] = mapped_column(String(255))  # relative to the data dir
    encoded_frames: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    label_text: Mapped[str | None] = mapped_column(Text)
    label_source: Mapped[str | None] = mapped_column(String(16))
    labelled_at: Mapped[datetime | None]
    prompt_id: Mapped[int | None] = mapped_column(ForeignKey("enrollment_prompts.id", ondelete="SET NULL"))
    action: Mapped[dict[str, Any] | None]  # assistant/skills/actions.py: {"name", "slots"}
    action_outcome: Mapped[dict[str, Any] | None]  # {"status", "detail", "timer_id"?}


class Timer(Base):
    """A timer or an alarm. ``due_at`` is when it rings next (UTC); an alarm's ``time_of_day`` is local
    wall-clock time, so a repeating alarm's next ``due_at`` is computed in the local time zone."""

    __tablename__ = "timers"
    __table_args__ = (
        CheckConstraint(in_list("kind", TIMER_KINDS), name="kind"),
        CheckConstraint(in_list("state", TIMER_STATES), name="state"),
        Index("ix_timers_state", "state"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    label: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default="pending")
    duration_s: Mapped[float | None] = mapped_column(Float)  # timers: as set (and added to)
    remaining_s: Mapped[float | None] = mapped_column(Float)  # paused timers
    time_of_day: Mapped[str | None] = mapped_column(String(5))  # alarms: "HH:MM", local
    repeat: Mapped[str | None] = mapped_column(String(32))  # alarms: assistant/skills/actions.REPEATS
    fired_at: Mapped[datetime | None]
    late_s: Mapped[float | None] = mapped_column(Float)  # fired this late (the daemon was down when due)
    utterance_id: Mapped[int | None] = mapped_column(ForeignKey("utterances.id", ondelete="SET NULL"))


class AlignmentJob(Base):
    __tablename__ = "alignment_jobs"
    __table_args__ = (
        CheckConstraint(in_list("state", JOB_STATES), name="state"),
        CheckConstraint(in_list('"trigger"', JOB_TRIGGERS), name="trigger"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress"),
        Index("ix_alignment_jobs_state", "state"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(16), default="queued")
    method: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(16))
    phase: Mapped[str | None] = mapped_column(String(16))  # "training" | "gating": what progress measures
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    data_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    durations: Mapped[dict[str, Any]] = mapped_column(default=dict)
    peak_rss_mb: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    candidate_version: Mapped[str | None] = mapped_column(String(64))
    checkpoint_path: Mapped[str | None] = mapped_column(String(1024))
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)


class BridgeVersion(Base):
    __tablename__ = "bridge_versions"
    __table_args__ = (CheckConstraint(in_list("status", BRIDGE_STATUSES), name="status"),)

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    parent_version: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(1024))  # relative to the data dir, or absolute (bundle's base)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data_summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("alignment_jobs.id", ondelete="SET NULL"))


class ActiveBridge(Base):
    """Exactly one row (id = 1): which version serves. Changed in one transaction."""

    __tablename__ = "active_bridge"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    # RESTRICT: the serving version's row can never be deleted from under the daemon.
    version: Mapped[str] = mapped_column(ForeignKey("bridge_versions.version", ondelete="RESTRICT"))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    previous_version: Mapped[str | None] = mapped_column(String(64))


class EnrollmentPrompt(Base):
    __tablename__ = "enrollment_prompts"
    __table_args__ = (
        CheckConstraint(in_list("source", PROMPT_SOURCES), name="source"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text, unique=True)
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # use_alter: utterances <-> enrollment_prompts reference each other; this tells SQLAlchemy's table
    # sorting where the cycle is (SQLite itself accepts forward references in CREATE TABLE).
    recorded_utterance_id: Mapped[int | None] = mapped_column(
        ForeignKey("utterances.id", ondelete="SET NULL", use_alter=True))
