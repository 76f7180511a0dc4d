"""RS256 tokens verified through a JWKS endpoint (the production setting), over real HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.tiering.app import SPEC
from shared.web.app import create_app

pytestmark = pytest.mark.integration

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    body = json.dumps({"keys": [jwk | {"kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/jwks.json"
    server.shutdown()


def token(key: rsa.RSAPrivateKey, **claims: object) -> str:
    now = datetime.now(UTC)
    body = {"sub": "A", "role": "customer", "customer_id": "A", "exp": now + timedelta(hours=1)}
    return jwt.encode(body | claims, key, algorithm="RS256", headers={"kid": "k1"})


async def test_rs256_tokens_are_checked_against_the_jwks(jwks_url):
    settings = SPEC.settings(
        kafka_bootstrap_servers="127.0.0.1:1",
        database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none",
        steward_env="prod",
        steward_jwt_algorithm="RS256",
        steward_jwks_url=jwks_url,
    )
    app = create_app(SPEC, settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        # Authorised, then refused by the customer rule: the token itself was accepted.
        other = await http.get(
            "/customers/B/tier", headers={"Authorization": f"Bearer {token(KEY)}"}
        )
        assert other.status_code == 403
        forged = await http.get(
            "/customers/A/tier", headers={"Authorization": f"Bearer {token(OTHER_KEY)}"}
        )
        assert forged.status_code == 401
        hs256 = jwt.encode({"sub": "A", "role": "admin", "exp": 4102444800}, "x" * 32)
        downgraded = await http.get(
            "/customers/A/tier", headers={"Authorization": f"Bearer {hs256}"}
        )
        assert downgraded.status_code == 401
