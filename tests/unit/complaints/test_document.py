"""The stored complaint document: every part of the aggregate survives a write and a read,
and documents written by the earlier codec (pydantic's, until msgspec took over) read the
same; the earlier codec reads the new documents too, so a rollback loses nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import TypeAdapter

from services.complaints import store
from services.complaints.domain import Complaint
from tests.unit.complaints.test_complaint import POLICY, STATUSES, T0, H, in_status, new

pytestmark = pytest.mark.unit
EARLIER = TypeAdapter(Complaint)


def everything_at_once() -> Complaint:
    """Money, a trail, an extension, compensation, a pause, a fired level and a re-graded
    severity (`called_back` adds an NPS and a non-ASCII note)."""
    c, _ = new("card_fraud", amount=Decimal("12345.60"))
    c.transfer(T0 + H, "E1", "operations", None, "processing issue")
    c.extend_regulatory(T0 + H, "E2", "M1", "needs investigation", POLICY)
    c.grant_compensation(T0 + H, "E2", "fund_loss", Decimal("999.99"), POLICY)
    c.grant_compensation(T0 + H, "E2", "service_flaw", None, POLICY)
    c.change_severity(T0 + H, "E2", "normal", "customer misread the statement", POLICY)
    generation = c.response_clock.generation
    assert c.sla_due(T0 + 20 * H, "response", "warning", generation) is not None
    c.acknowledge(T0 + 21 * H, "E1")
    c.start(T0 + 21 * H, "E2")
    c.await_customer(T0 + 22 * H, "E2")
    return c


def called_back() -> Complaint:
    c = in_status("resolved")
    c.record_callback(T0 + 80 * H, "E2", 1, True, 9, "满意, thanks", POLICY)
    return c


COMPLAINTS = {
    **{status: lambda status=status: in_status(status) for status in STATUSES},
    "everything_at_once": everything_at_once,
    "called_back": called_back,
}


@pytest.mark.parametrize("name", COMPLAINTS)
def test_a_document_reads_back_as_the_complaint_written(name):
    c = COMPLAINTS[name]()
    assert store._complaint(store.document_json(c)) == c


@pytest.mark.parametrize("name", COMPLAINTS)
def test_documents_of_the_earlier_codec_read_the_same_and_it_reads_the_new_ones(name):
    c = COMPLAINTS[name]()
    assert store._complaint(EARLIER.dump_json(c).decode()) == c
    assert EARLIER.validate_json(store.document_json(c)) == c
