"""Operator tasks behind the CLI, through the same services as the API."""

from __future__ import annotations

import uuid

from servicedesk.accounts import service as accounts
from servicedesk.accounts.schemas import UserCreate
from servicedesk.config import Settings
from servicedesk.core.actor import SYSTEM
from servicedesk.core.errors import NotFound
from servicedesk.core.runtime import Runtime
from servicedesk.models import Role
from servicedesk.tenancy import service as tenancy
from servicedesk.tenancy.schemas import OrganizationCreate


async def create_organization(
    settings: Settings, url: str, slug: str, name: str, timezone: str
) -> uuid.UUID:
    runtime = Runtime.build(settings, url)
    try:
        data = OrganizationCreate(slug=slug, name=name, timezone=timezone)
        async with runtime.db.session() as session:
            org = await tenancy.create_organization(session, data, actor=SYSTEM)
        return org.id
    finally:
        await runtime.db.dispose()


async def create_admin_user(
    settings: Settings,
    url: str,
    org_slug: str,
    email: str,
    password: str,
    first_name: str,
    last_name: str,
) -> uuid.UUID:
    runtime = Runtime.build(settings, url)
    try:
        async with runtime.db.session() as session:
            tenant = await tenancy.resolve(session, org_slug)
        if tenant is None:
            raise NotFound(f"No active organization {org_slug!r}.")
        data = UserCreate(
            email=email,
            password=password,
            first_name=first_name,
            last_name=last_name,
            role=Role.ADMIN,
        )
        async with runtime.db.tenant_session(tenant.id) as session:
            user = await accounts.do_create_user(
                session, runtime.hasher, data, organization_id=tenant.id, actor=SYSTEM
            )
        return user.id
    finally:
        await runtime.db.dispose()
