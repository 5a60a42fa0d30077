"""The job system's contract: event handlers, periodic jobs, plain jobs, exactly-once helpers.

Domains register work here and never import the queue (procrastinate) themselves:

    from servicedesk.core.jobs import JobContext, on_event, periodic

    @on_event("ticket.created", "ticket.assigned", name="notifications.ticket_mail")
    async def ticket_mail(ctx: JobContext) -> None:
        async with ctx.tenant_session() as session:    # skipped if already handled
            ...                                         # effects commit with the handled row

    @periodic("sla.monitor", cron="* * * * *")
    async def sla_monitor(runtime: Runtime, run_at: datetime) -> None: ...

Delivery is at least once: the dispatcher (core/job_runner.py) turns each committed outbox
event into one job per matching handler, and a job may run again after a crash or a retry.
Effects are exactly once when they are written through `ctx.tenant_session()`, which records
(event_id, handler) in `handled_events` in the same transaction. docs/jobs.md has the recipe
for side effects outside the database (email): record the intent in that transaction and
`defer_job` the sending, keyed by the intent's row.

Handlers are found by importing the modules of `HANDLER_MODULES` (the ones that exist) plus
`SERVICEDESK_EXTRA_HANDLER_MODULES`; every process that dispatches or works must see the same
list, so set those variables alike everywhere.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.config import Settings
from servicedesk.core.runtime import Runtime

log = logging.getLogger(__name__)

HANDLER_MODULES: list[str] = [
    "servicedesk.notifications.handlers",
    "servicedesk.tickets.handlers",
    "servicedesk.live.handlers",
]
"""Modules whose import registers handlers; missing ones are skipped (not written yet)."""

EVENTS_QUEUE = "events"
JOBS_QUEUE = "jobs"
PERIODIC_QUEUE = "periodic"

_NAME = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,127}")
_EVENT_PATTERN = re.compile(r"\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?")


class AlreadyHandled(Exception):
    """Raised by `JobContext.tenant_session()` when this handler already handled the event.

    The runner treats it as success. Do not catch it in a handler.
    """


class PermanentError(Exception):
    """Raise from a handler or job to skip the remaining retries: it goes to the dead letters."""


@dataclass
class JobContext:
    """What an event handler receives."""

    runtime: Runtime
    event: dict[str, Any]
    """The envelope of `core.events.envelope()` (docs/events.md)."""
    attempt: int
    """1 on the first run, 2 on the first retry, …"""
    handler: str = ""
    job_id: int | None = None
    _claimed: bool = field(default=False, init=False, repr=False)

    @property
    def event_id(self) -> uuid.UUID:
        return uuid.UUID(self.event["event_id"])

    @property
    def event_type(self) -> str:
        return str(self.event["event_type"])

    @property
    def organization_id(self) -> uuid.UUID:
        return uuid.UUID(self.event["organization_id"])

    @property
    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = self.event["payload"]
        return payload

    @asynccontextmanager
    async def tenant_session(self) -> AsyncIterator[AsyncSession]:
        """The handled transaction: bound to the event's organization (RLS), committed on exit.

        It first records (event_id, handler) in `handled_events`; if that row already exists
        the event was handled by an earlier run and `AlreadyHandled` is raised before the body
        runs (the runner counts that as success). Open it once per run, and do everything that
        must happen exactly once inside it; use `ctx.runtime.db` for any other session.
        """
        if self._claimed:
            raise RuntimeError("ctx.tenant_session() is the handled transaction: open it once")
        self._claimed = True
        async with self.runtime.db.tenant_session(self.organization_id) as session:
            if await already_handled(
                session,
                event_id=self.event_id,
                handler=self.handler,
                organization_id=self.organization_id,
            ):
                raise AlreadyHandled(f"{self.handler} already handled event {self.event_id}")
            yield session


@dataclass
class TaskContext:
    """What a plain job (`@job`) receives: the arguments it was deferred with."""

    runtime: Runtime
    args: dict[str, Any]
    organization_id: uuid.UUID | None
    attempt: int
    name: str = ""
    job_id: int | None = None

    @asynccontextmanager
    async def tenant_session(self) -> AsyncIterator[AsyncSession]:
        """A transaction bound to the job's organization (RLS), committed on exit."""
        if self.organization_id is None:
            raise RuntimeError(f"job {self.name} was deferred without an organization")
        async with self.runtime.db.tenant_session(self.organization_id) as session:
            yield session


Handler = Callable[[JobContext], Awaitable[None]]
PeriodicHandler = Callable[[Runtime, datetime], Awaitable[None]]
TaskHandler = Callable[[TaskContext], Awaitable[None]]


