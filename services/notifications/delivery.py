"""Queued notifications → providers: the `deliver` timer handler.

Runs in the timer worker's transaction, which holds the claimed timer rows with FOR UPDATE
SKIP LOCKED: policy first (consent, quiet hours, cap), then the provider calls, then
attempts, receipts and the next step (sent, retry with backoff, fall back WeChat → SMS, or
fail with an ops alert). Everything the transaction reads or writes is set-based: a few
statements for all its messages, none per message.

The claimed messages go out in rounds of `round_size`. Calls to a remote provider run
concurrently, at most `concurrency` in flight per provider (so one hanging provider cannot
take the slots of another), each under the provider timeout; a batch provider (the
sandbox) takes a round in one call. A further round starts only while the transaction has
been open less than `round_budget`, so a slow provider holds one transaction for about one
round; the messages left over go back on the queue.

Delivery is at least once: should this transaction fail after a provider accepted a
message, the next round sends it again. Providers get the notification id as idempotency
key (SMS `Idempotency-Key` header, WeChat `client_msg_id`) so they can drop the repeat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from services.notifications import store
from services.notifications.domain import (
    AttemptResult,
    Contact,
    Defer,
    Delivered,
    Fallback,
    GiveUp,
    Pending,
    QuietWindow,
    Retry,
    RetryPolicy,
    Send,
    Suppress,
    address_for,
    after_attempt,
    counts_against_cap,
    decide,
    local_day,
)
from services.notifications.handlers import DELIVER, delivery_key, emit_alert, emit_status
from services.notifications.metrics import PROVIDER_CALLS
from services.notifications.providers import BatchProvider, OutgoingMessage, Provider
from services.notifications.templating import Template, render
from shared.clock import Clock
from shared.timers import DueTimer
from shared.unit_of_work import Tx

log = logging.getLogger(__name__)


def _customer_contact(row: Any) -> Contact:
    return Contact(
        kind="customer",
        id=row.id,
        name=row.name,
        mobile=row.mobile,
        wechat_openid=row.wechat_openid,
        language=row.language,
        preferred_channel=row.preferred_channel,
        service_consent=row.service_consent,
        marketing_consent=row.marketing_consent,
        quiet_hours=QuietWindow.parse(row.quiet_start, row.quiet_end),
    )


def _staff_contact(row: Any) -> Contact:
    return Contact(
        kind=row.kind,
        id=row.id,
        name=row.name,
        mobile=row.mobile,
        wechat_openid=row.wechat_openid,
        language=row.language,
        preferred_channel=row.preferred_channel,
    )


@dataclass
class Recipients:
    """Contact details of the recipients of a transaction's messages, and per customer
    concerned the variables the templates take from the replica."""

    contacts: dict[tuple[str, str], Contact]
    extra: dict[str, dict[str, Any]]


async def load_recipients(tx: Tx, pending: Sequence[Any]) -> Recipients:
    """Everything about the people concerned by `pending`, in one query."""
    wanted: dict[str, set[str]] = {"customer": set(), "employee": set(), "department": set()}
    for row in pending:
        wanted[row.recipient_kind].add(row.recipient_id)
    subjects = {r.customer_id for r in pending}
    found = await store.contacts(
        tx.session, wanted["customer"] | subjects, wanted["employee"], wanted["department"]
    )
    contacts: dict[tuple[str, str], Contact] = {}
    for (kind, rid), row in found.items():
        if kind == "customer":
            if rid in wanted["customer"]:
                contacts[kind, rid] = _customer_contact(row)
        elif kind == "department" or rid in wanted["employee"]:
            contacts[kind, rid] = _staff_contact(row)
    extra: dict[str, dict[str, Any]] = {}
    for cid in subjects | wanted["customer"]:
        subject = found.get(("customer", cid))
        if subject is None:
            continue
        manager = found.get(("employee", subject.relationship_manager_id or ""))
        extra[cid] = {
            "customer_name": subject.name,
            "served_by": manager.name if manager else None,
        }
    return Recipients(contacts, extra)


@dataclass
class _Writes:
    """What a transaction records for all its messages, written set-based at its end."""

    now: datetime
    attempts: list[dict[str, Any]] = field(default_factory=list)
    receipts: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    timers: list[tuple[str, datetime, dict[str, Any] | None]] = field(default_factory=list)

    def state(self, row: Any, **columns: Any) -> None:
        """The notification's new columns (one entry per notification and transaction)."""
        self.states.append(
            {"notification_id": row.notification_id, "updated_at": self.now} | columns
        )

    def again(self, row: Any, due_at: datetime, **columns: Any) -> None:
        """Back on the queue with a fresh timer at `due_at`."""
        seq = row.timer_seq + 1
        self.state(row, timer_seq=seq, **columns)
        self.timers.append(
            (
                delivery_key(row.notification_id, seq),
                due_at,
                {"notification_id": row.notification_id},
            )
        )

    def flush(self, tx: Tx) -> None:
        """Everything, with the commit's statement."""
        tx.write_at_commit(*store.delivery_writes(self.attempts, self.receipts, self.states))
        tx.schedule_at_commit(DELIVER, self.timers)


