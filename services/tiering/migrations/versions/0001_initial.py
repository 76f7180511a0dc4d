"""Platform tables, accounts, customer tiers and tier history.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from shared.migrations import create_platform_tables, drop_platform_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MONEY = sa.Numeric(18, 2)


def upgrade() -> None:
    create_platform_tables()
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("balance", MONEY, nullable=False),
        sa.Column("balance_cny", MONEY, nullable=False),
        sa.Column("account_seq", sa.BigInteger, nullable=True),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("txn_id", sa.Text, nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("accounts_customer", "accounts", ["customer_id"])
    op.create_table(
        "customer_tiers",
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("tier", sa.Text, nullable=False),
        sa.Column("total_balance", MONEY, nullable=False),
        sa.Column("basis", sa.Text, nullable=False),
        sa.Column("maintenance_team", sa.Text, nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "tier_history",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("previous_tier", sa.Text, nullable=True),
        sa.Column("tier", sa.Text, nullable=False),
        sa.Column("direction", sa.Text, nullable=False),
        sa.Column("total_balance", MONEY, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cause_event_id", sa.Text, nullable=True),
    )
    op.create_index("tier_history_customer", "tier_history", ["customer_id", "id"])


def downgrade() -> None:
    op.drop_table("tier_history")
    op.drop_table("customer_tiers")
    op.drop_table("accounts")
    drop_platform_tables()
