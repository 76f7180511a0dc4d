"""Every endpoint of every service needs a valid token, and each admits only its roles."""

from __future__ import annotations

import base64
import json
import warnings
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from shared.settings import DEV_JWT_SECRET
from shared.testing.services import TEST_JWT_SECRET, RunningService
from shared.web.auth import mint_token
from tests.security.routes import POLICY, PUBLIC, Endpoint, endpoints

pytestmark = pytest.mark.integration

SELF = "C-self"  # the customer the customer token belongs to


def _claims(**extra: object) -> dict[str, object]:
    now = datetime.now(UTC)
    return {"sub": "attacker", "role": "admin", "iat": now, "exp": now + timedelta(hours=1)} | extra


def _hs512() -> str:
    """Signed with the right secret but another algorithm than the one configured."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns that the key is short for SHA-512
        return jwt.encode(_claims(), TEST_JWT_SECRET, algorithm="HS512")


def _tampered() -> str:
    """A genuine customer token whose payload was edited to say admin (signature kept)."""
    header, _, signature = mint_token(TEST_JWT_SECRET, role="customer", customer_id=SELF).split(".")
    payload = base64.urlsafe_b64encode(json.dumps(_claims(), default=str).encode()).rstrip(b"=")
    return f"{header}.{payload.decode()}.{signature}"


BAD_TOKENS = {
    "expired": mint_token(TEST_JWT_SECRET, role="admin", ttl=timedelta(seconds=-60)),
    "wrong_secret": mint_token("not-the-secret-0123456789abcdefghij", role="admin"),
    "dev_secret": mint_token(DEV_JWT_SECRET, role="admin"),
    "alg_none": jwt.encode(_claims(), None, algorithm="none"),  # type: ignore[arg-type]
    "alg_hs512": _hs512(),
    "no_exp": jwt.encode({"sub": "x", "role": "admin"}, TEST_JWT_SECRET, algorithm="HS256"),
    "unknown_role": jwt.encode(_claims(role="root"), TEST_JWT_SECRET, algorithm="HS256"),
    "customer_without_id": jwt.encode(_claims(role="customer"), TEST_JWT_SECRET, algorithm="HS256"),
    "tampered_payload": _tampered(),
    "garbage": "not.a.jwt",
}

ROLE_TOKENS = {
    "customer": RunningService.token("customer", customer_id=SELF),
    "staff": RunningService.token("staff", employee_id="E-sec", department="retail"),
    "ops": RunningService.token("ops"),
    "admin": RunningService.token("admin"),
}


# Routes that decide on the role only after reading a valid body get one.
BODIES = {
    ("complaints", "POST", "/complaints"): {
        "customer_id": SELF,
        "channel": "branch",
        "category": "service_attitude",
        "description": "security test filing",
    },
}


def protected(fleet: dict[str, RunningService]) -> list[Endpoint]:
    return [
        e for name, svc in fleet.items() for e in endpoints(name, svc.app) if e.path not in PUBLIC
    ]


async def test_every_route_is_in_the_access_policy(fleet):
    served = {(e.service, e.method, e.path) for e in protected(fleet)}
    assert served - POLICY.keys() == set(), "routes without an access rule"
    assert POLICY.keys() - served == set(), "access rules for routes that do not exist"
    assert len(served) == len(POLICY) == 35


async def test_every_route_without_a_token_is_401(fleet):
    answers = {}
    for e in protected(fleet):
        response = await fleet[e.service].http.request(e.method, e.url(customer_id=SELF))
        answers[e] = (response.status_code, response.json().get("error"))
    assert {e: a for e, a in answers.items() if a != (401, "missing_token")} == {}
    assert len(answers) == len(POLICY)


async def test_a_non_bearer_scheme_is_401(fleet):
    basic = {"Authorization": "Basic " + base64.b64encode(b"admin:admin").decode()}
    for e in protected(fleet):
        response = await fleet[e.service].http.request(e.method, e.url(), headers=basic)
        assert response.status_code == 401, (e, response.text)


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_a_bad_token_is_401_on_every_route(fleet, kind):
    headers = {"Authorization": f"Bearer {BAD_TOKENS[kind]}"}
    wrong = {}
    for e in protected(fleet):
        response = await fleet[e.service].http.request(e.method, e.url(), headers=headers)
        if response.status_code != 401 or response.json()["error"] != "invalid_token":
            wrong[e] = (response.status_code, response.text[:200])
    assert wrong == {}


async def test_each_route_admits_exactly_its_roles(fleet):
    """Denied roles get 403 before the body is even read; admitted ones get past auth."""
    wrong = {}
    checked = 0
    for e in protected(fleet):
        allowed = POLICY[e.service, e.method, e.path]
        for role, headers in ROLE_TOKENS.items():
            response = await fleet[e.service].http.request(
                e.method,
                e.url(customer_id=SELF),
                headers=headers,
                json=BODIES.get((e.service, e.method, e.path)),
            )
            status = response.status_code
            ok = status == 403 if role not in allowed else status not in (401, 403)
            if not ok:
                wrong[e.method, e.path, role] = (status, response.text[:160])
            checked += 1
    assert wrong == {}
    assert checked == 4 * len(POLICY)


async def test_public_endpoints_answer_without_a_token(fleet):
    for svc in fleet.values():
        for path in ("/healthz", "/readyz", "/readyz/http", "/metrics", "/openapi.json", "/docs"):
            response = await svc.http.get(path)
            assert response.status_code == 200, (path, response.text[:200])
