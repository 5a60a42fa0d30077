"""HTTP routes of the dead letters: failed jobs, replay, discard.

`/api/v1/jobs/…` are for an organization's admins and see that organization's jobs only (a job
of another organization is a 404). `/api/v1/platform/jobs/…` take the platform operator's token
(`SERVICEDESK_PLATFORM_TOKEN`) and see every job, periodic ones included, with tracebacks.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status

from servicedesk.accounts.auth import AdminUser
from servicedesk.core.actor import Actor
from servicedesk.core.errors import NotFound, Unauthorized
from servicedesk.core.pagination import Page, decode_cursor, encode_cursor
from servicedesk.core.runtime import get_runtime
from servicedesk.core.security import constant_time_equals
from servicedesk.jobs import service
from servicedesk.jobs.schemas import JobRead, JobStats
from servicedesk.tenancy.deps import CurrentTenant

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
platform_router = APIRouter(prefix="/api/v1/platform/jobs", tags=["platform"])

Cursor = Annotated[str | None, Query(max_length=100)]
Limit = Annotated[int, Query(ge=1, le=200)]
HandlerFilter = Annotated[str | None, Query(max_length=128, description="exact handler name")]


def _page(items: list[JobRead], limit: int) -> Page[JobRead]:
    next_cursor = encode_cursor(items[limit - 1].id) if len(items) > limit else None
    return Page(items=items[:limit], next_cursor=next_cursor)


async def _list(
    request: Request,
    organization_id: uuid.UUID | None,
    handler: str | None,
    cursor: str | None,
    limit: int,
) -> Page[JobRead]:
    before = decode_cursor(cursor, int)[0] if cursor else None
    async with get_runtime(request).db.session() as session:
        items = await service.list_failed(
            session,
            organization_id=organization_id,
            handler=handler,
            before_id=before,
            limit=limit + 1,
            with_traceback=organization_id is None,
        )
    return _page(items, limit)


@router.get("/failed", response_model=Page[JobRead], summary="Failed jobs, newest first")
async def list_failed_jobs(
    request: Request,
    admin: AdminUser,
    tenant: CurrentTenant,
    handler: HandlerFilter = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[JobRead]:
    return await _list(request, tenant.id, handler, cursor, limit)


@router.get("/{job_id}", response_model=JobRead, summary="One job of the organization")
async def get_job(
    request: Request, job_id: int, admin: AdminUser, tenant: CurrentTenant
) -> JobRead:
    async with get_runtime(request).db.session() as session:
        return await service.get_job(session, job_id, organization_id=tenant.id)


@router.post(
    "/{job_id}/replay",
    response_model=JobRead,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Run a failed job again now (one more attempt)",
)
async def replay_job(
    request: Request, job_id: int, admin: AdminUser, tenant: CurrentTenant
) -> JobRead:
    async with get_runtime(request).db.session() as session:
        return await service.replay(
            session, job_id, organization_id=tenant.id, actor=Actor.user(admin.id)
        )


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Discard a failed job")
async def discard_job(
    request: Request, job_id: int, admin: AdminUser, tenant: CurrentTenant
) -> Response:
    async with get_runtime(request).db.session() as session:
        await service.discard(
            session, job_id, organization_id=tenant.id, actor=Actor.user(admin.id)
        )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# The platform operator ----------------------------------------------------------------------


def require_platform_token(request: Request) -> None:
    expected = get_runtime(request).settings.platform_token
    if not expected:
        raise NotFound("The platform API is disabled on this install.")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not constant_time_equals(token.strip(), expected):
        raise Unauthorized("A valid platform token is required.", code="invalid_platform_token")


Platform = Annotated[None, Depends(require_platform_token)]
PLATFORM = Actor("system")


@platform_router.get(
    "/failed", response_model=Page[JobRead], summary="Failed jobs of every organization"
)
async def platform_list_failed_jobs(
    request: Request,
    _: Platform,
    handler: HandlerFilter = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[JobRead]:
    return await _list(request, None, handler, cursor, limit)


@platform_router.get("/stats", response_model=JobStats, summary="Queue depth and outbox backlog")
async def platform_job_stats(request: Request, _: Platform) -> JobStats:
    async with get_runtime(request).db.session() as session:
        return await service.stats(session)


@platform_router.get("/{job_id}", response_model=JobRead, summary="One job, any organization")
async def platform_get_job(request: Request, job_id: int, _: Platform) -> JobRead:
    async with get_runtime(request).db.session() as session:
        return await service.get_job(session, job_id, organization_id=None, with_traceback=True)


@platform_router.post(
    "/{job_id}/replay",
    response_model=JobRead,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Run a failed job again now",
)
async def platform_replay_job(request: Request, job_id: int, _: Platform) -> JobRead:
    async with get_runtime(request).db.session() as session:
        return await service.replay(session, job_id, organization_id=None, actor=PLATFORM)


@platform_router.delete(
    "/{job_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Discard a failed job"
)
async def platform_discard_job(request: Request, job_id: int, _: Platform) -> Response:
    async with get_runtime(request).db.session() as session:
        await service.discard(session, job_id, organization_id=None, actor=PLATFORM)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
