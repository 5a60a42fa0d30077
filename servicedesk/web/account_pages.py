"""The signed-in user's own account: name and time zone, two-factor enrolment, recovery codes."""

from __future__ import annotations

from functools import cache
from typing import Annotated
from zoneinfo import available_timezones

from fastapi import APIRouter, Query, Request, Response

from servicedesk.accounts import service as accounts
from servicedesk.accounts import two_factor
from servicedesk.accounts.schemas import MeUpdate
from servicedesk.core.actor import Actor
from servicedesk.core.errors import AppError
from servicedesk.core.runtime import get_runtime
from servicedesk.models import User
from servicedesk.tenancy.deps import CurrentTenant, TenantSession
from servicedesk.web.forms import FORM_ERROR, FieldErrors, UserForm, app_errors, parse
from servicedesk.web.session import PageUser, redirect
from servicedesk.web.templating import render

router = APIRouter(include_in_schema=False)

NOTICES = {
    "saved": "Your profile has been saved.",
    "2fa_on": "Two-factor authentication is on.",
    "2fa_off": "Two-factor authentication is off.",
}


@cache
def timezones() -> list[str]:
    return sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/"))


async def _account_page(
    request: Request,
    session: TenantSession,
    user: User,
    *,
    notice: str | None = None,
    profile_errors: FieldErrors | None = None,
    security_errors: FieldErrors | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    remaining = await two_factor.remaining_recovery_codes(session, user) if user.totp_enabled else 0
    return render(
        request,
        "account/account.html",
        {
            "notice": NOTICES.get(notice or ""),
            "profile_errors": profile_errors or {},
            "security_errors": security_errors or {},
            "values": values
            or {
                "first_name": user.first_name,
                "last_name": user.last_name,
                "timezone": user.timezone,
            },
            "timezones": timezones(),
            "recovery_remaining": remaining,
        },
        status_code=status_code,
    )


@router.get("/account")
async def account_page(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    return await _account_page(request, session, user, notice=notice)


@router.post("/account/profile")
async def save_profile(
    request: Request, form: UserForm, tenant: CurrentTenant, session: TenantSession, user: PageUser
) -> Response:
    values = form.values("first_name", "last_name", "timezone")
    data, errors = parse(MeUpdate, values)
    if data is None:
        return await _account_page(
            request, session, user, profile_errors=errors, values=values, status_code=422
        )
    await accounts.do_update_me(session, user, data)
    return redirect(request, "/account?notice=saved")


def _setup_page(
    request: Request, runtime_user: tuple[str, str, str], errors: FieldErrors, status_code: int
) -> Response:
    secret, uri, qr = runtime_user
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    return render(
        request,
        "account/two_factor_setup.html",
        {"secret": grouped, "uri": uri, "qr": qr, "errors": errors},
        status_code=status_code,
    )


@router.post("/account/2fa/setup")
async def two_factor_setup(
    request: Request, form: UserForm, tenant: CurrentTenant, session: TenantSession, user: PageUser
) -> Response:
    if user.totp_enabled:
        return redirect(request, "/account")
    enrolment = await two_factor.begin_enrolment(get_runtime(request), user)
    await session.flush()
    return _setup_page(request, enrolment, {}, 200)


@router.post("/account/2fa/confirm")
async def two_factor_confirm(
    request: Request, form: UserForm, tenant: CurrentTenant, session: TenantSession, user: PageUser
) -> Response:
    runtime = get_runtime(request)
    if user.totp_enabled:
        return redirect(request, "/account")
    code = form.get("code").strip().replace(" ", "")
    try:
        codes = await two_factor.confirm_enrolment(session, runtime, user, code)
    except AppError as exc:
        if exc.code == "2fa_not_started":
            return redirect(request, "/account")
        return _setup_page(
            request, two_factor.pending_enrolment(runtime, user), {"code": exc.detail}, 422
        )
    return render(request, "account/recovery_codes.html", {"codes": codes, "fresh": True})


async def _password_and_code(
    request: Request, form: UserForm, session: TenantSession, user: User, *, action: str
) -> Response | list[str]:
    """Run a 2FA change that needs the password and a current code; a page on error."""
    runtime = get_runtime(request)
    password, code = form.get("password"), form.get("code").strip().replace(" ", "")
    errors: FieldErrors = {}
    if not password:
        errors["password"] = "Enter your password."
    if not 6 <= len(code) <= 32:
        errors["code"] = "Enter a code from your app, or a recovery code."
    if not errors:
        try:
            if action == "disable":
                await two_factor.disable(
                    session,
                    runtime,
                    user,
                    password=password,
                    code=code,
                    actor=Actor.user(user.id),
                )
                return []
            return await two_factor.regenerate_recovery_codes(
                session, runtime, user, password=password, code=code
            )
        except AppError as exc:
            field = {"invalid_credentials": "password", "invalid_code": "code"}.get(exc.code)
            errors = {field: exc.detail} if field else app_errors(exc)
            if exc.code == "code_reused":
                errors = {"code": exc.detail}
    errors.setdefault(FORM_ERROR, "Check the highlighted fields.")
    return await _account_page(request, session, user, security_errors=errors, status_code=422)


@router.post("/account/2fa/disable")
async def two_factor_disable(
    request: Request, form: UserForm, tenant: CurrentTenant, session: TenantSession, user: PageUser
) -> Response:
    result = await _password_and_code(request, form, session, user, action="disable")
    if isinstance(result, Response):
        return result
    return redirect(request, "/account?notice=2fa_off")


@router.post("/account/2fa/recovery-codes")
async def two_factor_recovery_codes(
    request: Request, form: UserForm, tenant: CurrentTenant, session: TenantSession, user: PageUser
) -> Response:
    result = await _password_and_code(request, form, session, user, action="regenerate")
    if isinstance(result, Response):
        return result
    return render(request, "account/recovery_codes.html", {"codes": result, "fresh": False})
