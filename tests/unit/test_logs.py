"""PII masking of log lines."""

import json
import logging
import sys

import pytest

from shared.contracts.events import OpsAlert
from shared.logs import JsonFormatter, mask_pii

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("call +8613800138000", "call +86138****8000"),
        ("mobile 13800138000.", "mobile 138****8000."),
        ("openid oUpF8uMuAJO_M2pxb1Q9zNjWeS6o sent", "openid oUpF****eS6o sent"),
        (
            "amount 50000.00 and account 6222020200112233",
            "amount 50000.00 and account 6222020200112233",
        ),
        # After Chinese text, which Python's \w counts as word characters.
        ("客户13812345678来电", "客户138****5678来电"),
        # After an escape in a repr or a JSON text: its letter is not part of the number.
        (r"rows:\n13812345678\to6_bmjrPTlm6_2sgVt7hMZOPfL2M", r"rows:\n138****5678\to6_b****fL2M"),
        (
            "openid o6_bmjrPTlm6_2sgVt7hMZOPfL2- (may end in a dash)",
            "openid o6_b****fL2- (may end in a dash)",
        ),
    ],
)
def test_phone_numbers_and_openids_are_masked(raw: str, masked: str):
    assert mask_pii(raw) == masked


def test_formatter_masks_and_emits_json():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "to %s", ("+8613800138000",), None)
    line = JsonFormatter("tiering").format(record)
    assert "13800138000" not in line
    assert '"service": "tiering"' in line


def test_a_logged_exception_with_line_breaks_is_masked():
    error = ValueError("rows:\n13812345678\to6_bmjrPTlm6_2sgVt7hMZOPfL2M")
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "failed: %r", (error,), None)
    try:
        raise error
    except ValueError:
        record.exc_info = sys.exc_info()
    line = JsonFormatter("complaints").format(record)
    assert "13812345678" not in line and "hMZOPfL2M" not in line
    entry = json.loads(line)
    assert "138****5678" in entry["message"] and "138****5678" in entry["exception"]


def test_an_ops_alert_masks_what_its_message_and_details_quote():
    alert = OpsAlert(
        service="profile",
        severity="warning",
        kind="dead_letter",
        message="rejected +8613812345678",
        details={
            "error": "data.mobile: (got 13812345678)",
            "ids": ["oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"],
        },
    )
    assert alert.message == "rejected +86138****5678"
    assert alert.details == {
        "error": "data.mobile: (got 138****5678)",
        "ids": ["oUpF****eS6o"],
    }
