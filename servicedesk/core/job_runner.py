"""Running the jobs: outbox dispatcher, procrastinate worker and scheduler, stalled-job reaper.

    outbox_events ──dispatcher──▶ procrastinate.procrastinate_jobs ──worker──▶ handler
      (committed)   one job per       (queue: one row per job)          (JobContext)
                    (event, handler),
                    same transaction
                    as dispatched_at

The dispatcher moves committed, undispatched outbox rows (in `seq` order, `FOR UPDATE SKIP
LOCKED`, in batches) into the queue and sets `dispatched_at` in the same transaction, so a
crash leaves either both or neither: an event is never lost and never queued twice. It wakes on
`LISTEN servicedesk_outbox` and polls as a fallback. The worker (procrastinate) runs jobs with
retries (exponential backoff with jitter) until the last attempt fails, which leaves the job in
the `failed` state: the dead letters, listed and replayed by servicedesk/jobs/api.py. The last
error of every failed attempt is kept in `procrastinate.job_errors`. A job whose worker died
(no heartbeat for `SERVICEDESK_JOBS_STALLED_SECONDS`) is retried by any other worker's reaper.

`JobSystem` runs all of it in one asyncio process: `servicedesk worker` (any number of
machines), and `servicedesk serve` in the embedded default. docs/jobs.md tells the whole story.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import orjson
import procrastinate
import psycopg
from fastapi import FastAPI
from procrastinate import exceptions as pexc
from procrastinate import jobs as pjobs
from procrastinate.retry import BaseRetryStrategy, RetryDecision
from prometheus_client import Counter, Histogram
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp

from servicedesk.config import Settings
from servicedesk.core import idempotency
from servicedesk.core import jobs as contract
from servicedesk.core.events import envelope
from servicedesk.core.jobs import (
    AlreadyHandled,
    JobContext,
    PermanentError,
    Registry,
    TaskContext,
    load_handler_modules,
)
from servicedesk.core.runtime import Runtime
from servicedesk.models import HandledEvent, OutboxEvent

log = logging.getLogger(__name__)

SCHEMA = "procrastinate"
OUTBOX_CHANNEL = "servicedesk_outbox"
ERROR_MAX = 2000
TRACEBACK_MAX = 20000

EVENTS_DISPATCHED = Counter(
    "servicedesk_events_dispatched_total", "Outbox events handed to the job queue"
)
JOBS_DONE = Counter("servicedesk_jobs_total", "Jobs run, by outcome", ["kind", "outcome"])
EVENT_LATENCY = Histogram(
    "servicedesk_event_handler_seconds",
    "From the event's transaction to its handler's end",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def conninfo(database_url: str) -> str:
    """A libpq URL (psycopg) for any PostgreSQL URL the settings accept."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


# Retries ------------------------------------------------------------------------------------


class BackoffWithJitter(BaseRetryStrategy):
    """Exponential backoff with "equal jitter", at most `max_attempts` runs in all.

    After the n-th failed run the job waits d/2 + uniform(0, d/2) with d = min(cap, base·2ⁿ⁻¹):
    growing waits, spread so that jobs failing together do not retry together. A
    `PermanentError` skips the remaining attempts.
    """

    def __init__(
        self,
        *,
        max_attempts: int,
        base_seconds: float,
        max_seconds: float,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.max_attempts = max_attempts
        self.base_seconds = base_seconds
        self.max_seconds = max_seconds
        self.rng = rng

    def delay(self, failed_runs: int) -> float:
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(failed_runs - 1, 0))
        return float(ceiling / 2 + self.rng() * ceiling / 2)

    def get_retry_decision(
        self, *, exception: BaseException, job: pjobs.Job
    ) -> RetryDecision | None:
        if isinstance(exception, PermanentError):
            return None
        failed_runs = job.attempts + 1  # procrastinate counts the runs before this one
        if failed_runs >= self.max_attempts:
            return None
        return RetryDecision(
            retry_at=datetime.now(UTC) + timedelta(seconds=self.delay(failed_runs))
        )


