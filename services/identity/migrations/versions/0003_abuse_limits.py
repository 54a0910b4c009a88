"""abuse limits: sign-up attempts per address, refresh family age, one active signing key,
revocable signing keys, OAuth state bound to the browser, failed logins by account and address

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signup_attempts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, primary_key=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_signup_attempts_address_at", "signup_attempts", ["address", "at"])
    op.add_column(
        "refresh_tokens", sa.Column("family_started_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("oauth_states", sa.Column("browser_hash", sa.String(64), nullable=True))
    op.add_column("oauth_states", sa.Column("link_user_id", sa.UUID(), nullable=True))
    op.create_index(
        "ix_login_failures_email_address_at", "login_failures", ["email_key", "address", "at"]
    )
    op.add_column(
        "signing_keys", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True)
    )
    # keep the newest unretired key if an earlier race left two
    op.execute(
        "UPDATE signing_keys SET retired_at = now() WHERE retired_at IS NULL AND kid <> ("
        " SELECT kid FROM signing_keys WHERE retired_at IS NULL"
        " ORDER BY created_at DESC LIMIT 1)"
    )
    op.create_index(
        "uq_signing_keys_one_active",
        "signing_keys",
        [sa.text("(retired_at IS NULL)")],
        unique=True,
        postgresql_where=sa.text("retired_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_signing_keys_one_active", table_name="signing_keys")
    op.drop_column("signing_keys", "revoked_at")
    op.drop_index("ix_login_failures_email_address_at", table_name="login_failures")
    op.drop_column("oauth_states", "link_user_id")
    op.drop_column("oauth_states", "browser_hash")
    op.drop_column("refresh_tokens", "family_started_at")
    op.drop_index("ix_signup_attempts_address_at", table_name="signup_attempts")
    op.drop_table("signup_attempts")