@dataclass(frozen=True)
class EventHandlerSpec:
    name: str
    event_types: tuple[str, ...]
    func: Handler
    queue: str = EVENTS_QUEUE

    def matches(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.event_types)


@dataclass(frozen=True)
class PeriodicSpec:
    name: str
    cron: str
    func: PeriodicHandler
    queue: str = PERIODIC_QUEUE


@dataclass(frozen=True)
class TaskSpec:
    name: str
    func: TaskHandler
    queue: str = JOBS_QUEUE


def _qualname(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


class Registry:
    """Handlers, periodic jobs and plain jobs by name (the name is the queue's task name)."""

    def __init__(self) -> None:
        self.handlers: dict[str, EventHandlerSpec] = {}
        self.periodics: dict[str, PeriodicSpec] = {}
        self.tasks: dict[str, TaskSpec] = {}
        self._by_type: dict[str, list[EventHandlerSpec]] = {}

    @staticmethod
    def _check_format(name: str) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"job name {name!r}: lowercase letters, digits, _ . : -")

    def _check_name(self, name: str, func: Callable[..., Any]) -> None:
        for kind in (self.handlers, self.periodics, self.tasks):
            existing = kind.get(name)
            if existing is not None and _qualname(existing.func) != _qualname(func):
                raise ValueError(f"job name {name!r} is already used by {_qualname(existing.func)}")

    def on_event(
        self, *event_types: str, name: str, queue: str = EVENTS_QUEUE
    ) -> Callable[[Handler], Handler]:
        """Register `async def handler(ctx: JobContext)` for the given event types.

        A type is exact (`ticket.created`), a family (`ticket.*`) or every event (`*`).
        """
        self._check_format(name)
        if not event_types:
            raise ValueError("on_event needs at least one event type")
        for pattern in event_types:
            if not _EVENT_PATTERN.fullmatch(pattern):
                raise ValueError(f"event type pattern {pattern!r}")

        def decorator(func: Handler) -> Handler:
            self._check_name(name, func)
            self.handlers[name] = EventHandlerSpec(name, tuple(event_types), func, queue)
            self._by_type.clear()
            return func

        return decorator

    def periodic(
        self, name: str, *, cron: str, queue: str = PERIODIC_QUEUE
    ) -> Callable[[PeriodicHandler], PeriodicHandler]:
        """Register `async def job(runtime, run_at)` to run once per `cron` period.

        Five fields (minute hour day month weekday), or six with seconds last. However many
        schedulers run, each period runs once (the queue keeps one row per period).
        """
        from croniter import croniter  # procrastinate's dependency

        self._check_format(name)
        if not croniter.is_valid(cron):
            raise ValueError(f"cron expression {cron!r}")

        def decorator(func: PeriodicHandler) -> PeriodicHandler:
            self._check_name(name, func)
            self.periodics[name] = PeriodicSpec(name, cron, func, queue)
            return func

        return decorator

    def job(self, name: str, *, queue: str = JOBS_QUEUE) -> Callable[[TaskHandler], TaskHandler]:
        """Register `async def job(ctx: TaskContext)`, run when deferred with `defer_job`."""
        self._check_format(name)

        def decorator(func: TaskHandler) -> TaskHandler:
            self._check_name(name, func)
            self.tasks[name] = TaskSpec(name, func, queue)
            return func

        return decorator

    def handlers_for(self, event_type: str) -> list[EventHandlerSpec]:
        found = self._by_type.get(event_type)
        if found is None:
            found = [h for h in self.handlers.values() if h.matches(event_type)]
            self._by_type[event_type] = found
        return found


registry = Registry()
"""The process's registry; the decorators below register into it."""


def on_event(*event_types: str, name: str) -> Callable[[Handler], Handler]:
    """Register an event handler in the process's registry (see `Registry.on_event`)."""
    return registry.on_event(*event_types, name=name)


def periodic(name: str, *, cron: str) -> Callable[[PeriodicHandler], PeriodicHandler]:
    """Register a periodic job in the process's registry (see `Registry.periodic`)."""
    return registry.periodic(name, cron=cron)


def job(name: str) -> Callable[[TaskHandler], TaskHandler]:
    """Register a plain job in the process's registry (see `Registry.job`)."""
    return registry.job(name)


def _split(value: str | None) -> list[str]:
    return [m.strip() for m in (value or "").split(",") if m.strip()]


def handler_modules(settings: Settings) -> list[str]:
    base = _split(settings.handler_modules) if settings.handler_modules else HANDLER_MODULES
    return [*base, *_split(settings.extra_handler_modules)]


