"""Alembic environment of the tiering schema."""

from services.tiering.store import metadata
from shared.migrations import run_env

run_env(metadata)
