# ruff: noqa: RUF001  (Chinese text uses full-width punctuation)
"""Message templates: which variables each template may use, validation and rendering.

Template texts live in the service's schema (seeded by the first migration, edited through
`PUT /templates/{key}`); this module is the pure part: `{variable}` placeholders, checked
against the variables the event behind each template supplies, and values shown in the
recipient's language (tier and team names, reasons, local times).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.notifications.domain import BANK_TZ, Category
from shared.contracts.events import Language

LANGUAGES: tuple[Language, ...] = ("zh-CN", "en")

# The variables each template's event supplies; a template may use no others.
TEMPLATE_VARIABLES: dict[str, frozenset[str]] = {
    "tier_upgrade_customer": frozenset(
        {"customer_name", "tier", "previous_tier", "maintenance_team", "served_by"}
    ),
    "tier_customer_assigned": frozenset(
        {"customer_id", "customer_name", "tier", "previous_tier", "direction", "total_balance"}
    ),
    "complaint_received_customer": frozenset(
        {"customer_name", "ticket", "category", "severity", "resolution_due_at"}
    ),
    "complaint_resolved_customer": frozenset({"customer_name", "ticket", "category"}),
    "sla_warning_staff": frozenset(
        {"complaint_id", "customer_id", "severity", "clock", "due_at", "department"}
    ),
    "sla_breached_staff": frozenset(
        {
            "complaint_id",
            "customer_id",
            "severity",
            "clock",
            "due_at",
            "department",
            "escalation_level",
            "overdue",
        }
    ),
    "callback_due_staff": frozenset(
        {"customer_id", "customer_name", "reason", "evidence", "due_at"}
    ),
}

# Values shown in the recipient's language.
LABELS: dict[Language, dict[str, str]] = {
    "zh-CN": {
        "ordinary": "普通客户",
        "potential": "潜力客户",
        "quality": "优质客户",
        "high_end": "高端客户",
        "branch_service": "网点柜员与大堂经理",
        "customer_manager": "客户经理团队",
        "wealth_team": "财富管理团队（专属客户经理，7×24小时专线）",
        "private_banking": "总行私人银行团队",
        "normal": "普通",
        "urgent": "紧急",
        "major": "重大",
        "response": "首次响应",
        "resolution": "处理完成",
        "upgrade": "升级",
        "downgrade": "降级",
        "initial": "首次评定",
        "complaint_followup": "投诉回访",
        "transaction_decline": "交易量下降",
        "browsing_without_purchase": "浏览理财未购买",
        "post_complaint_inactivity": "投诉后无交易（挽回）",
        "new_customer_inactive": "新客户未激活",
    },
    "en": {
        "ordinary": "Ordinary",
        "potential": "Potential",
        "quality": "Quality",
        "high_end": "High-end",
        "branch_service": "branch tellers and lobby manager",
        "customer_manager": "customer manager team",
        "wealth_team": "wealth team (dedicated manager, 7x24 hotline)",
        "private_banking": "head-office private banking team",
        "normal": "normal",
        "urgent": "urgent",
        "major": "major",
        "response": "first response",
        "resolution": "resolution",
        "upgrade": "upgrade",
        "downgrade": "downgrade",
        "initial": "initial rating",
        "complaint_followup": "complaint follow-up",
        "transaction_decline": "transaction decline",
        "browsing_without_purchase": "browsing wealth products without purchase",
        "post_complaint_inactivity": "no transactions since a complaint (win-back)",
        "new_customer_inactive": "new customer inactive",
    },
}
UNKNOWN = {"zh-CN": "（未知）", "en": "(unknown)"}
# Variables whose values are codes shown through LABELS.
LOCALISED = frozenset(
    {"tier", "previous_tier", "maintenance_team", "served_by", "severity", "clock", "direction"}
    | {"reason", "category"}
)


class TemplateError(ValueError):
    """A template text is malformed or uses variables its event does not supply."""

    def __init__(self, detail: str, unknown: list[str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.unknown = unknown or []


@dataclass(frozen=True)
class Template:
    """One message template: texts per language, category and WeChat template id."""

    key: str
    category: Category
    bodies: Mapping[str, str]
    wechat_template_id: str

    def text_for(self, language: str) -> str:
        """The body in `language`, falling back to zh-CN (the bank's default)."""
        return self.bodies.get(language) or self.bodies["zh-CN"]


def placeholders(text: str) -> set[str]:
    """The `{name}` placeholders of a text; format specs and attribute access are refused."""
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"malformed template text: {exc}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise TemplateError(f"placeholder {{{name}}} must be a plain {{variable}}")
        names.add(name)
    return names


def validate(key: str, bodies: Mapping[str, str]) -> None:
    """Raise TemplateError unless every language is present and every variable is known."""
    allowed = TEMPLATE_VARIABLES.get(key)
    if allowed is None:
        raise TemplateError(f"unknown template {key!r}")
    missing = [lang for lang in LANGUAGES if not (bodies.get(lang) or "").strip()]
    if missing:
        raise TemplateError(f"bodies: missing text for {', '.join(missing)}")
    extra = sorted(set(bodies) - set(LANGUAGES))
    if extra:
        raise TemplateError(f"bodies: unsupported language(s) {', '.join(extra)}")
    used: set[str] = set()
    for text in bodies.values():
        used |= placeholders(text)
    unknown = sorted(used - allowed)
    if unknown:
        raise TemplateError(
            f"unknown variable(s) {', '.join(unknown)} in template {key!r}; "
            f"allowed: {', '.join(sorted(allowed))}",
            unknown,
        )


def show(name: str, value: Any, language: Language) -> str:
    """A variable's value as the recipient reads it (local times, names in their language)."""
    if value is None or value == "":
        return UNKNOWN[language]
    if name.endswith("_at") and isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.astimezone(BANK_TZ).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dict):
        return ", ".join(f"{k}={show(k, v, language)}" for k, v in sorted(value.items()))
    if name in LOCALISED and isinstance(value, str):
        return LABELS[language].get(value, value)
    return str(value)


def render(template: Template, language: Language, variables: Mapping[str, Any]) -> str:
    """The template's text in `language` with every placeholder filled in."""
    text = template.text_for(language)
    values = {name: show(name, variables.get(name), language) for name in placeholders(text)}
    return text.format_map(values)
