"""Double-submit CSRF check for requests authenticated by cookie."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from servicedesk.core.errors import Forbidden
from servicedesk.core.security import constant_time_equals

CSRF_COOKIE = "sd_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def check_csrf(conn: HTTPConnection, *, form_token: str | None = None) -> None:
    """Unsafe methods must echo the CSRF cookie in a header (or form field) to prove origin."""
    if conn.scope.get("method", "GET") in SAFE_METHODS:
        return
    cookie = conn.cookies.get(CSRF_COOKIE)
    sent = conn.headers.get(CSRF_HEADER) or form_token
    if not cookie or not sent or not constant_time_equals(cookie, sent):
        raise Forbidden(
            "Missing or invalid CSRF token: send the sd_csrf cookie's value in X-CSRF-Token.",
            code="csrf_failed",
        )
