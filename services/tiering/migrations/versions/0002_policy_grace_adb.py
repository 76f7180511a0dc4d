"""Stored tier policy, downgrade grace, daily closing totals, cause of each tier change.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(18, 2)


def upgrade() -> None:
    op.add_column("customer_tiers", sa.Column("grace_until", sa.DateTime(timezone=True)))
    op.add_column(
        "tier_history",
        sa.Column("cause", sa.Text, nullable=False, server_default="balance_changed"),
    )
    op.create_table(
        "daily_totals",
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("total_cny", MONEY, nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "day", name="daily_totals_pkey"),
    )
    op.create_table(
        "tier_policy",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("potential_from", MONEY, nullable=False),
        sa.Column("quality_from", MONEY, nullable=False),
        sa.Column("high_end_from", MONEY, nullable=False),
        sa.Column("basis", sa.Text, nullable=False),
        sa.Column("adb_days", sa.Integer, nullable=False),
        sa.Column("downgrade_grace_days", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("tier_policy")
    op.drop_table("daily_totals")
    op.drop_column("tier_history", "cause")
    op.drop_column("customer_tiers", "grace_until")
