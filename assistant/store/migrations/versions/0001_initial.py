"""initial schema: utterances, alignment_jobs, bridge_versions, active_bridge, enrollment_prompts

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00

Names are wrapped in op.f(): they are final, not run through the naming convention again.
Frozen: this file spells out every table and value list instead of importing ``models`` so that later
model changes can never rewrite history; a new revision changes the schema.
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _in(column: str, *values: str) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "alignment_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("total_steps", sa.Integer(), nullable=True),
        sa.Column("data_counts", sa.JSON(), nullable=False),
        sa.Column("durations", sa.JSON(), nullable=False),
        sa.Column("peak_rss_mb", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("candidate_version", sa.String(64), nullable=True),
        sa.Column("checkpoint_path", sa.String(1024), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.CheckConstraint(_in("state", "queued", "running", "paused", "succeeded", "rejected", "failed",
                               "cancelled"), name=op.f("ck_alignment_jobs_state")),
        sa.CheckConstraint(_in('"trigger"', "idle", "api", "cli"), name=op.f("ck_alignment_jobs_trigger")),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name=op.f("ck_alignment_jobs_progress")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alignment_jobs")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_alignment_jobs_state"), "alignment_jobs", ["state"])

    op.create_table(
        "bridge_versions",
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("parent_version", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("data_summary", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(_in("status", "accepted", "rejected", "base"), name=op.f("ck_bridge_versions_status")),
        sa.ForeignKeyConstraint(["job_id"], ["alignment_jobs.id"], ondelete="SET NULL",
                                name=op.f("fk_bridge_versions_job_id_alignment_jobs")),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_bridge_versions")),
    )

    op.create_table(
        "active_bridge",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column("previous_version", sa.String(64), nullable=True),
        sa.CheckConstraint("id = 1", name=op.f("ck_active_bridge_single_row")),
        sa.ForeignKeyConstraint(["version"], ["bridge_versions.version"], ondelete="RESTRICT",
                                name=op.f("fk_active_bridge_version_bridge_versions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_active_bridge")),
    )

    # utterances and enrollment_prompts reference each other; SQLite accepts the forward reference.
    op.create_table(
        "enrollment_prompts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("recorded_utterance_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(_in("source", "shipped", "user"), name=op.f("ck_enrollment_prompts_source")),
        sa.ForeignKeyConstraint(["recorded_utterance_id"], ["utterances.id"], ondelete="SET NULL",
                                name=op.f("fk_enrollment_prompts_recorded_utterance_id_utterances")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollment_prompts")),
        sa.UniqueConstraint("text", name=op.f("uq_enrollment_prompts_text")),
        sqlite_autoincrement=True,
    )

    op.create_table(
        "utterances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("speech_started_at", sa.DateTime(), nullable=True),
        sa.Column("speech_ended_at", sa.DateTime(), nullable=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("audio_path", sa.String(255), nullable=False),
        sa.Column("audio_sha256", sa.String(64), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("sample_rate_hz", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("activation", sa.String(16), nullable=True),
        sa.Column("transcript", sa.Text(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=True),
        sa.Column("bridge_version", sa.String(64), nullable=True),
        sa.Column("encoded_path", sa.String(255), nullable=True),
        sa.Column("encoded_frames", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("label_text", sa.Text(), nullable=True),
        sa.Column("label_source", sa.String(16), nullable=True),
        sa.Column("labelled_at", sa.DateTime(), nullable=True),
        sa.Column("prompt_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(_in("status", "captured", "processing", "done", "failed", "skipped"),
                           name=op.f("ck_utterances_status")),
        sa.CheckConstraint("activation IS NULL OR " + _in("activation", "responded", "logged_only"),
                           name=op.f("ck_utterances_activation")),
        sa.CheckConstraint("label_source IS NULL OR " + _in("label_source", "enrollment", "correction",
                                                            "confirmed"),
                           name=op.f("ck_utterances_label_source")),
        sa.ForeignKeyConstraint(["prompt_id"], ["enrollment_prompts.id"], ondelete="SET NULL",
                                name=op.f("fk_utterances_prompt_id_enrollment_prompts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_utterances")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_utterances_created_at"), "utterances", ["created_at"])
    op.create_index(op.f("ix_utterances_status"), "utterances", ["status"])
    op.create_index(op.f("ix_utterances_label_source"), "utterances", ["label_source"])


def downgrade() -> None:
    for table in ("utterances", "enrollment_prompts", "active_bridge", "bridge_versions", "alignment_jobs"):
        op.drop_table(table)
