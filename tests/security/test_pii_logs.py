"""The JSON logs of real service processes handling phone numbers and openids (good ones,
malformed ones, refused recipients, failing providers) contain none of them unmasked."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from services.notifications.domain import BANK_TZ
from services.notifications.store import customers_by_id
from shared.contracts.topics import (
    CUSTOMER_UPDATED,
    NOTIFICATION_STATUS,
    PROFILE_CHANGED,
    TIER_CHANGED,
    dead_letter_topic,
)
from shared.db import create_engine, session_factory
from shared.testing.kafka import TopicWatcher, header, make_event, publish
from shared.testing.processes import ServiceProcess
from shared.testing.services import TEST_JWT_SECRET, RunningService
from shared.testing.waiting import eventually
from tests.integration.notifications.fake_gateway import FakeGateway

pytestmark = pytest.mark.integration


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    fake = await FakeGateway().start()
    yield fake
    await fake.stop()


def _customers(run: str) -> list[dict[str, Any]]:
    people = []
    for n in range(6):
        people.append(
            {
                "customer_id": f"C-pii-{run}-{n}",
                "name": f"Wang Fang {n}",
                "mobile": f"+86138{uuid.uuid4().int % 10**8:08d}",
                "wechat_openid": "o" + uuid.uuid4().hex[:27],
                "language": "en",
                "preferred_channel": "wechat" if n % 2 else "sms",
                "consents": {"service": True, "marketing": False},
            }
        )
    return people


async def _advance_to_working_hours(url: str) -> None:
    """The process runs on real time: move its dev clock out of the default quiet hours."""
    now = datetime.now(BANK_TZ)
    nine = datetime.combine(now.date(), datetime.min.time(), tzinfo=BANK_TZ) + timedelta(hours=9)
    if nine <= now:
        nine += timedelta(days=1)
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/admin/clock",
            json={"advance_seconds": (nine - now).total_seconds()},
            headers=RunningService.token("admin"),
        )
    assert response.status_code == 200, response.text


async def _wait_for_recipients(database_url: str, schema: str, customer_ids: list[str]) -> None:
    """Wait until the notifications process's replica of contact points holds every one of
    `customer_ids`. The ProfileChanged records on the topic are not enough: the process reads
    the session's topics from their start, and a TierChanged it met before its recipient's
    profile would wait only the (shortened) unknown-recipient grace."""
    engine = create_engine(database_url, schema, application_name="test-pii")
    try:

        async def known() -> dict[str, object]:
            async with session_factory(engine)() as session:
                return await customers_by_id(session, customer_ids)

        await eventually(known, lambda found: len(found) == len(customer_ids), timeout=60)
    finally:
        await engine.dispose()


async def test_no_unmasked_mobile_or_openid_in_the_logs(infra, kafka_producer, gateway, tmp_path):
    run = uuid.uuid4().hex[:8]
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "DATABASE_URL": infra.database_url,
        "STEWARD_JWT_SECRET": TEST_JWT_SECRET,
        "STEWARD_LOG_LEVEL": "DEBUG",
    }
    profile = ServiceProcess(
        "profile",
        common | {"SCHEMA_NAME": infra.new_schema("profile_pii")},
        tmp_path / "profile.log",
    )
    notifications_schema = infra.new_schema("notifications_pii")
    notifications = ServiceProcess(
        "notifications",
        common
        | {
            "SCHEMA_NAME": notifications_schema,
            "NOTIFICATIONS_SMS_PROVIDER": "http",
            "NOTIFICATIONS_SMS_URL": f"{gateway.url}/sms/send",
            "NOTIFICATIONS_SMS_API_KEY": gateway.api_key,
            "NOTIFICATIONS_SMS_SECRET": gateway.secret,
            "NOTIFICATIONS_WECHAT_PROVIDER": "wechat",
            "NOTIFICATIONS_WECHAT_BASE_URL": gateway.url,
            "NOTIFICATIONS_WECHAT_APP_ID": gateway.app_id,
            "NOTIFICATIONS_WECHAT_APP_SECRET": gateway.app_secret,
            "NOTIFICATIONS_PROVIDER_TIMEOUT_SECONDS": "0.5",
            "NOTIFICATIONS_RETRY_BASE_SECONDS": "0.05",
            "NOTIFICATIONS_RETRY_CAP_SECONDS": "0.2",
            "NOTIFICATIONS_UNKNOWN_RECIPIENT_GRACE_SECONDS": "5",
        },
        tmp_path / "notifications.log",
    )
    people = _customers(run)
    keys = {p["customer_id"].encode() for p in people}
    # Numbers in other spellings (normalised by profile) and malformed ones (dead-lettered,
    # with a reason that names the field).
    odd = [
        {"customer_id": f"C-pii-{run}-odd{n}", "mobile": mobile}
        for n, mobile in enumerate(["13812345678", "+86 138 2345 6789", "008613934567890"])
    ]
    malformed = [
        {"customer_id": f"C-pii-{run}-bad{n}", "mobile": mobile}
        for n, mobile in enumerate(["1381234567", "+8612345678901", "+86 139 1234 567"])
    ]
    changes = await TopicWatcher(infra.bootstrap_servers, PROFILE_CHANGED).start()
    statuses = await TopicWatcher(infra.bootstrap_servers, NOTIFICATION_STATUS).start()
    letters = await TopicWatcher(infra.bootstrap_servers, dead_letter_topic("profile")).start()
    try:
        profile.start()
        notifications.start()
        await profile.wait_ready()
        await notifications.wait_ready()
        await _advance_to_working_hours(notifications.url)
        # Refused recipients and failing providers: error paths that might log an address.
        gateway.script("sms", people[0]["mobile"], "invalid")
        gateway.script("sms", people[2]["mobile"], "5xx", "timeout")
        gateway.script("wechat", people[1]["wechat_openid"], "5xx", "5xx", "5xx")
        gateway.script("wechat", people[3]["wechat_openid"], "invalid")

        for data in [*people, *odd, *malformed]:
            await publish(kafka_producer, CUSTOMER_UPDATED, make_event(CUSTOMER_UPDATED, data))
        await changes.wait_for(lambda r: r.key in keys, count=len(people), timeout=30)
        await _wait_for_recipients(
            infra.database_url, notifications_schema, [p["customer_id"] for p in people]
        )
        for p in people:
            await publish(
                kafka_producer,
                TIER_CHANGED,
                make_event(
                    TIER_CHANGED,
                    {"customer_id": p["customer_id"], "previous_tier": "potential",
                     "tier": "quality", "direction": "upgrade", "total_balance": "620000.00",
                     "basis": "balance", "maintenance_team": "wealth_team",
                     "evaluated_at": datetime.now(BANK_TZ).isoformat()},
                ),
            )  # fmt: skip

        # Read the outcome from this process's own API: other instances of notifications in
        # the session (with sandbox providers) also message these customers on the topic.
        async def outcomes(client: httpx.AsyncClient) -> dict[str, str]:
            found = {}
            for p in people:
                response = await client.get(
                    "/notifications",
                    params={"customer_id": p["customer_id"]},
                    headers=RunningService.token("ops"),
                )
                for item in response.json()["items"]:
                    if item["status"] in ("sent", "failed"):
                        found[p["customer_id"]] = item["status"]
            return found

        # One client for every poll: a new one costs about 18 ms of CPU.
        async with httpx.AsyncClient(base_url=notifications.url) as client:
            final = await eventually(
                lambda: outcomes(client), lambda f: len(f) == len(people), timeout=60
            )
        # people[0] (sms, refused) fails; every scripted fault was met on the way.
        assert final[people[0]["customer_id"]] == "failed", final
        assert [r.behaviour for r in gateway.to("sms", people[2]["mobile"])][:2] == [
            "5xx",
            "timeout",
        ]
        dead = await letters.wait_for(
            lambda r: (r.key or b"").decode().startswith(f"C-pii-{run}-bad"), count=3
        )
        # Counted by original offset: the security fleet's profile dead-letters them as well.
        assert len({(header(r, "dlq.partition"), header(r, "dlq.offset")) for r in dead}) == 3
    finally:
        for watcher in (changes, statuses, letters):
            await watcher.stop()
        profile.stop()
        notifications.stop()

    secrets = _secrets(people)
    for log_file in (profile.log_file, notifications.log_file):
        lines = log_file.read_text().splitlines()
        assert len(lines) > 5, log_file
        for line in lines:
            entry = json.loads(line)  # every line is one JSON object
            assert {"at", "level", "service", "message"} <= entry.keys()
        found = {s for s in secrets if s in log_file.read_text()}
        assert found == set(), f"unmasked PII in {log_file.name}"
        # Credentials travel in WeChat URLs (token fetch, template send): never logged either.
        credentials = {gateway.app_secret, "access_token=", gateway.secret}
        assert {c for c in credentials if c in log_file.read_text()} == set(), log_file.name


def _secrets(people: list[dict[str, Any]]) -> set[str]:
    """Each phone number (E.164 and national form) and openid used by the test."""
    found: set[str] = set()
    for p in people:
        found |= {p["mobile"], p["mobile"].removeprefix("+86"), p["wechat_openid"]}
    found |= {"13812345678", "138 2345 6789", "13823456789", "13934567890"}
    found |= {"1381234567", "12345678901", "139 1234 567"}
    return found
