"""Fired timers indexed by when they fired: purged after the retention, not kept forever.

Revision ID: 0003
Revises: 0002
"""

# The platform tables are the same in every service: so is this step (shared.migrations).
from shared.migrations import drop_fired_timers_index as downgrade
from shared.migrations import index_fired_timers as upgrade

__all__ = ["downgrade", "upgrade"]

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
