"""Request dependencies: the current tenant and the tenant-bound session the request owns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from servicedesk.core.errors import AppError, NotFound
from servicedesk.core.runtime import get_runtime
from servicedesk.tenancy import service
from servicedesk.tenancy.service import Tenant

TENANT_HEADER = "x-tenant-id"


def tenant_key(request: HTTPConnection) -> str | None:
    """The tenant a request names: X-Tenant-ID, then the Host's subdomain, then `/t/{slug}/`."""
    header = request.headers.get(TENANT_HEADER)
    if header:
        return header.strip()
    base = get_runtime(request).settings.base_domain
    host = (request.headers.get("host") or "").split(":", 1)[0].lower()
    if base and host.endswith("." + base.lower()):
        label = host[: -len(base) - 1]
        if label and "." not in label:
            return label
    slug: str | None = getattr(request.state, "tenant_path_slug", None)
    return slug


async def get_tenant(request: HTTPConnection) -> Tenant:
    cached: Tenant | None = getattr(request.state, "tenant", None)
    if cached is not None:
        return cached
    key = tenant_key(request)
    if not key:
        raise NotFound(
            "No organization given: send X-Tenant-ID, use the organization's subdomain or "
            "a /t/{slug}/ path.",
            code="tenant_required",
        )
    if len(key) > 63 and len(key) != 36:
        raise NotFound("Unknown organization.", code="tenant_not_found")
    runtime = get_runtime(request)
    # The common case needs no database at all: skip opening a session on a cache hit.
    tenant = service.cached_tenant(key)
    if tenant is None:
        async with runtime.db.session() as session:
            tenant = await service.resolve(session, key)
    if tenant is None:
        raise NotFound("Unknown organization.", code="tenant_not_found")
    request.state.tenant = tenant
    return tenant


CurrentTenant = Annotated[Tenant, Depends(get_tenant)]


async def get_tenant_session(
    request: Request, tenant: CurrentTenant
) -> AsyncIterator[AsyncSession]:
    """The request's one transaction, bound to its tenant: commit on success, else roll back."""
    db = get_runtime(request).db
    async with db.sessionmaker() as session:
        await session.begin()
        await db.bind_tenant(session, tenant.id)
        try:
            yield session
        except AppError as exc:
            if exc.keep_changes:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


TenantSession = Annotated[AsyncSession, Depends(get_tenant_session, scope="function")]