def retry_strategy(settings: Settings) -> BackoffWithJitter:
    return BackoffWithJitter(
        max_attempts=settings.jobs_max_attempts,
        base_seconds=settings.jobs_retry_base_seconds,
        max_seconds=settings.jobs_retry_max_seconds,
    )


# Recording failures -------------------------------------------------------------------------

_RECORD_ERROR = text(
    "INSERT INTO procrastinate.job_errors (job_id, attempts, error, traceback, failed_at) "
    "VALUES (:job_id, :attempts, :error, :traceback, now()) "
    "ON CONFLICT (job_id) DO UPDATE SET attempts = EXCLUDED.attempts, "
    "error = EXCLUDED.error, traceback = EXCLUDED.traceback, failed_at = EXCLUDED.failed_at"
)


async def record_failure(
    runtime: Runtime, job_id: int | None, attempts: int, error: str, tb: str | None
) -> None:
    """Keep the last error of a job (its own transaction; never raises)."""
    log.warning(
        "job attempt failed", extra={"job_id": job_id, "attempts": attempts, "error": error}
    )
    if job_id is None:
        return
    try:
        async with runtime.db.session() as session:
            await session.execute(
                _RECORD_ERROR,
                {
                    "job_id": job_id,
                    "attempts": attempts,
                    "error": error[:ERROR_MAX],
                    "traceback": tb[-TRACEBACK_MAX:] if tb else None,
                },
            )
    except Exception:  # the job's own outcome matters more than its error record
        log.exception("could not record the error of job %s", job_id)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# The procrastinate app ----------------------------------------------------------------------


def _event_task(runtime: Runtime, spec: contract.EventHandlerSpec) -> Callable[..., Any]:
    async def run(context: procrastinate.JobContext, *, event: dict[str, Any], **_: Any) -> None:
        job = context.job
        ctx = JobContext(
            runtime=runtime,
            event=event,
            attempt=job.attempts + 1,
            handler=spec.name,
            job_id=job.id,
        )
        try:
            await spec.func(ctx)
        except AlreadyHandled:
            JOBS_DONE.labels("event", "duplicate").inc()
            log.info(
                "event already handled",
                extra={"handler": spec.name, "event_id": event.get("event_id")},
            )
        except Exception as exc:
            JOBS_DONE.labels("event", "error").inc()
            await record_failure(
                runtime, job.id, job.attempts + 1, _describe(exc), traceback.format_exc()
            )
            raise
        else:
            JOBS_DONE.labels("event", "ok").inc()
        occurred = event.get("occurred_at")
        if occurred:
            with contextlib.suppress(ValueError):
                EVENT_LATENCY.observe(
                    (datetime.now(UTC) - datetime.fromisoformat(occurred)).total_seconds()
                )

    run.__name__ = spec.name
    return run


