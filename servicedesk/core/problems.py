"""Every error leaves as RFC 9457 `application/problem+json`, from one set of handlers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from servicedesk.core.context import current_request
from servicedesk.core.errors import AppError

log = logging.getLogger(__name__)

# Problem types are URNs; docs/api.md lists every code and what it means.
PROBLEM_TYPE_BASE = "urn:servicedesk:problem:"
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
}
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
    500: "internal_error",
}


HtmlErrorPage = Callable[[Scope, int, str, str, str], bytes]
"""Renders an error page: (scope, status, title, detail, request id) → HTML."""

# Machine paths keep problem+json; every other path is a page a person opened in a browser.
_MACHINE_PREFIXES = ("/api/",)
_MACHINE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def html_error_page(scope: Scope) -> HtmlErrorPage | None:
    """The app's error page renderer when the path is a browser page (decided by prefix)."""
    path: str = scope.get("path", "")
    if path.startswith(_MACHINE_PREFIXES) or path in _MACHINE_PATHS:
        return None
    app = scope.get("app")
    renderer: HtmlErrorPage | None = getattr(getattr(app, "state", None), "html_error_page", None)
    return renderer


def _render_page(
    renderer: HtmlErrorPage, scope: Scope, status: int, title: str, detail: str
) -> bytes | None:
    """The error page, or None if rendering it failed (then the problem document goes out)."""
    try:
        return renderer(scope, status, title, detail, current_request().request_id or "")
    except Exception:  # an error page must never turn one failure into two
        log.exception("error page failed")
        return None


class ProblemResponse(Response):
    media_type = "application/problem+json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def problem(
    status: int,
    *,
    code: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    request: Request | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    code = code or _CODES.get(status, "error")
    renderer = html_error_page(request.scope) if request is not None else None
    if renderer is not None and request is not None:
        page = _render_page(
            renderer,
            request.scope,
            status,
            title or _TITLES.get(status, "Error"),
            detail or title or _TITLES.get(status, "Error"),
        )
        if page is not None:
            return HTMLResponse(page, status_code=status, headers=headers)
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail or title or _TITLES.get(status, "Error"),
    }
    if request is not None:
        body["instance"] = request.url.path
    body["request_id"] = current_request().request_id
    if errors:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return ProblemResponse(body, status_code=status, headers=headers)


def _clean_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    cleaned = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        cleaned.append({"loc": loc, "msg": err.get("msg", ""), "type": err.get("type", "")})
    return cleaned


async def _app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    return problem(
        exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        request=request,
        errors=exc.errors,
        headers=exc.headers,
        extra=exc.extra,
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _clean_errors(exc)
    if any(e["type"] in ("json_invalid", "model_attributes_type") for e in errors) or any(
        e["type"] == "dict_type" and e["loc"] == ["body"] for e in errors
    ):
        return problem(
            400,
            code="malformed_body",
            detail="The request body is not valid JSON of the expected shape.",
            request=request,
            errors=errors,
        )
    return problem(
        422,
        code="validation_error",
        detail="The request has invalid fields.",
        request=request,
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem(
        exc.status_code, detail=detail, request=request, headers=getattr(exc, "headers", None)
    )


def internal_error_response(scope: Scope) -> tuple[bytes, bytes]:
    """(content type, body) of the 500 answer: an HTML page with the request id for browser
    paths when the app has one, else the problem document."""
    renderer = html_error_page(scope)
    if renderer is not None:
        page = _render_page(
            renderer,
            scope,
            500,
            "Something went wrong",
            "An unexpected error occurred. Quote the request id when reporting it.",
        )
        if page is not None:
            return b"text/html; charset=utf-8", page
    return b"application/problem+json", internal_error_body(scope.get("path", ""))


def internal_error_body(path: str) -> bytes:
    """The 500 answer: the request id and nothing about the failure itself."""
    return orjson.dumps(
        {
            "type": PROBLEM_TYPE_BASE + "internal_error",
            "title": "Internal Server Error",
            "status": 500,
            "code": "internal_error",
            "detail": "An unexpected error occurred. Quote the request id when reporting it.",
            "instance": path,
            "request_id": current_request().request_id,
        }
    )


async def _integrity_error(request: Request, exc: Exception) -> Response:
    """A constraint the service did not pre-check (usually a race): 409/422, never a 500."""
    assert isinstance(exc, IntegrityError)
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if sqlstate == "23505":
        return problem(
            409, code="conflict", detail="A record with these values exists.", request=request
        )
    log.warning("integrity error", extra={"sqlstate": sqlstate})
    return problem(
        422,
        code="constraint_violation",
        detail="The data breaks a rule of the database.",
        request=request,
    )


# Text PostgreSQL cannot store (a NUL byte in a string or a JSON \u0000): the client's input.
_UNSTORABLE_TEXT = frozenset({"22021", "22P05"})


async def _database_error(request: Request, exc: Exception) -> Response:
    """A NUL in any input reaches PostgreSQL only to be refused: 422, not a 500. Every other
    database error stays unhandled (logged, 500)."""
    assert isinstance(exc, DBAPIError)
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if sqlstate in _UNSTORABLE_TEXT:
        return problem(
            422,
            code="invalid_characters",
            detail="The request contains characters that cannot be stored, such as NUL.",
            request=request,
        )
    raise exc


def install_problem_handlers(app: FastAPI, *, html_errors: HtmlErrorPage | None = None) -> None:
    """Register the handlers; with `html_errors`, browser paths get HTML error pages."""
    app.state.html_error_page = html_errors
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
