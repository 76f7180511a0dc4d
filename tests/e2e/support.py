"""What the end-to-end scenarios share: publishing as the bank's systems, reading the services."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord, RecordMetadata

from services.notifications import store as notification_store
from shared.contracts.topics import CUSTOMER_UPDATED, PROFILE_CHANGED
from shared.testing.kafka import TopicWatcher, make_event, publish, value_of
from shared.testing.stack import Stack
from shared.testing.waiting import eventually

BANK_TZ = ZoneInfo("Asia/Shanghai")
Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
SENT_OR_FINAL = ("sent", "failed", "suppressed")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_mobile() -> str:
    return f"+86137{uuid.uuid4().int % 10**8:08d}"


def keyed(key: str) -> Callable[[Record], bool]:
    """Records whose message key is `key` (the customer id on every contract topic)."""
    raw = key.encode()
    return lambda r: r.key == raw


def data_of(record: Record) -> dict[str, Any]:
    data: dict[str, Any] = value_of(record)["data"]
    return data


@dataclass
class Customer:
    """A test customer as CRM registered them."""

    customer_id: str
    mobile: str
    wechat_openid: str | None
    preferred_channel: str

    @property
    def address(self) -> str:
        """Where their messages go on the preferred channel."""
        if self.preferred_channel == "wechat":
            assert self.wechat_openid
            return self.wechat_openid
        return self.mobile


@dataclass
class System:
    """The running stack, a watcher per topic and a producer standing in for the bank."""

    stack: Stack
    topics: dict[str, TopicWatcher]
    producer: AIOKafkaProducer
    bootstrap_servers: str

    # -- the bank's other systems --

    async def publish(self, topic: str, data: dict[str, Any], **envelope: Any) -> dict[str, Any]:
        """Publish `data` as an event on `topic`, occurring now on the stack's clock."""
        event = make_event(topic, data, occurred_at=self.stack.now().isoformat(), **envelope)
        await publish(self.producer, topic, event)
        return event

    async def republish(self, topic: str, event: dict[str, Any]) -> RecordMetadata:
        """Publish an event again exactly as it was (same event id): a redelivery."""
        headers = [
            (name, str(event[name]).encode())
            for name in ("event_type", "event_id", "schema_version")
        ]
        value = json.dumps(event).encode()
        return await self.send(topic, value, event["data"]["customer_id"], headers)

    async def send(
        self, topic: str, value: bytes, key: str, headers: list[tuple[str, bytes]] | None = None
    ) -> RecordMetadata:
        """Publish raw bytes under `key`; where they landed."""
        return await self.producer.send_and_wait(
            topic, value, key=key.encode(), headers=headers or []
        )

    def crm_update(self, customer: Customer, **fields: Any) -> dict[str, Any]:
        return {
            "customer_id": customer.customer_id,
            "name": "Li Lei",
            "mobile": customer.mobile,
            "wechat_openid": customer.wechat_openid,
            "language": "en",
            "preferred_channel": customer.preferred_channel,
            "consents": {"service": True, "marketing": False},
            "branch_id": "B001",
        } | fields

    async def onboard(
        self,
        *,
        channel: str = "sms",
        relationship_manager_id: str | None = None,
        crm_events: list[dict[str, Any]] | None = None,
    ) -> Customer:
        """CRM registers a new customer; quiet hours are moved out of the test's way.

        Customer messages in quiet hours (default 21:00-08:00 Shanghai) wait for the
        morning, and the scenarios move the clock by hours: each customer gets a one-minute
        window three hours in the past instead, which the next ~21 hours never reach.
        """
        openid = "o" + uuid.uuid4().hex[:27] if channel == "wechat" else None
        customer = Customer(new_id("C"), new_mobile(), openid, channel)
        extra = {"relationship_manager_id": relationship_manager_id}
        event = await self.publish(
            CUSTOMER_UPDATED, self.crm_update(customer, **{k: v for k, v in extra.items() if v})
        )
        if crm_events is not None:
            crm_events.append(event)
        await self.topics[PROFILE_CHANGED].wait_for(keyed(customer.customer_id))
        start = (self.stack.now() - timedelta(hours=3)).astimezone(BANK_TZ)
        quiet = {
            "start": start.strftime("%H:%M"),
            "end": (start + timedelta(minutes=1)).strftime("%H:%M"),
        }
        profile = self.stack.profile
        response = await profile.http.patch(
            f"/profiles/{customer.customer_id}",
            json={"quiet_hours": quiet},
            headers=profile.token("admin"),
        )
        assert response.status_code == 200, response.text
        await self.recipient_known(customer.customer_id, quiet["start"])
        return customer

    async def recipient_known(self, customer_id: str, quiet_start: str) -> None:
        """Wait until the notification service's replica holds the customer's latest snapshot."""
        rt = self.stack.notifications.runtime

        async def replica() -> Any:
            async with rt.sessions() as session:
                rows = await notification_store.customers_by_id(session, [customer_id])
            return rows.get(customer_id)

        await eventually(replica, lambda row: row is not None and row.quiet_start == quiet_start)

    async def new_staff(self, department: str, *roles: str) -> tuple[str, str]:
        """Register a fresh employee with the notification service; (employee_id, mobile)."""
        employee_id, mobile = new_id("E"), new_mobile()
        svc = self.stack.notifications
        response = await svc.http.put(
            f"/staff/{employee_id}",
            json={
                "name": f"Staff {employee_id}",
                "mobile": mobile,
                "language": "en",
                "department": department,
                "branch_id": "B001",
                "roles": list(roles),
            },
            headers=svc.token("ops"),
        )
        assert response.status_code == 200, response.text
        return employee_id, mobile

    # -- reading the services --

    async def notifications(self, **recipient: str) -> list[dict[str, Any]]:
        """Messages to one recipient (customer_id=, employee_id= or department_id=)."""
        svc = self.stack.notifications
        response = await svc.http.get(
            "/notifications", params=recipient | {"limit": "500"}, headers=svc.token("ops")
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def settled(
        self,
        template: str,
        *,
        about: str,
        count: int = 1,
        timeout: float = 20.0,
        **recipient: str,
    ) -> list[dict[str, Any]]:
        """The recipient's `template` messages about customer `about`, once `count` are final."""

        async def read() -> list[dict[str, Any]]:
            items = await self.notifications(**recipient)
            return [m for m in items if m["template"] == template and m["customer_id"] == about]

        found = await eventually(
            read,
            lambda ms: len(ms) >= count and all(m["status"] in SENT_OR_FINAL for m in ms),
            timeout=timeout,
            interval=0.2,  # each read is a query in the services' own event loop
        )
        assert len(found) == count, found
        return found

    async def sandbox(self, address: str) -> list[dict[str, Any]]:
        """What the sandbox provider delivered to an address (mobile number or openid)."""
        svc = self.stack.notifications
        response = await svc.http.get(
            "/sandbox/messages", params={"address": address}, headers=svc.token("ops")
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def delivered_to(self, address: str, notification_ids: Sequence[str]) -> None:
        """Each of the notifications reached the sandbox at `address`."""
        delivered = {m["notification_id"] for m in await self.sandbox(address)}
        assert set(notification_ids) <= delivered, (address, notification_ids, delivered)

    async def read_topic(self, topic: str, predicate: Callable[[Record], bool]) -> list[Record]:
        """Every record on `topic` matching `predicate`, read afresh from the beginning."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, fetch_max_wait_ms=20)
        await consumer.start()
        try:
            parts = sorted(consumer.partitions_for_topic(topic) or ())
            tps = [TopicPartition(topic, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            found: list[Record] = []
            idle = 0
            while idle < 3:  # three empty polls in a row: the end of every partition
                batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
                records = [r for rs in batches.values() for r in rs]
                found += [r for r in records if predicate(r)]
                idle = 0 if records else idle + 1
            return found
        finally:
            await consumer.stop()

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(BANK_TZ)
