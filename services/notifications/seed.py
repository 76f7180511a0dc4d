"""Dev seed of staff and duty contacts (seed/staff.yaml), loaded by `steward up`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from services.notifications.commands import (
    RegisterStaff,
    SetDutyContact,
    register_staff,
    set_duty_contacts,
)
from shared.clock import Clock
from shared.db import create_engine, session_factory
from shared.unit_of_work import UnitOfWork

DEFAULT_SEED = Path(__file__).parent / "seed" / "staff.yaml"


def parse_seed(document: dict[str, Any]) -> tuple[list[RegisterStaff], list[SetDutyContact]]:
    """The staff and duty-contact commands a seed document describes."""
    staff = [
        RegisterStaff(**(entry | {"roles": tuple(entry.get("roles") or ())}))
        for entry in document.get("staff") or []
    ]
    duty = [SetDutyContact(**entry) for entry in document.get("duty_contacts") or []]
    return staff, duty


async def load_seed(
    database_url: str, *, schema: str = "notifications", path: Path = DEFAULT_SEED
) -> tuple[int, int]:
    """Upsert the seed's staff and duty contacts (run after migrations); returns the counts."""
    text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    staff, duty = parse_seed(yaml.safe_load(text) or {})
    engine = create_engine(database_url, schema, application_name="steward-seed")
    try:
        async with UnitOfWork(session_factory(engine), Clock(), "notifications")() as tx:
            await register_staff(tx, staff)
            await set_duty_contacts(tx, duty)
    finally:
        await engine.dispose()
    return len(staff), len(duty)
