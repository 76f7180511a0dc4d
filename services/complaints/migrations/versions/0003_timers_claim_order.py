"""Pending timers indexed in the order they are claimed: (due_at, id).

Revision ID: 0003
Revises: 0002
"""

# The platform tables are the same in every service: so is this step (shared.migrations).
from shared.migrations import index_pending_timers_by_due_time as downgrade
from shared.migrations import index_pending_timers_in_claim_order as upgrade

__all__ = ["downgrade", "upgrade"]

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
