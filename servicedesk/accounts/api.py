"""HTTP routes of accounts: auth, the current user, users (admin), departments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request, Response, status

from servicedesk.accounts import login, password_reset, service, two_factor
from servicedesk.accounts.auth import (
    REFRESH_COOKIE,
    AdminUser,
    CurrentUser,
    clear_session_cookies,
    set_session_cookies,
)
from servicedesk.accounts.repository import (
    DepartmentRepository,
    UserRepository,
)
from servicedesk.accounts.schemas import (
    DepartmentCreate,
    DepartmentRead,
    DepartmentUpdate,
    LoginAttemptRead,
    LoginRequest,
    MeUpdate,
    MfaChallenge,
    MfaVerifyRequest,
    PasswordChange,
    PasswordForgot,
    PasswordReset,
    RecoveryCodes,
    RefreshRequest,
    RegisterRequest,
    SessionRead,
    TokenResponse,
    TwoFactorCode,
    TwoFactorDisable,
    TwoFactorSetup,
    UserCreate,
    UserRead,
    UserUpdate,
)
from servicedesk.core.actor import Actor
from servicedesk.core.csrf import check_csrf
from servicedesk.core.errors import BadRequest, Unauthorized
from servicedesk.core.pagination import Page, decode_cursor, encode_cursor
from servicedesk.core.runtime import get_runtime
from servicedesk.core.security import hash_token
from servicedesk.models import Role, UserStatus
from servicedesk.tenancy.deps import CurrentTenant, TenantSession

auth_router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
me_router = APIRouter(prefix="/api/v1/me", tags=["me"])
users_router = APIRouter(prefix="/api/v1/users", tags=["users"])
departments_router = APIRouter(prefix="/api/v1/departments", tags=["departments"])
security_router = APIRouter(prefix="/api/v1/login-attempts", tags=["audit"])


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _token_response(tokens: login.IssuedTokens) -> TokenResponse:
    return TokenResponse(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
        user=UserRead.model_validate(tokens.user),
    )


# Auth ------------------------------------------------------------------------------------


@auth_router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    summary="Register as an employee (lands as pending until an admin approves)",
)
async def register(
    request: Request, data: RegisterRequest, tenant: CurrentTenant, session: TenantSession
) -> UserRead:
    runtime = get_runtime(request)
    await runtime.limiter.hit(runtime.settings.rate_register_ip, "register", _client_ip(request))
    user = await service.do_register(session, runtime.hasher, data, organization_id=tenant.id)
    return UserRead.model_validate(user)


@auth_router.get(
    "/departments",
    response_model=list[DepartmentRead],
    summary="Active departments, for the registration form",
)
async def registration_departments(session: TenantSession) -> list[DepartmentRead]:
    departments = await DepartmentRepository(session).list(include_inactive=False)
    return [DepartmentRead.model_validate(d) for d in departments]


@auth_router.post(
    "/login",
    response_model=TokenResponse | MfaChallenge,
    summary="Sign in with email and password",
    responses={401: {"description": "Wrong email or password"}, 403: {"description": "Locked"}},
)
async def sign_in(
    request: Request,
    response: Response,
    data: LoginRequest,
    tenant: CurrentTenant,
    session: TenantSession,
) -> TokenResponse | MfaChallenge:
    runtime = get_runtime(request)
    settings = runtime.settings
    await runtime.limiter.hit(settings.rate_login_ip, "login-ip", _client_ip(request))
    await runtime.limiter.hit(
        settings.rate_login_account, "login-account", str(tenant.id), data.email.lower()
    )
    result = await login.authenticate(
        session, runtime, organization_id=tenant.id, email=data.email, password=data.password
    )
    if isinstance(result, login.MfaPending):
        return MfaChallenge(mfa_token=result.mfa_token)
    set_session_cookies(response, runtime.settings, result)
    return _token_response(result)


@auth_router.post("/mfa/verify", response_model=TokenResponse, summary="Complete a 2FA sign-in")
async def mfa_verify(
    request: Request,
    response: Response,
    data: MfaVerifyRequest,
    tenant: CurrentTenant,
    session: TenantSession,
) -> TokenResponse:
    runtime = get_runtime(request)
    await runtime.limiter.hit(runtime.settings.rate_login_ip, "login-ip", _client_ip(request))
    tokens = await login.verify_mfa(
        session, runtime, organization_id=tenant.id, mfa_token=data.mfa_token, code=data.code
    )
    set_session_cookies(response, runtime.settings, tokens)
    return _token_response(tokens)


def _refresh_token_of(request: Request, data: RefreshRequest | None) -> str:
    if data is not None and data.refresh_token:
        return data.refresh_token
    cookie = request.cookies.get(REFRESH_COOKIE)
    if cookie:
        check_csrf(request)
        return cookie
    raise Unauthorized("Send the refresh token.", code="invalid_refresh_token")


@auth_router.post(
    "/refresh", response_model=TokenResponse, summary="Rotate the refresh token for a new pair"
)
async def refresh(
    request: Request,
    response: Response,
    session: TenantSession,
    data: Annotated[RefreshRequest | None, Body()] = None,
) -> TokenResponse:
    runtime = get_runtime(request)
    await runtime.limiter.hit(runtime.settings.rate_refresh_ip, "refresh", _client_ip(request))
    tokens = await login.rotate(session, runtime, _refresh_token_of(request, data))
    set_session_cookies(response, runtime.settings, tokens)
    return _token_response(tokens)


@auth_router.post(
    "/logout", status_code=status.HTTP_204_NO_CONTENT, summary="End the current session"
)
async def logout(
    request: Request,
    session: TenantSession,
    data: Annotated[RefreshRequest | None, Body()] = None,
) -> Response:
    await login.logout(session, _refresh_token_of(request, data))
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookies(response)
    return response


@auth_router.post(
    "/password/forgot",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Email a password reset link (the same answer whether or not the account exists)",
)
async def forgot_password(
    request: Request, data: PasswordForgot, tenant: CurrentTenant, session: TenantSession
) -> dict[str, str]:
    runtime = get_runtime(request)
    await runtime.limiter.hit(runtime.settings.rate_login_ip, "forgot-ip", _client_ip(request))
    await password_reset.request_reset(session, runtime, email=data.email, tenant_slug=tenant.slug)
    return {"detail": "If an account uses this address, a reset link is on its way."}


@auth_router.post(
    "/password/reset",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Set a new password with a reset link's token (single use; ends every session)",
)
async def reset_password(request: Request, data: PasswordReset, session: TenantSession) -> Response:
    runtime = get_runtime(request)
    await runtime.limiter.hit(runtime.settings.rate_login_ip, "reset-ip", _client_ip(request))
    await password_reset.do_reset_password(
        session, runtime, token=data.token, new_password=data.password
    )
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookies(response)
    return response


# The current user ------------------------------------------------------------------------


@me_router.get("", response_model=UserRead, summary="The signed-in user")
async def me(user: CurrentUser) -> UserRead:
    return UserRead.model_validate(user)


@me_router.patch("", response_model=UserRead, summary="Update one's own profile")
async def update_me(user: CurrentUser, data: MeUpdate, session: TenantSession) -> UserRead:
    return UserRead.model_validate(await service.do_update_me(session, user, data))


@me_router.post(
    "/password", status_code=status.HTTP_204_NO_CONTENT, summary="Change password (ends sessions)"
)
async def change_password(
    request: Request, user: CurrentUser, data: PasswordChange, session: TenantSession
) -> Response:
    await service.do_change_password(session, get_runtime(request).hasher, user, data)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _sessions(
    session: TenantSession, user_id: uuid.UUID, current: str | None
) -> list[SessionRead]:
    user = await service.access_user(session, user_id)
    current_hash = hash_token(current) if current else None
    return [
        SessionRead(
            id=link.family_id,
            started_at=started,
            last_used_at=link.issued_at,
            expires_at=link.expires_at,
            ip=link.ip,
            user_agent=link.user_agent,
            current=link.token_hash == current_hash,
        )
        for link, started in await login.list_sessions(session, user)
    ]


@me_router.get("/sessions", response_model=list[SessionRead], summary="One's active sessions")
async def my_sessions(
    request: Request, user: CurrentUser, session: TenantSession
) -> list[SessionRead]:
    return await _sessions(session, user.id, request.cookies.get(REFRESH_COOKIE))


@me_router.delete(
    "/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT, summary="End one session"
)
async def end_my_session(
    session_id: uuid.UUID, user: CurrentUser, session: TenantSession
) -> Response:
    await login.revoke_session(session, user, session_id, actor=Actor.user(user.id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@me_router.post("/2fa/setup", response_model=TwoFactorSetup, summary="Start TOTP enrolment")
async def two_factor_setup(
    request: Request, user: CurrentUser, session: TenantSession
) -> TwoFactorSetup:
    secret, uri, qr = await two_factor.begin_enrolment(get_runtime(request), user)
    await session.flush()
    return TwoFactorSetup(secret=secret, provisioning_uri=uri, qr_svg_data_uri=qr)


@me_router.post(
    "/2fa/confirm", response_model=RecoveryCodes, summary="Turn 2FA on with a first code"
)
async def two_factor_confirm(
    request: Request, data: TwoFactorCode, user: CurrentUser, session: TenantSession
) -> RecoveryCodes:
    codes = await two_factor.confirm_enrolment(session, get_runtime(request), user, data.code)
    return RecoveryCodes(recovery_codes=codes)


@me_router.post("/2fa/disable", status_code=status.HTTP_204_NO_CONTENT, summary="Turn 2FA off")
async def two_factor_disable(
    request: Request, data: TwoFactorDisable, user: CurrentUser, session: TenantSession
) -> Response:
    await two_factor.disable(
        session,
        get_runtime(request),
        user,
        password=data.password,
        code=data.code,
        actor=Actor.user(user.id),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@me_router.post(
    "/2fa/recovery-codes", response_model=RecoveryCodes, summary="Replace the recovery codes"
)
async def two_factor_recovery_codes(
    request: Request, data: TwoFactorDisable, user: CurrentUser, session: TenantSession
) -> RecoveryCodes:
    codes = await two_factor.regenerate_recovery_codes(
        session, get_runtime(request), user, password=data.password, code=data.code
    )
    return RecoveryCodes(recovery_codes=codes)


# Users (admin) ---------------------------------------------------------------------------


@users_router.get("", response_model=Page[UserRead], summary="List users, pending first")
async def list_users(
    admin: AdminUser,
    session: TenantSession,
    status_: Annotated[UserStatus | None, Query(alias="status")] = None,
    role: Role | None = None,
    department_id: uuid.UUID | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    include_inactive: bool = False,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[UserRead]:
    after = decode_cursor(cursor, int, datetime, uuid.UUID) if cursor else None
    if after is not None and after[0] not in (0, 1):  # the pending rank; else a DB error
        raise BadRequest("The cursor is not valid.", code="invalid_cursor")
    users = await UserRepository(session).list(
        status=status_,
        role=role,
        department_id=department_id,
        q=q,
        include_inactive=include_inactive,
        after=after,
        limit=limit + 1,
    )
    next_cursor = None
    if len(users) > limit:
        last = users[limit - 1]
        next_cursor = encode_cursor(
            0 if last.status == UserStatus.PENDING else 1, last.created_at, last.id
        )
        users = users[:limit]
    return Page(items=[UserRead.model_validate(u) for u in users], next_cursor=next_cursor)


@users_router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=UserRead, summary="Add a user"
)
async def create_user(
    request: Request,
    data: UserCreate,
    admin: AdminUser,
    tenant: CurrentTenant,
    session: TenantSession,
) -> UserRead:
    user = await service.do_create_user(
        session,
        get_runtime(request).hasher,
        data,
        organization_id=tenant.id,
        actor=Actor.user(admin.id),
    )
    return UserRead.model_validate(user)


@users_router.get("/{user_id}", response_model=UserRead, summary="One user")
async def get_user(user_id: uuid.UUID, admin: AdminUser, session: TenantSession) -> UserRead:
    return UserRead.model_validate(await service.access_user(session, user_id))


@users_router.patch("/{user_id}", response_model=UserRead, summary="Change role or department")
async def update_user(
    user_id: uuid.UUID, data: UserUpdate, admin: AdminUser, session: TenantSession
) -> UserRead:
    user = await service.do_update_user(session, user_id, data, actor=Actor.user(admin.id))
    return UserRead.model_validate(user)


def _status_route(target: UserStatus, summary: str) -> None:
    async def route(user_id: uuid.UUID, admin: AdminUser, session: TenantSession) -> UserRead:
        user = await service.do_set_status(session, user_id, target, actor=Actor.user(admin.id))
        return UserRead.model_validate(user)

    verb = {"approved": "approve", "rejected": "reject", "suspended": "suspend"}[target]
    route.__name__ = f"{verb}_user"
    users_router.post(f"/{{user_id}}/{verb}", response_model=UserRead, summary=summary)(route)


_status_route(UserStatus.APPROVED, "Approve a pending (or reinstate a suspended) user")
_status_route(UserStatus.REJECTED, "Reject a pending registration")
_status_route(UserStatus.SUSPENDED, "Suspend a user (ends their sessions)")


@users_router.post("/{user_id}/reactivate", response_model=UserRead, summary="Undo deactivation")
async def reactivate_user(user_id: uuid.UUID, admin: AdminUser, session: TenantSession) -> UserRead:
    user = await service.do_reactivate(session, user_id, actor=Actor.user(admin.id))
    return UserRead.model_validate(user)


@users_router.delete(
    "/{user_id}", response_model=UserRead, summary="Deactivate a user (soft delete)"
)
async def deactivate_user(user_id: uuid.UUID, admin: AdminUser, session: TenantSession) -> UserRead:
    user = await service.do_deactivate(session, user_id, actor=Actor.user(admin.id))
    return UserRead.model_validate(user)


@users_router.get(
    "/{user_id}/sessions", response_model=list[SessionRead], summary="A user's active sessions"
)
async def user_sessions(
    user_id: uuid.UUID, admin: AdminUser, session: TenantSession
) -> list[SessionRead]:
    return await _sessions(session, user_id, None)


@users_router.delete(
    "/{user_id}/sessions",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="End all of a user's sessions",
)
async def revoke_user_sessions(
    user_id: uuid.UUID, admin: AdminUser, session: TenantSession
) -> Response:
    user = await service.access_user(session, user_id)
    await login.revoke_all_sessions(session, user, actor=Actor.user(admin.id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# Departments -----------------------------------------------------------------------------


@departments_router.get("", response_model=list[DepartmentRead], summary="List departments")
async def list_departments(user: CurrentUser, session: TenantSession) -> list[DepartmentRead]:
    return [DepartmentRead.model_validate(d) for d in await DepartmentRepository(session).list()]


@departments_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DepartmentRead,
    summary="Create a department",
)
async def create_department(
    data: DepartmentCreate, admin: AdminUser, tenant: CurrentTenant, session: TenantSession
) -> DepartmentRead:
    department = await service.do_create_department(
        session, data, organization_id=tenant.id, actor=Actor.user(admin.id)
    )
    return DepartmentRead.model_validate(department)


@departments_router.get("/{department_id}", response_model=DepartmentRead, summary="One department")
async def get_department(
    department_id: uuid.UUID, user: CurrentUser, session: TenantSession
) -> DepartmentRead:
    return DepartmentRead.model_validate(await service.access_department(session, department_id))


@departments_router.patch(
    "/{department_id}", response_model=DepartmentRead, summary="Update a department"
)
async def update_department(
    department_id: uuid.UUID, data: DepartmentUpdate, admin: AdminUser, session: TenantSession
) -> DepartmentRead:
    department = await service.do_update_department(
        session, department_id, data, actor=Actor.user(admin.id)
    )
    return DepartmentRead.model_validate(department)


# Login attempts (admin) ------------------------------------------------------------------


@security_router.get("", response_model=Page[LoginAttemptRead], summary="Sign-in attempts")
async def list_login_attempts(
    admin: AdminUser,
    session: TenantSession,
    email: Annotated[str | None, Query(max_length=254)] = None,
    success: bool | None = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[LoginAttemptRead]:
    before = decode_cursor(cursor, datetime, uuid.UUID) if cursor else None
    rows = await login.list_attempts(
        session, email=email, success=success, before=before, limit=limit + 1
    )
    next_cursor = (
        encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    )
    return Page(
        items=[LoginAttemptRead.model_validate(r) for r in rows[:limit]], next_cursor=next_cursor
    )
