"""Provider adapters against in-memory HTTP (httpx.MockTransport): outcomes, signing, tokens."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable

import httpx
import pytest

from services.notifications.providers import OutgoingMessage, SmsGateway, WeChatOfficialAccount

pytestmark = pytest.mark.unit

SMS = OutgoingMessage("N1", "sms", "+8613800138000", "您好", "tpl")
WECHAT = OutgoingMessage("N2", "wechat", "oOPENID", "hello", "tpl_x")


def client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_sms_requests_are_signed_and_a_2xx_is_delivered_with_its_receipt():
    seen: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"message_id": "m-1"})

    adapter = SmsGateway("http://gw/send", "key", "secret", timeout=1)
    async with client(gateway) as http:
        result = await adapter.send(http, SMS)
    assert (result.outcome, result.provider_message_id) == ("delivered", "m-1")
    [request] = seen
    body = request.content
    expected = hmac.new(
        b"secret", request.headers["x-timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    assert request.headers["x-signature"] == expected
    assert request.headers["x-api-key"] == "key"
    assert request.headers["idempotency-key"] == "N1"
    assert json.loads(body) == {"to": SMS.address, "text": "您好", "client_ref": "N1"}


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (400, "permanent"),
        (404, "permanent"),
        (429, "transient"),
        (500, "transient"),
        (503, "transient"),
    ],
)
async def test_sms_http_status_decides_retry_or_not(status, outcome):
    adapter = SmsGateway("http://gw/send", "key", "secret", timeout=1)
    async with client(lambda r: httpx.Response(status, json={"error": "nope"})) as http:
        result = await adapter.send(http, SMS)
    assert (result.outcome, result.http_status, result.error) == (outcome, status, "nope")


async def test_sms_timeouts_and_connection_errors_are_transient():
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    adapter = SmsGateway("http://gw/send", "key", "secret", timeout=1)
    async with client(hang) as http:
        assert (await adapter.send(http, SMS)).error == "timeout"
    async with client(refuse) as http:
        result = await adapter.send(http, SMS)
    assert result.outcome == "transient" and "refused" in (result.error or "")


class FakeWeChat:
    """In-memory official-account API; `answers` scripts the send endpoint."""

    def __init__(self, *answers: dict[str, object] | int) -> None:
        self.answers = list(answers)
        self.tokens_issued = 0
        self.sent_with: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/cgi-bin/token":
            assert request.url.params["appid"] == "app"
            self.tokens_issued += 1
            return httpx.Response(
                200, json={"access_token": f"T{self.tokens_issued}", "expires_in": 7200}
            )
        self.sent_with.append(request.url.params["access_token"])
        answer = self.answers.pop(0) if self.answers else {"errcode": 0, "msgid": 1}
        if isinstance(answer, int):
            return httpx.Response(answer)
        return httpx.Response(200, json=answer)


def wechat(now: list[float]) -> WeChatOfficialAccount:
    return WeChatOfficialAccount("http://wx", "app", "secret", timeout=1, monotonic=lambda: now[0])


async def test_the_access_token_is_cached_until_it_expires():
    api, now = FakeWeChat(), [0.0]
    adapter = wechat(now)
    async with client(api) as http:
        for _ in range(3):
            assert (await adapter.send(http, WECHAT)).outcome == "delivered"
        assert api.tokens_issued == 1
        now[0] = 7200 - 59  # renewed a minute before the stated expiry
        await adapter.send(http, WECHAT)
    assert api.tokens_issued == 2
    assert api.sent_with == ["T1", "T1", "T1", "T2"]


async def test_an_invalid_token_answer_refreshes_the_token_and_resends_once():
    api = FakeWeChat({"errcode": 42001, "errmsg": "access_token expired"})
    async with client(api) as http:
        result = await wechat([0.0]).send(http, WECHAT)
    assert result.outcome == "delivered"
    assert api.sent_with == ["T1", "T2"]


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ({"errcode": 40003, "errmsg": "invalid openid"}, "permanent"),
        ({"errcode": 43004, "errmsg": "require subscribe"}, "permanent"),
        ({"errcode": -1, "errmsg": "system busy"}, "transient"),
        (502, "transient"),
        (400, "permanent"),
    ],
)
async def test_wechat_answers_decide_retry_or_not(answer, outcome):
    async with client(FakeWeChat(answer)) as http:
        result = await wechat([0.0]).send(http, WECHAT)
    assert result.outcome == outcome


async def test_a_refused_app_secret_is_a_permanent_error_naming_the_token_call():
    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"errcode": 40125, "errmsg": "invalid appsecret"})

    async with client(api) as http:
        result = await wechat([0.0]).send(http, WECHAT)
    assert result.outcome == "permanent"
    assert result.error == "token: errcode 40125 invalid appsecret"
