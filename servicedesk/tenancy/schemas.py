"""API shapes of organizations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Slug = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=63, pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
    ),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]

RESERVED_SLUGS = frozenset({"www", "api", "admin", "agent", "static", "t", "app", "mail"})


def _check_timezone(value: str | None) -> str | None:
    if value is not None and value not in available_timezones():
        raise ValueError(f"unknown IANA time zone {value!r}")
    return value


class OrganizationSettings(BaseModel):
    """Known organization options; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")

    agents_restricted_to_departments: bool = False
    reopen_window_days: int = Field(7, ge=0, le=365)
    comment_edit_window_minutes: int = Field(15, ge=0, le=1440)
    brand_color: str | None = Field(None, pattern=r"^#[0-9a-fA-F]{6}$")
    support_email: str | None = Field(None, max_length=254)


class OrganizationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: Slug
    name: Name
    timezone: str = "UTC"

    @field_validator("slug")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_SLUGS:
            raise ValueError(f"{value!r} is reserved")
        return value

    _tz = field_validator("timezone")(_check_timezone)


class OrganizationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    timezone: str | None = None
    settings: OrganizationSettings | None = None

    _tz = field_validator("timezone")(_check_timezone)


class OrganizationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    slug: str
    name: str
    timezone: str
    is_active: bool
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime
