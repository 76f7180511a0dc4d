"""Every route of every service, and which roles each one admits (the policy under test)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import FastAPI

# Open to anyone: liveness, readiness, metrics scraping and the API description.
PUBLIC = {
    "/healthz",
    "/readyz",
    "/readyz/http",
    "/metrics",
    "/docs",
    "/docs/oauth2-redirect",
    "/openapi.json",
    "/redoc",
}

ALL = frozenset({"customer", "staff", "ops", "admin"})
BANK = frozenset({"staff", "ops", "admin"})
OPS = frozenset({"ops", "admin"})
ADMIN = frozenset({"admin"})
STAFF = frozenset({"staff"})

_COMPLAINT_ACTIONS = (
    "acknowledge", "start", "transfer", "await-customer", "resume", "resolve", "close",
    "reopen", "severity", "extend-regulatory", "compensation",
)  # fmt: skip

# (service, method, path) → roles that get past authorisation. Written from DESIGN.md and the
# issue, not read from the code: a route missing here fails the test until it is classified.
POLICY: dict[tuple[str, str, str], frozenset[str]] = {
    **{(s, "POST", "/admin/clock"): ADMIN for s in ("tiering", "complaints", "profile")},
    ("notifications", "POST", "/admin/clock"): ADMIN,
    ("tiering", "GET", "/customers/{customer_id}/tier"): ALL,
    ("tiering", "GET", "/customers/{customer_id}/tier/history"): ALL,
    ("tiering", "GET", "/tiers/policy"): BANK,
    ("tiering", "PUT", "/tiers/policy"): ADMIN,
    ("tiering", "GET", "/tiers/distribution"): OPS,
    ("complaints", "POST", "/complaints"): frozenset({"customer", "staff"}),
    ("complaints", "GET", "/complaints"): ALL,
    ("complaints", "GET", "/complaints/stats"): OPS,
    ("complaints", "GET", "/complaints/{complaint_id}"): ALL,
    **{
        ("complaints", "POST", f"/complaints/{{complaint_id}}/{action}"): STAFF
        for action in _COMPLAINT_ACTIONS
    },
    ("complaints", "POST", "/complaints/{complaint_id}/callbacks/{sequence}"): STAFF,
    ("profile", "GET", "/profiles/{customer_id}"): ALL,
    ("profile", "PATCH", "/profiles/{customer_id}"): ALL,  # which fields: per role, in domain
    ("profile", "GET", "/profiles/{customer_id}/signals"): BANK,
    ("notifications", "GET", "/notifications"): ALL,
    ("notifications", "GET", "/notifications/{notification_id}"): ALL,
    ("notifications", "PUT", "/staff/{employee_id}"): OPS,
    ("notifications", "PUT", "/departments/{department}/duty-contact"): OPS,
    ("notifications", "GET", "/templates/{key}"): OPS,
    ("notifications", "PUT", "/templates/{key}"): ADMIN,
    ("notifications", "GET", "/sandbox/messages"): OPS,
}


@dataclass(frozen=True)
class Endpoint:
    service: str
    method: str
    path: str

    def url(self, **values: str) -> str:
        """The path with its parameters filled (`customer_id` etc. from `values`, else 'x')."""
        return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), self.path)


def endpoints(service: str, app: FastAPI) -> list[Endpoint]:
    """Every (method, path) the app serves, from its OpenAPI document."""
    return [
        Endpoint(service, method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    ]
