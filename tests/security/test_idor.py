"""A customer can never read or change another customer's tier, profile, complaints or
notifications: every customer-scoped route is tried with the wrong customer's token, after
the right customer's data really exists (and is readable with their own token)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.contracts.topics import BALANCE_CHANGED, CUSTOMER_UPDATED
from shared.testing.kafka import make_event, publish
from shared.testing.services import RunningService
from shared.testing.waiting import eventually

pytestmark = pytest.mark.integration

ADMIN = RunningService.token("admin")


async def _readable(
    svc: RunningService, path: str, until: Any = lambda body: True, **params: Any
) -> dict[str, Any]:
    async def read() -> Any:
        response = await svc.http.get(path, params=params, headers=ADMIN)
        return response.json() if response.status_code == 200 else None

    return await eventually(read, lambda body: body not in (None, {"items": []}) and until(body))


@pytest.fixture(scope="module")
async def victim(fleet, kafka_producer) -> dict[str, Any]:
    """Customer B with a tier, a profile (mobile, openid), a complaint and a notification."""
    b = f"C-victim-{uuid.uuid4().hex[:8]}"
    mobile = f"+86138{uuid.uuid4().int % 10**8:08d}"
    openid = "o" + uuid.uuid4().hex[:27]
    await publish(
        kafka_producer,
        CUSTOMER_UPDATED,
        make_event(
            CUSTOMER_UPDATED,
            {"customer_id": b, "name": "Han Meimei", "mobile": mobile, "wechat_openid": openid,
             "language": "en", "preferred_channel": "sms",
             "consents": {"service": True, "marketing": False}, "branch_id": "B001"},
        ),
    )  # fmt: skip
    await _readable(fleet["profile"], f"/profiles/{b}")
    for seq, balance in ((1, "60000.00"), (2, "620000.00")):
        await publish(
            kafka_producer,
            BALANCE_CHANGED,
            make_event(
                BALANCE_CHANGED,
                {"customer_id": b, "account_id": f"{b}-1", "currency": "CNY", "balance": balance,
                 "delta": balance, "txn_id": f"{b}-{seq}", "account_seq": seq},
            ),
        )  # fmt: skip
    await _readable(fleet["tiering"], f"/customers/{b}/tier", lambda t: t["tier"] == "quality")
    filed = await fleet["complaints"].http.post(
        "/complaints",
        json={"category": "service_attitude", "description": "rude clerk at counter 3"},
        headers=RunningService.token("customer", customer_id=b),
    )
    assert filed.status_code == 201, filed.text
    messages = await _readable(fleet["notifications"], "/notifications", customer_id=b)
    return {
        "id": b,
        "mobile": mobile,
        "openid": openid,
        "complaint_id": filed.json()["complaint_id"],
        "severity": filed.json()["severity"],
        "notification_id": messages["items"][0]["notification_id"],
    }


def _routes(v: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    """(service, method, url, body) of every customer-scoped route, aimed at the victim."""
    b, cid, nid = v["id"], v["complaint_id"], v["notification_id"]
    actions = ["acknowledge", "start", "await-customer", "resume", "close", "reopen"]
    return [
        ("tiering", "GET", f"/customers/{b}/tier", None),
        ("tiering", "GET", f"/customers/{b}/tier/history", None),
        ("profile", "GET", f"/profiles/{b}", None),
        ("profile", "PATCH", f"/profiles/{b}", {"language": "zh-CN"}),
        ("profile", "PATCH", f"/profiles/{b}", {"mobile": "+8613900000000"}),
        ("profile", "GET", f"/profiles/{b}/signals", None),
        ("complaints", "GET", f"/complaints/{cid}", None),
        ("complaints", "GET", f"/complaints?customer_id={b}", None),
        ("complaints", "POST", "/complaints",
         {"customer_id": b, "category": "service_attitude", "description": "filed as someone"}),
        *(("complaints", "POST", f"/complaints/{cid}/{a}", None) for a in actions),
        ("complaints", "POST", f"/complaints/{cid}/transfer", {"reason": "x", "department": "d"}),
        ("complaints", "POST", f"/complaints/{cid}/resolve",
         {"resolution": "done", "root_cause": "none"}),
        ("complaints", "POST", f"/complaints/{cid}/severity", {"severity": "minor", "reason": "x"}),
        ("complaints", "POST", f"/complaints/{cid}/callbacks/1", {"reached": True, "nps": 10}),
        ("complaints", "POST", f"/complaints/{cid}/compensation", {"kind": "service_flaw"}),
        ("notifications", "GET", f"/notifications?customer_id={b}", None),
        ("notifications", "GET", f"/notifications/{nid}", None),
    ]  # fmt: skip


async def test_another_customer_is_refused_on_every_customer_scoped_route(fleet, victim):
    attacker = RunningService.token("customer", customer_id=f"C-attacker-{uuid.uuid4().hex[:8]}")
    secrets = (victim["id"], victim["mobile"], victim["openid"], "Han Meimei", "rude clerk")
    answers = {}
    for n, (service, method, url, body) in enumerate(_routes(victim)):
        response = await fleet[service].http.request(method, url, json=body, headers=attacker)
        leaked = [s for s in secrets[1:] if s in response.text]
        answers[n, method, url] = (response.status_code, leaked)
    refused = {k: v for k, v in answers.items() if v[0] in (403, 404) and not v[1]}
    assert answers == refused, "an attacker got through or a refusal leaked data"
    assert len(answers) == 22


async def test_the_victims_data_is_unchanged_and_readable_by_the_victim(fleet, victim):
    """The control: the same routes work for the owner, so the refusals above are real."""
    own = RunningService.token("customer", customer_id=victim["id"])
    b = victim["id"]
    for service, url in (
        ("tiering", f"/customers/{b}/tier"),
        ("tiering", f"/customers/{b}/tier/history"),
        ("profile", f"/profiles/{b}"),
        ("complaints", f"/complaints/{victim['complaint_id']}"),
        ("notifications", f"/notifications/{victim['notification_id']}"),
    ):
        response = await fleet[service].http.get(url, headers=own)
        assert response.status_code == 200, (url, response.text)
    profile = (await fleet["profile"].http.get(f"/profiles/{b}", headers=own)).json()
    assert (profile["language"], profile["mobile"]) == ("en", victim["mobile"])
    complaint = (
        await fleet["complaints"].http.get(f"/complaints/{victim['complaint_id']}", headers=own)
    ).json()
    assert (complaint["status"], complaint["severity"]) == ("received", victim["severity"])
    assert len(complaint["trail"]) == 1, complaint["trail"]


async def test_unfiltered_lists_show_a_customer_only_their_own(fleet, victim):
    attacker = RunningService.token("customer", customer_id=f"C-other-{uuid.uuid4().hex[:8]}")
    for service, url in (("complaints", "/complaints"), ("notifications", "/notifications")):
        response = await fleet[service].http.get(url, headers=attacker)
        assert response.status_code == 200, response.text
        assert response.json()["items"] == []
    own = RunningService.token("customer", customer_id=victim["id"])
    response = await fleet["complaints"].http.get("/complaints", headers=own)
    assert [c["complaint_id"] for c in response.json()["items"]] == [victim["complaint_id"]]


async def test_staff_cannot_read_another_employees_messages(fleet):
    staff = RunningService.token("staff", employee_id="E-one")
    response = await fleet["notifications"].http.get(
        "/notifications", params={"employee_id": "E-two"}, headers=staff
    )
    assert response.status_code == 403
