"""The live service of one process: sources → de-duplication → caches → hub.

Every committed event reaches this process by PostgreSQL NOTIFY, which every process connected
to the database receives; that path alone never loses a committed event while the LISTEN
connection is up, and after a reconnect the service reads the outbox for what it missed. Two
faster copies may arrive first: the commit of this process itself (`CommitCapture`) and, with
`REDIS_URL`, the envelope another process published on Redis right after its commit. All copies
go through one dispatcher that drops an `event_id` it has already handled, so a client gets each
event once. Signals and cache invalidations ride on the control bus: Redis pub/sub when
configured, else NOTIFY on `servicedesk_live`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import signal
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from types import FrameType
from typing import Any

import orjson
from prometheus_client import Counter, Histogram
from sqlalchemy.engine import make_url
from starlette.requests import HTTPConnection

from servicedesk.core import cache
from servicedesk.core.clock import utc_now
from servicedesk.core.events import envelope
from servicedesk.core.runtime import Runtime, get_runtime
from servicedesk.live import repository
from servicedesk.live.hub import Connection, Hub
from servicedesk.live.policy import SESSION_ENDING, LiveEvent, TicketFacts, may_receive
from servicedesk.live.protocol import dumps
from servicedesk.live.sources import CommitCapture, PgListener, RedisBus, loop_thread_guard
from servicedesk.models import OutboxEvent

log = logging.getLogger("servicedesk.live")

EVENTS = Counter("servicedesk_live_events_total", "Committed events received", ["source"])
DUPLICATES = Counter("servicedesk_live_duplicate_events_total", "Event copies dropped", ["source"])
LAG = Histogram(
    "servicedesk_live_event_lag_seconds",
    "From the event's creation to its fan-out here",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

REDIS_GRACE_SECONDS = 0.1
"""With Redis, a NOTIFY waits this long before the event is read from PostgreSQL, so that the
copy published on Redis (no database read) usually arrives first and the read is skipped."""
CATCH_UP_WINDOW = 2000
"""After a reconnect, events from `seq` (highest seen minus this) on are re-read from the outbox:
sequence numbers are taken at insert and committed out of order, so a gap can close late."""
SEEN_KEPT = 100_000
REPLAY_LIMIT = 500
REINVALIDATE_SECONDS = 1.0
"""A broadcast invalidation is repeated once after this long: invalidations made before the
change commits could otherwise be undone by a reader that refilled the cache in between."""


class FactsCodec:
    def encode(self, value: TicketFacts) -> bytes:
        return orjson.dumps([str(v) if v else None for v in _fields(value)])

    def decode(self, data: bytes) -> TicketFacts:
        requester, assignee, department = (uuid.UUID(v) if v else None for v in orjson.loads(data))
        return TicketFacts(requester, assignee, department)


def _fields(value: TicketFacts) -> tuple[uuid.UUID | None, ...]:
    return (value.requester_id, value.assignee_id, value.department_id)


ticket_audience: cache.TTLCache[TicketFacts] = cache.TTLCache(
    "ticket_audience", ttl_seconds=300.0, codec=FactsCodec()
)
"""Requester, assignee and department per ticket (a hot read of every event fan-out); dropped by
the events that change them."""


_TOKEN_IN_URL = re.compile(r"(?i)([?&](?:access_)?token=)[^&\s\"']+")


class RedactTokens(logging.Filter):
    """Hides `?token=` values in log lines: uvicorn logs each WebSocket's URL when accepted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                _TOKEN_IN_URL.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        if isinstance(record.msg, str) and "token=" in record.msg.lower():
            record.msg = _TOKEN_IN_URL.sub(r"\1[redacted]", record.msg)
        return True


REDACT_TOKENS = RedactTokens()
URL_LOGGERS = ("uvicorn.error", "uvicorn.access")


