"""The timer claim as a function planned without bitmap scans: one round trip a look.

Revision ID: 0008
Revises: 0007
"""

# The platform tables are the same in every service: so is this step (shared.migrations).
from shared.migrations import create_timer_claim as upgrade
from shared.migrations import drop_timer_claim as downgrade

__all__ = ["downgrade", "upgrade"]

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None