def load_handler_modules(settings: Settings) -> list[str]:
    """Import the handler modules; return the ones imported.

    A module of the built-in list that does not exist yet is skipped; one named in the
    environment must exist. An error inside an existing module is raised, never hidden.
    """
    explicit = set(_split(settings.extra_handler_modules))
    if settings.handler_modules:
        explicit |= set(_split(settings.handler_modules))
    loaded = []
    for module in handler_modules(settings):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            if module in explicit:
                raise ModuleNotFoundError(f"handler module {module} not found")
            log.debug("handler module %s does not exist; skipped", module)
            continue
        importlib.import_module(module)
        loaded.append(module)
    return loaded


_CLAIM = text(
    "INSERT INTO handled_events (event_id, handler, organization_id) "
    "VALUES (:event_id, :handler, "
    "COALESCE(CAST(:org AS uuid), "
    "CAST(NULLIF(current_setting('app.organization_id', true), '') AS uuid))) "
    "ON CONFLICT (event_id, handler) DO NOTHING RETURNING event_id"
)


async def already_handled(
    session: AsyncSession,
    *,
    event_id: uuid.UUID | str,
    handler: str,
    organization_id: uuid.UUID | str | None = None,
) -> bool:
    """Claim (event_id, handler) in the session's transaction; True if it was claimed before.

    False means: the claim is now in this transaction, do the work and commit. True means:
    an earlier run committed it, skip. A concurrent run of the same pair waits on the
    uncommitted claim and then gets True (or the claim itself, if the other rolled back).
    The organization defaults to the one the session is bound to.
    """
    inserted = await session.execute(
        _CLAIM,
        {
            "event_id": str(event_id),
            "handler": handler,
            "org": str(organization_id) if organization_id else None,
        },
    )
    return inserted.first() is None


_DEFER = text(
    "SELECT servicedesk_defer_job(:queue, :task, CAST(:args AS jsonb), :lock, :queueing_lock, "
    "CAST(:run_at AS timestamptz), :priority)"
)


_DEFER_MANY = text(
    "SELECT servicedesk_defer_job(:queue, :task, j.args, NULL, NULL, j.run_at, :priority) "
    "FROM unnest(CAST(CAST(:args AS text[]) AS jsonb[]), CAST(:run_at AS timestamptz[])) "
    "AS j(args, run_at)"
)


async def defer_jobs(
    session: AsyncSession,
    name: str,
    *,
    organization_id: uuid.UUID | None,
    jobs: list[tuple[dict[str, Any], datetime | None]],
    priority: int = 0,
) -> int:
    """Queue many jobs `name` (each: its args and run_at) in one statement; `defer_job`'s rules.

    For a fan-out (one send job per recipient) where a statement per job would dominate.
    Returns how many were queued.
    """
    if not jobs:
        return 0
    spec = registry.tasks.get(name)
    org = str(organization_id) if organization_id else None
    result = await session.execute(
        _DEFER_MANY,
        {
            "queue": spec.queue if spec else JOBS_QUEUE,
            "task": name,
            "args": [orjson.dumps({"organization_id": org, "args": a}).decode() for a, _ in jobs],
            "run_at": [at for _, at in jobs],
            "priority": priority,
        },
    )
    return len(result.all())


async def defer_job(
    session: AsyncSession,
    name: str,
    *,
    organization_id: uuid.UUID | None,
    args: dict[str, Any] | None = None,
    run_at: datetime | None = None,
    lock: str | None = None,
    queueing_lock: str | None = None,
    priority: int = 0,
    queue: str | None = None,
) -> int | None:
    """Queue the job `name` in the session's transaction: it exists only if that commits.

    From a tenant session `organization_id` must be the session's organization. `lock`: jobs
    with the same lock run one at a time, in order; `queueing_lock`: at most one waiting job
    with it (a second defer returns None instead of queueing). Returns the job id.
    """
    spec = registry.tasks.get(name)
    queue = queue or (spec.queue if spec else JOBS_QUEUE)
    job_args: dict[str, Any] = {
        "organization_id": str(organization_id) if organization_id else None,
        "args": args or {},
    }
    result = await session.execute(
        _DEFER,
        {
            "queue": queue,
            "task": name,
            "args": orjson.dumps(job_args).decode(),
            "lock": lock,
            "queueing_lock": queueing_lock,
            "run_at": run_at,
            "priority": priority,
        },
    )
    job_id = result.scalar_one()
    return int(job_id) if job_id is not None else None
