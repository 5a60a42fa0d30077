"""API shapes of accounts, sessions and departments."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)

from servicedesk.models import Role, UserStatus

PersonName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
# [0-9], not \d: the pattern engine's \d also matches non-ASCII digits, which the DB refuses.
CompanyId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^MA[0-9]{4}$")]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]

# C0/C1 controls and the bidirectional overrides used to disguise text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class Strict(BaseModel):
    """Request bodies refuse unknown fields: no mass assignment of role, status, org."""

    model_config = ConfigDict(extra="forbid")


def _no_control_chars(value: str | None) -> str | None:
    if value is not None and _CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    return value


def _check_timezone(value: str | None) -> str | None:
    if value is not None and value not in available_timezones():
        raise ValueError(f"unknown IANA time zone {value!r}")
    return value


class RegisterRequest(Strict):
    first_name: PersonName
    last_name: PersonName
    middle_name: PersonName | None = None
    suffix: Annotated[str, StringConstraints(strip_whitespace=True, max_length=20)] | None = None
    email: EmailStr = Field(max_length=254)
    company_id: CompanyId
    department_id: uuid.UUID | None = None
    password: Password

    _names = field_validator("first_name", "last_name", "middle_name", "suffix")(_no_control_chars)


class UserCreate(RegisterRequest):
    """An admin adds a user directly: approved at once, with a role."""

    role: Role = Role.REQUESTER
    company_id: CompanyId | None = None  # type: ignore[assignment]


class UserUpdate(Strict):
    """What an admin may change on a user (status changes have their own actions)."""

    role: Role | None = None
    department_id: uuid.UUID | None = None
    first_name: PersonName | None = None
    last_name: PersonName | None = None


class MeUpdate(Strict):
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    middle_name: PersonName | None = None
    timezone: str | None = None

    _tz = field_validator("timezone")(_check_timezone)
    _names = field_validator("first_name", "last_name", "middle_name")(_no_control_chars)


class PasswordChange(Strict):
    current_password: Annotated[str, StringConstraints(max_length=1024)]
    new_password: Password


class PasswordForgot(Strict):
    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=254)]


class PasswordReset(Strict):
    token: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    password: Password


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    first_name: str
    last_name: str
    middle_name: str | None
    suffix: str | None
    full_name: str
    company_id: str | None
    department_id: uuid.UUID | None
    role: Role
    status: UserStatus
    is_active: bool
    timezone: str
    totp_enabled: bool
    last_login_at: datetime | None
    approved_at: datetime | None
    created_at: datetime


class LoginRequest(Strict):
    email: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=254)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    user: UserRead


class MfaChallenge(BaseModel):
    requires_two_factor: Literal[True] = True
    mfa_token: str


class MfaVerifyRequest(Strict):
    mfa_token: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=6, max_length=32)]


class RefreshRequest(Strict):
    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None


class SessionRead(BaseModel):
    """One signed-in session (a refresh-token family), described by its newest link."""

    id: uuid.UUID
    started_at: datetime
    last_used_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool = False


class TwoFactorSetup(BaseModel):
    secret: str
    provisioning_uri: str
    qr_svg_data_uri: str


class TwoFactorCode(Strict):
    code: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\d{6}$")]


class TwoFactorDisable(Strict):
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=6, max_length=32)]


class RecoveryCodes(BaseModel):
    recovery_codes: list[str]


class DepartmentCreate(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
    head_email: EmailStr | None = None

    _name = field_validator("name")(_no_control_chars)


class DepartmentUpdate(Strict):
    name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
        | None
    ) = None
    head_email: EmailStr | None = None
    is_active: bool | None = None

    _name = field_validator("name")(_no_control_chars)


class DepartmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    head_email: str | None
    is_active: bool
    created_at: datetime


class LoginAttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    user_id: uuid.UUID | None
    success: bool
    reason: str
    ip: str | None
    user_agent: str | None
    created_at: datetime
