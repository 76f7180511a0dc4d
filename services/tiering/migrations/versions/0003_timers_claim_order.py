"""Pending timers indexed in the order they are claimed: (due_at, id).

Revision ID: 0003
Revises: 0002
"""

from shared.migrations import index_pending_timers_by_due_time, index_pending_timers_in_claim_order

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    index_pending_timers_in_claim_order()


def downgrade() -> None:
    index_pending_timers_by_due_time()
