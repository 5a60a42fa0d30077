"""Organizations: the tenants. Every tenant-owned row points here."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CheckConstraint, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from servicedesk.models.base import Base, IdMixin, TimestampMixin


class Organization(IdMixin, TimestampMixin, Base):
    __tablename__ = "organizations"
    __table_args__ = (
        # Slugs appear in hostnames and paths: lowercase letters, digits, inner hyphens.
        CheckConstraint(r"slug ~ '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$'", name="slug_format"),
    )

    slug: Mapped[str] = mapped_column(String(63), unique=True)
    """Unique, URL-safe handle used in subdomains, `/t/{slug}/` paths and `X-Tenant-ID`."""
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    """IANA zone used for the organization's defaults (business hours, digests)."""
    is_active: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    settings: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    """Organization-level options (e.g. `agents_restricted_to_departments`)."""
