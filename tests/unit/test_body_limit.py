"""Request bodies over the limit answer 413 with a JSON error, declared or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from shared.web.app import BodyLimit
from shared.web.errors import install_error_handlers

pytestmark = pytest.mark.unit
LIMIT = 1024


class Note(BaseModel):
    text: str


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=LIMIT)

    @app.post("/notes")
    async def post_note(note: Note) -> dict[str, int]:
        return {"length": len(note.text)}

    @app.get("/notes")
    async def get_notes() -> dict[str, int]:
        return {"count": 0}

    return app


async def _post(content: bytes | AsyncIterator[bytes]) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post(
            "/notes", content=content, headers={"content-type": "application/json"}
        )


def _note(size: int) -> bytes:
    body = b'{"text": "' + b"x" * (size - 12) + b'"}'
    assert len(body) == size
    return body


@pytest.mark.parametrize("size", [LIMIT - 1, LIMIT])
async def test_a_body_up_to_the_limit_is_taken(size: int):
    response = await _post(_note(size))
    assert response.status_code == 200, response.text
    assert response.json() == {"length": size - 12}


async def test_a_declared_body_over_the_limit_is_413_naming_it():
    response = await _post(_note(LIMIT + 1))
    assert response.status_code == 413
    assert response.json() == {
        "error": "payload_too_large",
        "detail": f"the request body is over {LIMIT} bytes",
    }


async def test_a_streamed_body_is_refused_once_it_passes_the_limit():
    chunks: list[int] = []

    async def stream() -> AsyncIterator[bytes]:
        body = _note(10 * LIMIT)
        for start in range(0, len(body), 256):
            chunks.append(start)
            yield body[start : start + 256]

    response = await _post(stream())  # no Content-Length: sent in chunks
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert len(chunks) == LIMIT // 256 + 1  # read no further than the limit


async def test_a_request_without_a_body_passes():
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/notes")
    assert response.status_code == 200
    assert response.json() == {"count": 0}
