"""Auth: tokens are required, roles are checked, customers see only their own data.

The app is exercised in-process without its lifespan: authentication and authorisation
are decided before any database access.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import jwt
import pytest

from services.tiering.app import SPEC
from shared.settings import DEV_JWT_SECRET, TEST_JWT_SECRET
from shared.web.app import create_app
from shared.web.auth import mint_token

pytestmark = pytest.mark.unit

SECRET = "unit-test-secret-0123456789abcdef0123"


def settings(**overrides):
    return SPEC.settings(
        **{
            "kafka_bootstrap_servers": "127.0.0.1:1",
            "database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/none",
            "steward_jwt_secret": SECRET,
        }
        | overrides
    )


@pytest.fixture
async def http():
    app = create_app(SPEC, settings())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_token_is_401_with_a_json_body(http):
    response = await http.get("/customers/C1/tier")
    assert response.status_code == 401
    assert response.json()["error"] == "missing_token"


async def test_wrong_role_is_403(http):
    staff = mint_token(SECRET, role="staff", employee_id="E1")
    response = await http.post("/admin/clock", json={"advance_seconds": 1}, headers=bearer(staff))
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


async def test_customer_cannot_read_another_customer(http):
    alice = mint_token(SECRET, role="customer", customer_id="A")
    for path in ("/customers/B/tier", "/customers/B/tier/history"):
        response = await http.get(path, headers=bearer(alice))
        assert response.status_code == 403, path
        assert "own data" in response.json()["detail"]


@pytest.mark.parametrize(
    "token",
    [
        mint_token(SECRET, role="admin", ttl=timedelta(seconds=-1)),  # expired
        mint_token("another-secret-0123456789abcdef0123", role="admin"),  # wrong signature
        jwt.encode({"sub": "x", "role": "admin", "exp": 4102444800}, None, algorithm="none"),
        mint_token(SECRET, role="customer"),  # customer token without customer_id
        "not-a-jwt",
        # Signed, but claims of the wrong type (a number of permissions answered 500).
        jwt.encode({"sub": "x", "role": "ops", "exp": 4102444800, "permissions": 5}, SECRET),
        jwt.encode({"sub": "x", "role": "ops", "exp": 4102444800, "permissions": [[1]]}, SECRET),
        jwt.encode(
            {"sub": "x", "role": "customer", "exp": 4102444800, "customer_id": ["A"]}, SECRET
        ),
        # An audience this deployment was not told to accept.
        jwt.encode({"sub": "x", "role": "admin", "exp": 4102444800, "aud": "other"}, SECRET),
    ],
    ids=[
        "expired",
        "wrong-signature",
        "alg-none",
        "customer-without-id",
        "garbage",
        "permissions-a-number",
        "permissions-nested",
        "customer-id-a-list",
        "unexpected-audience",
    ],
)
async def test_bad_tokens_are_401(http, token):
    response = await http.get("/customers/C1/tier", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_prod_refuses_the_dev_secret():
    with pytest.raises(ValueError, match="refuses the dev JWT secret"):
        settings(steward_env="prod", steward_jwt_secret=DEV_JWT_SECRET)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (TEST_JWT_SECRET, "refuses the test JWT secret"),
        ("short-secret", "of 32 bytes or more"),
    ],
)
def test_prod_refuses_a_secret_known_or_short(secret: str, problem: str):
    with pytest.raises(ValueError, match=problem):
        settings(steward_env="prod", steward_jwt_secret=secret)
    settings(steward_env="dev", steward_jwt_secret=secret)  # dev takes it


async def test_issuer_and_audience_are_checked_when_configured():
    app = create_app(SPEC, settings(steward_jwt_issuer="bank-idp", steward_jwt_audience="steward"))
    # A customer reading another's tier: 403 once the token is accepted, 401 if it is not.
    claims = {"sub": "A", "role": "customer", "customer_id": "A", "exp": 4102444800}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:

        async def status(**extra: str) -> int:
            token = jwt.encode(claims | extra, SECRET)
            response = await client.get("/customers/B/tier", headers=bearer(token))
            return response.status_code

        assert await status(iss="bank-idp", aud="steward") == 403
        assert await status(iss="other-app", aud="steward") == 401
        assert await status(iss="bank-idp", aud="other") == 401
        assert await status(iss="bank-idp") == 401  # audience required once configured
        assert await status(aud="steward") == 401  # issuer likewise


async def test_numeric_id_claims_are_taken_as_text():
    app = create_app(SPEC, settings())
    token = jwt.encode(
        {"sub": "7", "role": "customer", "customer_id": 7, "exp": 4102444800}, SECRET
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        other = await client.get("/customers/8/tier", headers=bearer(token))
    assert other.status_code == 403  # accepted, as customer "7", and refused another's data


def test_the_listening_interface_is_loopback_in_dev_and_not_read_from_host(monkeypatch):
    monkeypatch.setenv("HOST", "myhost.example")  # tcsh sets it to the machine's name
    assert settings().listen_host == "127.0.0.1"
    assert settings(steward_env="prod").listen_host == "0.0.0.0"
    monkeypatch.setenv("STEWARD_HOST", "10.0.0.5")
    assert settings().listen_host == "10.0.0.5"


def test_hs256_needs_a_secret():
    with pytest.raises(ValueError, match="STEWARD_JWT_SECRET is required"):
        settings(steward_jwt_secret=None)


async def test_prod_has_no_admin_clock():
    app = create_app(SPEC, settings(steward_env="prod"))
    admin = mint_token(SECRET, role="admin")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        response = await client.post(
            "/admin/clock", json={"advance_seconds": 5}, headers=bearer(admin)
        )
    assert response.status_code == 404
