"""Who may: the authenticated user of a request and role requirements.

A request authenticates with `Authorization: Bearer <access token>` or, from a browser, the
httpOnly `sd_access` cookie; cookie-authenticated unsafe requests must pass the CSRF check.

The user row every authenticated request needs comes through the user cache
(`accounts.user_cache`): a suspension or the end of every session is refused by the next
request in this process, and elsewhere once the invalidation arrived (docs/live.md#the-cache).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts.login import IssuedTokens
from servicedesk.accounts.user_cache import load_user
from servicedesk.config import Settings
from servicedesk.core.csrf import CSRF_COOKIE, check_csrf
from servicedesk.core.errors import Forbidden, Unauthorized
from servicedesk.core.runtime import Runtime, get_runtime
from servicedesk.core.security import InvalidTokenError, new_opaque_token
from servicedesk.models import Role, User, UserStatus
from servicedesk.tenancy.deps import CurrentTenant, TenantSession

ACCESS_COOKIE = "sd_access"
REFRESH_COOKIE = "sd_refresh"


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def set_session_cookies(
    response: Response, settings: Settings, tokens: IssuedTokens, *, csrf_token: str | None = None
) -> None:
    """The browser session: httpOnly access and refresh cookies plus the readable CSRF cookie.

    `csrf_token` keeps the current CSRF value (a page's silent refresh), so forms already open
    in other tabs stay valid; without it a new one is issued (a sign-in).
    """
    secure = settings.cookie_secure
    response.set_cookie(
        ACCESS_COOKIE,
        tokens.access_token,
        max_age=tokens.expires_in,
        httponly=True,
        secure=secure,
        samesite="lax",
        path="/",
    )
    response.set_cookie(
        REFRESH_COOKIE,
        tokens.refresh_token,
        max_age=settings.refresh_token_days * 86400,
        httponly=True,
        secure=secure,
        samesite="lax",
        path="/",
    )
    # Readable by the page's script so it can echo it in X-CSRF-Token (double submit).
    response.set_cookie(
        CSRF_COOKIE,
        csrf_token or new_opaque_token(16),
        max_age=settings.refresh_token_days * 86400,
        httponly=False,
        secure=secure,
        samesite="lax",
        path="/",
    )


def clear_session_cookies(response: Response) -> None:
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        response.delete_cookie(name, path="/", httponly=True, samesite="lax")
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="lax")


async def user_from_access_token(
    runtime: Runtime, session: AsyncSession, *, organization_id: uuid.UUID, token: str
) -> User:
    """The active, approved user an access token of this organization names, or 401."""
    try:
        claims = runtime.signer.verify(token, token_type="access")
    except InvalidTokenError as exc:
        raise Unauthorized("The access token is invalid or expired.", code="invalid_token") from exc
    if claims.organization_id != organization_id:
        raise Unauthorized("The access token is invalid or expired.", code="invalid_token")
    user = await load_user(session, organization_id=organization_id, user_id=claims.subject)
    if (
        user is None
        or not user.is_active
        or user.status != UserStatus.APPROVED
        or user.session_version != claims.session_version
    ):
        raise Unauthorized("The session has ended; sign in again.", code="invalid_token")
    return user


async def get_current_user(request: Request, tenant: CurrentTenant, session: TenantSession) -> User:
    token = bearer_token(request)
    if token is None:
        token = request.cookies.get(ACCESS_COOKIE)
        if token:
            check_csrf(request)
    if not token:
        raise Unauthorized("Sign in first: send a Bearer access token.", code="not_authenticated")
    user = await user_from_access_token(
        get_runtime(request), session, organization_id=tenant.id, token=token
    )
    request.state.user = user
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_roles(*roles: Role) -> Callable[[User], Awaitable[User]]:
    allowed = frozenset(roles)

    async def dependency(user: CurrentUser) -> User:
        if user.role not in allowed:
            raise Forbidden(
                f"This needs the role {' or '.join(sorted(allowed))}.", code="insufficient_role"
            )
        return user

    return dependency


AdminUser = Annotated[User, Depends(require_roles(Role.ADMIN))]
StaffUser = Annotated[User, Depends(require_roles(Role.ADMIN, Role.AGENT, Role.MANAGER))]
