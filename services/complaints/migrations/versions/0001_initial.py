"""Platform tables, complaints, the customer-tier read model and idempotency keys.

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

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    create_platform_tables()
    op.create_table(
        "complaints",
        sa.Column("complaint_id", sa.Text, primary_key=True),
        sa.Column("complaint_ref", sa.Text, nullable=False, unique=True),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("department", sa.Text, nullable=False),
        sa.Column("handler_id", sa.Text, nullable=True),
        sa.Column("owner_id", sa.Text, nullable=False),
        sa.Column("branch_id", sa.Text, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("response_due_at", TS, nullable=False),
        sa.Column("response_running", sa.Boolean, nullable=False),
        sa.Column("resolution_due_at", TS, nullable=False),
        sa.Column("resolution_running", sa.Boolean, nullable=False),
        sa.Column("regulatory_due_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("resolved_on_time", sa.Boolean, nullable=True),
        sa.Column("is_repeat", sa.Boolean, nullable=False),
        sa.Column("flagged_for_review", sa.Boolean, nullable=False),
        sa.Column("escalation_level", sa.Integer, nullable=False),
        sa.Column("document", JSONB, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index(
        "complaints_customer_category", "complaints", ["customer_id", "category", "received_at"]
    )
    op.create_index("complaints_status", "complaints", ["status"])
    op.create_table(
        "customer_tiers",
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("tier", sa.Text, nullable=False),
        sa.Column("evaluated_at", TS, nullable=False),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("principal", sa.Text, primary_key=True),
        sa.Column("idempotency_key", sa.Text, primary_key=True),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("complaint_id", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("customer_tiers")
    op.drop_table("complaints")
    drop_platform_tables()
