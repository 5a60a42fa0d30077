"""Organization rules: creation, settings, and resolution of the tenant of a request."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.audit import service as audit
from servicedesk.core.actor import Actor
from servicedesk.core.cache import TTLCache
from servicedesk.core.errors import Conflict, NotFound
from servicedesk.models import Organization
from servicedesk.tenancy.repository import OrganizationRepository
from servicedesk.tenancy.schemas import OrganizationCreate, OrganizationUpdate


@dataclass(frozen=True)
class Tenant:
    """An immutable snapshot of an organization, safe to cache across requests."""

    id: uuid.UUID
    slug: str
    name: str
    timezone: str
    is_active: bool
    settings: dict[str, Any]

    @classmethod
    def of(cls, org: Organization) -> Tenant:
        return cls(org.id, org.slug, org.name, org.timezone, org.is_active, dict(org.settings))


tenant_cache: TTLCache[Tenant] = TTLCache("tenants", ttl_seconds=60.0)


def invalidate_tenant(organization_id: uuid.UUID) -> None:
    tenant_cache.invalidate_tag(f"org:{organization_id}")


def _snapshot(org: Organization) -> dict[str, Any]:
    return {
        "slug": org.slug,
        "name": org.name,
        "timezone": org.timezone,
        "is_active": org.is_active,
        "settings": dict(org.settings or {}),
    }


def cached_tenant(key: str) -> Tenant | None:
    return tenant_cache.get(key.lower())


async def resolve(session: AsyncSession, key: str) -> Tenant | None:
    """Find an active organization by id or slug, through the tenant cache.

    Runs in a system session: before the tenant is known there is nothing to bind RLS to.
    """
    cache_key = key.lower()
    cached = tenant_cache.get(cache_key)
    if cached is not None:
        return cached
    repo = OrganizationRepository(session)
    try:
        org = await repo.get(uuid.UUID(key))
    except ValueError:
        org = await repo.get_by_slug(cache_key)
    if org is None or not org.is_active:
        return None
    tenant = Tenant.of(org)
    tenant_cache.set(cache_key, tenant, tags=(f"org:{org.id}",))
    return tenant


async def create_organization(
    session: AsyncSession, data: OrganizationCreate, *, actor: Actor
) -> Organization:
    """Create a tenant (system session: the row does not exist yet to bind RLS to)."""
    repo = OrganizationRepository(session)
    if await repo.slug_taken(data.slug):
        raise Conflict(f"An organization with slug {data.slug!r} exists.", code="slug_taken")
    org = Organization(slug=data.slug, name=data.name, timezone=data.timezone, settings={})
    session.add(org)
    await session.flush()
    await audit.record(
        session,
        organization_id=org.id,
        actor=actor,
        action="organization.created",
        table="organizations",
        record_id=org.id,
        new=_snapshot(org),
    )
    return org


async def get_organization(session: AsyncSession, organization_id: uuid.UUID) -> Organization:
    org = await OrganizationRepository(session).get(organization_id)
    if org is None:
        raise NotFound("Organization not found.")
    return org


async def update_organization(
    session: AsyncSession, organization_id: uuid.UUID, data: OrganizationUpdate, *, actor: Actor
) -> Organization:
    org = await get_organization(session, organization_id)
    before = _snapshot(org)
    changes = data.model_dump(exclude_unset=True)
    if "settings" in changes and data.settings is not None:
        org.settings = {**(org.settings or {}), **data.settings.model_dump(exclude_unset=True)}
    for field in ("name", "timezone"):
        if field in changes and changes[field] is not None:
            setattr(org, field, changes[field])
    await session.flush()
    old, new = audit.diff(before, _snapshot(org))
    if new:
        await audit.record(
            session,
            organization_id=org.id,
            actor=actor,
            action="organization.updated",
            table="organizations",
            record_id=org.id,
            old=old,
            new=new,
        )
    invalidate_tenant(org.id)
    return org
