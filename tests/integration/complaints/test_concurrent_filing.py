"""POST /complaints under concurrency: requests share transactions (group commit), yet each
is answered as if alone — rate limits, Idempotency-Key replays and duplicate refs hold; a
filing waits for one in flight for the same customer; an action meeting a timer firing on
its complaint (a deadlock) is run again."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from services.complaints import handlers
from services.complaints.app import SPEC
from services.complaints.domain import Complaint, Filing
from services.complaints.store import complaints
from shared.ids import new_id
from shared.tables import timers
from shared.testing.services import RunningService, running_service, service_settings
from shared.testing.waiting import eventually
from tests.integration.complaints.conftest import STAFF, customer, customer_id

pytestmark = pytest.mark.integration

BODY = {"channel": "app", "category": "fees", "description": "charged twice"}


@pytest.fixture(scope="module")
async def svc(infra) -> AsyncIterator[RunningService]:
    async with running_service(SPEC, service_settings(SPEC, infra)) as service:
        yield service


async def together(svc: RunningService, requests: list[tuple[dict[str, Any], dict[str, str]]]):
    """POST them all at once; in-process, they queue behind one another's transactions."""
    responses: list[httpx.Response] = await asyncio.gather(
        *(svc.http.post("/complaints", json=body, headers=headers) for body, headers in requests)
    )
    return responses


async def uses_counted(svc: RunningService, cid: str) -> int:
    async with svc.runtime.sessions() as session:
        count = await session.scalar(
            text("SELECT sum(count) FROM rate_limits WHERE bucket = :b"),
            {"b": f"complaint-filing:{cid}"},
        )
    return int(count or 0)


async def test_the_rate_limit_holds_for_concurrent_filings_and_counts_only_those_filed(svc):
    cid = customer_id()
    others = [customer_id() for _ in range(5)]
    responses = await together(
        svc, [(BODY, customer(cid))] * 16 + [(BODY, customer(o)) for o in others]
    )
    assert Counter(r.status_code for r in responses[:16]) == {201: 10, 429: 6}
    assert all(r.json()["error"] == "rate_limited" for r in responses[:16] if r.status_code == 429)
    assert [r.status_code for r in responses[16:]] == [201] * 5  # other customers unaffected
    listed = await svc.http.get("/complaints", headers=customer(cid))
    assert len(listed.json()["items"]) == 10
    assert await uses_counted(svc, cid) == 10  # the refused six were given back


async def test_concurrent_retries_of_one_idempotency_key_file_one_complaint(svc):
    cid = customer_id()
    keyed = customer(cid) | {"Idempotency-Key": "tap-twice"}
    changed = BODY | {"description": "another body"}
    responses = await together(svc, [(BODY, keyed)] * 5 + [(changed, keyed)])
    codes = [r.status_code for r in responses]
    assert sorted(codes[:5]) == [200, 200, 200, 200, 201]
    assert len({r.json()["complaint_id"] for r in responses[:5]}) == 1
    assert (codes[5], responses[5].json()["error"]) == (422, "idempotency_key_reused")
    listed = await svc.http.get("/complaints", headers=customer(cid))
    assert len(listed.json()["items"]) == 1
    assert await uses_counted(svc, cid) == 1


async def test_a_refused_request_leaves_its_idempotency_key_free(svc):
    cid = customer_id()
    ref = f"BR-{customer_id()}"
    staff_body = {"customer_id": cid, "channel": "branch", "category": "fees"} | {
        "description": "x",
        "complaint_ref": ref,
    }
    first, duplicate = await together(
        svc, [(staff_body, STAFF), (staff_body, STAFF | {"Idempotency-Key": "dup-ref"})]
    )
    assert (first.status_code, duplicate.status_code) == (201, 409)
    assert duplicate.json()["error"] == "duplicate_complaint_ref"
    # The key was not kept for a request that filed nothing: with a new ref it files.
    retry = await svc.http.post(
        "/complaints",
        json=staff_body | {"complaint_ref": f"{ref}-2"},
        headers=STAFF | {"Idempotency-Key": "dup-ref"},
    )
    assert retry.status_code == 201, retry.text


async def lock_waits(svc: RunningService, statement: str) -> int:
    """Backends of the service waiting for a lock while running `statement`'s kind."""
    async with svc.runtime.sessions() as session:
        count = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database() AND query ILIKE :statement"
            ),
            {"statement": f"%{statement}%"},
        )
    return int(count or 0)


async def blocked(svc: RunningService, task: asyncio.Task[Any], statement: str) -> None:
    """Wait until `task`'s transaction waits for a lock in `statement`; fail if it finished."""
    state = await eventually(
        lambda: lock_waits(svc, statement),
        lambda n: n > 0 or task.done(),
        interval=0.02,
    )
    assert not task.done() and state > 0, f"did not wait: {task.result()!r}"


async def test_a_filing_waits_for_one_in_flight_for_the_same_customer_and_sees_a_repeat(svc):
    cid = customer_id()
    policy = svc.runtime.state["policy"]
    first = Filing(
        complaint_ref=f"CH-{new_id()}",
        customer_id=cid,
        channel="hotline",
        category="fees",
        description="charged twice",
        amount_involved=None,
        received_by="E200",
        branch_id="B001",
        received_at=svc.runtime.clock.now(),
    )
    async with svc.runtime.uow() as tx:  # the channel topic's filing, not committed yet
        [filed] = await handlers.file_complaints(tx, [(first, None, new_id())], policy)
        second = asyncio.create_task(
            svc.http.post("/complaints", json=BODY | {"customer_id": cid}, headers=STAFF)
        )
        await blocked(svc, second, "pg_advisory_xact_lock")
    response = await second
    assert response.status_code == 201, response.text
    assert isinstance(filed, Complaint) and not filed.is_repeat
    assert (response.json()["is_repeat"], response.json()["severity"]) == (True, "urgent")


async def test_an_action_meeting_its_complaints_timer_firing_is_run_again_not_a_503(svc):
    filed = await svc.http.post(
        "/complaints", json=BODY | {"customer_id": customer_id()}, headers=STAFF
    )
    cid = filed.json()["complaint_id"]
    async with svc.runtime.sessions() as session, session.begin():
        # A timer worker's claim has locked the complaint's timers...
        claimed = await session.scalars(
            select(timers.c.id).where(timers.c.key.like(f"{cid}:%")).with_for_update()
        )
        assert claimed.all()
        acknowledging = asyncio.create_task(
            svc.http.post(f"/complaints/{cid}/acknowledge", headers=STAFF)
        )
        # ... the action holds the complaint and waits to cancel the response clock's timer ...
        await blocked(svc, acknowledging, "timers")
        # ... and the firing handler locks the complaint: Postgres ends the deadlock by
        # aborting the action, whose wait started first.
        await session.execute(
            select(complaints.c.complaint_id)
            .where(complaints.c.complaint_id == cid)
            .with_for_update()
        )
    response = await acknowledging
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "acknowledged"
