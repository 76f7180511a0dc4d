"""Queued notifications → providers: the `deliver` timer handler.

Runs in the timer worker's transaction, which holds the claimed timer rows with FOR UPDATE
SKIP LOCKED: policy first (consent, quiet hours, cap), then the provider calls concurrently,
each under the provider timeout, then attempts, receipts and the next step (sent, retry
with backoff, fall back WeChat → SMS, or fail with an ops alert) are recorded. A round is
bounded (`round_size`) so one transaction never waits on more than a few waves of calls.

Delivery is at least once: should this transaction fail after a provider accepted a
message, the next round sends it again. Providers get the notification id as idempotency
key (SMS `Idempotency-Key` header, WeChat `client_msg_id`) so they can drop the repeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import timedelta
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
from services.notifications.handlers import (
    DELIVER,
    delivery_key,
    emit_alert,
    emit_status,
    schedule_delivery,
)
from services.notifications.metrics import PROVIDER_CALLS
from services.notifications.providers import OutgoingMessage, Provider
from services.notifications.templating import Template, render
from shared.clock import Clock
from shared.timers import DueTimer
from shared.unit_of_work import Tx

log = logging.getLogger(__name__)


def _customer_contact(row: Any) -> Contact:
    return Contact(
        kind="customer",
        id=row.customer_id,
        name=row.name,
        mobile=row.mobile,
        wechat_openid=row.wechat_openid,
        language=row.language,
        preferred_channel=row.preferred_channel,
        service_consent=row.service_consent,
        marketing_consent=row.marketing_consent,
        quiet_hours=QuietWindow.parse(row.quiet_start, row.quiet_end),
    )


def _staff_contact(kind: Any, rid: str, row: Any) -> Contact:
    return Contact(
        kind=kind,
        id=rid,
        name=row.name,
        mobile=row.mobile,
        wechat_openid=row.wechat_openid,
        language=row.language,
        preferred_channel=row.preferred_channel,
    )


async def load_contacts(tx: Tx, pending: Sequence[Any]) -> dict[tuple[str, str], Contact]:
    """Contact details of every recipient in the batch, three queries at most."""
    wanted: dict[str, set[str]] = {"customer": set(), "employee": set(), "department": set()}
    for row in pending:
        wanted[row.recipient_kind].add(row.recipient_id)
    contacts: dict[tuple[str, str], Contact] = {}
    for cid, row in (await store.customers_by_id(tx.session, wanted["customer"])).items():
        contacts["customer", cid] = _customer_contact(row)
    for eid, row in (await store.staff_by_id(tx.session, wanted["employee"])).items():
        contacts["employee", eid] = _staff_contact("employee", eid, row)
    duty = await store.duty_contacts_by_department(tx.session, wanted["department"])
    for department, row in duty.items():
        contacts["department", department] = _staff_contact("department", department, row)
    return contacts


async def enrichments(tx: Tx, pending: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Per customer concerned: their name and who serves them (relationship manager)."""
    subjects = await store.customers_by_id(tx.session, (r.customer_id for r in pending))
    managers = await store.staff_by_id(
        tx.session,
        (s.relationship_manager_id for s in subjects.values() if s.relationship_manager_id),
    )
    extra: dict[str, dict[str, Any]] = {}
    for cid, subject in subjects.items():
        manager = managers.get(subject.relationship_manager_id or "")
        extra[cid] = {
            "customer_name": subject.name,
            "served_by": manager.name if manager else None,
        }
    return extra


