"""Error pages (404, 403, 500 …) for browser paths; `core.problems` calls `render_error_page`.

API paths keep their problem+json answers. A page shows what happened in plain words, a way
on, and the request id to quote; never the exception.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Scope

from servicedesk.web.templating import env

_HEADLINES = {
    400: "That request did not work",
    401: "Please sign in",
    403: "You can't do that",
    404: "Page not found",
    405: "That action isn't available here",
    409: "Someone changed this first",
    413: "That upload is too large",
    422: "Some details need fixing",
    429: "Too many requests",
    500: "Something went wrong",
    503: "The service is unavailable",
}
_HINTS = {
    403: "If you were filling in a form, reload the page and try again.",
    404: "It may have been moved, or you may not have access to it.",
    429: "Wait a moment, then try again.",
    500: "We have logged the problem. Try again, and quote the request id if it keeps happening.",
}


def render_error_page(scope: Scope, status: int, title: str, detail: str, request_id: str) -> bytes:
    state: dict[str, Any] = scope.get("state") or {}
    slug = state.get("tenant_path_slug")
    base = f"/t/{slug}" if slug else ""
    user = state.get("user")
    tenant = state.get("tenant")
    html = env.get_template("errors/error.html").render(
        status=status,
        headline=_HEADLINES.get(status, title),
        detail=detail,
        hint=_HINTS.get(status, ""),
        request_id=request_id,
        base=base,
        url=lambda path: base + path,
        # The header without the user menu: this page may answer any failure, even one
        # of the session itself.
        user=None,
        signed_in=user is not None,
        tenant=tenant,
        csrf="",
        tz="UTC",
        nav=[],
        path="",
        htmx=False,
        home=base + ("/tickets" if user is not None else "/"),
    )
    return html.encode()
