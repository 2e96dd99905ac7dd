"""the HTTP API: API keys, forms' public keys and intake settings, idempotent posts

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import secrets

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("forms", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public_key", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("allowed_origins", _JSON, server_default="[]", nullable=False)
        )
        batch_op.add_column(
            sa.Column("required_fields", _JSON, server_default="[]", nullable=False)
        )
        batch_op.add_column(sa.Column("thank_you_url", sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column("active", sa.Boolean(), server_default=sa.true(),
                                      nullable=False))
    # Forms made before the API get a public key each (the same shape the engine makes).
    conn = op.get_bind()
    forms = sa.table("forms", sa.column("id", _ID), sa.column("public_key", sa.String))
    for (form_id,) in conn.execute(sa.select(forms.c.id)).all():
        conn.execute(
            forms.update()
            .where(forms.c.id == form_id)
            .values(public_key="fk_" + secrets.token_urlsafe(24))
        )
    with op.batch_alter_table("forms", schema=None) as batch_op:
        batch_op.alter_column("public_key", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint("uq_forms_public_key", ["public_key"])

    op.create_table(
        "api_keys",
        sa.Column("id", _ID, nullable=False),
        sa.Column("account_id", _ID, nullable=True),
        sa.Column("operator", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_account_id"), ["account_id"], unique=False)

    op.create_table(
        "idempotent_posts",
        sa.Column("id", _ID, nullable=False),
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("answer", _JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "key", name="uq_idempotent_posts_key"),
    )


def downgrade() -> None:
    op.drop_table("idempotent_posts")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_account_id"))
    op.drop_table("api_keys")
    with op.batch_alter_table("forms", schema=None) as batch_op:
        batch_op.drop_constraint("uq_forms_public_key", type_="unique")
        for name in ("active", "thank_you_url", "required_fields", "allowed_origins",
                     "public_key"):
            batch_op.drop_column(name)
