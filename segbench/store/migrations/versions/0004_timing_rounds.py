"""Timing rounds: a recorded job re-timed in fresh processes (between-process noise for verdicts).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "timing_rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("samples", sa.JSON(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("measured_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_id", "metric", "round"),
    )
    op.create_index(op.f("ix_timing_rounds_job_id"), "timing_rounds", ["job_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_timing_rounds_job_id"), table_name="timing_rounds")
    op.drop_table("timing_rounds")
