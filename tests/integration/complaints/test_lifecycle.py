"""The complaint lifecycle through the API: transitions, trail, callbacks, compensation,
authorisation, lists and stats — on real Postgres and the broker, with the dev clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from services.complaints.app import SPEC
from shared.contracts.topics import COMPLAINT_CALLBACK_DUE, COMPLAINT_UPDATED
from shared.testing.kafka import TopicWatcher, value_of
from shared.testing.services import (
    KEEP_PUBLISHED,
    RunningService,
    running_service,
    service_settings,
)
from tests.integration.complaints.conftest import (
    OPS,
    STAFF,
    customer,
    customer_id,
    file_complaint,
)
from tests.integration.complaints.timing import advance_to, emitted, settled

pytestmark = pytest.mark.integration
HANDLER = RunningService.token("staff", employee_id="E777", department="operations")


@pytest.fixture(scope="module")
async def svc(infra) -> AsyncIterator[RunningService]:
    async with running_service(SPEC, service_settings(SPEC, infra, **KEEP_PUBLISHED)) as service:
        yield service


@pytest.fixture(scope="module")
async def updates(infra) -> AsyncIterator[TopicWatcher]:
    watcher = await TopicWatcher(infra.bootstrap_servers, COMPLAINT_UPDATED).start()
    yield watcher
    await watcher.stop()


async def post(svc: RunningService, path: str, body: Any = None, headers=HANDLER) -> Any:
    return await svc.http.post(path, json=body, headers=headers)


# --- filing through the API -----------------------------------------------------------------


async def test_customer_files_own_complaint_and_staff_is_first_contact_owner(svc):
    cid = customer_id()
    mine = await svc.http.post(
        "/complaints",
        json={"category": "fees", "description": "unexpected fee", "amount_involved": "12.50"},
        headers=customer(cid),
    )
    assert mine.status_code == 201, mine.text
    body = mine.json()
    # Owned by the customer service desk: its duty contact takes the owner's messages.
    assert (body["customer_id"], body["channel"], body["owner_id"], body["owner_kind"]) == (
        cid,
        "app",
        "customer_service",
        "department",
    )
    assert body["amount_involved"] == "12.50"
    for key in ("response_due_at", "resolution_due_at", "regulatory_due_at", "trail"):
        assert body[key]
    by_staff = await file_complaint(svc, customer_id=cid)
    assert (by_staff["owner_id"], by_staff["owner_kind"]) == ("E100", "employee")
    listed = await svc.http.get("/complaints", headers=customer(cid))
    assert {i["complaint_id"] for i in listed.json()["items"]} == {
        body["complaint_id"],
        by_staff["complaint_id"],
    }


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"category": "weather"}, "body.category"),
        ({"channel": "fax"}, "body.channel"),
        ({"description": ""}, "body.description"),
        ({"description": "   "}, "body.description"),
        ({"amount_involved": "-1.00"}, "body.amount_involved"),
        ({"amount_involved": 1.5}, "body.amount_involved"),
        ({"customer_id": None}, "body.customer_id"),
        ({"received_at": "2026-01-01T08:00:00"}, "body.received_at"),  # no offset
        ({"received_at": "2999-01-01T08:00:00+08:00"}, "body.received_at"),  # future
        ({"received_at": "0554-07-17T12:04:05-19:23"}, "body.received_at"),  # offset
        ({"received_at": "0001-01-01T00:00:00+00:00"}, "body.received_at"),  # year 1
        ({"amount_involved": "1E+30"}, "body.amount_involved"),  # beyond NUMERIC(18, 2)
        ({"amount_involved": "10.005"}, "body.amount_involved"),  # a third place
    ],
)
async def test_bad_filings_are_422_naming_the_field(svc, change, field):
    body = {
        "customer_id": customer_id(),
        "channel": "branch",
        "category": "fees",
        "description": "fee",
    } | change
    response = await svc.http.post("/complaints", json=body, headers=STAFF)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert field in response.json()["detail"]


async def test_filing_authorisation(svc):
    cid = customer_id()
    body = {"category": "fees", "description": "fee", "customer_id": customer_id()}
    other = await svc.http.post("/complaints", json=body, headers=customer(cid))
    assert other.status_code == 403
    ops = await svc.http.post("/complaints", json=body | {"channel": "app"}, headers=OPS)
    assert ops.status_code == 403
    anonymous = await svc.http.post("/complaints", json=body)
    assert anonymous.status_code == 401
    own = body | {"customer_id": cid}
    # A customer files through the app, received now: not as the regulator, not backdated.
    for change in ({"channel": "regulator"}, {"received_at": "2026-01-01T08:00:00+08:00"}):
        refused = await svc.http.post("/complaints", json=own | change, headers=customer(cid))
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == "validation_error"
        assert f"body.{next(iter(change))}" in refused.json()["detail"]
    filed = await svc.http.post("/complaints", json=own | {"channel": "app"}, headers=customer(cid))
    assert filed.status_code == 201, filed.text
    assert (filed.json()["channel"], filed.json()["severity"]) == ("app", "normal")


async def test_idempotency_key(svc, updates):
    cid = customer_id()
    headers = customer(cid) | {"Idempotency-Key": "retry-1"}
    body = {"category": "fees", "description": "charged twice"}
    first = await svc.http.post("/complaints", json=body, headers=headers)
    again = await svc.http.post("/complaints", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["complaint_id"] == again.json()["complaint_id"]
    changed = await svc.http.post(
        "/complaints", json=body | {"description": "something else"}, headers=headers
    )
    assert changed.status_code == 422
    assert changed.json()["error"] == "idempotency_key_reused"
    # Another customer may use the same key for their own complaint.
    theirs = await svc.http.post(
        "/complaints", json=body, headers=customer(customer_id()) | {"Idempotency-Key": "retry-1"}
    )
    assert theirs.status_code == 201
    assert theirs.json()["complaint_id"] != first.json()["complaint_id"]
    listed = await svc.http.get("/complaints", headers=customer(cid))
    assert len(listed.json()["items"]) == 1
    await settled(svc)
    assert len(await emitted(svc, COMPLAINT_UPDATED, first.json()["complaint_id"])) == 1


async def test_duplicate_complaint_ref_is_409(svc):
    ref = f"BR-{customer_id()}"
    await file_complaint(svc, complaint_ref=ref)
    again = await svc.http.post(
        "/complaints",
        json={"customer_id": customer_id(), "channel": "branch", "category": "fees"}
        | {"description": "x", "complaint_ref": ref},
        headers=STAFF,
    )
    assert again.status_code == 409
    assert again.json()["error"] == "duplicate_complaint_ref"


# --- the lifecycle --------------------------------------------------------------------------


async def test_full_lifecycle_with_trail_and_snapshots(svc, updates):
    c = await file_complaint(svc)
    path = f"/complaints/{c['complaint_id']}"
    assert (c["department"], c["status"]) == ("operations", "received")

    illegal = await post(svc, f"{path}/close")
    assert illegal.status_code == 409
    assert illegal.json()["current_status"] == "received"

    moved = await post(
        svc,
        f"{path}/transfer",
        {"department": "e_banking", "handler_id": "E777", "reason": "limit issue"},
    )
    assert moved.status_code == 200, moved.text
    assert (await post(svc, f"{path}/acknowledge")).json()["status"] == "acknowledged"
    assert (await post(svc, f"{path}/start")).json()["status"] == "in_progress"
    paused = (await post(svc, f"{path}/await-customer")).json()
    assert (paused["status"], paused["sla_paused"]) == ("awaiting_customer", True)
    resumed = (await post(svc, f"{path}/resume")).json()
    assert (resumed["status"], resumed["sla_paused"]) == ("in_progress", False)

    regraded = await post(svc, f"{path}/severity", {"severity": "urgent", "reason": "VIP"})
    received = datetime.fromisoformat(c["received_at"])
    due = datetime.fromisoformat(regraded.json()["resolution_due_at"])
    assert received + timedelta(hours=24) <= due < received + timedelta(hours=24, minutes=1)

    for days in (30, 60):
        extended = await post(
            svc, f"{path}/extend-regulatory", {"approved_by": "M001", "reason": "investigation"}
        )
        assert extended.status_code == 200
        assert datetime.fromisoformat(extended.json()["regulatory_due_at"]) == received + timedelta(
            days=days
        )
    third = await post(svc, f"{path}/extend-regulatory", {"approved_by": "M001", "reason": "x"})
    assert third.status_code == 409

    no_cause = await post(svc, f"{path}/resolve", {"resolution": "limit raised"})
    assert no_cause.status_code == 422
    assert "root_cause" in no_cause.json()["detail"]
    resolved = await post(
        svc, f"{path}/resolve", {"resolution": "limit raised", "root_cause": "wrong default"}
    )
    assert resolved.json()["status"] == "resolved"
    assert (await post(svc, f"{path}/close")).json()["status"] == "closed"
    late = await post(svc, f"{path}/acknowledge")
    assert (late.status_code, late.json()["current_status"]) == (409, "closed")
    reopened = await post(svc, f"{path}/reopen", {"reason": "limit reset again"})
    assert (reopened.json()["status"], reopened.json()["severity"]) == ("in_progress", "urgent")

    shown = (await svc.http.get(path, headers=STAFF)).json()
    assert (shown["owner_id"], shown["department"], shown["handler_id"]) == (
        "E100",
        "e_banking",
        "E777",
    )
    assert [
        (t["from_department"], t["to_department"], t["by"], t["reason"]) for t in shown["trail"]
    ][1:] == [("operations", "e_banking", "E777", "limit issue")]
    assert shown["callbacks"] == []  # the reopen cancelled the pending ones

    records = await updates.wait_for(
        lambda r: value_of(r)["data"]["complaint_id"] == c["complaint_id"], count=12
    )
    assert [value_of(r)["data"]["change"] for r in records] == [
        "filed",
        "transferred",
        "acknowledged",
        "started",
        "awaiting_customer",
        "resumed",
        "severity_changed",
        "regulatory_extended",
        "regulatory_extended",
        "resolved",
        "closed",
        "reopened",
    ]
    final = value_of(records[-1])["data"]
    assert (final["status"], final["owner_id"], final["department"]) == (
        "in_progress",
        "E100",
        "e_banking",
    )


async def test_resolved_complaint_emits_callbacks_on_day_3_7_30(svc, infra):
    due_watcher = await TopicWatcher(infra.bootstrap_servers, COMPLAINT_CALLBACK_DUE).start()
    try:
        c = await file_complaint(svc)
        path = f"/complaints/{c['complaint_id']}"
        await post(svc, f"{path}/acknowledge")
        await post(svc, f"{path}/start")
        resolved = await post(
            svc, f"{path}/resolve", {"resolution": "sped up", "root_cause": "queue"}
        )
        resolved_at = datetime.fromisoformat(resolved.json()["resolved_at"])
        assert [cb["sequence"] for cb in resolved.json()["callbacks"]] == [1, 2, 3]

        def mine(r) -> bool:
            return value_of(r)["data"]["complaint_id"] == c["complaint_id"]

        for sequence, day in ((1, 3), (2, 7), (3, 30)):
            await advance_to(svc, resolved_at + timedelta(days=day) - timedelta(minutes=1))
            assert (
                len(await emitted(svc, COMPLAINT_CALLBACK_DUE, c["complaint_id"])) == sequence - 1
            )
            await advance_to(svc, resolved_at + timedelta(days=day))
            records = await due_watcher.wait_for(mine, count=sequence)
            data = value_of(records[-1])["data"]
            assert (data["sequence"], data["assignee_id"], data["reason"]) == (
                sequence,
                "E100",
                "complaint_followup",
            )
            assert datetime.fromisoformat(data["due_at"]) == resolved_at + timedelta(days=day)
        assert len(await emitted(svc, COMPLAINT_CALLBACK_DUE, c["complaint_id"])) == 3

        recorded = await post(
            svc, f"{path}/callbacks/1", {"reached": True, "nps": 4, "note": "still annoyed"}
        )
        assert recorded.status_code == 200, recorded.text
        assert recorded.json()["flagged_for_review"] is True
        again = await post(svc, f"{path}/callbacks/1", {"reached": True, "nps": 9})
        assert again.status_code == 409
        bad = await post(svc, f"{path}/callbacks/2", {"reached": True, "nps": 11})
        assert bad.status_code == 422
        assert "nps" in bad.json()["detail"]
    finally:
        await due_watcher.stop()


async def test_compensation_for_a_major_fund_loss(svc, updates):
    c = await file_complaint(svc, category="unauthorized_transaction")
    path = f"/complaints/{c['complaint_id']}/compensation"
    granted = await post(svc, path, {"kind": "fund_loss", "loss_amount": "1234.57"})
    assert granted.status_code == 200, granted.text
    [entry] = granted.json()["compensation"]
    assert (entry["amount"], entry["apology_visit"]) == ("1481.48", True)
    assert granted.json()["apology_visit_scheduled"] is True
    points = await post(svc, path, {"kind": "service_flaw"})
    assert points.json()["compensation"][1]["points"] == 2000
    again = await post(svc, path, {"kind": "fund_loss", "loss_amount": "1234.57"})
    assert again.status_code == 409, again.text  # once per kind: not 240 % of the loss
    assert "fund_loss compensation was granted already" in again.json()["detail"]
    missing = await post(svc, path, {"kind": "fund_loss"})
    assert missing.status_code == 422
    assert "loss_amount" in missing.json()["detail"]
    for loss in ("99999999999999999999999999", "9999999999999999.99", "0.004"):
        # beyond NUMERIC(18, 2) itself, or its 120 % would be; a third decimal place
        refused = await post(svc, path, {"kind": "fund_loss", "loss_amount": loss})
        assert refused.status_code == 422, refused.text
        assert "loss_amount" in refused.json()["detail"]

    [*_, last] = await updates.wait_for(
        lambda r: value_of(r)["data"]["complaint_id"] == c["complaint_id"], count=3
    )
    snapshot = value_of(last)["data"]
    assert snapshot["change"] == "compensation_granted"
    assert [(g["kind"], g["amount"], g["points"]) for g in snapshot["compensation"]] == [
        ("fund_loss", "1481.48", None),
        ("service_flaw", None, 2000),
    ]


async def test_authorisation_on_reads_and_actions(svc):
    c = await file_complaint(svc)
    path = f"/complaints/{c['complaint_id']}"
    owner = customer(c["customer_id"])
    assert (await svc.http.get(path, headers=owner)).status_code == 200
    assert (await svc.http.get(path, headers=customer(customer_id()))).status_code == 403
    assert (await post(svc, f"{path}/acknowledge", headers=owner)).status_code == 403
    assert (await post(svc, f"{path}/acknowledge", headers=OPS)).status_code == 403
    assert (await svc.http.get("/complaints/stats", headers=owner)).status_code == 403
    assert (await svc.http.get("/complaints/stats", headers=STAFF)).status_code == 403
    assert (await svc.http.get("/complaints/nope", headers=STAFF)).status_code == 404
    assert (await post(svc, "/complaints/nope/acknowledge")).status_code == 404
    others = await svc.http.get(f"/complaints?customer_id={customer_id()}", headers=owner)
    assert others.status_code == 403


async def test_list_filters_and_stats(svc):
    now = datetime.fromisoformat((await file_complaint(svc))["received_at"])
    late = await file_complaint(
        svc, received_at=(now - timedelta(hours=30)).isoformat(), category="fees"
    )
    major = await file_complaint(svc, channel="regulator")

    async def ids(query: str) -> set[str]:
        response = await svc.http.get(f"/complaints?{query}&limit=1000", headers=STAFF)
        assert response.status_code == 200, response.text
        return {i["complaint_id"] for i in response.json()["items"]}

    assert late["complaint_id"] in await ids("overdue=true")
    assert major["complaint_id"] in await ids("overdue=false")
    assert late["complaint_id"] not in await ids("overdue=false")
    assert major["complaint_id"] in await ids("severity=major&department=operations")
    assert major["complaint_id"] not in await ids("severity=normal")
    assert late["complaint_id"] in await ids("status=received&department=retail_banking")
    bad = await svc.http.get("/complaints?status=lost", headers=STAFF)
    assert bad.status_code == 422
    # A report's window is instants: a naive time would be read in the server's zone.
    naive = await svc.http.get("/complaints/stats?since=2026-01-01T00:00:00", headers=OPS)
    assert naive.status_code == 422 and "since" in naive.json()["detail"], naive.text
    aware = await svc.http.get("/complaints/stats?since=2026-01-01T00:00:00%2B08:00", headers=OPS)
    assert aware.status_code == 200, aware.text


async def test_stats_by_branch_severity_and_department(svc):
    branch = f"B-{customer_id()}"
    now = svc.runtime.clock.now()
    first = await file_complaint(
        svc, branch_id=branch, category="fees", received_at=(now - timedelta(hours=80)).isoformat()
    )
    repeat = await file_complaint(
        svc,
        branch_id=branch,
        customer_id=first["customer_id"],
        category="fees",
        received_at=(now - timedelta(hours=1)).isoformat(),
    )
    other = await file_complaint(
        svc,
        branch_id=branch,
        category="service_attitude",
        received_at=(now - timedelta(hours=2)).isoformat(),
    )
    assert (repeat["severity"], repeat["is_repeat"]) == ("urgent", True)
    for c, nps in ((repeat, 10), (other, 3)):
        path = f"/complaints/{c['complaint_id']}"
        for step in ("acknowledge", "start"):
            assert (await post(svc, f"{path}/{step}")).status_code == 200
        resolved = await post(svc, f"{path}/resolve", {"resolution": "ok", "root_cause": "x"})
        assert resolved.status_code == 200
        assert (
            await post(svc, f"{path}/callbacks/1", {"reached": True, "nps": nps})
        ).status_code == 200

    response = await svc.http.get("/complaints/stats", headers=OPS)
    assert response.status_code == 200, response.text
    stats = response.json()
    mine = stats["by_branch"][branch]
    assert mine == {
        "complaints": 3,
        "resolved": 2,
        "sla_compliance_pct": "66.67",  # 2 on time; the first is open past its 72h
        "average_handling_hours": "1.50",
        "repeat_rate_pct": "33.33",
        "nps": "0.00",  # one promoter, one detractor
        "nps_responses": 2,
    }
    assert stats["overall"]["complaints"] >= 3
    assert {"normal", "urgent"} <= set(stats["by_severity"])
    assert stats["by_department"]["retail_banking"]["complaints"] >= 2


async def test_filing_is_rate_limited_per_customer(svc):
    """Each filing can trigger an SMS: one customer may file at most 10 an hour (default)."""
    cid = customer_id()
    body = {"channel": "app", "category": "fees", "description": "charged twice"}
    for _ in range(10):
        response = await svc.http.post("/complaints", json=body, headers=customer(cid))
        assert response.status_code == 201, response.text
    refused = await svc.http.post("/complaints", json=body, headers=customer(cid))
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    listed = await svc.http.get("/complaints", headers=customer(cid))
    assert len(listed.json()["items"]) == 10  # the refused filing left nothing behind

    other = await svc.http.post("/complaints", json=body, headers=customer(customer_id()))
    assert other.status_code == 201
    svc.runtime.clock.advance(int(refused.headers["Retry-After"]))
    again = await svc.http.post("/complaints", json=body, headers=customer(cid))
    assert again.status_code == 201
