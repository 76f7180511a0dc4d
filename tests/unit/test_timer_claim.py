"""A timer claim builds each DueTimer from its row by position: the claim must select the
fields of DueTimer, in their order."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from shared.timers import DueTimer, claim_statement

pytestmark = pytest.mark.unit


def test_the_claim_selects_due_timer_fields_in_order():
    claim = claim_statement(["some.kind"], datetime(2026, 12, 6, tzinfo=UTC), 500)
    selected = [column.name for column in claim.selected_columns]
    assert selected == [field.name for field in dataclasses.fields(DueTimer)]
