"""The hub of one process: live connections, their rooms, event fan-out and ephemeral signals.

A connection (WebSocket or SSE) belongs to one user of one organization. Rooms are keyed by
organization *and* name, so no message of one organization can reach a room of another.

Signals (`viewing`, `typing`, `replying`) are held per ticket room and connection, each with a
TTL: a client refreshes one by sending it again, and it lapses on its own otherwise. Every change
of the set of users holding a signal is sent to the staff in the room (`presence`, `typing`,
`replying`); when two or more agents are replying at once they also get `collision`. Signals of
other processes arrive through the control bus (`apply_remote`) with their TTL, and expire here
the same way, so a process that dies leaves no ghost.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge

from servicedesk.live.policy import LiveEvent, may_receive
from servicedesk.live.protocol import SIGNAL_MESSAGE, SIGNALS, Room, dumps
from servicedesk.tickets.auth import WORKERS, Viewer

log = logging.getLogger("servicedesk.live")

CONNECTIONS = Gauge("servicedesk_live_connections", "Open live connections", ["kind"])
MESSAGES = Counter("servicedesk_live_messages_total", "Messages queued to clients", ["type"])
DROPPED = Counter(
    "servicedesk_live_slow_clients_total", "Connections closed for not reading their messages"
)

SLOW_CLIENT = 1013
"""Close code for a client that does not read its messages ("try again later")."""
SESSION_ENDED = 4401

Holder = tuple[str, int]
"""(node id, connection id): who holds a signal, across processes."""
RoomKey = tuple[uuid.UUID, Room]


@dataclass
class SignalEntry:
    user_id: str
    name: str
    role: str
    expires: float
    published: float = 0.0


@dataclass(eq=False)
class Connection:
    """One client. Messages wait in a bounded buffer until the connection's writer sends them."""

    id: int
    kind: str
    organization_id: uuid.UUID
    viewer: Viewer
    name: str
    expires_at: float | None
    max_queue: int
    rooms: set[Room] = field(default_factory=set)
    close_code: int | None = None
    close_reason: str = ""
    _buffer: deque[tuple[str, int | None]] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _held: list[tuple[str | None, str, int | None]] | None = None
    _expiry: asyncio.TimerHandle | None = None

    @property
    def user_id(self) -> uuid.UUID:
        return self.viewer.user.id

    @property
    def is_staff(self) -> bool:
        return self.viewer.is_staff

    def push(self, text: str, *, event_id: str | None = None, seq: int | None = None) -> None:
        """Queue a message (`seq` for events: SSE sends it as the event id)."""
        if self.close_code is not None:
            return
        if self._held is not None:
            self._held.append((event_id, text, seq))
            return
        if len(self._buffer) >= self.max_queue:
            DROPPED.inc()
            self.close(SLOW_CLIENT, "too many unread messages")
            return
        self._buffer.append((text, seq))
        self._wake.set()

    def hold(self) -> None:
        """Keep live messages aside while a replay is sent first (see `release`)."""
        self._held = []

    def release(self, replayed: Iterable[tuple[str, int | None]], skip: set[str]) -> None:
        """Queue the replayed messages, then the held ones that were not replayed."""
        held, self._held = self._held or [], None
        for text, seq in replayed:
            self.push(text, seq=seq)
        for event_id, text, seq in held:
            if event_id is None or event_id not in skip:
                self.push(text, event_id=event_id, seq=seq)

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self._wake.set()

    async def next_batch(self, wait: float | None = None) -> list[tuple[str, int | None]]:
        """The queued messages; [] after `wait` seconds, or once the connection is closing."""
        while not self._buffer and self.close_code is None:
            self._wake.clear()
            if wait is None:
                await self._wake.wait()
            else:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    return []
        batch = list(self._buffer)
        self._buffer.clear()
        return batch


