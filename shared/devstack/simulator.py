"""A simulator of the bank's other systems, for `steward up --demo`.

Core banking posts balances (salary, spending, large deposits that cross tier bounds), CRM
publishes customer records, the app reports activity (some customers browse wealth
products day after day), channels file complaints of every category and channel, and a
staff desk works the complaints through the services' APIs. The services' dev clocks run
`speed` times faster than the wall clock so SLA and callback timers fire within minutes.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from shared.contracts.topics import (
    BALANCE_CHANGED,
    COMPLAINT_FILED,
    CUSTOMER_ACTIVITY,
    CUSTOMER_UPDATED,
)
from shared.testing.kafka import make_event, publish
from shared.web.auth import mint_token

CATEGORIES = (
    "card_fraud", "unauthorized_transaction", "account_security", "transfer_limit",
    "wealth_product", "processing_delay", "service_attitude", "fees", "system_outage", "other",
)  # fmt: skip
CHANNELS = ("app", "web", "hotline", "branch", "wechat", "regulator", "media")
CHANNEL_WEIGHTS = (30, 10, 25, 25, 8, 1, 1)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ("伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛")
MANAGERS = ("E002", "E003", "E100")
FRONT_DESK = ("E001", "E002", "E003")


@dataclass
class Customer:
    customer_id: str
    accounts: dict[str, Decimal]
    seq: dict[str, int] = field(default_factory=dict)
    browser: bool = False  # views wealth products day after day without buying


class BankSimulator:
    """Publishes the other systems' events and plays the staff desk, until cancelled."""

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        apis: Mapping[str, httpx.AsyncClient],
        jwt_secret: str,
        customers: int = 2000,
        speed: float = 600.0,
        postings_per_second: float = 40.0,
        garbage_every: tuple[float, float] = (20.0, 40.0),
        seed: int | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.apis = apis  # HTTP clients of the services, by name, with their base URLs
        self.garbage_every = garbage_every
        self.speed = speed
        self.rate = postings_per_second
        self.rng = random.Random(seed)
        self.offset = timedelta(0)  # how far the services' clocks are ahead of the wall clock
        self.published: Counter[str] = Counter()
        self.desk_actions: Counter[str] = Counter()
        self._run = uuid.uuid4().hex[:4].upper()
        self._staff = {
            "Authorization": f"Bearer {mint_token(jwt_secret, role='staff', employee_id='E001')}"
        }
        self._admin = {"Authorization": f"Bearer {mint_token(jwt_secret, role='admin')}"}
        self.customers = [self._new_customer(n) for n in range(customers)]
        self._producer: AIOKafkaProducer | None = None

    @property
    def now(self) -> datetime:
        """Simulated time: the services' clocks."""
        return datetime.now(UTC) + self.offset

    async def run(self) -> None:
        """Seed CRM records, then run every source of events concurrently."""
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all")
        await self._producer.start()
        try:
            await self._seed_crm()
            await asyncio.gather(
                self._clock(),
                self._postings(),
                self._activity(),
                self._complaints(),
                self._desk(),
                self._garbage(),
            )
        finally:
            await self._producer.stop()

    # --- sources ------------------------------------------------------------------------

    def _new_customer(self, n: int) -> Customer:
        accounts = {
            f"C{self._run}{n:05d}-{a}": Decimal(self.rng.randint(1_000, 40_000))
            for a in range(self.rng.randint(1, 4))
        }
        return Customer(f"C{self._run}{n:05d}", accounts, browser=self.rng.random() < 0.03)

    async def _emit(self, topic: str, data: dict[str, Any]) -> None:
        assert self._producer is not None
        event = make_event(topic, data, producer="demo-simulator", occurred_at=self.now.isoformat())
        await publish(self._producer, topic, event)
        self.published[topic] += 1

    async def _seed_crm(self) -> None:
        for customer in self.customers:
            has_wechat = self.rng.random() < 0.5
            await self._emit(
                CUSTOMER_UPDATED,
                {
                    "customer_id": customer.customer_id,
                    "name": self.rng.choice(SURNAMES) + self.rng.choice(GIVEN),
                    "mobile": f"+861{self.rng.choice('3578')}{self.rng.randint(0, 999999999):09d}",
                    "wechat_openid": f"o{uuid.uuid4().hex[:27]}" if has_wechat else None,
                    "language": "en" if self.rng.random() < 0.1 else "zh-CN",
                    "preferred_channel": "wechat" if has_wechat else "sms",
                    "consents": {"service": True, "marketing": self.rng.random() < 0.4},
                    "branch_id": "B001",
                    "relationship_manager_id": self.rng.choice(MANAGERS),
                    "onboarded_at": (
                        self.now - timedelta(days=self.rng.randint(1, 2000))
                    ).isoformat(),
                },
            )

    async def _postings(self) -> None:
        while True:
            customer = self.rng.choice(self.customers)
            account = self.rng.choice(list(customer.accounts))
            roll = self.rng.random()
            if roll < 0.02:  # a large deposit (or withdrawal) that moves across tier bounds
                delta = Decimal(self.rng.choice([60_000, 450_000, 600_000, 3_100_000, -500_000]))
            elif roll < 0.3:
                delta = Decimal(self.rng.randint(5_000, 30_000))  # salary
            else:
                delta = -Decimal(self.rng.randint(10, 3_000))  # spending
            balance = max(customer.accounts[account] + delta, Decimal(0))
            delta = balance - customer.accounts[account]
            customer.accounts[account] = balance
            customer.seq[account] = customer.seq.get(account, 0) + 1
            await self._emit(
                BALANCE_CHANGED,
                {
                    "customer_id": customer.customer_id,
                    "account_id": account,
                    "currency": "CNY",
                    "balance": f"{balance:.2f}",
                    "delta": f"{delta:.2f}",
                    "txn_id": f"{account}-{customer.seq[account]}",
                    "account_seq": customer.seq[account],
                    "booked_at": self.now.isoformat(),
                },
            )
            await asyncio.sleep(1 / self.rate)

    async def _activity(self) -> None:
        while True:
            customer = self.rng.choice(self.customers)
            if self.rng.random() < 0.5:
                customer = self.rng.choice([c for c in self.customers if c.browser] or [customer])
            if customer.browser:
                activity, product = "product_view", "wealth"
            else:
                activity = self.rng.choice(("login", "login", "product_view", "purchase"))
                product = self.rng.choice(("wealth", "deposit", "loan"))
            await self._emit(
                CUSTOMER_ACTIVITY,
                {
                    "customer_id": customer.customer_id,
                    "activity": activity,
                    "product_type": None if activity == "login" else product,
                    "product_id": None
                    if activity == "login"
                    else f"{product.upper()}-{self.rng.randint(1, 9)}",
                    "at": self.now.isoformat(),
                },
            )
            await asyncio.sleep(0.1)

    async def _complaints(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(self.rng.uniform(2, 6))
            n += 1
            customer = self.rng.choice(self.customers)
            category = self.rng.choice(CATEGORIES)
            amount = self.rng.choice([None, "200.00", "12000.00", "55000.00"])
            await self._emit(
                COMPLAINT_FILED,
                {
                    "complaint_ref": f"SIM-{self._run}-{n:06d}",
                    "customer_id": customer.customer_id,
                    "channel": self.rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0],
                    "category": category,
                    "description": f"simulated {category.replace('_', ' ')} complaint",
                    "amount_involved": amount,
                    "received_by": self.rng.choice(FRONT_DESK),
                    "branch_id": "B001",
                    "received_at": self.now.isoformat(),
                },
            )

    async def _garbage(self) -> None:
        """Now and then an upstream system sends something broken: it must be dead-lettered."""
        assert self._producer is not None
        broken = (
            b"{not json",
            b'{"event_type": "BalanceChanged", "data": {"balance": 1.5}}',
            b'{"event_id": "x", "event_type": "Nonsense"}',
        )
        while True:
            await asyncio.sleep(self.rng.uniform(*self.garbage_every))
            topic = self.rng.choice((BALANCE_CHANGED, COMPLAINT_FILED, CUSTOMER_ACTIVITY))
            await self._producer.send_and_wait(topic, self.rng.choice(broken), key=b"garbage")
            self.published[f"{topic} (broken)"] += 1

    async def _clock(self) -> None:
        """Move every service's dev clock forward: `speed` simulated seconds per second."""
        step = self.speed - 1  # one real second passes by itself
        while True:
            await asyncio.sleep(1)
            if step <= 0:
                continue
            await asyncio.gather(
                *(
                    api.post("/admin/clock", json={"advance_seconds": step}, headers=self._admin)
                    for api in self.apis.values()
                ),
                return_exceptions=True,
            )
            self.offset += timedelta(seconds=step)

    async def _desk(self) -> None:
        """Staff work some complaints: acknowledge some, resolve fewer; the rest age."""
        api = self.apis.get("complaints")
        if api is None:
            return
        while True:
            # A busy desk: many complaints wait, so the SLA clocks have something to do.
            await asyncio.sleep(5)
            try:
                listing = await api.get(
                    "/complaints",
                    params={"limit": 50, "status": "received"},
                    headers=self._staff,
                )
                for item in listing.json().get("items", [])[:2]:
                    if self.rng.random() < 0.5:
                        await self._act(api, item["complaint_id"], "acknowledge", None)
                listing = await api.get(
                    "/complaints",
                    params={"limit": 50, "status": "acknowledged"},
                    headers=self._staff,
                )
                for item in listing.json().get("items", [])[:1]:
                    if self.rng.random() < 0.3:
                        body = {"resolution": "refunded and explained", "root_cause": "process gap"}
                        await self._act(api, item["complaint_id"], "resolve", body)
            except (httpx.HTTPError, ValueError):
                self.desk_actions["unavailable"] += 1

    async def _act(self, api: httpx.AsyncClient, complaint_id: str, action: str, body: Any) -> None:
        response = await api.post(
            f"/complaints/{complaint_id}/{action}", json=body or {}, headers=self._staff
        )
        self.desk_actions[f"{action}:{response.status_code}"] += 1
