"""operating integrations: unlimited plans (plans.unlimited), archived forms and
integrations, integration revisions, the audit trail of management changes, test-send attempts

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A new column rather than a nullable cap: on SQLite, changing a column's nullability
    # rebuilds the table, which accounts' foreign keys to plans forbid.
    # (and plain ADD COLUMNs, which SQLite does in place, for the same reason).
    op.add_column("plans", sa.Column("unlimited", sa.Boolean(), server_default=sa.false(),
                                     nullable=False))
    op.add_column("forms", sa.Column("archived_at", _WHEN, nullable=True))
    op.add_column("integrations", sa.Column("archived_at", _WHEN, nullable=True))

    op.create_table(
        "integration_revisions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("integration_id", _ID, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("change", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("settings", _JSON, nullable=False),
        sa.ForeignKeyConstraint(["integration_id"], ["integrations.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("integration_id", "revision", name="uq_integration_revisions"),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", _ID, nullable=False),
        sa.Column("account_id", _ID, nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.BigInteger(), nullable=True),
        sa.Column("before", _JSON, nullable=True),
        sa.Column("after", _JSON, nullable=True),
        sa.Column("at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_events_account", "audit_events", ["account_id", "id"])
    op.create_table(
        "test_attempts",
        sa.Column("id", _ID, nullable=False),
        sa.Column("integration_id", _ID, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=False),
        sa.Column("crm_reference", sa.String(length=500), nullable=True),
        sa.Column("lead", _JSON, nullable=False),
        sa.Column("exchanges", _JSON, nullable=False),
        sa.Column("trace", _JSON, nullable=False),
        sa.ForeignKeyConstraint(["integration_id"], ["integrations.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_test_attempts_integration_id", "test_attempts", ["integration_id"])


def downgrade() -> None:
    op.drop_index("ix_test_attempts_integration_id", table_name="test_attempts")
    op.drop_table("test_attempts")
    op.drop_index("ix_audit_events_account", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("integration_revisions")
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.drop_column("archived_at")
    with op.batch_alter_table("forms", schema=None) as batch_op:
        batch_op.drop_column("archived_at")
    op.execute("UPDATE plans SET max_active_integrations = 1000000 WHERE unlimited")
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.drop_column("unlimited")
