"""Message providers behind one interface: SMS HTTP gateway, WeChat template messages, sandbox.

Each `send` answers an AttemptResult: `delivered`, `transient` (timeout, 5xx, throttled —
worth retrying) or `permanent` (invalid recipient, other 4xx — retrying cannot help).
Providers never raise for what the far side answers. A provider that can take a whole
round at once (the sandbox: one statement) is a `BatchProvider` as well.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.notifications import store
from services.notifications.domain import AttemptResult
from shared.clock import Clock
from shared.contracts.events import Channel

E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")


@dataclass(frozen=True)
class OutgoingMessage:
    """One rendered message on its way to a provider."""

    notification_id: str
    channel: Channel
    address: str
    body: str
    wechat_template_id: str


class Provider(Protocol):
    """Sends one message over one channel."""

    name: str

    async def send(self, client: httpx.AsyncClient, message: OutgoingMessage) -> AttemptResult:
        """Deliver `message`; never raises for what the far side answers."""
        ...


@runtime_checkable
class BatchProvider(Protocol):
    """A provider that delivers many messages in one go, answering one result per message."""

    name: str

    async def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[AttemptResult]:
        """Deliver `messages`; results in the same order."""
        ...


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("error") or body.get("errmsg") or body)[:200]
    return str(body)[:200]


def _http_outcome(status: int) -> str:
    if status < 300:
        return "delivered"
    if status >= 500 or status in (408, 429):
        return "transient"
    return "permanent"


class SmsGateway:
    """HTTP SMS gateway: JSON POST signed with HMAC-SHA256 over `timestamp.body`."""

    name = "sms_gateway"

    def __init__(self, url: str, api_key: str, secret: str, timeout: float) -> None:
        self.url = url
        self.api_key = api_key
        self._secret = secret.encode()
        self.timeout = timeout

    def sign(self, timestamp: str, body: bytes) -> str:
        """Hex HMAC-SHA256 of `timestamp.body` with the gateway secret."""
        return hmac.new(self._secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()

    async def send(self, client: httpx.AsyncClient, message: OutgoingMessage) -> AttemptResult:
        body = json.dumps(
            {"to": message.address, "text": message.body, "client_ref": message.notification_id},
            ensure_ascii=False,
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Api-Key": self.api_key,
            "X-Timestamp": timestamp,
            "X-Signature": self.sign(timestamp, body),
            "Idempotency-Key": message.notification_id,
        }
        try:
            response = await client.post(
                self.url, content=body, headers=headers, timeout=self.timeout
            )
        except httpx.TimeoutException:
            return AttemptResult("transient", self.name, error="timeout")
        except httpx.TransportError as exc:
            return AttemptResult("transient", self.name, error=f"transport: {exc!r}"[:200])
        outcome = _http_outcome(response.status_code)
        if outcome != "delivered":
            return AttemptResult(
                outcome,  # type: ignore[arg-type]
                self.name,
                http_status=response.status_code,
                error=_error_text(response),
            )
        receipt = _json_object(response)
        return AttemptResult(
            "delivered",
            self.name,
            http_status=response.status_code,
            provider_message_id=str(receipt.get("message_id") or "") or None,
            receipt=receipt,
        )


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"text": response.text[:500]}
    return body if isinstance(body, dict) else {"body": body}


class WeChatError(Exception):
    def __init__(self, result: AttemptResult) -> None:
        super().__init__(result.error)
        self.result = result


# errcodes of the official-account API
_TOKEN_INVALID = {40001, 40014, 42001}
_TRANSIENT_ERRCODES = {-1, 45009, 45011}


class WeChatOfficialAccount:
    """Template messages of a WeChat official account; the access token is cached."""

    name = "wechat_mp"

    def __init__(
        self,
        base_url: str,
        app_id: str,
        app_secret: str,
        timeout: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self._app_secret = app_secret
        self.timeout = timeout
        self._monotonic = monotonic
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()

    async def access_token(self, client: httpx.AsyncClient, *, refresh: bool = False) -> str:
        """The cached token, fetched again when missing, expired or known to be invalid."""
        async with self._token_lock:
            if refresh or self._token is None or self._monotonic() >= self._token_expires:
                self._token, lifetime = await self._fetch_token(client)
                # Renew a minute early so a token never expires on its way to the API.
                self._token_expires = self._monotonic() + max(lifetime - 60, lifetime / 2)
            return self._token

    def forget_token(self, token: str) -> None:
        if self._token == token:
            self._token = None

    async def _fetch_token(self, client: httpx.AsyncClient) -> tuple[str, float]:
        params = {"grant_type": "client_credential", "appid": self.app_id}
        params["secret"] = self._app_secret
        response = await self._call(client, "GET", "/cgi-bin/token", params=params)
        body = _json_object(response)
        token = body.get("access_token")
        if not token:
            errcode = int(body.get("errcode") or 0)
            outcome = "transient" if errcode in _TRANSIENT_ERRCODES else "permanent"
            raise WeChatError(
                AttemptResult(
                    outcome,  # type: ignore[arg-type]
                    self.name,
                    http_status=response.status_code,
                    error=f"token: errcode {errcode} {body.get('errmsg', '')}".strip(),
                )
            )
        return str(token), float(body.get("expires_in") or 7200)

    async def _call(
        self, client: httpx.AsyncClient, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        try:
            response = await client.request(
                method, self.base_url + path, timeout=self.timeout, **kwargs
            )
        except httpx.TimeoutException:
            raise WeChatError(AttemptResult("transient", self.name, error="timeout")) from None
        except httpx.TransportError as exc:
            error = f"transport: {exc!r}"[:200]
            raise WeChatError(AttemptResult("transient", self.name, error=error)) from None
        outcome = _http_outcome(response.status_code)
        if outcome != "delivered":
            raise WeChatError(
                AttemptResult(
                    outcome,  # type: ignore[arg-type]
                    self.name,
                    http_status=response.status_code,
                    error=_error_text(response),
                )
            )
        return response

    async def send(self, client: httpx.AsyncClient, message: OutgoingMessage) -> AttemptResult:
        payload = {
            "touser": message.address,
            "template_id": message.wechat_template_id,
            "data": {"content": {"value": message.body}},
            "client_msg_id": message.notification_id,
        }
        try:
            for attempt in range(2):  # a second go only after refreshing an invalid token
                token = await self.access_token(client, refresh=attempt > 0)
                response = await self._call(
                    client,
                    "POST",
                    "/cgi-bin/message/template/send",
                    params={"access_token": token},
                    json=payload,
                )
                body = _json_object(response)
                errcode = int(body.get("errcode") or 0)
                if errcode in _TOKEN_INVALID:
                    self.forget_token(token)
                    continue
                return self._result(response.status_code, errcode, body)
            return AttemptResult("transient", self.name, error="access token refused twice")
        except WeChatError as failure:
            return failure.result

    def _result(self, status: int, errcode: int, body: dict[str, Any]) -> AttemptResult:
        if errcode == 0:
            msgid = body.get("msgid")
            return AttemptResult(
                "delivered",
                self.name,
                http_status=status,
                provider_message_id=str(msgid) if msgid is not None else None,
                receipt=body,
            )
        outcome = "transient" if errcode in _TRANSIENT_ERRCODES else "permanent"
        return AttemptResult(
            outcome,  # type: ignore[arg-type]
            self.name,
            http_status=status,
            error=f"errcode {errcode} {body.get('errmsg', '')}".strip(),
            receipt=body,
        )


class Sandbox:
    """Dev default: 'delivers' by recording messages in the schema (sandbox_messages).

    Like a real provider it commits on its own, outside the delivery transaction: a batch
    is recorded by one statement in autocommit (no BEGIN and COMMIT round trips).
    """

    name = "sandbox"

    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    async def send(self, client: httpx.AsyncClient, message: OutgoingMessage) -> AttemptResult:
        [result] = await self.send_batch([message])
        return result

    async def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[AttemptResult]:
        accepted = [m for m in messages if self._refusal(m) is None]
        if accepted:
            delivered_at = self._clock.now()
            async with AsyncSession(self._engine) as session:
                await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
                await store.record_sandbox_messages(
                    session,
                    [
                        {
                            "notification_id": m.notification_id,
                            "channel": m.channel,
                            "address": m.address,
                            "body": m.body,
                            "delivered_at": delivered_at,
                        }
                        for m in accepted
                    ],
                )
        return [self._result(m) for m in messages]

    @staticmethod
    def _refusal(message: OutgoingMessage) -> str | None:
        if message.channel == "sms" and not E164.match(message.address):
            return "invalid recipient: not E.164"
        return None

    def _result(self, message: OutgoingMessage) -> AttemptResult:
        refusal = self._refusal(message)
        if refusal is not None:
            return AttemptResult("permanent", self.name, error=refusal)
        return AttemptResult(
            "delivered",
            self.name,
            provider_message_id=f"sandbox-{message.notification_id}",
            receipt={"status": "delivered", "sandbox": True},
        )
