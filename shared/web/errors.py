"""JSON errors: every failure answers {"error": code, "detail": text}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.faults import is_transient
from shared.ratelimit import RateLimited

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


# Postgres refuses NUL and unencodable characters in text (character_not_in_repertoire,
# untranslatable_character): the input is bad, not the server.
_UNSTORABLE_TEXT = {"22021", "22P05"}
# program_limit_exceeded: an id in a path longer than a btree index entry holds (~2,700 bytes).
_TOO_LONG_TO_INDEX = "54000"


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", None)
    for candidate in (exc, orig, getattr(orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None)
        if isinstance(code, str):
            return code
    return None


class ApiError(Exception):
    """An error the API reports as it is: status, machine code, human detail."""

    def __init__(self, status: int, error: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.extra = extra


def error_body(error: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"error": error, "detail": detail, **extra}


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into JSON error bodies."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.error, exc.detail, **exc.extra), status_code=exc.status)

    @app.exception_handler(RateLimited)
    async def rate_limited(_: Request, exc: RateLimited) -> JSONResponse:
        return JSONResponse(
            error_body("rate_limited", str(exc)),
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": ".".join(str(p) for p in err["loc"]), "problem": err["msg"]}
            for err in exc.errors()
        ]
        detail = "; ".join(f"{f['field']}: {f['problem']}" for f in fields)
        return JSONResponse(error_body("validation_error", detail, fields=fields), status_code=422)

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if _sqlstate(exc) in _UNSTORABLE_TEXT:
            return JSONResponse(
                error_body(
                    "validation_error",
                    "text contains characters that cannot be stored (e.g. NUL, \\u0000)",
                ),
                status_code=422,
            )
        if _sqlstate(exc) == _TOO_LONG_TO_INDEX:
            return JSONResponse(
                error_body("validation_error", "a value is too long to be stored as a key"),
                status_code=422,
            )
        return await unexpected(request, exc)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        if is_transient(exc):
            log.warning("dependency unavailable: %r", exc)
            return JSONResponse(
                error_body(
                    "unavailable", "a dependency (database or broker) is unavailable; retry"
                ),
                status_code=503,
                headers={"Retry-After": "5"},
            )
        log.exception("unhandled error")
        return JSONResponse(error_body("internal_error", "unexpected error"), status_code=500)
