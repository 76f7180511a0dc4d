"""Templates: placeholders, validation against each event's variables, rendering per language."""

# ruff: noqa: RUF001  (Chinese text uses full-width punctuation)
from __future__ import annotations

import pytest

from services.notifications.templating import (
    TEMPLATE_VARIABLES,
    Template,
    TemplateError,
    placeholders,
    render,
    validate,
)

pytestmark = pytest.mark.unit

UPGRADE = Template(
    "tier_upgrade_customer",
    "service",
    {
        "zh-CN": "尊敬的{customer_name}：恭喜您升级为{tier}，由{served_by}为您服务。",
        "en": "Dear {customer_name}, you are now {tier}; served by {served_by}.",
    },
    "tpl_upgrade",
)


def test_placeholders_are_the_plain_variables_of_a_text():
    assert placeholders("Dear {customer_name}, ticket {ticket}. {{literal}}") == {
        "customer_name",
        "ticket",
    }


@pytest.mark.parametrize("text", ["{tier!r}", "{tier:>10}", "{tier.name}", "{0}", "{tier"])
def test_format_tricks_and_malformed_placeholders_are_refused(text):
    with pytest.raises(TemplateError):
        placeholders(text)


def test_a_template_using_only_its_events_variables_is_valid():
    validate("tier_upgrade_customer", UPGRADE.bodies)


def test_unknown_variables_are_rejected_by_name():
    with pytest.raises(TemplateError) as raised:
        validate(
            "tier_upgrade_customer",
            {"zh-CN": "{customer_name}{balance}", "en": "{iban} {customer_name}"},
        )
    assert raised.value.unknown == ["balance", "iban"]
    assert "balance" in raised.value.detail and "iban" in raised.value.detail


def test_both_languages_are_required_and_no_others():
    with pytest.raises(TemplateError, match="missing text for en"):
        validate("tier_upgrade_customer", {"zh-CN": "{tier}"})
    with pytest.raises(TemplateError, match="unsupported language"):
        validate("tier_upgrade_customer", {"zh-CN": "{tier}", "en": "{tier}", "fr": "{tier}"})


def test_unknown_template_keys_are_rejected():
    with pytest.raises(TemplateError, match="unknown template"):
        validate("birthday_greeting", {"zh-CN": "x", "en": "x"})


def test_rendering_uses_the_recipients_language_and_localised_names():
    variables = {"customer_name": "Li Lei", "tier": "quality", "served_by": "wealth_team"}
    assert render(UPGRADE, "en", variables) == (
        "Dear Li Lei, you are now Quality; served by wealth team (dedicated manager, 7x24 hotline)."
    )
    assert render(UPGRADE, "zh-CN", variables) == (
        "尊敬的Li Lei：恭喜您升级为优质客户，由财富管理团队（专属客户经理，7×24小时专线）为您服务。"
    )


def test_missing_values_render_as_unknown_rather_than_failing():
    assert "(unknown)" in render(UPGRADE, "en", {"tier": "quality"})


def test_times_are_shown_in_shanghai_time():
    template = Template(
        "complaint_received_customer",
        "service",
        {"zh-CN": "{resolution_due_at}", "en": "by {resolution_due_at}"},
        "t",
    )
    assert render(template, "en", {"resolution_due_at": "2026-11-22T16:30:00+00:00"}) == (
        "by 2026-11-23 00:30"
    )


def test_a_language_without_text_falls_back_to_chinese():
    template = Template("x", "service", {"zh-CN": "中文"}, "t")
    assert template.text_for("en") == "中文"


def test_every_template_has_variables_declared():
    assert all(TEMPLATE_VARIABLES.values())
