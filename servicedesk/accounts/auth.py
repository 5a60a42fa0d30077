"""Who may: the authenticated user of a request and role requirements.

A request authenticates with `Authorization: Bearer <access token>` or, from a browser, the
httpOnly `sd_access` cookie; cookie-authenticated unsafe requests must pass the CSRF check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from servicedesk.accounts.repository import UserRepository
from servicedesk.core.csrf import check_csrf
from servicedesk.core.errors import Forbidden, Unauthorized
from servicedesk.core.runtime import get_runtime
from servicedesk.core.security import InvalidTokenError
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


async def get_current_user(request: Request, tenant: CurrentTenant, session: TenantSession) -> User:
    token = bearer_token(request)
    if token is None:
        token = request.cookies.get(ACCESS_COOKIE)
        if token:
            check_csrf(request)
    if not token:
        raise Unauthorized("Sign in first: send a Bearer access token.", code="not_authenticated")
    try:
        claims = get_runtime(request).signer.verify(token, token_type="access")
    except InvalidTokenError as exc:
        raise Unauthorized("The access token is invalid or expired.", code="invalid_token") from exc
    if claims.organization_id != tenant.id:
        raise Unauthorized("The access token is invalid or expired.", code="invalid_token")
    user = await UserRepository(session).get(claims.subject)
    if (
        user is None
        or not user.is_active
        or user.status != UserStatus.APPROVED
        or user.session_version != claims.session_version
    ):
        raise Unauthorized("The session has ended; sign in again.", code="invalid_token")
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