class Hub:
    """Connections, rooms and signals of this process."""

    def __init__(
        self,
        *,
        node_id: str,
        ttls: dict[str, float],
        max_queue: int,
        publish: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.node_id = node_id
        self.ttls = ttls
        self.max_queue = max_queue
        self.publish = publish or (lambda message: None)
        self._ids = itertools.count(1)
        self._connections: dict[int, Connection] = {}
        self._rooms: dict[RoomKey, set[Connection]] = {}
        self._per_org: dict[uuid.UUID, int] = {}
        self._by_user: dict[uuid.UUID, set[Connection]] = {}
        self._signals: dict[RoomKey, dict[str, dict[Holder, SignalEntry]]] = {}

    # Connections ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._connections)

    def connect(
        self,
        *,
        kind: str,
        organization_id: uuid.UUID,
        viewer: Viewer,
        rooms: Iterable[Room],
        expires_at: float | None = None,
    ) -> Connection:
        conn = Connection(
            id=next(self._ids),
            kind=kind,
            organization_id=organization_id,
            viewer=viewer,
            name=viewer.user.full_name,
            expires_at=expires_at,
            max_queue=self.max_queue,
        )
        self._connections[conn.id] = conn
        self._per_org[organization_id] = self._per_org.get(organization_id, 0) + 1
        self._by_user.setdefault(viewer.user.id, set()).add(conn)
        for room in rooms:
            self.join(conn, room)
        self.set_expiry(conn, expires_at)
        CONNECTIONS.labels(kind).inc()
        return conn

    def set_expiry(self, conn: Connection, expires_at: float | None) -> None:
        """Close the connection (4401) when its access token expires (wall-clock seconds)."""
        if conn._expiry is not None:
            conn._expiry.cancel()
            conn._expiry = None
        conn.expires_at = expires_at
        if expires_at is not None:
            delay = max(0.0, expires_at - time.time())
            conn._expiry = asyncio.get_running_loop().call_later(
                delay, conn.close, SESSION_ENDED, "the access token expired"
            )

    def disconnect(self, conn: Connection) -> None:
        if self._connections.pop(conn.id, None) is None:
            return
        if conn._expiry is not None:
            conn._expiry.cancel()
        for room in list(conn.rooms):
            self.leave(conn, room)
        left = self._per_org.get(conn.organization_id, 1) - 1
        if left:
            self._per_org[conn.organization_id] = left
        else:
            self._per_org.pop(conn.organization_id, None)
        users = self._by_user.get(conn.user_id)
        if users is not None:
            users.discard(conn)
            if not users:
                del self._by_user[conn.user_id]
        conn.close(1000, "closed")
        CONNECTIONS.labels(conn.kind).dec()

    def has_organization(self, organization_id: uuid.UUID) -> bool:
        return organization_id in self._per_org

    def close_user(self, organization_id: uuid.UUID, user_id: uuid.UUID, reason: str) -> int:
        """Close every connection of a user (their session or role changed)."""
        conns = [c for c in self._by_user.get(user_id, ()) if c.organization_id == organization_id]
        for conn in conns:
            conn.close(SESSION_ENDED, reason)
        return len(conns)

    def close_all(self, code: int, reason: str) -> None:
        for conn in list(self._connections.values()):
            conn.close(code, reason)

    # Rooms ---------------------------------------------------------------------------------

    def join(self, conn: Connection, room: Room) -> None:
        if room in conn.rooms:
            return
        key = (conn.organization_id, room)
        members = self._rooms.setdefault(key, set())
        first_here = not members
        members.add(conn)
        conn.rooms.add(room)
        if room.kind != "ticket":
            return
        if first_here:
            # Other processes hold the signals of this room: ask them to repeat theirs.
            self.publish({"op": "sync", "org": str(conn.organization_id), "room": str(room)})
        if conn.is_staff:
            for kind in SIGNALS:
                self._send_state(key, kind, only=conn)

    def leave(self, conn: Connection, room: Room) -> None:
        if room not in conn.rooms:
            return
        conn.rooms.discard(room)
        key = (conn.organization_id, room)
        members = self._rooms.get(key)
        if members is not None:
            members.discard(conn)
        if room.kind == "ticket":
            for kind in SIGNALS:
                self.signal(conn, room, kind, active=False)
        if members is not None and not members:
            del self._rooms[key]
            self._signals.pop(key, None)

    def members(self, organization_id: uuid.UUID, room: Room) -> set[Connection]:
        return self._rooms.get((organization_id, room), set())

    # Events --------------------------------------------------------------------------------

    def deliver(self, event: LiveEvent) -> int:
        """Queue the event to every connection in its rooms that may see it; return how many."""
        targets: set[Connection] = set()
        for room in event.rooms():
            targets |= self._rooms.get((event.organization_id, room), set())
        sent = 0
        for conn in targets:
            if may_receive(conn.viewer, conn.organization_id, event):
                conn.push(event.message, event_id=event.event_id, seq=event.seq)
                sent += 1
        if sent:
            MESSAGES.labels("event").inc(sent)
        return sent

    # Signals -------------------------------------------------------------------------------

    def signal(self, conn: Connection, room: Room, kind: str, *, active: bool) -> None:
        """A local connection starts, refreshes or stops a signal in a ticket room it is in."""
        key = (conn.organization_id, room)
        holder = (self.node_id, conn.id)
        ttl = self.ttls[kind]
        now = time.monotonic()
        user = conn.viewer.user
        entry = SignalEntry(str(user.id), conn.name, str(user.role), now + ttl) if active else None
        existing = self._signals.get(key, {}).get(kind, {}).get(holder)
        if entry is None and existing is None:
            return
        if entry is not None and existing is not None and now - existing.published < ttl / 3:
            existing.expires = entry.expires  # a refresh: others still hold it long enough
            return
        if entry is not None:
            entry.published = now
        self._put(key, kind, holder, entry)
        self.publish(
            {
                "op": "signal",
                "org": str(conn.organization_id),
                "room": str(room),
                "kind": kind,
                "conn": conn.id,
                "user": {"id": str(user.id), "name": conn.name, "role": str(user.role)},
                "ttl": ttl,
                "active": active,
            }
        )

    def apply_remote(self, message: dict[str, Any]) -> None:
        """A signal or sync request from another process (already checked there)."""
        node = str(message.get("node", ""))
        if node == self.node_id:
            return
        try:
            org = uuid.UUID(str(message["org"]))
            room = Room.parse(str(message["room"]))
        except (KeyError, ValueError):
            return
        if room is None or room.kind != "ticket":
            return
        key = (org, room)
        if key not in self._rooms:
            return  # nobody here is in the room; a later join asks for a sync
        if message.get("op") == "sync":
            self._republish(key)
            return
        kind = str(message.get("kind"))
        if kind not in SIGNALS:
            return
        holder = (node, int(message.get("conn", 0)))
        entry = None
        if message.get("active"):
            user = message.get("user") or {}
            ttl = min(float(message.get("ttl", self.ttls[kind])), 300.0)
            entry = SignalEntry(
                str(user.get("id")),
                str(user.get("name", "")),
                str(user.get("role", "")),
                time.monotonic() + ttl,
            )
        self._put(key, kind, holder, entry)

    def forget_node(self, node: str) -> None:
        """Drop every signal of a process that said it is stopping."""
        for key, kinds in list(self._signals.items()):
            for kind, holders in kinds.items():
                gone = [h for h in holders if h[0] == node]
                if gone:
                    before = self._users(holders)
                    for h in gone:
                        del holders[h]
                    if self._users(holders) != before:
                        self._send_state(key, kind)

    def _republish(self, key: RoomKey) -> None:
        now = time.monotonic()
        org, room = key
        for kind, holders in self._signals.get(key, {}).items():
            for (node, conn_id), entry in holders.items():
                if node != self.node_id or entry.expires <= now:
                    continue
                entry.published = now
                self.publish(
                    {
                        "op": "signal",
                        "org": str(org),
                        "room": str(room),
                        "kind": kind,
                        "conn": conn_id,
                        "user": {"id": entry.user_id, "name": entry.name, "role": entry.role},
                        "ttl": entry.expires - now,
                        "active": True,
                    }
                )

    def _put(self, key: RoomKey, kind: str, holder: Holder, entry: SignalEntry | None) -> None:
        holders = self._signals.setdefault(key, {}).setdefault(kind, {})
        before = self._users(holders)
        if entry is None:
            holders.pop(holder, None)
        else:
            holders[holder] = entry
        if self._users(holders) != before:
            self._send_state(key, kind)

    def sweep(self) -> None:
        """Drop lapsed signals and tell the rooms whose holders changed."""
        now = time.monotonic()
        for key, kinds in list(self._signals.items()):
            for kind, holders in kinds.items():
                lapsed = [h for h, e in holders.items() if e.expires <= now]
                if not lapsed:
                    continue
                before = self._users(holders)
                for h in lapsed:
                    del holders[h]
                if self._users(holders) != before:
                    self._send_state(key, kind)

    @staticmethod
    def _users(holders: dict[Holder, SignalEntry]) -> frozenset[str]:
        return frozenset(e.user_id for e in holders.values())

    def _send_state(self, key: RoomKey, kind: str, *, only: Connection | None = None) -> None:
        holders = self._signals.get(key, {}).get(kind, {})
        users: dict[str, dict[str, str]] = {}
        for entry in holders.values():
            users[entry.user_id] = {"id": entry.user_id, "name": entry.name, "role": entry.role}
        listing = sorted(users.values(), key=lambda u: (u["name"], u["id"]))
        room = str(key[1])
        messages = [dumps({"type": SIGNAL_MESSAGE[kind], "room": room, "users": listing})]
        workers = [u for u in listing if u["role"] in WORKERS]
        if kind == "replying" and len(workers) >= 2 and only is None:
            messages.append(dumps({"type": "collision", "room": room, "users": workers}))
        targets = [only] if only is not None else self._rooms.get(key, set())
        for conn in targets:
            if conn.is_staff:
                for text in messages:
                    conn.push(text)
                MESSAGES.labels(SIGNAL_MESSAGE[kind]).inc()
