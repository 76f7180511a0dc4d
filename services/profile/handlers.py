"""Profile handlers: CRM/tier events and PATCH → profile + ProfileChanged (outbox)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.profile import store
from services.profile.domain import (
    InvalidField,
    Profile,
    WarningPolicy,
    add_months,
    check_consistency,
    forbidden_fields,
    merge,
    profile_changes,
    requested_fields,
)
from services.profile.warnings import NEW_CUSTOMER_TIMER
from shared.contracts import Envelope
from shared.contracts.events import (
    Consents,
    CustomerUpdated,
    ProfileChanged,
    QuietHours,
    TierChanged,
)
from shared.contracts.topics import PROFILE_CHANGED
from shared.messaging.consumer import RejectedEvent
from shared.unit_of_work import TimerMoves, Tx, UnitOfWork
from shared.web.errors import ApiError

# Onboarding dates whose first month ended longer ago than this are history we did not
# observe: no new-customer check is armed for them (a CRM back-fill must not flood callbacks).
NEW_CUSTOMER_BACKFILL_GRACE = timedelta(days=1)


def snapshot(profile: Profile) -> ProfileChanged:
    """The full contact/preference snapshot other services replicate."""
    v = profile.values
    return ProfileChanged(
        customer_id=profile.customer_id,
        name=v["name"],
        mobile=v["mobile"],
        wechat_openid=v["wechat_openid"],
        language=v["language"],
        preferred_channel=v["preferred_channel"],
        consents=Consents(service=v["consent_service"], marketing=v["consent_marketing"]),
        quiet_hours=QuietHours(start=v["quiet_hours_start"], end=v["quiet_hours_end"]),
        tier=v["tier"],
        maintenance_team=v["maintenance_team"],
        relationship_manager_id=v["relationship_manager_id"],
        branch_id=v["branch_id"],
    )


def _event_changes(event: Envelope[Any]) -> tuple[dict[str, Any], datetime]:
    """The profile fields an inbound event asserts, and as of when."""
    data = event.data
    if isinstance(data, TierChanged):
        return {"tier": data.tier, "maintenance_team": data.maintenance_team}, data.evaluated_at
    assert isinstance(data, CustomerUpdated)
    fields = data.model_dump(exclude_unset=True, exclude={"customer_id"})
    return profile_changes(fields), event.occurred_at


class ApplyProfileEvents:
    """CRM updates and tier changes → profiles; a ProfileChanged per effective change."""

    def __init__(self, policy: WarningPolicy) -> None:
        self.policy = policy

    async def __call__(self, tx: Tx, events: list[Envelope[Any]]) -> None:
        profiles = await store.lock_profiles(tx.session, (e.data.customer_id for e in events))
        dirty: dict[str, Profile] = {}
        checks = TimerMoves(NEW_CUSTOMER_TIMER)
        for event in events:
            customer_id = event.data.customer_id
            current = profiles.get(customer_id) or Profile(customer_id)
            candidate = current.copy()
            try:
                changes, at = _event_changes(event)
                changed = merge(candidate, changes, at)
                check_consistency(candidate, changes)
            except InvalidField as exc:
                raise RejectedEvent(
                    event, f"data.{exc.field}: {exc.reason}", "invalid_field"
                ) from None
            if candidate.stamps == current.stamps and not current.is_new:
                continue  # every field was stale: nothing to write
            candidate.is_new = False
            profiles[customer_id] = dirty[customer_id] = candidate
            if changed or current.is_new:
                tx.emit(PROFILE_CHANGED, snapshot(candidate), key=customer_id, causation=event)
            if "onboarded_at" in changed:
                self._arm_new_customer_check(tx, current, candidate, checks)
        await store.save_profiles(tx.session, list(dirty.values()), tx.now)
        await checks.apply(tx)

    def _arm_new_customer_check(
        self, tx: Tx, before: Profile, after: Profile, checks: TimerMoves
    ) -> None:
        """One first-month inactivity check per onboarding date (moved if CRM corrects it)."""
        previous, onboarded = before.values["onboarded_at"], after.values["onboarded_at"]
        if previous is not None:
            checks.cancel(_first_month_key(after.customer_id, previous))
        if onboarded is None:
            return
        due_at = add_months(onboarded, self.policy.new_customer_months)
        if due_at < tx.now - NEW_CUSTOMER_BACKFILL_GRACE:
            return
        checks.schedule(
            _first_month_key(after.customer_id, onboarded),
            due_at,
            {"customer_id": after.customer_id, "onboarded_at": onboarded.isoformat()},
        )


def _first_month_key(customer_id: str, onboarded: datetime) -> str:
    """The check's timer key, in UTC: the date is scheduled with CRM's offset and cancelled
    as read back from Postgres (UTC); with the offset in the key, a correction's cancel
    missed the first date's check, which then fired."""
    return f"{customer_id}:{onboarded.astimezone(UTC).isoformat()}"


async def update_profile(
    uow: UnitOfWork, role: str, customer_id: str, body: dict[str, Any]
) -> Profile:
    """PATCH /profiles/{id}: field permissions by role, validation, ProfileChanged if effective."""
    forbidden = forbidden_fields(role, requested_fields(body))
    if forbidden:
        raise ApiError(
            403,
            "forbidden_field",
            f"role {role!r} may not change {', '.join(forbidden)}",
            fields=forbidden,
        )
    try:
        changes = profile_changes(body)
    except InvalidField as exc:
        raise ApiError(422, "validation_error", str(exc), fields=[exc.field]) from None
    async with uow() as tx:
        current = (await store.lock_profiles(tx.session, [customer_id])).get(customer_id)
        if current is None:
            raise ApiError(404, "not_found", f"no profile for customer {customer_id!r}")
        candidate = current.copy()
        changed = merge(candidate, changes, tx.now)
        try:
            check_consistency(candidate, changes)
        except InvalidField as exc:
            raise ApiError(422, "validation_error", str(exc), fields=[exc.field]) from None
        if candidate.stamps != current.stamps:
            await store.save_profiles(tx.session, [candidate], tx.now)
        if changed:
            tx.emit(PROFILE_CHANGED, snapshot(candidate), key=customer_id)
    return candidate
