"""Correlation ids: the caller's echoed, a new one otherwise, in the logs' context meanwhile."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from shared.logs import correlation_id
from shared.web.app import Correlate

pytestmark = pytest.mark.unit


async def _respond(scope: Scope, receive: Receive, send: Send) -> None:
    """An endpoint that answers with the correlation id its logs would carry."""
    body = (correlation_id.get() or "").encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _get(headers: list[tuple[bytes, bytes]]) -> tuple[dict[bytes, list[bytes]], bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": headers}
    await Correlate(_respond)(scope, receive, send)
    start, body = sent
    names: dict[bytes, list[bytes]] = {}
    for name, value in start["headers"]:
        names.setdefault(name, []).append(value)
    return names, body["body"]


async def test_the_callers_correlation_id_is_logged_and_echoed_once():
    headers, logged = await _get([(b"host", b"x"), (b"x-correlation-id", b"case-42")])
    assert logged == b"case-42"
    assert headers[b"x-correlation-id"] == [b"case-42"]
    assert headers[b"content-type"] == [b"text/plain"]  # the endpoint's headers are kept
    assert correlation_id.get() is None  # reset after the request


async def test_a_request_without_one_gets_a_new_id_per_request():
    first, logged = await _get([(b"host", b"x")])
    second, _ = await _get([(b"host", b"x")])
    (cid,) = first[b"x-correlation-id"]
    assert re.fullmatch(rb"[0-9a-f]{32}", cid)
    assert logged == cid
    assert second[b"x-correlation-id"] != [cid]


async def test_other_scopes_pass_through_untagged():
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])
        assert correlation_id.get() is None

    await Correlate(app)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]
