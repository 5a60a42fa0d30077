"""The browser session of the pages: cookie sign-in with silent refresh, CSRF, tenant links.

Pages authenticate with the same cookies as the API (`sd_access`, `sd_refresh`, `sd_csrf`,
set by `accounts.auth.set_session_cookies`). When the access token has expired but the refresh
token is good, the session is rotated on the spot (`accounts.login.rotate`) and the new
cookies go out with the page, keeping the CSRF value so forms open in other tabs still work.
Otherwise the visitor is sent to the sign-in page, and comes back afterwards.

Every form posts the CSRF cookie's value as the hidden field `csrf_token`; htmx requests also
send it as `X-CSRF-Token` (static/app.js). `core.csrf.check_csrf` compares either with the
cookie (double submit), before anything else of the request is looked at.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse

from servicedesk.accounts import login
from servicedesk.accounts.auth import (
    ACCESS_COOKIE,
    REFRESH_COOKIE,
    clear_session_cookies,
    set_session_cookies,
    user_from_access_token,
)
from servicedesk.core.csrf import CSRF_COOKIE
from servicedesk.core.errors import AppError, Unauthorized
from servicedesk.core.runtime import get_runtime
from servicedesk.core.security import new_opaque_token
from servicedesk.models import User
from servicedesk.tenancy.deps import CurrentTenant, TenantSession

ResponseHook = Callable[[Response], None]
_HOOKS = "web_response_hooks"
_CSRF = "web_csrf_token"
_NEXT = re.compile(r"^/(?![/\\])[A-Za-z0-9/_.~%?=&+-]{0,500}$")


class LoginRequired(AppError):
    """No usable session: the page handler sends the visitor to the sign-in page.

    Changes are kept: a refresh token presented twice has just revoked its session (theft
    detection in `login.rotate`), and that must stay revoked.
    """

    status, code, title = 401, "not_authenticated", "Unauthorized"
    keep_changes = True


def base_path(request: Request) -> str:
    """`/t/{slug}` when the organization came from the path, else "" (subdomain, header)."""
    slug: str | None = getattr(request.state, "tenant_path_slug", None)
    return f"/t/{slug}" if slug else ""


def url(request: Request, path: str) -> str:
    """A link inside the organization's pages that keeps its `/t/{slug}` prefix."""
    return base_path(request) + path


def safe_next(value: str | None) -> str | None:
    """A local path to return to after signing in, or None (no open redirects)."""
    if value and _NEXT.match(value):
        return value
    return None


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def on_response(request: Request, hook: ResponseHook) -> None:
    """Run `hook` on the response this request ends with (cookies set along the way)."""
    hooks: list[ResponseHook] = getattr(request.state, _HOOKS, None) or []
    hooks.append(hook)
    setattr(request.state, _HOOKS, hooks)


def finish(request: Request, response: Response) -> Response:
    for hook in getattr(request.state, _HOOKS, None) or []:
        hook(response)
    setattr(request.state, _HOOKS, [])
    return response


def csrf_token(request: Request) -> str:
    """The CSRF value forms of this page carry; issues the cookie when there is none yet."""
    token: str | None = getattr(request.state, _CSRF, None) or request.cookies.get(CSRF_COOKIE)
    if not token:
        token = new_opaque_token(16)
        secure = get_runtime(request).settings.cookie_secure
        value = token
        on_response(
            request,
            lambda r: r.set_cookie(
                CSRF_COOKIE, value, httponly=False, secure=secure, samesite="lax", path="/"
            ),
        )
    setattr(request.state, _CSRF, token)
    return token


def start_session(request: Request, tokens: login.IssuedTokens) -> None:
    """A new sign-in: session cookies with a fresh CSRF value (old forms no longer count)."""
    settings = get_runtime(request).settings
    fresh = new_opaque_token(16)
    setattr(request.state, _CSRF, fresh)
    on_response(request, lambda r: set_session_cookies(r, settings, tokens, csrf_token=fresh))


def end_session(request: Request) -> None:
    setattr(request.state, _CSRF, None)
    on_response(request, clear_session_cookies)


def redirect(request: Request, path: str, *, status_code: int = 303) -> Response:
    """Go to `path` (inside the organization); htmx requests get `HX-Redirect` instead."""
    target = url(request, path)
    if is_htmx(request):
        return finish(request, Response(status_code=204, headers={"HX-Redirect": target}))
    return finish(request, RedirectResponse(target, status_code=status_code))


def login_redirect(request: Request) -> Response:
    """The answer to `LoginRequired`: the sign-in page, then back to where the visitor was."""
    end_session(request)
    target = "/login"
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method == "GET" and here not in ("/", "/login") and safe_next(here):
        target += "?next=" + quote(here, safe="/")
    return redirect(request, target)


async def _session_user(request: Request, tenant: CurrentTenant, session: TenantSession) -> User:
    runtime = get_runtime(request)
    token = request.cookies.get(ACCESS_COOKIE)
    if token:
        try:
            user = await user_from_access_token(
                runtime, session, organization_id=tenant.id, token=token
            )
        except Unauthorized:
            pass
        else:
            request.state.user = user
            return user
    refresh = request.cookies.get(REFRESH_COOKIE)
    if not refresh:
        raise LoginRequired("Sign in to continue.")
    try:
        tokens = await login.rotate(session, runtime, refresh)
    except Unauthorized as exc:
        raise LoginRequired("Your session has ended; sign in again.") from exc
    if tokens.user.organization_id != tenant.id:
        raise LoginRequired("Sign in to continue.")
    keep = request.cookies.get(CSRF_COOKIE)
    settings = runtime.settings
    on_response(request, lambda r: set_session_cookies(r, settings, tokens, csrf_token=keep))
    request.state.user = tokens.user
    return tokens.user


PageUser = Annotated[User, Depends(_session_user)]
"""The signed-in user of a page (silent refresh), or a redirect to the sign-in page."""


async def _optional_user(
    request: Request, tenant: CurrentTenant, session: TenantSession
) -> User | None:
    if not (request.cookies.get(ACCESS_COOKIE) or request.cookies.get(REFRESH_COOKIE)):
        return None
    try:
        return await _session_user(request, tenant, session)
    except LoginRequired:
        return None


OptionalUser = Annotated[User | None, Depends(_optional_user)]
"""The signed-in user, or None (pages such as sign-in that anyone may see)."""
