"""Live endpoints: the WebSocket `/api/v1/ws` and the SSE fallback `/api/v1/events/stream`.

Both authenticate like the HTTP API (`accounts.auth.user_from_access_token`, the same checks:
signature, expiry, organization, active approved user, session version) and resolve the tenant
like it (`tenancy.deps.get_tenant`). A WebSocket cannot carry headers from a browser, so it
also takes `?token=` and `?tenant=`; with the `sd_access` cookie instead, its `Origin` must be
this site (a cross-site page could otherwise open a socket with the user's cookie).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Header, Query, Request, WebSocket
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.websockets import WebSocketDisconnect

from servicedesk.accounts.auth import ACCESS_COOKIE, CurrentUser, user_from_access_token
from servicedesk.core.errors import AppError, Forbidden, NotFound, Unauthorized, Unprocessable
from servicedesk.core.runtime import get_runtime
from servicedesk.live import protocol
from servicedesk.live.hub import SESSION_ENDED, SLOW_CLIENT, Connection
from servicedesk.live.policy import default_rooms, may_join
from servicedesk.live.protocol import Auth, Join, Leave, Ping, ProtocolError, Room, Signal
from servicedesk.live.service import LiveService, get_live
from servicedesk.models import User
from servicedesk.tenancy.deps import CurrentTenant, TenantSession, get_tenant
from servicedesk.tenancy.service import Tenant
from servicedesk.tickets import service as tickets
from servicedesk.tickets.auth import Viewer

log = logging.getLogger("servicedesk.live")
router = APIRouter(tags=["live"])

UNAUTHENTICATED = 4401
FORBIDDEN = 4403
UNKNOWN_TENANT = 4404
TOO_MANY_MESSAGES = 4429
UNAVAILABLE = 1013
INTERNAL_ERROR = 1011

MAX_ROOMS = 50
"""Rooms one connection may be in (its own and the organization's included)."""
BURST, PER_SECOND = 40, 10.0
"""Client messages: a burst of 40, then 10 per second; beyond that they are refused."""
MAX_REFUSED = 100
"""Refused messages after which the connection is closed (4429)."""


class Unavailable(AppError):
    status, code, title = 503, "live_unavailable", "Service Unavailable"


class RoomRefused(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


async def authorize_room(
    session: AsyncSession, viewer: Viewer, organization_id: uuid.UUID, name: str
) -> Room:
    """The room, if `viewer` may be in it: `org` for staff, `user` their own, `ticket` one
    they may see (`tickets.service.access_ticket`: missing and not visible are alike)."""
    room = Room.parse(name)
    if room is None:
        raise RoomRefused("invalid_room", "Rooms are org:<id>, user:<id> or ticket:<id>.")
    allowed = may_join(viewer, organization_id, room)
    if allowed is None:
        try:
            await tickets.access_ticket(session, viewer, room.id)
        except NotFound as exc:
            raise RoomRefused("not_found", "Ticket not found.") from exc
        return room
    if not allowed:
        raise RoomRefused("forbidden", "You may not join this room.")
    return room


# WebSocket ----------------------------------------------------------------------------------


@dataclass
class _Auth:
    tenant: Tenant
    user: User
    expires_at: float


def _same_origin(ws: WebSocket) -> bool:
    origin = ws.headers.get("origin")
    if not origin:
        return False
    netloc = urlsplit(origin).netloc.lower()
    allowed = {(ws.headers.get("host") or "").lower()}
    public = urlsplit(get_runtime(ws).settings.public_url).netloc.lower()
    if public:
        allowed.add(public)
    return netloc in allowed


def _token(ws: WebSocket) -> tuple[str | None, bool]:
    """The access token and whether it came from the cookie."""
    token = ws.query_params.get("token")
    if token:
        return token, False
    scheme, _, value = ws.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    cookie = ws.cookies.get(ACCESS_COOKIE)
    return (cookie, True) if cookie else (None, False)


async def _authenticate(ws: WebSocket, slug: str | None) -> _Auth | int:
    """The tenant and user of a socket, or the close code that refuses it."""
    runtime = get_runtime(ws)
    named = slug or ws.query_params.get("tenant")
    if named:
        ws.state.tenant_path_slug = named
    try:
        tenant = await get_tenant(ws)
    except NotFound:
        return UNKNOWN_TENANT
    token, from_cookie = _token(ws)
    if not token:
        return UNAUTHENTICATED
    if from_cookie and not _same_origin(ws):
        return FORBIDDEN
    try:
        async with runtime.db.tenant_session(tenant.id) as session:
            user = await user_from_access_token(
                runtime, session, organization_id=tenant.id, token=token
            )
    except Unauthorized:
        return UNAUTHENTICATED
    expires = runtime.signer.verify(token, token_type="access").expires_at.timestamp()
    return _Auth(tenant, user, expires)


class _Budget:
    """A token bucket for one connection's messages."""

    def __init__(self) -> None:
        self.tokens = float(BURST)
        self.at = time.monotonic()
        self.refused = 0

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(BURST, self.tokens + (now - self.at) * PER_SECOND)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.refused += 1
        return False


async def _writer(ws: WebSocket, conn: Connection) -> None:
    try:
        while True:
            batch = await conn.next_batch()
            if not batch:
                break
            for text, _seq in batch:
                await ws.send_text(text)
        await ws.close(code=conn.close_code or 1000, reason=conn.close_reason[:120])
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client is gone


async def _handle(
    live: LiveService, ws: WebSocket, conn: Connection, auth: _Auth, text: str
) -> None:
    try:
        message = protocol.parse_client_message(text)
    except ProtocolError as exc:
        conn.push(protocol.error_message(exc.code, exc.detail))
        return
    hub = live.hub
    if isinstance(message, Join):
        if len(conn.rooms) >= MAX_ROOMS:
            conn.push(
                protocol.error_message("too_many_rooms", "Leave a room first.", room=message.room)
            )
            return
        try:
            async with live.runtime.db.tenant_session(conn.organization_id) as session:
                room = await authorize_room(
                    session, conn.viewer, conn.organization_id, message.room
                )
        except RoomRefused as exc:
            conn.push(protocol.error_message(exc.code, exc.detail, room=message.room))
            return
        hub.join(conn, room)
        conn.push(protocol.dumps({"type": "joined", "room": str(room)}))
        if room.kind == "ticket":
            hub.signal(conn, room, "viewing", active=True)
    elif isinstance(message, Leave):
        leaving = Room.parse(message.room)
        if leaving is not None:
            hub.leave(conn, leaving)
        conn.push(protocol.dumps({"type": "left", "room": message.room}))
    elif isinstance(message, Signal):
        target = Room.parse(message.room)
        if target is None or target.kind != "ticket" or target not in conn.rooms:
            conn.push(
                protocol.error_message(
                    "not_joined", "Join the ticket room first.", room=message.room
                )
            )
            return
        hub.signal(conn, target, message.type, active=message.active)
    elif isinstance(message, Ping):
        conn.push(protocol.dumps({"type": "pong", "id": message.id}))
    elif isinstance(message, Auth):
        await _reauthenticate(live, conn, auth, message.token)


async def _reauthenticate(live: LiveService, conn: Connection, auth: _Auth, token: str) -> None:
    """A fresh access token extends the connection; another user's, or a changed role, ends it."""
    runtime = live.runtime
    try:
        async with runtime.db.tenant_session(conn.organization_id) as session:
            user = await user_from_access_token(
                runtime, session, organization_id=conn.organization_id, token=token
            )
    except Unauthorized:
        conn.close(SESSION_ENDED, "invalid access token")
        return
    if user.id != conn.user_id or user.role != conn.viewer.user.role:
        conn.close(SESSION_ENDED, "another user or role: reconnect")
        return
    conn.viewer = Viewer.of(user, auth.tenant)
    expires = runtime.signer.verify(token, token_type="access").expires_at.timestamp()
    live.hub.set_expiry(conn, expires)
    conn.push(protocol.dumps({"type": "authenticated", "expires_at": int(expires)}))


def _hello(live: LiveService, conn: Connection) -> str:
    user = conn.viewer.user
    return protocol.dumps(
        {
            "type": "hello",
            "connection_id": f"{live.node_id}:{conn.id}",
            "user": {"id": str(user.id), "name": conn.name, "role": str(user.role)},
            "organization_id": str(conn.organization_id),
            "rooms": sorted(str(r) for r in conn.rooms),
            "ttl": dict(live.hub.ttls),
            "expires_at": int(conn.expires_at) if conn.expires_at else None,
            "last_seq": live.max_seq,
        }
    )


def _after_seq(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


async def live_socket(ws: WebSocket, slug: str | None = None) -> None:
    live = get_live(ws)
    try:
        auth = await _authenticate(ws, slug)
    except Exception:  # e.g. the database is away: a close code, not a dropped handshake
        log.exception("live: authenticating a socket failed")
        auth = INTERNAL_ERROR
    await ws.accept()
    if live is None or len(live.hub) >= live.settings.live_max_connections:
        await ws.close(code=UNAVAILABLE, reason="live updates unavailable")
        return
    if isinstance(auth, int):
        await ws.close(code=auth)
        return
    viewer = Viewer.of(auth.user, auth.tenant)
    conn = live.hub.connect(
        kind="ws",
        organization_id=auth.tenant.id,
        viewer=viewer,
        rooms=default_rooms(viewer, auth.tenant.id),
        expires_at=auth.expires_at,
    )
    writer = asyncio.get_running_loop().create_task(_writer(ws, conn))
    try:
        conn.push(_hello(live, conn))
        since = _after_seq(ws.query_params.get("since"))
        if since is not None:
            await live.resume(conn, since)
        budget = _Budget()
        while conn.close_code is None:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            if not budget.take():
                if budget.refused >= MAX_REFUSED:
                    conn.close(TOO_MANY_MESSAGES, "too many messages")
                    break
                conn.push(protocol.error_message("rate_limited", "Too many messages."))
                continue
            text = message.get("text")
            if text is None:
                conn.push(protocol.error_message("invalid_message", "Send JSON text frames."))
                continue
            await _handle(live, ws, conn, auth, text)
    except WebSocketDisconnect:
        pass
    finally:
        conn.close(1000, "closed")
        live.hub.disconnect(conn)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer, 5)
        writer.cancel()


router.add_api_websocket_route("/api/v1/ws", live_socket, name="live_socket")
router.add_api_websocket_route("/t/{slug}/api/v1/ws", live_socket, name="live_socket_tenant")


# Server-sent events --------------------------------------------------------------------------


def _sse(text: str, seq: int | None) -> str:
    return f"id: {seq}\ndata: {text}\n\n" if seq is not None else f"data: {text}\n\n"


@router.get(
    "/api/v1/events/stream",
    summary="Live events as server-sent events (fallback for the WebSocket)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def event_stream(
    request: Request,
    user: CurrentUser,
    tenant: CurrentTenant,
    session: TenantSession,
    rooms: Annotated[
        str | None,
        Query(
            max_length=2000,
            description="Comma-separated rooms (org:<id>, user:<id>, ticket:<id>); "
            "default: your own, and the organization's for staff.",
        ),
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[
        int | None, Query(ge=0, description="Resume after this event seq (as Last-Event-ID).")
    ] = None,
) -> StreamingResponse:
    live = get_live(request)
    if live is None:
        raise Unavailable("Live updates are not running.")
    if len(live.hub) >= live.settings.live_max_connections:
        raise Unavailable("This server holds as many live connections as it may.")
    viewer = Viewer.of(user, tenant)
    chosen = default_rooms(viewer, tenant.id)
    if rooms:
        names = [n.strip() for n in rooms.split(",") if n.strip()]
        if len(names) > MAX_ROOMS:
            raise Unprocessable(f"At most {MAX_ROOMS} rooms.", code="too_many_rooms")
        chosen = []
        for name in names:
            try:
                chosen.append(await authorize_room(session, viewer, tenant.id, name))
            except RoomRefused as exc:
                if exc.code == "not_found":
                    raise NotFound(exc.detail) from exc
                if exc.code == "forbidden":
                    raise Forbidden(exc.detail, code="room_forbidden") from exc
                raise Unprocessable(exc.detail, code=exc.code) from exc
    since = _after_seq(last_event_id) if last_event_id is not None else after
    settings = live.settings

    async def stream() -> AsyncIterator[str]:
        conn = live.hub.connect(
            kind="sse", organization_id=tenant.id, viewer=viewer, rooms=chosen, expires_at=None
        )
        try:
            yield "retry: 3000\n\n"
            conn.push(_hello(live, conn))
            if since is not None:
                await live.resume(conn, since)
            deadline = time.monotonic() + settings.live_sse_max_seconds
            while conn.close_code is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                batch = await conn.next_batch(min(settings.live_sse_heartbeat_seconds, left))
                if batch:
                    yield "".join(_sse(text, seq) for text, seq in batch)
                elif conn.close_code is None:
                    yield ": heartbeat\n\n"
        finally:
            live.hub.disconnect(conn)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


__all__ = ["SLOW_CLIENT", "authorize_room", "router"]
