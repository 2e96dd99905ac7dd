"""bulk imports and flow control: imports, the import of each lead, per-integration
rate limits and the shared pause a 429 asks for

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "imports",
        sa.Column("id", _ID, nullable=False),
        sa.Column("form_id", _ID, nullable=False),
        sa.Column("filename", sa.String(length=500), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("encoding", sa.String(length=32), nullable=True),
        sa.Column("delimiter", sa.String(length=4), nullable=True),
        sa.Column("integrate", sa.String(length=16), nullable=False),
        sa.Column("rate", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("stored", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("lines_done", sa.Integer(), nullable=False),
        sa.Column("rejections", _JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["form_id"], ["forms.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_imports_form_id", "imports", ["form_id"])
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("import_id", _ID, nullable=True))
        batch_op.create_foreign_key("fk_leads_import_id", "imports", ["import_id"], ["id"])
        batch_op.create_index("ix_leads_import_id", ["import_id"])
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate_limit", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.drop_column("paused_until")
        batch_op.drop_column("rate_limit")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("ix_leads_import_id")
        batch_op.drop_constraint("fk_leads_import_id", type_="foreignkey")
        batch_op.drop_column("import_id")
    op.drop_index("ix_imports_form_id", table_name="imports")
    op.drop_table("imports")
