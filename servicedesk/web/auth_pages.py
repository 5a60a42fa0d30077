"""Sign-in pages: choose the organization, sign in, the 2FA step, sign out, register, forgotten
password. They call the same account services as the API (`accounts.login`,
`accounts.service`, `accounts.password_reset`) and set the same cookies."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from servicedesk.accounts import login, password_reset
from servicedesk.accounts import service as accounts
from servicedesk.accounts.auth import REFRESH_COOKIE
from servicedesk.accounts.schemas import LoginRequest, RegisterRequest
from servicedesk.core.context import current_request
from servicedesk.core.errors import AppError, Conflict, RateLimited, Unauthorized, Unprocessable
from servicedesk.core.runtime import get_runtime
from servicedesk.tenancy.deps import CurrentTenant, TenantSession, tenant_key
from servicedesk.web.forms import FORM_ERROR, FieldErrors, PublicForm, app_errors, parse
from servicedesk.web.session import (
    OptionalUser,
    end_session,
    on_response,
    redirect,
    safe_next,
    start_session,
)
from servicedesk.web.templating import render

router = APIRouter(include_in_schema=False)

MFA_COOKIE = "sd_mfa"
"""The signed, short-lived token between the password step and the 2FA step (httpOnly)."""
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")

NOTICES = {
    "signed_out": "You have signed out.",
    "password_reset": "Your password has been changed and every session ended. "
    "Sign in with the new password.",
    "mfa_expired": "The sign-in step expired. Please sign in again.",
}


def _ip() -> str:
    return current_request().ip or "unknown"


async def _limit(request: Request, rate: str, *key: str) -> str | None:
    """None when under the limit; else the message to show."""
    try:
        await get_runtime(request).limiter.hit(rate, *key)
    except RateLimited as exc:
        return exc.detail
    return None


# Choosing the organization -------------------------------------------------------------------


@router.get("/")
async def home(request: Request) -> Response:
    """The organization's pages start at its tickets; without an organization, pick one."""
    if tenant_key(request):
        return redirect(request, "/tickets")
    return render(request, "auth/choose_org.html", {"errors": {}, "org": ""})


@router.get("/go")
async def go_to_org(request: Request, org: Annotated[str, Query(max_length=100)] = "") -> Response:
    slug = org.strip().lower()
    if not _SLUG.match(slug):
        errors = {"org": "Enter your organization's short name, such as acme."}
        return render(
            request, "auth/choose_org.html", {"errors": errors, "org": org}, status_code=422
        )
    return redirect(request, f"/t/{slug}/login")


# Sign in -------------------------------------------------------------------------------------


def _login_page(
    request: Request,
    *,
    email: str = "",
    errors: FieldErrors | None = None,
    next_path: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "auth/login.html",
        {
            "email": email,
            "errors": errors or {},
            "next": next_path or "",
            "notice": NOTICES.get(notice or ""),
        },
        status_code=status_code,
    )