class _Bounded:
    """An insertion-ordered set that forgets its oldest members past `size`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, None] = OrderedDict()

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def add(self, item: Any) -> None:
        self._items[item] = None
        if len(self._items) > self.size:
            self._items.popitem(last=False)


class LiveService:
    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.settings = settings
        self.node_id = secrets.token_hex(6)
        self.hub = Hub(
            node_id=self.node_id,
            ttls={
                "viewing": settings.live_presence_seconds,
                "typing": settings.live_typing_seconds,
                "replying": settings.live_replying_seconds,
            },
            max_queue=settings.live_send_queue,
            publish=self._publish_control,
        )
        self.redis: Any = None
        self.bus: RedisBus | None = None
        self.listener = PgListener(
            make_url(runtime.db.url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False),
            on_outbox=self._on_notify,
            on_control=lambda payload: self._on_control(payload.encode()),
            on_connected=self._on_listening,
        )
        self.capture = CommitCapture(runtime.db.engine.sync_engine, self._on_local_commit)
        self.max_seq = 0
        self._start_seq = 0
        self._listened_seq = 0
        self._inbox: asyncio.Queue[tuple[int, dict[str, Any], str]] = asyncio.Queue()
        self._notified: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self._control_out: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)
        self._events_out: asyncio.Queue[bytes] = asyncio.Queue(maxsize=10_000)
        self._seen_ids = _Bounded(SEEN_KEPT)
        self._known_seqs = _Bounded(SEEN_KEPT)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._previous_handlers: dict[int, Any] = {}
        self._call: Callable[[Callable[[], None]], None] | None = None

    # Lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._call = loop_thread_guard(loop)
        if self.settings.redis_url:
            import redis.asyncio as redis

            # Bounded waits: a Redis that stops answering must not hold up the dispatcher (L2
            # reads) for long; PostgreSQL still brings every event.
            self.redis = redis.Redis.from_url(
                self.settings.redis_url,
                socket_timeout=2.0,
                socket_connect_timeout=2.0,
                health_check_interval=30,
            )
            prefix = self.settings.redis_prefix
            cache.configure_l2(cache.RedisL2(self.redis, prefix))
            self.bus = RedisBus(
                self.redis, prefix, on_event=self._on_redis_event, on_control=self._on_control
            )
        try:
            async with self.runtime.db.session() as session:
                self._start_seq = self.max_seq = await repository.last_seq(session)
                self._listened_seq = self._start_seq
        except Exception as exc:  # the app starts without its database; so does this
            log.warning("live: outbox position unknown at start: %s", exc)
        self.capture.install()
        cache.add_invalidation_listener(self._on_invalidation)
        self._chain_exit_signals(loop)
        for name in URL_LOGGERS:
            logging.getLogger(name).addFilter(REDACT_TOKENS)
        self._spawn(self.listener.run(), "listener")
        self._spawn(self._read_notified(), "reader")
        self._spawn(self._dispatch_forever(), "dispatcher")
        self._spawn(self._sweep_forever(), "sweeper")
        self._spawn(self._send_control_forever(), "control")
        waits = [self.listener.ready.wait()]
        if self.bus is not None:
            self._spawn(self.bus.run(), "redis")
            self._spawn(self._send_events_forever(), "redis-events")
            waits.append(self.bus.ready.wait())
        try:
            await asyncio.wait_for(asyncio.gather(*waits), 10)
        except TimeoutError:
            log.warning("live: started without every source; they keep retrying")

    def _chain_exit_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close live connections as soon as the server is told to stop.

        The ASGI server waits for open responses before it runs the lifespan shutdown, and an
        SSE stream never ends by itself: without this a SIGTERM would wait for every stream.
        The server's own handler still runs (and is put back at `stop`).
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(
                signum: int,
                frame: FrameType | None,
                previous: Callable[[int, FrameType | None], Any] = previous,
            ) -> None:
                loop.call_soon_threadsafe(self.hub.close_all, 1012, "server restarting")
                previous(signum, frame)

            signal.signal(sig, handler)
            self._previous_handlers[sig] = previous

    async def stop(self) -> None:
        for sig, previous in self._previous_handlers.items():
            with contextlib.suppress(ValueError):
                signal.signal(sig, previous)
        self._previous_handlers.clear()
        self.capture.remove()
        cache.remove_invalidation_listener(self._on_invalidation)
        self.hub.close_all(1012, "server restarting")
        self._publish_control({"op": "gone"})
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._flush_control(), 1)
        # Loops also check `_stopping`: redis-py can swallow a cancellation that lands inside
        # a command (seen with 8.1 on Python 3.11), leaving a task that never ends.
        self._stopping = True
        if self.bus is not None:
            self.bus.stopping = True
        for queue in (self._control_out, self._events_out):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(b"")
        for _attempt in range(3):
            pending = [t for t in self._tasks if not t.done()]
            if not pending:
                break
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1.0)
        else:
            log.warning("live: tasks still running at stop: %s", [t.get_name() for t in pending])
        self._tasks.clear()
        if self.redis is not None:
            cache.configure_l2(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.redis.aclose(), 2)

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro, name=f"live-{name}"))

    # Sources --------------------------------------------------------------------------------

    def _on_local_commit(self, rows: list[OutboxEvent]) -> None:
        """After COMMIT in this process (synchronous): queue the events; publish them on Redis."""
        items = [(row.seq, envelope(row)) for row in rows]

        def hand_over() -> None:
            for seq, env in items:
                self._known_seqs.add((env["organization_id"], seq))
                self.max_seq = max(self.max_seq, seq)
                self._inbox.put_nowait((seq, env, "local"))
                if self.bus is not None:
                    data = orjson.dumps({"node": self.node_id, "seq": seq, "event": env})
                    with contextlib.suppress(asyncio.QueueFull):
                        self._events_out.put_nowait(data)

        if self._call is not None:
            self._call(hand_over)

    def _on_redis_event(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
            if message.get("node") == self.node_id:
                return
            seq = int(message["seq"])
            env = message["event"]
            org = str(env["organization_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("live: malformed event message on Redis")
            return
        # Known by (organization, seq), never seq alone: a copy published by a deployment that
        # shares this Redis by mistake must not stop this database's own event from loading.
        # For the same reason `max_seq` (offered to clients for resuming) only follows
        # PostgreSQL and this process's commits.
        self._known_seqs.add((org, seq))
        self._inbox.put_nowait((seq, env, "redis"))

    def _on_notify(self, payload: str) -> None:
        org, _, raw = payload.rpartition(":")
        try:
            seq = int(raw)
        except ValueError:
            return
        self.max_seq = max(self.max_seq, seq)
        self._listened_seq = max(self._listened_seq, seq)
        if (org, seq) not in self._known_seqs:
            self._notified.put_nowait((org, seq))

    async def _on_listening(self, reconnected: bool) -> None:
        if not reconnected:
            return
        # Notifications sent while the connection was down are gone: read the outbox from a
        # little before the last one heard (its `seq` gaps can close late), in pages.
        floor = max(self._start_seq, self._listened_seq - CATCH_UP_WINDOW)
        page = 5 * CATCH_UP_WINDOW
        while True:
            async with self.runtime.db.session() as session:
                rows = await repository.events_after(session, floor, limit=page)
            for row in rows:
                self._queue_row(row, "catch-up")
            if len(rows) < page:
                break
            floor = rows[-1].seq

    def _queue_row(self, row: OutboxEvent, source: str) -> None:
        key = (str(row.organization_id), row.seq)
        if key in self._known_seqs:
            return
        self._known_seqs.add(key)
        self.max_seq = max(self.max_seq, row.seq)
        self._inbox.put_nowait((row.seq, envelope(row), source))

    async def _read_notified(self) -> None:
        """Read the events announced by NOTIFY that no faster copy brought, in batches."""
        while not self._stopping:
            batch = {await self._notified.get()}
            if self.bus is not None:
                await asyncio.sleep(REDIS_GRACE_SECONDS)
            while not self._notified.empty() and len(batch) < 1000:
                batch.add(self._notified.get_nowait())
            missing = sorted(key for key in batch if key not in self._known_seqs)
            if not missing:
                continue
            try:
                async with self.runtime.db.session() as session:
                    rows = await repository.events_by_seq(session, [seq for _, seq in missing])
            except Exception:
                log.exception("live: reading notified events failed; retrying")
                for key in missing:
                    self._notified.put_nowait(key)
                await asyncio.sleep(1)
                continue
            for row in rows:
                self._queue_row(row, "pg")

    # Dispatch -------------------------------------------------------------------------------

    async def _dispatch_forever(self) -> None:
        while not self._stopping:
            seq, env, source = await self._inbox.get()
            try:
                await self.dispatch(seq, env, source)
            except Exception:
                log.exception("live: dispatching an event failed", extra={"seq": seq})

    async def dispatch(self, seq: int, env: dict[str, Any], source: str) -> None:
        """Handle one copy of a committed event: drop repeats, invalidate, fan out."""
        event_id = str(env.get("event_id"))
        if event_id in self._seen_ids:
            DUPLICATES.labels(source).inc()
            return
        self._seen_ids.add(event_id)
        EVENTS.labels(source).inc()
        event = LiveEvent.of(seq, env)
        # Caches: every process receives every event, so each drops its own L1 here; L2 is
        # dropped by the committing process and by any that got the event from PostgreSQL.
        shared = source != "redis"
        cache.invalidate_tags(event.cache_tags(), l2=shared)
        if event.ticket_id is not None and event.changes_audience():
            tag = f"audience:{event.ticket_id}"
            if shared:
                ticket_audience.invalidate_tag(tag, propagate=False)
            else:
                ticket_audience.drop_local(tags=(tag,))
        if not self.hub.has_organization(event.organization_id):
            return
        if event.needs_facts and event.ticket_id is not None:
            event.complete(await self.facts(event.organization_id, event.ticket_id))
        self.hub.deliver(event)
        if event.event_type in SESSION_ENDING and event.user_id is not None:
            self.hub.close_user(event.organization_id, event.user_id, "the account changed")
        with contextlib.suppress(KeyError, ValueError, TypeError):
            occurred = env["occurred_at"]
            LAG.observe(max(0.0, (utc_now() - datetime.fromisoformat(occurred)).total_seconds()))

    async def facts(self, organization_id: uuid.UUID, ticket_id: uuid.UUID) -> TicketFacts | None:
        async def load() -> TicketFacts | None:
            async with self.runtime.db.tenant_session(organization_id) as session:
                return await repository.ticket_facts(session, ticket_id)

        return await ticket_audience.get_or_load(
            f"{organization_id}:{ticket_id}", load, tags=(f"audience:{ticket_id}",)
        )

    async def resume(self, conn: Connection, after_seq: int) -> None:
        """Send `conn` the events after `after_seq` it may see, then the live ones held meanwhile.

        Register the connection first (so nothing committed during the read is missed); the
        live copies of replayed events are skipped.
        """
        conn.hold()
        replayed: list[tuple[str, int]] = []
        ids: set[str] = set()
        truncated = False
        try:
            async with self.runtime.db.tenant_session(conn.organization_id) as session:
                rows = await repository.events_after(
                    session,
                    after_seq,
                    limit=REPLAY_LIMIT + 1,
                    organization_id=conn.organization_id,
                )
            truncated = len(rows) > REPLAY_LIMIT
            for row in rows[:REPLAY_LIMIT]:
                event = LiveEvent.of(row.seq, envelope(row))
                if event.needs_facts and event.ticket_id is not None:
                    event.complete(await self.facts(conn.organization_id, event.ticket_id))
                routed = any(room in conn.rooms for room in event.rooms())
                if routed and may_receive(conn.viewer, conn.organization_id, event):
                    replayed.append((event.message, row.seq))
                    ids.add(event.event_id)
        finally:
            summary = dumps(
                {
                    "type": "replay",
                    "after_seq": after_seq,
                    "count": len(replayed),
                    "truncated": truncated,
                }
            )
            conn.release([*replayed, (summary, None)], ids)

    # Control bus ----------------------------------------------------------------------------

    def _publish_control(self, message: dict[str, Any]) -> None:
        data = orjson.dumps({**message, "node": self.node_id})
        with contextlib.suppress(asyncio.QueueFull):
            self._control_out.put_nowait(data)

    async def _send_control_forever(self) -> None:
        while not self._stopping:
            data = await self._control_out.get()
            if data:
                await self._send_control(data)

    async def _send_control(self, data: bytes) -> None:
        try:
            if self.bus is not None:
                await self.bus.publish_control(data)
            else:
                await self.listener.notify(data.decode())
        except Exception as exc:
            log.warning("live: control message not sent: %s", exc)

    async def _flush_control(self) -> None:
        while not self._control_out.empty():
            data = self._control_out.get_nowait()
            if data:
                await self._send_control(data)

    async def _send_events_forever(self) -> None:
        assert self.bus is not None
        while not self._stopping:
            data = await self._events_out.get()
            if not data:
                continue
            try:
                await self.bus.publish_event(data)
            except Exception as exc:  # PostgreSQL still brings it to the other processes
                log.warning("live: event not published on Redis: %s", exc)

    def _on_control(self, data: bytes) -> None:
        try:
            message = orjson.loads(data)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("node") == self.node_id:
            return
        op = message.get("op")
        if op in ("signal", "sync"):
            self.hub.apply_remote(message)
        elif op == "gone":
            self.hub.forget_node(str(message.get("node")))
        elif op == "invalidate":
            cache.apply_invalidation(
                message.get("cache"), message.get("keys") or (), message.get("tags") or ()
            )

    def _on_invalidation(
        self, name: str | None, keys: tuple[str, ...], tags: tuple[str, ...]
    ) -> None:
        message = {"op": "invalidate", "cache": name, "keys": list(keys), "tags": list(tags)}
        self._publish_control(message)
        if name is None:
            # Tags of every cache come from `invalidate_everywhere`, called after the commit:
            # nothing older can be reloaded after it, so there is nothing to repeat.
            return

        def again() -> None:
            target = cache.caches().get(name)
            if target is not None:
                for key in keys:
                    target.invalidate(key, propagate=False)
                for tag in tags:
                    target.invalidate_tag(tag, propagate=False)
            self._publish_control(message)

        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().call_later(REINVALIDATE_SECONDS, again)

    async def _sweep_forever(self) -> None:
        interval = min(0.25, min(self.hub.ttls.values()) / 4)
        while True:
            await asyncio.sleep(interval)
            self.hub.sweep()

    # Introspection --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "connections": len(self.hub),
            "max_seq": self.max_seq,
            "listening": self.listener.ready.is_set(),
            "redis": None if self.bus is None else self.bus.ready.is_set(),
            "time": time.time(),
        }


def get_live(conn: HTTPConnection) -> LiveService | None:
    service: LiveService | None = get_runtime(conn).extras.get("live")
    return service


@asynccontextmanager
async def running(runtime: Runtime) -> AsyncIterator[LiveService]:
    """The live service for the app's lifetime (used by the app's lifespan)."""
    service = LiveService(runtime)
    await service.start()
    runtime.extras["live"] = service
    try:
        yield service
    finally:
        runtime.extras.pop("live", None)
        await service.stop()
