"""Lockstep sweeps: timing rounds that took turns with other revisions' rounds, burst by burst.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("timing_rounds") as batch:
        batch.add_column(sa.Column("sweep", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("burst", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("timing_rounds") as batch:
        batch.drop_column("burst")
        batch.drop_column("sweep")