@dataclass(frozen=True)
class _Outgoing:
    row: Any
    contact: Contact
    message: OutgoingMessage


class DeliverNotifications:
    """Timer handler: decide, send concurrently, record attempts, retry or fall back."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        *,
        policy: RetryPolicy,
        daily_cap: int,
        concurrency: int,
        round_size: int,
        round_budget: timedelta,
        unknown_recipient_grace: timedelta,
        unknown_recipient_retry: timedelta,
        clock: Clock,
    ) -> None:
        self.providers = providers
        self.policy = policy
        self.daily_cap = daily_cap
        self.concurrency = concurrency
        self.round_size = round_size
        self.round_budget = round_budget.total_seconds()
        self.grace = unknown_recipient_grace
        self.retry = min(unknown_recipient_retry, unknown_recipient_grace)
        self.clock = clock
        self._tls: Any = None  # built once: an SSL context costs more than a round of sends

    async def __call__(self, tx: Tx, due: list[DueTimer]) -> None:
        ids = list(dict.fromkeys(str(t.payload["notification_id"]) for t in due))
        pending = await store.lock_notifications(tx.session, ids)
        if not pending:
            return
        recipients = await load_recipients(tx, pending)
        writes = _Writes(tx.now)
        opened = time.monotonic()
        while pending:
            this_round, pending = pending[: self.round_size], pending[self.round_size :]
            await self._round(tx, this_round, recipients, writes)
            if time.monotonic() - opened >= self.round_budget:
                break
        for row in pending:  # left for the next transaction
            writes.again(row, tx.now)
        writes.flush(tx)

    async def _round(
        self,
        tx: Tx,
        rows: Sequence[Any],
        recipients: Recipients,
        writes: _Writes,
    ) -> None:
        """Decide for each message, take cap slots, send, record what happened."""
        ready: list[tuple[Any, Contact, Send]] = []
        for row in rows:
            contact = recipients.contacts.get((row.recipient_kind, row.recipient_id))
            if (
                contact is None
                and row.recipient_kind == "customer"
                and tx.now - row.created_at < self.grace
            ):
                # The profile may simply not have arrived yet (another topic).
                writes.again(row, tx.now + self.retry)
                continue
            pending_msg = Pending(row.category, row.urgent, frozenset(row.exhausted_channels))
            decision = decide(pending_msg, row.recipient_kind, contact, tx.now)
            if isinstance(decision, Suppress):
                self._finish(tx, row, "suppressed", decision.reason, writes)
            elif isinstance(decision, Defer):
                writes.again(
                    row, decision.until, deliver_after=decision.until, reason=decision.reason
                )
                emit_status(tx, row, "queued", decision.reason)
            elif isinstance(decision, Send):
                assert contact is not None
                ready.append((row, contact, decision))
            else:
                writes.state(row, status="failed", reason=decision.reason)
                self._alert(tx, row, "delivery_failed", decision.reason, None)
        outgoing = [
            _Outgoing(row, contact, self._message(row, contact, send, recipients.extra))
            for row, contact, send in await self._within_cap(tx, ready, writes)
        ]
        results = await self._send_all([o.message for o in outgoing])
        for sending, result in zip(outgoing, results, strict=True):
            self._after(tx, sending, result, writes)

    async def _within_cap(
        self, tx: Tx, ready: list[tuple[Any, Contact, Send]], writes: _Writes
    ) -> list[tuple[Any, Contact, Send]]:
        """The messages that may go out: a first attempt of a non-urgent customer message
        takes a slot of the customer's daily cap, or is suppressed."""
        capped: dict[str, list[tuple[Any, Contact, Send]]] = {}
        free = []
        for item in ready:
            row, contact, _ = item
            if row.attempts == 0 and counts_against_cap(contact, row.urgent):
                capped.setdefault(row.customer_id, []).append(item)
            else:
                free.append(item)
        day = local_day(tx.now)
        # One statement per layer: every customer's first message, then every second one…
        for layer in range(max((len(q) for q in capped.values()), default=0)):
            wanting = {cid: q[layer] for cid, q in capped.items() if len(q) > layer}
            granted = await store.take_daily_slots(tx.session, list(wanting), day, self.daily_cap)
            for cid, item in wanting.items():
                if cid in granted:
                    free.append(item)
                else:
                    reason = f"daily_cap: {self.daily_cap} per day"
                    self._finish(tx, item[0], "suppressed", reason, writes)
        return free

    def _message(
        self,
        row: Any,
        contact: Contact,
        decision: Send,
        extra: Mapping[str, dict[str, Any]],
    ) -> OutgoingMessage:
        if row.template_bodies is None:
            raise LookupError(f"template {row.template!r} is not on record")
        template = Template(row.template, row.category, row.template_bodies, row.template_wechat_id)
        variables = dict(row.variables) | {
            k: v for k, v in extra.get(row.customer_id, {}).items() if v is not None
        }
        variables.setdefault("served_by", variables.get("maintenance_team"))
        return OutgoingMessage(
            notification_id=row.notification_id,
            channel=decision.channel,
            address=address_for(contact, decision.channel),
            body=render(template, contact.language, variables),
            wechat_template_id=template.wechat_template_id,
        )

    async def _send_all(self, messages: Sequence[OutgoingMessage]) -> list[AttemptResult]:
        """Each message to its channel's provider: a batch provider takes its share in one
        call, a remote one gets one call per message, `concurrency` at a time."""
        by_provider: dict[str, list[int]] = {}
        for index, message in enumerate(messages):
            by_provider.setdefault(message.channel, []).append(index)
        results: list[AttemptResult | None] = [None] * len(messages)
        remote = [c for c in by_provider if not isinstance(self.providers[c], BatchProvider)]
        client = httpx.AsyncClient(verify=self._tls_context()) if remote else None
        try:

            async def share(channel: str, indexes: list[int]) -> None:
                provider = self.providers[channel]
                mine = [messages[i] for i in indexes]
                if isinstance(provider, BatchProvider):
                    answers = await self._send_batch(provider, mine)
                else:
                    assert client is not None
                    answers = await self._send_each(provider, client, mine)
                for i, answer in zip(indexes, answers, strict=True):
                    results[i] = answer
                    PROVIDER_CALLS.labels(answer.provider, answer.outcome).inc()

            await asyncio.gather(*(share(c, ix) for c, ix in by_provider.items()))
        finally:
            if client is not None:
                await client.aclose()
        return [r for r in results if r is not None]

    def _tls_context(self) -> Any:
        if self._tls is None:
            self._tls = httpx.create_ssl_context()
        return self._tls

    @staticmethod
    async def _send_batch(
        provider: BatchProvider, messages: Sequence[OutgoingMessage]
    ) -> list[AttemptResult]:
        try:
            return await provider.send_batch(messages)
        except Exception as exc:  # a provider bug must not sink the transaction
            log.exception("provider %s raised", provider.name)
            failed = AttemptResult("transient", provider.name, error=repr(exc)[:200])
            return [failed] * len(messages)

    async def _send_each(
        self, provider: Provider, client: httpx.AsyncClient, messages: Sequence[OutgoingMessage]
    ) -> list[AttemptResult]:
        limit = asyncio.Semaphore(self.concurrency)

        async def one(message: OutgoingMessage) -> AttemptResult:
            async with limit:
                try:
                    return await provider.send(client, message)
                except Exception as exc:  # a provider bug must not sink the transaction
                    log.exception("provider %s raised", provider.name)
                    return AttemptResult("transient", provider.name, error=repr(exc)[:200])

        return list(await asyncio.gather(*(one(m) for m in messages)))

    def _after(self, tx: Tx, sending: _Outgoing, result: AttemptResult, writes: _Writes) -> None:
        row, contact, message = sending.row, sending.contact, sending.message
        finished = self.clock.now()
        attempt = row.attempts + 1
        channel_attempts = (row.channel_attempts if row.channel == message.channel else 0) + 1
        writes.attempts.append(
            {
                "notification_id": row.notification_id,
                "attempt": attempt,
                "channel": message.channel,
                "provider": result.provider,
                "outcome": result.outcome,
                "http_status": result.http_status,
                "error": result.error,
                "started_at": tx.now,
                "finished_at": finished,
            }
        )
        if result.receipt or result.provider_message_id:
            writes.receipts.append(
                {
                    "notification_id": row.notification_id,
                    "provider": result.provider,
                    "provider_message_id": result.provider_message_id,
                    "status": result.outcome,
                    "raw": result.receipt or {},
                    "received_at": finished,
                }
            )
        exhausted = set(row.exhausted_channels)
        step = after_attempt(
            result,
            channel=message.channel,
            channel_attempts=channel_attempts,
            contact=contact,
            exhausted=exhausted,
            policy=self.policy,
        )
        state: dict[str, Any] = {
            "attempts": attempt,
            "channel": message.channel,
            "channel_attempts": channel_attempts,
            "address": message.address,
            "language": contact.language,
            "body": message.body,
        }
        if isinstance(step, Delivered):
            writes.state(row, **state, status="sent", reason=None, sent_at=finished)
            emit_status(tx, row, "sent", None, message.channel)
        elif isinstance(step, Retry):
            writes.again(row, tx.now + step.after, **state, reason=f"retrying: {result.error}")
        elif isinstance(step, Fallback):
            state |= {
                "exhausted_channels": sorted(exhausted | {message.channel}),
                "channel_attempts": 0,
                "reason": f"falling back to {step.channel}: {result.error}",
            }
            writes.again(row, tx.now, **state)
        else:
            assert isinstance(step, GiveUp)
            writes.state(row, **state, status="failed", reason=step.reason)
            self._alert(tx, row, step.alert_kind, step.reason, message.channel)

    @staticmethod
    def _finish(tx: Tx, row: Any, status: str, reason: str, writes: _Writes) -> None:
        writes.state(row, status=status, reason=reason)
        emit_status(tx, row, status, reason, row.channel)

    @staticmethod
    def _alert(tx: Tx, row: Any, alert_kind: str, reason: str, channel: str | None) -> None:
        """The message failed for good: say so on the bus and raise an ops alert."""
        emit_status(tx, row, "failed", reason, channel)
        emit_alert(
            tx,
            alert_kind,
            f"notification {row.notification_id} to {row.recipient_kind} {row.recipient_id} "
            f"failed: {reason}",
            severity="critical" if alert_kind == "provider_down" else "warning",
            notification_id=row.notification_id,
            recipient={"kind": row.recipient_kind, "id": row.recipient_id},
            template=row.template,
            channel=channel,
            reason=reason,
        )
