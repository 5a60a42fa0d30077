"""HTTP routes of organizations: the current one (admins) and creation (platform operator)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from servicedesk.accounts.auth import AdminUser, CurrentUser
from servicedesk.core.actor import Actor
from servicedesk.core.errors import NotFound, Unauthorized
from servicedesk.core.runtime import get_runtime
from servicedesk.core.security import constant_time_equals
from servicedesk.tenancy import service
from servicedesk.tenancy.deps import CurrentTenant, TenantSession
from servicedesk.tenancy.schemas import OrganizationCreate, OrganizationRead, OrganizationUpdate

router = APIRouter(prefix="/api/v1/organization", tags=["organization"])
platform_router = APIRouter(prefix="/api/v1/platform", tags=["platform"])


@router.get("", response_model=OrganizationRead, summary="The current organization")
async def get_current_organization(
    user: CurrentUser, tenant: CurrentTenant, session: TenantSession
) -> OrganizationRead:
    return OrganizationRead.model_validate(await service.get_organization(session, tenant.id))


@router.patch("", response_model=OrganizationRead, summary="Update the organization's settings")
async def update_current_organization(
    data: OrganizationUpdate, admin: AdminUser, tenant: CurrentTenant, session: TenantSession
) -> OrganizationRead:
    org = await service.update_organization(session, tenant.id, data, actor=Actor.user(admin.id))
    return OrganizationRead.model_validate(org)


@platform_router.post(
    "/organizations",
    status_code=status.HTTP_201_CREATED,
    response_model=OrganizationRead,
    summary="Create an organization (platform operator token required)",
)
async def create_organization(request: Request, data: OrganizationCreate) -> OrganizationRead:
    runtime = get_runtime(request)
    expected = runtime.settings.platform_token
    if not expected:
        raise NotFound("Organization creation over HTTP is disabled on this install.")
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not constant_time_equals(token.strip(), expected):
        raise Unauthorized("A valid platform token is required.", code="invalid_platform_token")
    async with runtime.db.session() as session:
        org = await service.create_organization(session, data, actor=Actor("system"))
    return OrganizationRead.model_validate(org)
