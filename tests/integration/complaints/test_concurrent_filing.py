"""POST /complaints under concurrency: requests share transactions (group commit), yet each
is answered as if alone — rate limits, Idempotency-Key replays and duplicate refs hold."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from services.complaints.app import SPEC
from shared.testing.services import RunningService, running_service, service_settings
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
