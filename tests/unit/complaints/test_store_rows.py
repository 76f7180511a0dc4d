"""`store.fired_update` writes only what a fired timer changes; this pins what that is."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

import pytest

from services.complaints import store
from services.complaints.domain import Complaint
from tests.unit.complaints.test_complaint import T0, H, in_status, new

pytestmark = pytest.mark.unit

FIRED_COLUMNS = {"escalation_level", "document"}


def changed_columns(before: Complaint, after: Complaint, now: datetime) -> set[str]:
    old, new_row = store._row(before, now), store._row(after, now)
    return {column for column in old if old[column] != new_row[column]}


@pytest.mark.parametrize("clock", ["response", "resolution"])
@pytest.mark.parametrize("level", ["warning", "breach_1", "breach_2"])
def test_an_sla_firing_changes_only_the_escalation_and_the_document(clock, level):
    c, _ = new()
    now = T0 + 200 * H
    before = copy.deepcopy(c)
    assert c.sla_due(now, clock, level, 0) is not None
    assert changed_columns(before, c, now) <= FIRED_COLUMNS
    assert "document" in changed_columns(before, c, now)


def test_a_due_callback_changes_only_the_document():
    c = in_status("resolved")  # at T0 + 3h: callbacks due on day 3, 7 and 30
    now = T0 + 3 * H + timedelta(days=3)
    before = copy.deepcopy(c)
    assert c.callback_due(now, 0, 1) is not None
    assert changed_columns(before, c, now) == {"document"}


def test_the_check_sees_a_listed_column_change():
    c, _ = new()
    before = copy.deepcopy(c)
    c.acknowledge(T0 + H, "E1")
    assert "status" in changed_columns(before, c, T0 + 2 * H)