class _RoundWrites:
    """What a delivery round records for all its messages, written set-based at its end."""

    def __init__(self) -> None:
        self.attempts: list[dict[str, Any]] = []
        self.receipts: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []

    async def flush(self, tx: Tx) -> None:
        await store.record_attempts(tx.session, self.attempts)
        await store.record_receipts(tx.session, self.receipts)
        await store.update_notifications(tx.session, self.sent)


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
        unknown_recipient_grace: timedelta,
        clock: Clock,
    ) -> None:
        self.providers = providers
        self.policy = policy
        self.daily_cap = daily_cap
        self.concurrency = concurrency
        self.round_size = round_size
        self.grace = unknown_recipient_grace
        self.clock = clock

    async def __call__(self, tx: Tx, due: list[DueTimer]) -> None:
        ids = list(dict.fromkeys(str(t.payload["notification_id"]) for t in due))
        pending = await store.lock_notifications(tx.session, ids)
        # Bound one round (and the transaction around it) to a few waves of provider calls;
        # the rest go straight back on the queue for the next round.
        pending, later = pending[: self.round_size], pending[self.round_size :]
        await self._reschedule_many(tx, later, tx.now)
        if not pending:
            return
        contacts = await load_contacts(tx, pending)
        extra = await enrichments(tx, pending)
        templates = await store.all_templates(tx.session)
        outgoing: list[tuple[Any, Contact, OutgoingMessage]] = []
        for row in pending:
            contact = contacts.get((row.recipient_kind, row.recipient_id))
            if (
                contact is None
                and row.recipient_kind == "customer"
                and tx.now - row.created_at < self.grace
            ):
                # The profile may simply not have arrived yet (another topic).
                await self._reschedule(tx, row, tx.now + min(self.grace, timedelta(seconds=30)))
                continue
            pending_msg = Pending(row.category, row.urgent, frozenset(row.exhausted_channels))
            decision = decide(pending_msg, row.recipient_kind, contact, tx.now)
            if isinstance(decision, Suppress):
                await self._finish(tx, row, "suppressed", decision.reason)
            elif isinstance(decision, Defer):
                await self._defer(tx, row, decision)
            elif isinstance(decision, Send):
                assert contact is not None
                if row.attempts == 0 and counts_against_cap(contact, row.urgent):
                    day = local_day(tx.now)
                    if not await store.take_daily_slot(
                        tx.session, row.customer_id, day, self.daily_cap
                    ):
                        await self._finish(
                            tx, row, "suppressed", f"daily_cap: {self.daily_cap} per day"
                        )
                        continue
                message = self._message(row, contact, decision, templates, extra)
                outgoing.append((row, contact, message))
            else:
                await self._give_up(tx, row, "delivery_failed", decision.reason, None)
        results = await self._send_all([m for _, _, m in outgoing])
        writes = _RoundWrites()
        for (row, contact, message), result in zip(outgoing, results, strict=True):
            await self._after(tx, row, contact, message, result, writes)
        await writes.flush(tx)

    def _message(
        self,
        row: Any,
        contact: Contact,
        decision: Send,
        templates: Mapping[str, Any],
        extra: Mapping[str, dict[str, Any]],
    ) -> OutgoingMessage:
        stored = templates[row.template]
        template = Template(row.template, stored.category, stored.bodies, stored.wechat_template_id)
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
        if not messages:
            return []
        limit = asyncio.Semaphore(self.concurrency)
        async with httpx.AsyncClient() as client:

            async def one(message: OutgoingMessage) -> AttemptResult:
                provider = self.providers[message.channel]
                async with limit:
                    try:
                        result = await provider.send(client, message)
                    except Exception as exc:  # a provider bug must not sink the batch
                        log.exception("provider %s raised", provider.name)
                        result = AttemptResult("transient", provider.name, error=repr(exc)[:200])
                PROVIDER_CALLS.labels(result.provider, result.outcome).inc()
                return result

            return list(await asyncio.gather(*(one(m) for m in messages)))

    async def _after(
        self,
        tx: Tx,
        row: Any,
        contact: Contact,
        message: OutgoingMessage,
        result: AttemptResult,
        writes: _RoundWrites,
    ) -> None:
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
                    "raw": result.receipt,
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
            "notification_id": row.notification_id,
            "attempts": attempt,
            "channel": message.channel,
            "channel_attempts": channel_attempts,
            "address": message.address,
            "language": contact.language,
            "body": message.body,
            "updated_at": tx.now,
        }
        if isinstance(step, Delivered):
            state |= {"status": "sent", "reason": None, "sent_at": finished}
            writes.sent.append(state)
            emit_status(tx, row, "sent", None, message.channel)
        elif isinstance(step, Retry):
            state |= {"reason": f"retrying: {result.error}", "timer_seq": row.timer_seq + 1}
            await store.update_notifications(tx.session, [state])
            await schedule_delivery(tx, row.notification_id, row.timer_seq + 1, tx.now + step.after)
        elif isinstance(step, Fallback):
            state |= {
                "exhausted_channels": sorted(exhausted | {message.channel}),
                "channel_attempts": 0,
                "reason": f"falling back to {step.channel}: {result.error}",
                "timer_seq": row.timer_seq + 1,
            }
            await store.update_notifications(tx.session, [state])
            await schedule_delivery(tx, row.notification_id, row.timer_seq + 1, tx.now)
        else:
            assert isinstance(step, GiveUp)
            await store.update_notifications(tx.session, [state])
            await self._give_up(tx, row, step.alert_kind, step.reason, message.channel)

    async def _reschedule_many(self, tx: Tx, rows: Sequence[Any], due_at: Any) -> None:
        """`_reschedule` for many rows in two statements (a round's overflow can be large)."""
        if not rows:
            return
        await store.update_notifications(
            tx.session,
            [
                {
                    "notification_id": r.notification_id,
                    "timer_seq": r.timer_seq + 1,
                    "updated_at": tx.now,
                }
                for r in rows
            ],
        )
        await tx.schedule_many(
            DELIVER,
            [
                (
                    delivery_key(r.notification_id, r.timer_seq + 1),
                    due_at,
                    {"notification_id": r.notification_id},
                )
                for r in rows
            ],
        )

    async def _reschedule(self, tx: Tx, row: Any, due_at: Any) -> None:
        seq = row.timer_seq + 1
        await store.update_notifications(
            tx.session,
            [{"notification_id": row.notification_id, "timer_seq": seq, "updated_at": tx.now}],
        )
        await schedule_delivery(tx, row.notification_id, seq, due_at)

    async def _defer(self, tx: Tx, row: Any, decision: Defer) -> None:
        seq = row.timer_seq + 1
        await store.update_notifications(
            tx.session,
            [
                {
                    "notification_id": row.notification_id,
                    "timer_seq": seq,
                    "deliver_after": decision.until,
                    "reason": decision.reason,
                    "updated_at": tx.now,
                }
            ],
        )
        await schedule_delivery(tx, row.notification_id, seq, decision.until)
        emit_status(tx, row, "queued", decision.reason)

    async def _finish(self, tx: Tx, row: Any, status: str, reason: str) -> None:
        await store.update_notifications(
            tx.session,
            [
                {
                    "notification_id": row.notification_id,
                    "status": status,
                    "reason": reason,
                    "updated_at": tx.now,
                }
            ],
        )
        emit_status(tx, row, status, reason, row.channel)

    async def _give_up(
        self, tx: Tx, row: Any, alert_kind: str, reason: str, channel: str | None
    ) -> None:
        await store.update_notifications(
            tx.session,
            [
                {
                    "notification_id": row.notification_id,
                    "status": "failed",
                    "reason": reason,
                    "updated_at": tx.now,
                }
            ],
        )
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
