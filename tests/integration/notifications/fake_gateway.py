"""A fake SMS gateway and WeChat official-account API serving real HTTP on 127.0.0.1.

Scriptable per address: each request to an address takes the next behaviour from its
script (`ok` once the script runs out):
- `ok`: accepted; `5xx`: 503 (SMS) / 502 (WeChat); `timeout`: answers only after
  `hang_seconds`; `invalid`: the recipient is refused (SMS 400, WeChat errcode 40003);
- `expire_token` (WeChat): the current access token stops working (errcode 42001).
Every request is recorded with the behaviour it got.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.devstack.broker import free_port
from shared.testing.waiting import eventually


@dataclass
class Received:
    """One request the gateway answered."""

    channel: str
    address: str
    body: dict[str, Any]
    behaviour: str


@dataclass
class FakeGateway:
    api_key: str = "test-key"
    secret: str = "test-signing-secret"
    app_id: str = "wx-test-app"
    app_secret: str = "wx-test-secret"
    hang_seconds: float = 3.0
    received: list[Received] = field(default_factory=list)
    token_fetches: int = 0
    _scripts: dict[tuple[str, str], deque[str]] = field(default_factory=lambda: defaultdict(deque))
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _token: str | None = None
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, channel: str, address: str, *behaviours: str) -> None:
        """Queue behaviours for the next requests to `address` on `channel`."""
        self._scripts[channel, address].extend(behaviours)

    def to(self, channel: str, address: str) -> list[Received]:
        return [r for r in self.received if r.channel == channel and r.address == address]

    def _next(self, channel: str, address: str) -> str:
        script = self._scripts[channel, address]
        return script.popleft() if script else "ok"

    # --- SMS gateway ---------------------------------------------------------------

    async def _sms(self, request: Request) -> JSONResponse:
        raw = await request.body()
        expected = hmac.new(
            self.secret.encode(),
            request.headers.get("x-timestamp", "").encode() + b"." + raw,
            hashlib.sha256,
        ).hexdigest()
        if request.headers.get("x-api-key") != self.api_key or not hmac.compare_digest(
            expected, request.headers.get("x-signature", "")
        ):
            return JSONResponse({"error": "bad credentials or signature"}, status_code=401)
        body = json.loads(raw)
        behaviour = self._next("sms", body["to"])
        self.received.append(Received("sms", body["to"], body, behaviour))
        if behaviour == "timeout":
            await asyncio.sleep(self.hang_seconds)
        if behaviour == "5xx":
            return JSONResponse({"error": "gateway unavailable"}, status_code=503)
        if behaviour == "invalid":
            return JSONResponse({"error": "invalid recipient"}, status_code=400)
        return JSONResponse({"message_id": f"sms-{next(self._ids)}", "status": "accepted"})

    # --- WeChat official account ---------------------------------------------------

    async def _token_endpoint(self, request: Request) -> JSONResponse:
        params = request.query_params
        if params.get("appid") != self.app_id or params.get("secret") != self.app_secret:
            return JSONResponse({"errcode": 40125, "errmsg": "invalid appsecret"})
        self.token_fetches += 1
        self._token = f"TOKEN-{self.token_fetches}"
        return JSONResponse({"access_token": self._token, "expires_in": 7200})

    async def _template_send(self, request: Request) -> JSONResponse:
        body = await request.json()
        if request.query_params.get("access_token") != self._token:
            self.received.append(Received("wechat", body["touser"], body, "bad_token"))
            return JSONResponse({"errcode": 40001, "errmsg": "invalid credential"})
        behaviour = self._next("wechat", body["touser"])
        self.received.append(Received("wechat", body["touser"], body, behaviour))
        if behaviour == "timeout":
            await asyncio.sleep(self.hang_seconds)
        if behaviour == "5xx":
            return JSONResponse({"errmsg": "bad gateway"}, status_code=502)
        if behaviour == "invalid":
            return JSONResponse({"errcode": 40003, "errmsg": "invalid openid"})
        if behaviour == "expire_token":
            self._token = None
            return JSONResponse({"errcode": 42001, "errmsg": "access_token expired"})
        return JSONResponse({"errcode": 0, "errmsg": "ok", "msgid": next(self._ids)})

    # --- lifecycle -----------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/sms/send", self._sms, methods=["POST"]),
                Route("/cgi-bin/token", self._token_endpoint, methods=["GET"]),
                Route("/cgi-bin/message/template/send", self._template_send, methods=["POST"]),
            ]
        )

    async def start(self) -> FakeGateway:
        self.port = free_port()
        config = uvicorn.Config(
            self.app(),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        server = self._server

        async def started() -> bool:
            return server.started

        await eventually(started, bool, timeout=10)
        return self

    async def stop(self) -> None:
        if self._server and self._task:
            self._server.should_exit = True
            await asyncio.gather(self._task, return_exceptions=True)
