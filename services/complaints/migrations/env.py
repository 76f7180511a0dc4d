"""Alembic environment of the complaints schema."""

from services.complaints.store import metadata
from shared.migrations import run_env

run_env(metadata)