def _plain_task(runtime: Runtime, spec: contract.TaskSpec) -> Callable[..., Any]:
    async def run(
        context: procrastinate.JobContext,
        *,
        organization_id: str | None = None,
        args: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        job = context.job
        ctx = TaskContext(
            runtime=runtime,
            args=args or {},
            organization_id=uuid.UUID(organization_id) if organization_id else None,
            attempt=job.attempts + 1,
            name=spec.name,
            job_id=job.id,
        )
        try:
            await spec.func(ctx)
        except Exception as exc:
            JOBS_DONE.labels("job", "error").inc()
            await record_failure(
                runtime, job.id, job.attempts + 1, _describe(exc), traceback.format_exc()
            )
            raise
        JOBS_DONE.labels("job", "ok").inc()

    run.__name__ = spec.name
    return run


def _periodic_task(runtime: Runtime, spec: contract.PeriodicSpec) -> Callable[..., Any]:
    async def run(context: procrastinate.JobContext, *, timestamp: int, **_: Any) -> None:
        job = context.job
        try:
            await spec.func(runtime, datetime.fromtimestamp(timestamp, UTC))
        except Exception as exc:
            JOBS_DONE.labels("periodic", "error").inc()
            await record_failure(
                runtime, job.id, job.attempts + 1, _describe(exc), traceback.format_exc()
            )
            raise
        JOBS_DONE.labels("periodic", "ok").inc()

    run.__name__ = spec.name
    return run


def build_app(
    runtime: Runtime, registry: Registry, *, scheduler: bool, pool_size: int = 4
) -> procrastinate.App:
    """A procrastinate App over the database with every job of `registry` registered.

    `scheduler=False` registers the periodic jobs (so this worker runs them) without
    scheduling them (so another process's scheduler does).
    """
    connector = procrastinate.PsycopgConnector(
        conninfo=conninfo(str(runtime.db.url.render_as_string(hide_password=False))),
        min_size=1,
        max_size=pool_size,
        kwargs={
            "options": f"-c search_path={SCHEMA},public",
            "application_name": "servicedesk-worker",
        },
    )
    app = procrastinate.App(connector=connector)
    strategy = retry_strategy(runtime.settings)
    task = cast(Callable[..., Callable[[Callable[..., Any]], Any]], app.task)
    for handler in registry.handlers.values():
        task(name=handler.name, queue=handler.queue, retry=strategy, pass_context=True)(
            _event_task(runtime, handler)
        )
    for plain in registry.tasks.values():
        task(name=plain.name, queue=plain.queue, retry=strategy, pass_context=True)(
            _plain_task(runtime, plain)
        )
    for spec in registry.periodics.values():
        registered = task(
            name=spec.name,
            queue=spec.queue,
            retry=strategy,
            pass_context=True,
            lock=f"periodic:{spec.name}",  # one run at a time
            queueing_lock=f"periodic:{spec.name}",  # one waiting run at most
        )(_periodic_task(runtime, spec))
        if scheduler:
            app.periodic(cron=spec.cron, periodic_id=spec.name)(registered)
    return app


# The dispatcher -----------------------------------------------------------------------------

_DEFER_BATCH = text(
    "SELECT procrastinate.procrastinate_defer_jobs_v1(ARRAY("
    "SELECT ROW(j->>'queue', j->>'task', 0, NULL, NULL, j->'args', NULL)"
    "::procrastinate.procrastinate_job_to_defer_v1 "
    "FROM jsonb_array_elements(CAST(:jobs AS jsonb)) AS j))"
)


class Dispatcher:
    """Moves committed outbox events into the queue, one job per (event, matching handler)."""

    def __init__(
        self, runtime: Runtime, registry: Registry, *, batch_size: int, poll_seconds: float
    ) -> None:
        self.runtime = runtime
        self.registry = registry
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()

    async def dispatch_once(self) -> int:
        """Dispatch one batch; return how many events it took (0: nothing was waiting)."""
        async with self.runtime.db.session() as session:
            events = (
                (
                    await session.execute(
                        select(OutboxEvent)
                        .where(OutboxEvent.dispatched_at.is_(None))
                        .order_by(OutboxEvent.seq)
                        .limit(self.batch_size)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            if not events:
                return 0
            jobs: list[dict[str, Any]] = []
            for event in events:
                body = envelope(event)
                for handler in self.registry.handlers_for(event.event_type):
                    jobs.append(
                        {
                            "queue": handler.queue,
                            "task": handler.name,
                            "args": {"organization_id": body["organization_id"], "event": body},
                        }
                    )
            if jobs:
                await self._defer(session, jobs)
            await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.id.in_([e.id for e in events]))
                .values(dispatched_at=func.now())
                .execution_options(synchronize_session=False)
            )
        EVENTS_DISPATCHED.inc(len(events))
        return len(events)

    async def _defer(self, session: AsyncSession, jobs: list[dict[str, Any]]) -> None:
        await session.execute(_DEFER_BATCH, {"jobs": orjson.dumps(jobs).decode()})

    async def drain(self) -> int:
        total = 0
        while True:
            count = await self.dispatch_once()
            total += count
            if count < self.batch_size:
                return total

    async def run(self) -> None:
        """Dispatch until cancelled: on every NOTIFY, and every `poll_seconds` regardless."""
        listener = asyncio.create_task(self._listen(), name="outbox-listener")
        failures = 0
        try:
            while True:
                self._wake.clear()
                try:
                    await self.drain()
                    failures = 0
                except Exception:
                    failures += 1
                    log.exception("outbox dispatch failed; retrying")
                    await asyncio.sleep(min(30.0, self.poll_seconds * 2**failures))
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _listen(self) -> None:
        dsn = conninfo(self.runtime.db.url.render_as_string(hide_password=False))
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
                try:
                    await conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
                    self._wake.set()  # anything committed while we were not listening
                    async for _ in conn.notifies():
                        self._wake.set()
                finally:
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox LISTEN connection lost (%s); polling meanwhile", exc)
                await asyncio.sleep(self.poll_seconds)


# The job system -----------------------------------------------------------------------------


class JobSystem:
    """Dispatcher + worker (+ scheduler) + stalled-job reaper in this process."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        registry: Registry | None = None,
        concurrency: int | None = None,
        scheduler: bool = True,
        dispatcher: bool = True,
        worker: bool = True,
        queues: list[str] | None = None,
        name: str | None = None,
        graceful_seconds: float = 10.0,
    ) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.registry = registry if registry is not None else contract.registry
        self.concurrency = concurrency or settings.jobs_concurrency
        self.scheduler = scheduler
        self.queues = queues or None
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.graceful_seconds = graceful_seconds
        self.dispatcher = (
            Dispatcher(
                runtime,
                self.registry,
                batch_size=settings.jobs_dispatch_batch,
                poll_seconds=settings.jobs_poll_seconds,
            )
            if dispatcher
            else None
        )
        self.run_worker = worker
        self.app = build_app(
            runtime,
            self.registry,
            scheduler=scheduler,
            pool_size=max(2, min(self.concurrency // 2 + 2, 20)),
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._worker_task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            # procrastinate logs two INFO lines per job; failures are logged here and by it
            # at ERROR, and kept in job_errors.
            logging.getLogger("procrastinate").setLevel(logging.WARNING)
        await self.app.open_async()
        if self.dispatcher is not None:
            self._spawn(self.dispatcher.run(), "dispatcher")
        if self.run_worker:
            self._worker_task = asyncio.create_task(self._supervise_worker(), name="worker")
            self._spawn(self._reap_loop(), "reaper")
        log.info(
            "job system started",
            extra={
                "worker_name": self.name,
                "concurrency": self.concurrency,
                "dispatcher": self.dispatcher is not None,
                "worker": self.run_worker,
                "scheduler": self.scheduler,
                "handlers": sorted(self.registry.handlers),
                "periodic": sorted(self.registry.periodics),
                "jobs": sorted(self.registry.tasks),
            },
        )

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def stop(self) -> None:
        """Stop dispatching, let running jobs finish (up to `graceful_seconds`), close."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._worker_task is not None:
            # Cancelling procrastinate's run_worker_async is its graceful stop.
            self._worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker_task
            self._worker_task = None
        await self.app.close_async()
        log.info("job system stopped", extra={"worker_name": self.name})

    async def __aenter__(self) -> JobSystem:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _supervise_worker(self) -> None:
        settings = self.runtime.settings
        delay = 1.0
        while not self._stopping:
            started = time.monotonic()
            try:
                await self.app.run_worker_async(
                    name=self.name,
                    queues=cast(list[str], self.queues),
                    concurrency=self.concurrency,
                    wait=True,
                    fetch_job_polling_interval=settings.jobs_poll_seconds,
                    abort_job_polling_interval=max(settings.jobs_poll_seconds, 5.0),
                    shutdown_graceful_timeout=self.graceful_seconds,
                    listen_notify=True,
                    delete_jobs="successful",
                    install_signal_handlers=False,
                    update_heartbeat_interval=settings.jobs_heartbeat_seconds,
                    stalled_worker_timeout=settings.jobs_stalled_seconds,
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker stopped with an error; restarting")
            if self._stopping:
                return
            delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, 30.0)
            await asyncio.sleep(delay)

    async def _reap_loop(self) -> None:
        interval = max(0.2, self.runtime.settings.jobs_stalled_seconds / 3)
        while True:
            try:
                await self.reap_stalled()
            except Exception:
                log.exception("stalled-job check failed")
            await asyncio.sleep(interval)

    async def reap_stalled(self) -> int:
        """Retry the running jobs of workers that stopped sending heartbeats."""
        settings = self.runtime.settings
        manager = self.app.job_manager
        stalled = await manager.get_stalled_jobs(
            seconds_since_heartbeat=settings.jobs_stalled_seconds
        )
        count = 0
        for job in stalled:
            assert job.id is not None
            runs = job.attempts + 1
            await record_failure(
                self.runtime,
                job.id,
                runs,
                f"WorkerLost: the worker running this job stopped "
                f"(no heartbeat for {settings.jobs_stalled_seconds:g} s)",
                None,
            )
            try:
                if runs >= settings.jobs_max_attempts:
                    await manager.finish_job(job, status=pjobs.Status.FAILED, delete_job=False)
                else:
                    await manager.retry_job(job, retry_at=datetime.now(UTC))
            except pexc.ConnectorException as exc:
                log.info("stalled job %s was taken care of elsewhere (%s)", job.id, exc)
                continue
            log.warning(
                "retried a job of a lost worker",
                extra={"job_id": job.id, "task": job.task_name, "attempts": runs},
            )
            count += 1
        return count


# Maintenance --------------------------------------------------------------------------------


@contract.periodic("jobs.maintenance", cron="17 * * * *")
async def maintenance(runtime: Runtime, run_at: datetime) -> None:
    """Hourly: forget handled events, dispatched outbox rows and finished jobs past retention,
    and expired Idempotency-Key records (core/idempotency.py).

    Failed jobs stay until replayed or discarded.
    """
    cutoff = run_at - timedelta(days=runtime.settings.jobs_retention_days)
    async with runtime.db.session() as session:
        handled = await session.execute(
            delete(HandledEvent).where(HandledEvent.handled_at < cutoff)
        )
        outbox = await session.execute(
            delete(OutboxEvent).where(
                OutboxEvent.dispatched_at.is_not(None), OutboxEvent.dispatched_at < cutoff
            )
        )
        jobs = await session.execute(
            text(
                "DELETE FROM procrastinate.procrastinate_jobs j WHERE j.status IN "
                "('succeeded', 'cancelled', 'aborted') AND NOT EXISTS (SELECT 1 FROM "
                "procrastinate.procrastinate_events e WHERE e.job_id = j.id AND e.at >= :cutoff)"
            ),
            {"cutoff": cutoff},
        )
        keys = await idempotency.purge_expired(session)
    log.info(
        "jobs maintenance",
        extra={
            "idempotency_keys_deleted": keys,
            "handled_events_deleted": getattr(handled, "rowcount", None),
            "outbox_deleted": getattr(outbox, "rowcount", None),
            "jobs_deleted": getattr(jobs, "rowcount", None),
        },
    )


# Entry points -------------------------------------------------------------------------------


async def run_worker_process(
    settings: Settings,
    database_url: str,
    *,
    concurrency: int | None,
    scheduler: bool,
    dispatcher: bool,
    queues: list[str] | None,
) -> None:
    """`servicedesk worker`: run until SIGTERM/SIGINT, then stop gracefully."""
    runtime = Runtime.build(settings, database_url)
    modules = load_handler_modules(settings)
    log.info("handler modules loaded", extra={"modules": modules})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    system = JobSystem(
        runtime,
        concurrency=concurrency,
        scheduler=scheduler,
        dispatcher=dispatcher,
        queues=queues,
    )
    try:
        await system.start()
        await stop.wait()
    finally:
        await system.stop()
        await runtime.db.dispose()


def attach_to_app(app: FastAPI) -> None:
    """Run the job system inside the app's lifespan (`servicedesk serve`, embedded default)."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: ASGIApp) -> AsyncIterator[Any]:
        async with inner(application) as state:
            runtime: Runtime = app.state.runtime
            load_handler_modules(runtime.settings)
            system = JobSystem(runtime)
            await system.start()
            try:
                yield state
            finally:
                await system.stop()

    app.router.lifespan_context = lifespan
