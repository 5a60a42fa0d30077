"""HTTP routes: a user's notifications, preferences and push subscriptions; the email log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi import status as http

from servicedesk.accounts.auth import AdminUser, CurrentUser
from servicedesk.core.pagination import Page, decode_cursor, encode_cursor
from servicedesk.core.runtime import get_runtime
from servicedesk.notifications import service
from servicedesk.notifications.schemas import (
    EmailRead,
    EmailStatusName,
    NotificationRead,
    PreferencesRead,
    PreferencesUpdate,
    PushSubscriptionCreate,
    PushSubscriptionRead,
    PushSubscriptionsRead,
    ReadAllResult,
    UnreadCount,
)
from servicedesk.tenancy.deps import TenantSession

router = APIRouter(prefix="/api/v1", tags=["notifications"])

Cursor = Annotated[str | None, Query(max_length=500)]
Limit = Annotated[int, Query(ge=1, le=200)]


@router.get(
    "/notifications",
    response_model=Page[NotificationRead],
    summary="My notifications, newest first",
)
async def list_notifications(
    user: CurrentUser,
    session: TenantSession,
    unread: bool = False,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[NotificationRead]:
    before = decode_cursor(cursor, datetime, uuid.UUID) if cursor else None
    rows = await service.list_notifications(
        session, user, unread_only=unread, before=before, limit=limit + 1
    )
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(rows[limit - 1].updated_at, rows[limit - 1].id)
    return Page(
        items=[NotificationRead.model_validate(r) for r in rows[:limit]], next_cursor=next_cursor
    )


@router.get(
    "/notifications/unread-count", response_model=UnreadCount, summary="How many are unread"
)
async def unread_count(user: CurrentUser, session: TenantSession) -> UnreadCount:
    return UnreadCount(count=await service.count_unread(session, user))


@router.post("/notifications/read-all", response_model=ReadAllResult, summary="Mark all as read")
async def read_all(user: CurrentUser, session: TenantSession) -> ReadAllResult:
    return ReadAllResult(updated=await service.mark_all_read(session, user))


@router.get(
    "/notifications/preferences", response_model=PreferencesRead, summary="My notification settings"
)
async def get_preferences(user: CurrentUser, session: TenantSession) -> PreferencesRead:
    return await service.get_preferences(session, user)


@router.put(
    "/notifications/preferences",
    response_model=PreferencesRead,
    summary="Change my notification settings (per type and channel; quiet hours)",
)
async def put_preferences(
    data: PreferencesUpdate, user: CurrentUser, session: TenantSession
) -> PreferencesRead:
    return await service.do_update_preferences(session, user, data)


@router.get(
    "/notifications/push-subscriptions",
    response_model=PushSubscriptionsRead,
    summary="My web push subscriptions and the key to subscribe with",
)
async def list_push_subscriptions(
    request: Request, user: CurrentUser, session: TenantSession
) -> PushSubscriptionsRead:
    return await service.list_push_subscriptions(session, get_runtime(request).settings, user)


@router.post(
    "/notifications/push-subscriptions",
    status_code=http.HTTP_201_CREATED,
    response_model=PushSubscriptionRead,
    summary="Register this browser for web push",
)
async def add_push_subscription(
    data: PushSubscriptionCreate, request: Request, user: CurrentUser, session: TenantSession
) -> PushSubscriptionRead:
    row = await service.do_add_push_subscription(
        session,
        get_runtime(request).settings,
        user,
        data,
        user_agent=request.headers.get("user-agent"),
    )
    return PushSubscriptionRead.model_validate(row)


@router.delete(
    "/notifications/push-subscriptions",
    status_code=http.HTTP_204_NO_CONTENT,
    summary="Unregister a browser from web push",
)
async def remove_push_subscription(
    user: CurrentUser,
    session: TenantSession,
    endpoint: Annotated[str, Query(min_length=12, max_length=2048)],
) -> Response:
    await service.do_remove_push_subscription(session, user, endpoint)
    return Response(status_code=http.HTTP_204_NO_CONTENT)


@router.post(
    "/notifications/{notification_id}/read",
    response_model=NotificationRead,
    summary="Mark one as read",
)
async def read_one(
    notification_id: uuid.UUID, user: CurrentUser, session: TenantSession
) -> NotificationRead:
    return NotificationRead.model_validate(await service.mark_read(session, user, notification_id))


@router.get("/emails", response_model=Page[EmailRead], summary="The email log, newest first")
async def list_emails(
    admin: AdminUser,
    session: TenantSession,
    status: EmailStatusName | None = None,
    ticket_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[EmailRead]:
    before = decode_cursor(cursor, datetime, uuid.UUID) if cursor else None
    rows = await service.list_emails(
        session,
        status=status,
        ticket_id=ticket_id,
        user_id=user_id,
        before=before,
        limit=limit + 1,
    )
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id)
    return Page(items=[EmailRead.model_validate(r) for r in rows[:limit]], next_cursor=next_cursor)
