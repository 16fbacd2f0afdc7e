"""Every error answer is JSON of one shape, naming the field and the problem:

    {"status": 422, "error": "validation_error", "message": "body.methods.0: unknown method 'foo'",
     "errors": [{"loc": ["body", "methods", 0], "field": "body.methods.0", "message": "unknown method 'foo'"}]}

Handlers here turn FastAPI's validation errors, routing errors (404/405) and the service's own
``ApiError`` into that shape. Unexpected exceptions are logged and answered 500 in the same shape; the
API tests drive the OpenAPI schema with schemathesis to show no input gets there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("lossweep.service")

Loc = Sequence[str | int]

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answer: ``raise ApiError(404, "no sweep 'x'", loc=("path", "sweep_id"))``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        loc: Loc = (),
        code: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")
        self.errors = errors if errors is not None else [error_item(loc, message)]
        self.headers = headers


def field_path(loc: Loc) -> str:
    return ".".join(str(p) for p in loc)


def error_item(loc: Loc, message: str) -> dict[str, Any]:
    return {"loc": list(loc), "field": field_path(loc), "message": message}


def pydantic_errors(errors: Iterable[Any], prefix: Loc = ()) -> list[dict[str, Any]]:
    """pydantic's error list as error items, with ``prefix`` (e.g. ``("body",)``) before each location."""
    items = []
    for err in errors:
        loc = [*prefix, *(p for p in err.get("loc", ()) if isinstance(p, str | int))]
        msg = str(err.get("msg", "invalid value"))
        items.append(error_item(loc, msg))
    return items


def validation_error(exc: ValidationError, prefix: Loc = ("body",)) -> ApiError:
    items = pydantic_errors(exc.errors(include_url=False, include_input=False), prefix)
    return ApiError(422, summarize(items), errors=items)


def summarize(items: list[dict[str, Any]]) -> str:
    parts = [f"{i['field']}: {i['message']}" if i["field"] else i["message"] for i in items[:5]]
    more = f" (and {len(items) - 5} more)" if len(items) > 5 else ""
    return "; ".join(parts) + more if parts else "invalid request"


def error_response(
    status: int, message: str, *, code: str | None = None, errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "status": status,
        "error": code or _CODES.get(status, "error"),
        "message": message,
        "errors": errors if errors is not None else [error_item((), message)],
    }
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, code=exc.code, errors=exc.errors, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        items = pydantic_errors(exc.errors())
        return error_response(422, summarize(items), errors=items)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail) if exc.detail else _CODES.get(exc.status_code, "error")
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        loc: Loc = ("body",) if exc.status_code == 413 else ()
        return error_response(
            exc.status_code, message, errors=[error_item(loc, message)], headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}", code="internal_error")
