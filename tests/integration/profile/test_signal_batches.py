"""A stream of postings and activity for many customers, with redeliveries, is counted exactly."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from services.profile import store
from services.profile.domain import local_month
from shared.contracts.topics import BALANCE_CHANGED, CUSTOMER_ACTIVITY
from shared.testing.kafka import make_event, publish
from shared.testing.waiting import eventually

pytestmark = pytest.mark.integration


async def test_stream_with_redeliveries_is_counted_exactly(profile_svc, kafka_producer):
    run = uuid.uuid4().hex[:6]
    rng = random.Random(run)
    now = profile_svc.runtime.clock.now()
    customers = [f"B{run}-{i:02d}" for i in range(40)]
    expected: Counter[tuple[str, str]] = Counter()
    logins: Counter[str] = Counter()
    stream = []
    for _ in range(600):
        customer = rng.choice(customers)
        at = now - timedelta(days=rng.randint(0, 200))
        if rng.random() < 0.7:
            expected[(customer, local_month(at).isoformat())] += 1
            stream.append(
                (
                    BALANCE_CHANGED,
                    make_event(
                        BALANCE_CHANGED,
                        {
                            "customer_id": customer,
                            "account_id": f"{customer}-01",
                            "currency": "CNY",
                            "balance": "1000.00",
                            "delta": "10.00",
                            "txn_id": uuid.uuid4().hex,
                            "booked_at": at.isoformat(),
                        },
                    ),
                )
            )
        else:
            logins[customer] += 1
            stream.append(
                (
                    CUSTOMER_ACTIVITY,
                    make_event(
                        CUSTOMER_ACTIVITY,
                        {"customer_id": customer, "activity": "login", "at": at.isoformat()},
                    ),
                )
            )
    stream += rng.sample(stream, 60)  # redeliveries
    await asyncio.gather(*(publish(kafka_producer, topic, event) for topic, event in stream))

    async def monthly() -> Counter[tuple[str, str]]:
        async with profile_svc.runtime.sessions() as session:
            m = store.monthly_transactions.c
            rows = await session.execute(
                select(m.customer_id, m.month, m.transactions).where(m.customer_id.in_(customers))
            )
            return Counter({(r.customer_id, r.month.isoformat()): r.transactions for r in rows})

    assert await eventually(monthly, lambda counts: counts == expected, timeout=60) == expected

    async def login_counts() -> Counter[str]:
        async with profile_svc.runtime.sessions() as session:
            s = store.customer_signals.c
            rows = await session.execute(
                select(s.customer_id, func.sum(s.logins))
                .where(s.customer_id.in_(customers))
                .group_by(s.customer_id)
            )
            return Counter({cid: int(n) for cid, n in rows if n})

    assert await eventually(login_counts, lambda counts: counts == logins, timeout=60) == logins
