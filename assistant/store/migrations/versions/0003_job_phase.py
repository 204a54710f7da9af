"""an alignment job's phase: training, then gating (its progress restarts for the gate)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 00:00:00
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Nullable: SQLite adds it in place; a job from before has no phase.
    op.add_column("alignment_jobs", sa.Column("phase", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alignment_jobs") as batch:
        batch.drop_column("phase")
