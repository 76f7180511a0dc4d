"""Inbox: the ids of events a consumer has processed, recorded in the same transaction.

Two ways to record them, both leaving one row per (consumer, event id), whose primary key
lets exactly one transaction that handled the event commit:
- `claim` first, then handle only the ids it returns: the way when duplicates are likely;
- `record` at the end, with the batch's other writes: one round trip fewer. A duplicate
  then fails the commit on the primary key (`is_duplicate`), and the batch is handled
  again, claiming first.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from shared.bulk import bulk_insert
from shared.faults import causes
from shared.tables import inbox
from shared.unit_of_work import Tx

_KEY = "inbox_pkey"


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


async def record(tx: Tx, consumer: str, event_ids: Iterable[str]) -> None:
    """Record distinct ids as processed with the transaction's other appended rows: a few
    in its commit's statement, more copied now. One seen before fails the transaction
    (`is_duplicate`)."""
    await tx.append(inbox, [{"consumer": consumer, "event_id": event_id} for event_id in event_ids])


def is_duplicate(exc: BaseException) -> bool:
    """Did `exc` come from recording an id the inbox holds already (`record`)?"""
    return any(getattr(cause, "constraint_name", None) == _KEY for cause in causes(exc))
