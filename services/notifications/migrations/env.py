"""Alembic environment of the notifications schema."""

from services.notifications.store import metadata
from shared.migrations import run_env

run_env(metadata)
