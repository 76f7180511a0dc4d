"""Platform tables, profiles, behaviour signals, complaints seen, early warnings; first sweep.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.migrations import create_platform_tables, drop_platform_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MONEY = sa.Numeric(18, 2)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    create_platform_tables()
    op.create_table(
        "profiles",
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("mobile", sa.Text),
        sa.Column("wechat_openid", sa.Text),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("preferred_channel", sa.Text, nullable=False),
        sa.Column("consent_service", sa.Boolean, nullable=False),
        sa.Column("consent_marketing", sa.Boolean, nullable=False),
        sa.Column("quiet_hours_start", sa.Text, nullable=False),
        sa.Column("quiet_hours_end", sa.Text, nullable=False),
        sa.Column("tier", sa.Text),
        sa.Column("maintenance_team", sa.Text),
        sa.Column("relationship_manager_id", sa.Text),
        sa.Column("branch_id", sa.Text),
        sa.Column("onboarded_at", TS),
        sa.Column("field_stamps", JSONB, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "customer_signals",
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("last_transaction_at", TS),
        sa.Column("last_activity_at", TS),
        sa.Column("last_login_at", TS),
        sa.Column("logins", sa.BigInteger, nullable=False),
        sa.Column("product_views", sa.BigInteger, nullable=False),
        sa.Column("wealth_views", sa.BigInteger, nullable=False),
        sa.Column("purchases", sa.BigInteger, nullable=False),
        sa.Column("last_wealth_purchase_at", TS),
        sa.Column("last_complaint_at", TS),
        sa.Column("browsing_alerted_on", sa.Date),
    )
    op.create_table(
        "monthly_transactions",
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("month", sa.Date, nullable=False),
        sa.Column("transactions", sa.BigInteger, nullable=False),
        sa.Column("turnover_cny", MONEY, nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "month", name="monthly_transactions_pkey"),
    )
    op.create_index("monthly_transactions_month", "monthly_transactions", ["month"])
    op.create_table(
        "wealth_days",
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("views", sa.BigInteger, nullable=False),
        sa.Column("purchases", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "day", name="wealth_days_pkey"),
    )
    op.create_table(
        "complaints",
        sa.Column("complaint_id", sa.Text, primary_key=True),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("filed_at", TS, nullable=False),
    )
    op.create_index("complaints_customer", "complaints", ["customer_id", "filed_at"])
    op.create_table(
        "early_warnings",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("occurrence", sa.Text, nullable=False),
        sa.Column("evidence", JSONB, nullable=False),
        sa.Column("assignee_id", sa.Text, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("raised_at", TS, nullable=False),
        sa.UniqueConstraint(
            "customer_id", "reason", "occurrence", name="early_warnings_occurrence"
        ),
    )
    op.create_index("early_warnings_customer", "early_warnings", ["customer_id", "raised_at"])
    # The daily sweep re-arms itself each run; this first timer starts the chain.
    op.execute(
        "INSERT INTO timers (kind, key, due_at) VALUES ('daily_sweep', 'first', now()) "
        "ON CONFLICT DO NOTHING"
    )


def downgrade() -> None:
    for table in (
        "early_warnings",
        "complaints",
        "wealth_days",
        "monthly_transactions",
        "customer_signals",
        "profiles",
    ):
        op.drop_table(table)
    drop_platform_tables()
