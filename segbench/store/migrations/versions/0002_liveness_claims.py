"""Liveness and claims: the driver's pid, start time, boot id and heartbeat on a run; a job's failure kind; claims.

Existing failed jobs get a failure kind from the messages the earlier segbench
wrote, so a plain re-run retries a worker death or a database refusal recorded
before this revision, and keeps a model's own exception cached.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("driver_pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("driver_started", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("driver_boot", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("failure_kind", sa.String(length=16), nullable=True))
    op.execute(
        "UPDATE jobs SET failure_kind = CASE"
        " WHEN error LIKE 'worker process died%' OR error LIKE 'not run: it shares its training%'"
        "  OR error LIKE 'Ray task failed%' THEN 'lost'"
        " WHEN error LIKE 'the database refused%' THEN 'infrastructure'"
        " ELSE 'model' END"
        " WHERE status = 'failed'"
    )
    op.execute("UPDATE jobs SET failure_kind = 'interrupted' WHERE status = 'interrupted'")
    op.create_table(
        "claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_id", sa.String(length=64), nullable=False),
        sa.Column("train_key", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("lease_until", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code_id", "train_key"),
    )
    op.create_index(op.f("ix_claims_run_id"), "claims", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_claims_run_id"), table_name="claims")
    op.drop_table("claims")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("failure_kind")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("driver_boot")
        batch.drop_column("driver_started")
        batch.drop_column("driver_pid")
