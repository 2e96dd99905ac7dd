"""delivery fencing: claim numbers, attempts written before they are sent

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claims", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("in_doubt", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claim", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("stale", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column("lane", sa.String(length=16), server_default="worker", nullable=False)
        )
        batch_op.add_column(sa.Column("resend_of", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("revision", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        for name in ("idempotency_key", "revision", "resend_of", "lane", "stale", "claim"):
            batch_op.drop_column(name)
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("in_doubt")
        batch_op.drop_column("claims")
