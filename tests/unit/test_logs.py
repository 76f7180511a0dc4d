"""PII masking of log lines."""

import logging

import pytest

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
    ],
)
def test_phone_numbers_and_openids_are_masked(raw: str, masked: str):
    assert mask_pii(raw) == masked


def test_formatter_masks_and_emits_json():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "to %s", ("+8613800138000",), None)
    line = JsonFormatter("tiering").format(record)
    assert "13800138000" not in line
    assert '"service": "tiering"' in line
