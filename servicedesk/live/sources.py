"""Where live events and signals come from: commits of this process, PostgreSQL, Redis.

- `CommitCapture` sees the outbox rows of every transaction this process commits (SQLAlchemy
  session events), right after COMMIT returned: the fast path, with no database round trip.
- `PgListener` LISTENs on `servicedesk_outbox` (the NOTIFY sent when an outbox row commits,
  payload `<organization_id>:<seq>`) and on `servicedesk_live`, the control channel used for
  signals and cache invalidations when Redis is not configured. It reconnects on its own and
  reports each (re)connection, so the service can catch up with what it missed.
- `RedisBus` publishes and subscribes the two Redis channels `<prefix>:live:events` (event
  envelopes of commits made here) and `<prefix>:live:control` (signals, invalidations).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, UOWTransaction

from servicedesk.models import OutboxEvent

log = logging.getLogger("servicedesk.live")

OUTBOX_CHANNEL = "servicedesk_outbox"
CONTROL_CHANNEL = "servicedesk_live"
NOTIFY_MAX_BYTES = 7900
"""PostgreSQL refuses NOTIFY payloads of 8000 bytes or more."""

_PENDING = "servicedesk_live_outbox"


class CommitCapture:
    """Calls `on_commit(rows)` with the outbox rows of each committed transaction of `engine`.

    The rows are collected at flush time and handed over after COMMIT succeeded; a rolled back
    transaction (or savepoint) hands over nothing. `on_commit` runs synchronously inside the
    committing code, so it must only queue work; its errors are logged, never raised.
    """

    def __init__(self, engine: Engine, on_commit: Callable[[list[OutboxEvent]], None]) -> None:
        self.engine = engine
        self.on_commit = on_commit
        self._installed = False

    def install(self) -> None:
        if not self._installed:
            event.listen(Session, "after_flush", self._after_flush)
            event.listen(Session, "after_commit", self._after_commit)
            event.listen(Session, "after_rollback", self._after_rollback)
            self._installed = True

    def remove(self) -> None:
        if self._installed:
            event.remove(Session, "after_flush", self._after_flush)
            event.remove(Session, "after_commit", self._after_commit)
            event.remove(Session, "after_rollback", self._after_rollback)
            self._installed = False

    def _mine(self, session: Session) -> bool:
        return session.bind is self.engine

    def _after_flush(self, session: Session, flush_context: UOWTransaction) -> None:
        if not self._mine(session):
            return
        rows = [o for o in session.new if isinstance(o, OutboxEvent)]
        if rows:
            session.info.setdefault(_PENDING, []).extend(rows)

    def _after_commit(self, session: Session) -> None:
        rows: list[OutboxEvent] = session.info.pop(_PENDING, [])
        if not rows:
            return
        try:
            # A row flushed inside a savepoint that was rolled back is no longer persistent.
            committed = [
                r for r in rows if inspect(r).persistent and "seq" not in inspect(r).unloaded
            ]
            if committed:
                self.on_commit(committed)
        except Exception:  # the commit happened; never turn it into an error
            log.exception("live: handing over committed events failed")

    def _after_rollback(self, session: Session) -> None:
        if session.info.get(_PENDING) and not session.in_transaction():
            session.info.pop(_PENDING, None)


class PgListener:
    """A dedicated asyncpg connection that LISTENs, with reconnects and a liveness probe."""

    def __init__(
        self,
        dsn: str,
        *,
        on_outbox: Callable[[str], None],
        on_control: Callable[[str], None],
        on_connected: Callable[[bool], Awaitable[None]],
        probe_seconds: float = 30.0,
    ) -> None:
        self.dsn = dsn
        self.on_outbox = on_outbox
        self.on_control = on_control
        self.on_connected = on_connected
        self.probe_seconds = probe_seconds
        self.ready = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._connected_before = False

    def _outbox(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self.on_outbox(payload)

    def _control(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self.on_control(payload)

    async def run(self) -> None:
        backoff = 0.2
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self.dsn, server_settings={"application_name": "servicedesk-live"}
                )
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(OUTBOX_CHANNEL, self._outbox)
                await conn.add_listener(CONTROL_CHANNEL, self._control)
                self._conn = conn
                reconnected, self._connected_before = self._connected_before, True
                await self.on_connected(reconnected)
                self.ready.set()
                backoff = 0.2
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self.probe_seconds)
                    if not lost.is_set():
                        async with self._lock:
                            await asyncio.wait_for(conn.fetchval("SELECT 1"), 10)
                log.warning("live: LISTEN connection lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live: LISTEN connection failed: %s", exc)
            finally:
                self.ready.clear()
                self._conn = None
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def notify(self, payload: str) -> bool:
        """NOTIFY the control channel; False when not connected or the payload is too large."""
        conn = self._conn
        if conn is None or len(payload.encode()) > NOTIFY_MAX_BYTES:
            return False
        try:
            async with self._lock:
                await conn.execute("SELECT pg_notify($1, $2)", CONTROL_CHANNEL, payload)
        except Exception as exc:
            log.warning("live: NOTIFY failed: %s", exc)
            return False
        return True


class RedisBus:
    """The Redis side: a subscriber task for both channels, and publishing."""

    def __init__(
        self,
        client: Any,
        prefix: str,
        *,
        on_event: Callable[[bytes], None],
        on_control: Callable[[bytes], None],
    ) -> None:
        self.client = client
        self.events_channel = f"{prefix}:live:events"
        self.control_channel = f"{prefix}:live:control"
        self.on_event = on_event
        self.on_control = on_control
        self.ready = asyncio.Event()
        self.stopping = False

    async def run(self) -> None:
        backoff = 0.2
        while not self.stopping:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.events_channel, self.control_channel)
                self.ready.set()
                backoff = 0.2
                events = self.events_channel.encode()
                while not self.stopping:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is None or message.get("type") != "message":
                        continue
                    channel = message["channel"]
                    data = message["data"]
                    if channel == events:
                        self.on_event(data)
                    else:
                        self.on_control(data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live: Redis subscription failed: %s", exc)
            finally:
                self.ready.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 2)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def publish_event(self, data: bytes) -> None:
        await self.client.publish(self.events_channel, data)

    async def publish_control(self, data: bytes) -> None:
        await self.client.publish(self.control_channel, data)


def loop_thread_guard(loop: asyncio.AbstractEventLoop) -> Callable[[Callable[[], None]], None]:
    """Run a callback now when on the loop's thread, else hand it to the loop thread-safely."""
    owner = threading.get_ident()

    def run(callback: Callable[[], None]) -> None:
        if threading.get_ident() == owner:
            callback()
        else:
            loop.call_soon_threadsafe(callback)

    return run
