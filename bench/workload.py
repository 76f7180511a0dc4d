"""Deterministic balance-posting workloads and their independently computed outcome."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

BOUNDS = (Decimal(50_000), Decimal(500_000), Decimal(3_000_000))
TIERS = ("ordinary", "potential", "quality", "high_end")


def tier_of(total: Decimal) -> str:
    """Independent of services.tiering: the benchmark checks the service, not itself."""
    return TIERS[sum(total >= bound for bound in BOUNDS)]


@dataclass
class Workload:
    """Pre-encoded messages (key, value) and what the service must end up with."""

    messages: list[tuple[bytes, bytes]]
    final_tiers: dict[str, str]
    tier_changes: int


def balance_workload(events: int, customers: int, *, seed: int = 7, prefix: str = "B") -> Workload:
    """`events` postings over `customers` (2 to 4 accounts each); ~5% cross a tier bound."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:6]
    ids = [f"{prefix}{run}-{n:07d}" for n in range(customers)]
    accounts = {c: [f"{c}-{a}" for a in range(rng.randint(2, 4))] for c in ids}
    seq: dict[str, int] = {}
    balances: dict[str, dict[str, Decimal]] = {c: {} for c in ids}
    tiers: dict[str, str] = {}
    changes = 0
    messages = []
    occurred_at = datetime.now(UTC).isoformat()
    for n in range(events):
        customer = ids[n % customers] if n < customers else rng.choice(ids)
        account = rng.choice(accounts[customer])
        seq[account] = seq.get(account, 0) + 1
        if rng.random() < 0.05:
            balance = Decimal(rng.choice([60_000, 600_000, 3_100_000])) / len(accounts[customer])
        else:
            balance = Decimal(rng.randint(100, 1_200_000)) / 100
        balance = balance.quantize(Decimal("0.01"))
        balances[customer][account] = balance
        total = sum(balances[customer].values(), Decimal(0))
        tier = tier_of(total)
        if tiers.get(customer) != tier:
            changes += 1
            tiers[customer] = tier
        value = {
            "event_id": str(uuid.uuid4()),
            "event_type": "BalanceChanged",
            "schema_version": 1,
            "occurred_at": occurred_at,
            "producer": "bench",
            "data": {
                "customer_id": customer,
                "account_id": account,
                "currency": "CNY",
                "balance": f"{balance:.2f}",
                "delta": "0.00",
                "txn_id": f"{account}-{seq[account]}",
                "account_seq": seq[account],
            },
        }
        messages.append((customer.encode(), json.dumps(value).encode()))
    return Workload(messages, tiers, changes)
