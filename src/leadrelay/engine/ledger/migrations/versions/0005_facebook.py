"""Facebook Lead Ads: connected pages, and each notified lead with its Graph read

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "facebook_pages",
        sa.Column("id", _ID, nullable=False),
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("page_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("secrets", _JSON, nullable=False),
        sa.Column("forms", _JSON, nullable=False),
        sa.Column("field_map", _JSON, nullable=False),
        sa.Column("retry_policy", _JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
        # A page's notifications go to one account.
        sa.UniqueConstraint("page_id", name="uq_facebook_pages_page_id"),
    )
    op.create_index("ix_facebook_pages_account_id", "facebook_pages", ["account_id"])
    op.create_table(
        "facebook_leads",
        sa.Column("id", _ID, nullable=False),
        sa.Column("connection_id", _ID, nullable=False),
        sa.Column("leadgen_id", sa.String(length=64), nullable=False),
        sa.Column("page_id", sa.String(length=64), nullable=False),
        sa.Column("facebook_form_id", sa.String(length=64), nullable=True),
        sa.Column("ad_id", sa.String(length=64), nullable=True),
        sa.Column("adgroup_id", sa.String(length=64), nullable=True),
        sa.Column("created_time", sa.BigInteger(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_for", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_reason", sa.Text(), nullable=True),
        sa.Column("form_id", _ID, nullable=True),
        sa.Column("lead_id", _ID, nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["connection_id"], ["facebook_pages.id"]),
        sa.ForeignKeyConstraint(["form_id"], ["forms.id"]),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"]),
        sa.PrimaryKeyConstraint("id"),
        # Facebook re-sends notifications: a lead is stored once.
        sa.UniqueConstraint("leadgen_id", name="uq_facebook_leads_leadgen_id"),
    )
    op.create_index("ix_facebook_leads_connection_id", "facebook_leads", ["connection_id"])
    op.create_index("ix_facebook_leads_state_due", "facebook_leads", ["state", "next_due_at"])


def downgrade() -> None:
    op.drop_index("ix_facebook_leads_state_due", table_name="facebook_leads")
    op.drop_index("ix_facebook_leads_connection_id", table_name="facebook_leads")
    op.drop_table("facebook_leads")
    op.drop_index("ix_facebook_pages_account_id", table_name="facebook_pages")
    op.drop_table("facebook_pages")