@router.get("/login")
async def login_page(
    request: Request,
    tenant: CurrentTenant,
    user: OptionalUser,
    next: Annotated[str | None, Query(max_length=600)] = None,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    if user is not None:
        return redirect(request, safe_next(next) or "/tickets")
    return _login_page(request, next_path=safe_next(next), notice=notice)


@router.post("/login")
async def login_submit(
    request: Request, form: PublicForm, tenant: CurrentTenant, session: TenantSession
) -> Response:
    runtime = get_runtime(request)
    email, next_path = form.get("email").strip(), safe_next(form.get("next"))
    data, errors = parse(LoginRequest, {"email": email, "password": form.get("password")})
    if data is None:
        return _login_page(
            request, email=email, errors=errors, next_path=next_path, status_code=422
        )
    settings = runtime.settings
    limited = await _limit(request, settings.rate_login_ip, "login-ip", _ip()) or await _limit(
        request, settings.rate_login_account, "login-account", str(tenant.id), email.lower()
    )
    if limited:
        return _login_page(
            request,
            email=email,
            errors={FORM_ERROR: limited},
            next_path=next_path,
            status_code=429,
        )
    try:
        result = await login.authenticate(
            session, runtime, organization_id=tenant.id, email=data.email, password=data.password
        )
    except AppError as exc:
        # Wrong password, locked, pending, rejected …: the attempt is logged and kept.
        status = 401 if isinstance(exc, Unauthorized) else 403
        return _login_page(
            request,
            email=email,
            errors={FORM_ERROR: exc.detail},
            next_path=next_path,
            status_code=status,
        )
    if isinstance(result, login.MfaPending):
        token, minutes = result.mfa_token, settings.mfa_token_minutes
        secure = settings.cookie_secure
        on_response(
            request,
            lambda r: r.set_cookie(
                MFA_COOKIE,
                token,
                max_age=minutes * 60,
                httponly=True,
                secure=secure,
                samesite="strict",
                path="/",
            ),
        )
        return redirect(request, "/login/2fa" + (f"?next={next_path}" if next_path else ""))
    start_session(request, result)
    return redirect(request, next_path or "/tickets")


def _mfa_page(
    request: Request,
    *,
    errors: FieldErrors | None = None,
    next_path: str | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "auth/two_factor.html",
        {"errors": errors or {}, "next": next_path or ""},
        status_code=status_code,
    )


@router.get("/login/2fa")
async def mfa_page(
    request: Request,
    tenant: CurrentTenant,
    next: Annotated[str | None, Query(max_length=600)] = None,
) -> Response:
    if not request.cookies.get(MFA_COOKIE):
        return redirect(request, "/login")
    return _mfa_page(request, next_path=safe_next(next))


@router.post("/login/2fa")
async def mfa_submit(
    request: Request, form: PublicForm, tenant: CurrentTenant, session: TenantSession
) -> Response:
    runtime = get_runtime(request)
    next_path = safe_next(form.get("next"))
    mfa_token = request.cookies.get(MFA_COOKIE)
    if not mfa_token:
        return redirect(request, "/login?notice=mfa_expired")
    code = form.get("code").strip().replace(" ", "")
    if not 6 <= len(code) <= 32:
        errors = {"code": "Enter the 6-digit code from your app, or a recovery code."}
        return _mfa_page(request, errors=errors, next_path=next_path, status_code=422)
    limited = await _limit(request, runtime.settings.rate_login_ip, "login-ip", _ip())
    if limited:
        return _mfa_page(
            request, errors={FORM_ERROR: limited}, next_path=next_path, status_code=429
        )
    try:
        tokens = await login.verify_mfa(
            session, runtime, organization_id=tenant.id, mfa_token=mfa_token, code=code
        )
    except AppError as exc:
        if exc.code == "invalid_mfa_token":
            on_response(request, lambda r: r.delete_cookie(MFA_COOKIE, path="/"))
            return redirect(request, "/login?notice=mfa_expired")
        field = "code" if exc.code in ("invalid_code", "code_reused") else FORM_ERROR
        return _mfa_page(
            request, errors={field: exc.detail}, next_path=next_path, status_code=exc.status
        )
    on_response(request, lambda r: r.delete_cookie(MFA_COOKIE, path="/"))
    start_session(request, tokens)
    return redirect(request, next_path or "/tickets")


@router.post("/logout")
async def logout(
    request: Request, form: PublicForm, tenant: CurrentTenant, session: TenantSession
) -> Response:
    refresh = request.cookies.get(REFRESH_COOKIE)
    if refresh:
        await login.logout(session, refresh)
    end_session(request)
    return redirect(request, "/login?notice=signed_out")


# Registration --------------------------------------------------------------------------------

REGISTER_FIELDS = (
    "first_name",
    "last_name",
    "middle_name",
    "email",
    "company_id",
    "department_id",
)


async def _register_page(
    request: Request,
    session: TenantSession,
    *,
    values: dict[str, str] | None = None,
    errors: FieldErrors | None = None,
    status_code: int = 200,
) -> Response:
    departments = await accounts.list_departments(session, include_inactive=False)
    return render(
        request,
        "auth/register.html",
        {
            "values": values or dict.fromkeys(REGISTER_FIELDS, ""),
            "errors": errors or {},
            "departments": departments,
        },
        status_code=status_code,
    )


@router.get("/register")
async def register_page(
    request: Request, tenant: CurrentTenant, session: TenantSession
) -> Response:
    return await _register_page(request, session)


@router.post("/register")
async def register_submit(
    request: Request, form: PublicForm, tenant: CurrentTenant, session: TenantSession
) -> Response:
    runtime = get_runtime(request)
    values = form.values(*REGISTER_FIELDS)
    values["email"] = values["email"].strip()
    password, confirm = form.get("password"), form.get("password_confirm")
    data, errors = parse(
        RegisterRequest,
        {
            **{k: v for k, v in values.items() if v.strip()},
            "company_id": values["company_id"].strip().upper(),
            "password": password,
        },
    )
    if password and password != confirm:
        errors.setdefault("password_confirm", "The passwords do not match.")
    if data is None or errors:
        return await _register_page(request, session, values=values, errors=errors, status_code=422)
    limited = await _limit(request, runtime.settings.rate_register_ip, "register", _ip())
    if limited:
        return await _register_page(
            request, session, values=values, errors={FORM_ERROR: limited}, status_code=429
        )
    try:
        user = await accounts.do_register(session, runtime.hasher, data, organization_id=tenant.id)
    except Conflict as exc:
        field = {"email_taken": "email", "company_id_taken": "company_id"}.get(exc.code)
        errors = {field: exc.detail} if field else {FORM_ERROR: exc.detail}
        return await _register_page(request, session, values=values, errors=errors, status_code=409)
    except Unprocessable as exc:
        return await _register_page(
            request, session, values=values, errors=app_errors(exc), status_code=422
        )
    return render(request, "auth/registered.html", {"email": user.email}, status_code=201)


# Forgotten password --------------------------------------------------------------------------


@router.get("/forgot-password")
async def forgot_page(request: Request, tenant: CurrentTenant) -> Response:
    return render(request, "auth/forgot.html", {"email": "", "errors": {}})


@router.post("/forgot-password")
async def forgot_submit(
    request: Request, form: PublicForm, tenant: CurrentTenant, session: TenantSession
) -> Response:
    runtime = get_runtime(request)
    email = form.get("email").strip()
    if not 3 <= len(email) <= 254 or "@" not in email:
        errors = {"email": "Enter the email address you sign in with."}
        return render(
            request, "auth/forgot.html", {"email": email, "errors": errors}, status_code=422
        )
    limited = await _limit(request, runtime.settings.rate_login_ip, "forgot-ip", _ip())
    if limited:
        errors = {FORM_ERROR: limited}
        return render(
            request, "auth/forgot.html", {"email": email, "errors": errors}, status_code=429
        )
    await password_reset.request_reset(session, runtime, email=email, tenant_slug=tenant.slug)
    # The same page whether or not the address has an account.
    return render(request, "auth/forgot_sent.html", {"email": email})


@router.get("/reset-password")
async def reset_page(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    token: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    try:
        await password_reset.check_token(session, token)
    except password_reset.InvalidResetToken as exc:
        return render(request, "auth/reset_invalid.html", {"detail": exc.detail}, status_code=400)
    return render(request, "auth/reset.html", {"token": token, "errors": {}})


@router.post("/reset-password")
async def reset_submit(
    request: Request, form: PublicForm, tenant: CurrentTenant, session: TenantSession
) -> Response:
    runtime = get_runtime(request)
    token, password = form.get("token"), form.get("password")
    errors: FieldErrors = {}
    if len(password) < 8:
        errors["password"] = "Use at least 8 characters."
    elif len(password) > 128:
        errors["password"] = "Use at most 128 characters."
    if password != form.get("password_confirm"):
        errors.setdefault("password_confirm", "The passwords do not match.")
    limited = await _limit(request, runtime.settings.rate_login_ip, "reset-ip", _ip())
    if limited:
        errors[FORM_ERROR] = limited
    if not errors:
        try:
            await password_reset.do_reset_password(
                session, runtime, token=token, new_password=password
            )
        except password_reset.InvalidResetToken as exc:
            return render(
                request, "auth/reset_invalid.html", {"detail": exc.detail}, status_code=400
            )
        except Unprocessable as exc:
            errors = app_errors(exc)
        else:
            end_session(request)
            return redirect(request, "/login?notice=password_reset")
    return render(request, "auth/reset.html", {"token": token, "errors": errors}, status_code=422)
