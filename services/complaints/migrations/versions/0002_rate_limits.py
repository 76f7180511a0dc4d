"""Per-customer rate-limit counters for complaint filing through the API.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from shared.migrations import create_rate_limit_table

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_rate_limit_table()


def downgrade() -> None:
    op.drop_table("rate_limits")
