"""Inbox: the ids of events a consumer has processed, recorded in the same transaction."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from shared.bulk import bulk_insert
from shared.tables import inbox


async def claim(session: AsyncSession, consumer: str, event_ids: Iterable[str]) -> set[str]:
    """Record the ids as processed; return those not seen before (the ones to act on)."""
    unique = list(dict.fromkeys(event_ids))
    rows = await bulk_insert(
        session,
        inbox,
        [{"consumer": consumer, "event_id": event_id} for event_id in unique],
        conflict=("consumer", "event_id"),
        returning=("event_id",),
    )
    return {event_id for (event_id,) in rows}
