"""The timer claim as a function planned without bitmap scans: one round trip a look.

Revision ID: 0004
Revises: 0003
"""

# The platform tables are the same in every service: so is this step (shared.migrations).
from shared.migrations import create_timer_claim as upgrade
from shared.migrations import drop_timer_claim as downgrade

__all__ = ["downgrade", "upgrade"]

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None
