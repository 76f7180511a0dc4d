"""The notifications API shows a message's address masked by its channel's shape."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from services.notifications.api import _out

pytestmark = pytest.mark.unit

FIELDS = [
    "notification_id",
    "recipient_kind",
    "recipient_id",
    "customer_id",
    "template",
    "category",
    "urgent",
    "status",
    "reason",
    "language",
    "body",
    "attempts",
    "source_event_id",
    "created_at",
    "deliver_after",
    "sent_at",
]


def row(channel: str | None, address: str | None) -> Any:
    return SimpleNamespace(**dict.fromkeys(FIELDS), channel=channel, address=address)


@pytest.mark.parametrize(
    ("channel", "address", "shown"),
    [
        ("sms", "+8613800138000", "+86138****8000"),
        # Not 28 characters, and ending in "-": the log pattern let both through whole.
        ("wechat", "oWx1abcdefghijklmnopqrstuvwxyz0123-", "oWx1****23-"),
        ("wechat", "o-staff-7", "o-st****f-7"),
        (None, None, None),
    ],
)
def test_the_address_is_masked_by_its_channel(channel, address, shown):
    assert _out(row(channel, address))["address"] == shown
