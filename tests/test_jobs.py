"""The job system: outbox → dispatcher → queue → worker → handler, on a real PostgreSQL.

Each test runs its own `JobSystem` with a registry of its own handlers (so nothing else that
is registered in this process runs), against the session's test database, with fast timings.
The crash test runs real `servicedesk worker` processes and kills them with SIGKILL.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from procrastinate.jobs import Job
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from servicedesk.app import create_app
from servicedesk.config import Settings
from servicedesk.core import jobs, rls
from servicedesk.core.actor import SYSTEM
from servicedesk.core.events import emit
from servicedesk.core.job_runner import BackoffWithJitter, JobSystem, attach_to_app
from servicedesk.core.jobs import (
    JobContext,
    PermanentError,
    Registry,
    TaskContext,
    already_handled,
    defer_job,
    handler_modules,
    load_handler_modules,
)
from servicedesk.core.runtime import Runtime
from servicedesk.models import Organization, Role
from tests.conftest import Session, client_for, test_settings
from tests.ticket_helpers import Desk, desk_fixture  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
JOBS = "/api/v1/jobs"
FAST = {
    "SERVICEDESK_JOBS_POLL_SECONDS": 0.1,
    "SERVICEDESK_JOBS_RETRY_BASE_SECONDS": 0.2,
    "SERVICEDESK_JOBS_RETRY_MAX_SECONDS": 1.0,
    "SERVICEDESK_JOBS_MAX_ATTEMPTS": 3,
    "SERVICEDESK_JOBS_HEARTBEAT_SECONDS": 0.5,
    "SERVICEDESK_JOBS_STALLED_SECONDS": 2.0,
}


@pytest.fixture(scope="module")
async def jobs_runtime(database_url: str) -> AsyncIterator[Runtime]:
    runtime = Runtime.build(test_settings(**FAST), database_url)
    async with runtime.db.session() as session:
        role = rls.app_role()
        for statement in (
            "CREATE TABLE IF NOT EXISTS test_job_effects (id bigserial PRIMARY KEY, "
            "event_id uuid, handler text, org_id uuid, note text, "
            "at timestamptz DEFAULT clock_timestamp())",
            "CREATE TABLE IF NOT EXISTS test_crash_emails (id uuid PRIMARY KEY, event_id uuid, "
            "org_id uuid, status text)",
            f"GRANT ALL ON test_job_effects, test_crash_emails TO {role}",
            f"GRANT ALL ON SEQUENCE test_job_effects_id_seq TO {role}",
        ):
            await session.execute(text(statement))
    yield runtime
    await runtime.db.dispose()


@asynccontextmanager
async def running(runtime: Runtime, registry: Registry, **options: Any) -> AsyncIterator[JobSystem]:
    system = JobSystem(runtime, registry=registry, graceful_seconds=2.0, **options)
    await system.start()
    try:
        yield system
    finally:
        await system.stop()


async def eventually(check: Callable[[], Awaitable[Any]], within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {check.__name__}")
        await asyncio.sleep(0.05)


async def record_effect(ctx: JobContext) -> None:
    """The effect every test handler writes: one row, in the handled transaction."""
    async with ctx.tenant_session() as session:
        await session.execute(
            text(
                "INSERT INTO test_job_effects (event_id, handler, org_id, note) "
                "VALUES (:e, :h, :o, :n)"
            ),
            {"e": ctx.event_id, "h": ctx.handler, "o": ctx.organization_id, "n": ctx.event_type},
        )


async def effects(runtime: Runtime, event_id: uuid.UUID | str, handler: str) -> int:
    async with runtime.db.session() as session:
        return int(
            (
                await session.execute(
                    text(
                        "SELECT count(*) FROM test_job_effects WHERE event_id = :e AND handler = :h"
                    ),
                    {"e": str(event_id), "h": handler},
                )
            ).scalar_one()
        )


async def emit_event(runtime: Runtime, org: Organization, event_type: str, **payload: Any) -> str:
    async with runtime.db.tenant_session(org.id) as session:
        event = emit(
            session, organization_id=org.id, event_type=event_type, actor=SYSTEM, payload=payload
        )
    return str(event.id)


async def job_of(runtime: Runtime, event_id: str, handler: str) -> Any:
    async with runtime.db.session() as session:
        return (
            await session.execute(
                text(
                    "SELECT id, status::text AS status, attempts "
                    "FROM procrastinate.procrastinate_jobs "
                    "WHERE task_name = :h AND args->'event'->>'event_id' = :e"
                ),
                {"h": handler, "e": event_id},
            )
        ).first()


def unique(name: str) -> str:
    return f"tests.{name}.{secrets.token_hex(3)}"


# The contract ---------------------------------------------------------------------------------


def test_registry_patterns_names_and_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry()

    @registry.on_event("ticket.*", "comment.created", name="tests.a")
    async def a(ctx: JobContext) -> None: ...

    @registry.on_event("*", name="tests.b")
    async def b(ctx: JobContext) -> None: ...

    assert [h.name for h in registry.handlers_for("ticket.updated")] == ["tests.a", "tests.b"]
    assert [h.name for h in registry.handlers_for("comment.created")] == ["tests.a", "tests.b"]
    assert [h.name for h in registry.handlers_for("user.approved")] == ["tests.b"]

    with pytest.raises(ValueError, match="already used"):

        @registry.on_event("ticket.created", name="tests.a")
        async def other(ctx: JobContext) -> None: ...

    with pytest.raises(ValueError, match="event type pattern"):
        registry.on_event("Ticket Created", name="tests.c")
    with pytest.raises(ValueError, match="cron"):
        registry.periodic("tests.p", cron="every minute")
    with pytest.raises(ValueError, match="job name"):
        registry.job("Not A Name")

    settings = test_settings(SERVICEDESK_EXTRA_HANDLER_MODULES="tests.jobs_crash_handlers")
    assert handler_modules(settings)[-1] == "tests.jobs_crash_handlers"
    assert "servicedesk.notifications.handlers" in handler_modules(settings)
    only = test_settings(SERVICEDESK_HANDLER_MODULES="servicedesk.nonexistent.handlers")
    with pytest.raises(ModuleNotFoundError):
        load_handler_modules(only)  # named explicitly: must exist
    # The built-in list skips modules not written yet.
    monkeypatch.setattr(jobs, "HANDLER_MODULES", ["servicedesk.not_yet_written.handlers"])
    assert load_handler_modules(test_settings()) == []


def test_backoff_grows_with_jitter_and_stops() -> None:
    strategy = BackoffWithJitter(max_attempts=5, base_seconds=1.0, max_seconds=6.0)
    for failed_runs, (low, high) in enumerate([(0.5, 1), (1, 2), (2, 4), (3, 6), (3, 6)], 1):
        delays = [strategy.delay(failed_runs) for _ in range(200)]
        assert low <= min(delays) and max(delays) <= high
        assert len({round(d, 6) for d in delays}) > 100  # jittered

    def job(attempts: int) -> Job:
        return Job(id=1, queue="q", lock=None, queueing_lock=None, task_name="t", attempts=attempts)

    assert strategy.get_retry_decision(exception=RuntimeError(), job=job(0)) is not None
    assert strategy.get_retry_decision(exception=RuntimeError(), job=job(3)) is not None
    assert strategy.get_retry_decision(exception=RuntimeError(), job=job(4)) is None  # 5th run
    assert strategy.get_retry_decision(exception=PermanentError(), job=job(0)) is None


def test_vendored_queue_schema_is_the_installed_one() -> None:
    """Migration 0004 applies a copy of procrastinate's schema; an upgrade needs a migration."""
    from importlib import resources

    import procrastinate

    installed = (resources.files("procrastinate.sql") / "schema.sql").read_text("utf-8")
    vendored = (ROOT / "migrations" / "sql" / "procrastinate-3.10.0.sql").read_text("utf-8")
    assert installed == vendored, (
        f"procrastinate {procrastinate.__version__} has another schema than the one migration "
        "0004 applied: add a migration running its sql/migrations/* in the procrastinate schema"
    )


async def test_already_handled_claims_once(jobs_runtime: Runtime, org: Organization) -> None:
    event_id = uuid.uuid4()
    async with jobs_runtime.db.tenant_session(org.id) as session:
        assert await already_handled(session, event_id=event_id, handler="tests.claim") is False
    async with jobs_runtime.db.tenant_session(org.id) as session:
        assert await already_handled(session, event_id=event_id, handler="tests.claim") is True
        assert await already_handled(session, event_id=event_id, handler="tests.other") is False
    # A claim that rolls back is no claim.
    async with jobs_runtime.db.sessionmaker() as session, session.begin():
        await jobs_runtime.db.bind_tenant(session, org.id)
        await already_handled(session, event_id=event_id, handler="tests.rolled")
        await session.rollback()
    async with jobs_runtime.db.tenant_session(org.id) as session:
        assert await already_handled(session, event_id=event_id, handler="tests.rolled") is False


async def test_queue_is_out_of_reach_of_tenant_sessions(
    jobs_runtime: Runtime, org: Organization, other_org: Organization
) -> None:
    with pytest.raises(DBAPIError, match="permission denied"):
        async with jobs_runtime.db.tenant_session(org.id) as session:
            await session.execute(text("SELECT count(*) FROM procrastinate.procrastinate_jobs"))
    with pytest.raises(DBAPIError, match="its own organization"):
        async with jobs_runtime.db.tenant_session(org.id) as session:
            await defer_job(session, "tests.x", organization_id=other_org.id)


# End to end -----------------------------------------------------------------------------------


async def test_ticket_created_through_the_api_reaches_a_handler(
    desk: Desk, jobs_runtime: Runtime
) -> None:
    registry = Registry()
    name = unique("e2e")
    seen: list[JobContext] = []

    @registry.on_event("ticket.created", name=name)
    async def handler(ctx: JobContext) -> None:
        if ctx.organization_id == desk.org.id:
            seen.append(ctx)
            await record_effect(ctx)

    async with running(jobs_runtime, registry):
        started = time.monotonic()
        ticket = await desk.file()

        async def handled() -> bool:
            return any(c.payload["ticket_id"] == ticket["id"] for c in seen)

        await eventually(handled, within=5)
        elapsed = time.monotonic() - started
    ctx = next(c for c in seen if c.payload["ticket_id"] == ticket["id"])
    assert ctx.event_type == "ticket.created" and ctx.attempt == 1
    assert ctx.event["actor"] == {"type": "user", "id": str(desk.requester.user.id)}
    assert await effects(jobs_runtime, ctx.event_id, name) == 1
    assert elapsed < 5
    async with jobs_runtime.db.session() as session:
        dispatched = (
            await session.execute(
                text("SELECT dispatched_at FROM outbox_events WHERE id = :id"),
                {"id": ctx.event_id},
            )
        ).scalar_one()
    assert dispatched is not None


async def test_redelivered_event_has_its_effect_once(
    jobs_runtime: Runtime, org: Organization
) -> None:
    registry = Registry()
    name = unique("idem")
    calls: list[int] = []

    @registry.on_event("test.idempotent", name=name)
    async def handler(ctx: JobContext) -> None:
        calls.append(ctx.attempt)
        await record_effect(ctx)

    async with running(jobs_runtime, registry):
        event_id = await emit_event(jobs_runtime, org, "test.idempotent", n=1)

        async def first() -> bool:
            return len(calls) == 1 and await effects(jobs_runtime, event_id, name) == 1

        await eventually(first)
        # The same event dispatched again (as after a crash): a second job, no second effect.
        async with jobs_runtime.db.session() as session:
            await session.execute(
                text("UPDATE outbox_events SET dispatched_at = NULL WHERE id = :id"),
                {"id": event_id},
            )

        async def second() -> bool:
            return len(calls) == 2 and await job_of(jobs_runtime, event_id, name) is None

        await eventually(second)
    assert await effects(jobs_runtime, event_id, name) == 1


async def test_retries_with_backoff_then_dead_letter_listed_and_replayed(
    jobs_runtime: Runtime,
    app: object,
    org: Organization,
    admin: Session,
    other_org: Organization,
    make_user: Callable[..., Awaitable[Any]],
    login: Callable[..., Awaitable[Session]],
) -> None:
    registry = Registry()
    name = unique("flaky")
    runs: list[tuple[int, float]] = []
    failing = {"on": True}

    @registry.on_event("test.flaky", name=name)
    async def handler(ctx: JobContext) -> None:
        runs.append((ctx.attempt, time.monotonic()))
        if failing["on"]:
            raise RuntimeError("smtp down")
        await record_effect(ctx)

    other_admin = await login(await make_user(other_org, Role.ADMIN), other_org)
    async with running(jobs_runtime, registry), client_for(app) as client:
        event_id = await emit_event(jobs_runtime, org, "test.flaky", ticket_id="t-1")

        async def dead() -> Any:
            job = await job_of(jobs_runtime, event_id, name)
            return job if job is not None and job.status == "failed" else None

        job = await eventually(dead)
        # Three runs (SERVICEDESK_JOBS_MAX_ATTEMPTS), waits growing: ≥ 0.1 s, then ≥ 0.2 s.
        assert [attempt for attempt, _ in runs] == [1, 2, 3]
        assert job.attempts == 3
        gaps = [b - a for (_, a), (_, b) in itertools.pairwise(runs)]
        assert gaps[0] >= 0.1 and gaps[1] >= 0.2, gaps

        r = await client.get(f"{JOBS}/failed", headers=admin.headers)
        assert r.status_code == 200, r.text
        listed = {item["id"]: item for item in r.json()["items"]}
        assert job.id in listed
        item = listed[job.id]
        assert item["handler"] == name and item["kind"] == "event"
        assert item["event_id"] == event_id and item["event_type"] == "test.flaky"
        assert item["attempts"] == 3 and item["error"] == "RuntimeError: smtp down"
        assert item["failed_at"] is not None and item["traceback"] is None
        assert item["organization_id"] == str(org.id)

        # Another organization's admin neither sees nor touches it.
        r = await client.get(f"{JOBS}/failed", headers=other_admin.headers)
        assert job.id not in {i["id"] for i in r.json()["items"]}
        for method, path in (
            ("POST", f"{JOBS}/{job.id}/replay"),
            ("GET", f"{JOBS}/{job.id}"),
            ("DELETE", f"{JOBS}/{job.id}"),
        ):
            r = await client.request(method, path, headers=other_admin.headers)
            assert r.status_code == 404, (method, path, r.text)

        # Fixed: the replay succeeds, once; the job leaves the dead letters.
        failing["on"] = False
        r = await client.post(f"{JOBS}/{job.id}/replay", headers=admin.headers)
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "todo"

        async def replayed() -> bool:
            return await effects(jobs_runtime, event_id, name) == 1

        await eventually(replayed)
        await eventually(lambda: _gone(jobs_runtime, event_id, name))
        assert [attempt for attempt, _ in runs][-1] == 4
        r = await client.post(f"{JOBS}/{job.id}/replay", headers=admin.headers)
        assert r.status_code == 404  # succeeded jobs are deleted
        r = await client.get(
            "/api/v1/audit-log", params={"action": "job.replayed"}, headers=admin.headers
        )
        assert [e["record_id"] for e in r.json()["items"]] == [str(job.id)]


async def _gone(runtime: Runtime, event_id: str, name: str) -> bool:
    return await job_of(runtime, event_id, name) is None


async def test_permanent_error_skips_retries_and_platform_sees_all(
    jobs_runtime: Runtime, database_url: str, org: Organization, other_org: Organization
) -> None:
    registry = Registry()
    name = unique("permanent")

    @registry.on_event("test.permanent", name=name)
    async def handler(ctx: JobContext) -> None:
        raise PermanentError(f"bad address for {ctx.payload['who']}")

    async with running(jobs_runtime, registry):
        ids = [
            await emit_event(jobs_runtime, org, "test.permanent", who="a"),
            await emit_event(jobs_runtime, other_org, "test.permanent", who="b"),
        ]

        async def dead() -> list[Any]:
            jobs = [await job_of(jobs_runtime, e, name) for e in ids]
            return jobs if all(j is not None and j.status == "failed" for j in jobs) else []

        jobs = await eventually(dead)
    assert [j.attempts for j in jobs] == [1, 1]

    token = "platform-" + secrets.token_hex(8)
    platform_app = create_app(
        test_settings(SERVICEDESK_PLATFORM_TOKEN=token), database_url=database_url
    )
    try:
        async with client_for(platform_app) as client:
            auth = {"Authorization": f"Bearer {token}"}
            r = await client.get(
                "/api/v1/platform/jobs/failed", params={"handler": name}, headers=auth
            )
            assert r.status_code == 200, r.text
            items = r.json()["items"]
            assert {i["organization_id"] for i in items} == {str(org.id), str(other_org.id)}
            assert all("PermanentError" in i["traceback"] for i in items)
            r = await client.get(
                "/api/v1/platform/jobs/failed", headers={"Authorization": "Bearer x"}
            )
            assert r.status_code == 401
            r = await client.get("/api/v1/platform/jobs/stats", headers=auth)
            assert r.status_code == 200
            assert any(q["status"] == "failed" for q in r.json()["jobs"])
            r = await client.delete(f"/api/v1/platform/jobs/{jobs[1].id}", headers=auth)
            assert r.status_code == 204
            r = await client.get(f"/api/v1/platform/jobs/{jobs[1].id}", headers=auth)
            assert r.status_code == 404
    finally:
        await platform_app.state.runtime.db.dispose()


async def test_jobs_deferred_in_a_tenant_transaction(
    jobs_runtime: Runtime, org: Organization
) -> None:
    registry = Registry()
    name = unique("send")
    got: list[TaskContext] = []

    @registry.job(name)
    async def send(ctx: TaskContext) -> None:
        got.append(ctx)

    async with running(jobs_runtime, registry):
        async with jobs_runtime.db.sessionmaker() as session, session.begin():
            await jobs_runtime.db.bind_tenant(session, org.id)
            await defer_job(session, name, organization_id=org.id, args={"n": 0})
            await session.rollback()  # no job
        async with jobs_runtime.db.tenant_session(org.id) as session:
            job_id = await defer_job(
                session, name, organization_id=org.id, args={"n": 1}, queueing_lock=name
            )
            # A second one with the same queueing lock while the first waits: not queued.
            assert (
                await defer_job(session, name, organization_id=org.id, queueing_lock=name) is None
            )
        await eventually(lambda: _true(bool(got)))
        await asyncio.sleep(0.3)
    assert [(c.args, c.organization_id, c.job_id, c.attempt) for c in got] == [
        ({"n": 1}, org.id, job_id, 1)
    ]


async def _true(value: bool) -> bool:
    return value


async def test_periodic_job_runs_once_per_period_with_two_schedulers(
    jobs_runtime: Runtime,
) -> None:
    registry = Registry()
    name = unique("tick")
    runs: list[datetime] = []

    @registry.periodic(name, cron="* * * * * *")  # every second
    async def tick(runtime: Runtime, run_at: datetime) -> None:
        runs.append(run_at)

    async with (
        running(jobs_runtime, registry, dispatcher=False, name="scheduler-1"),
        running(jobs_runtime, registry, dispatcher=False, name="scheduler-2"),
    ):
        await asyncio.sleep(3.6)
    assert len(runs) >= 2, runs
    assert len(runs) == len(set(runs)), sorted(runs)


async def test_serve_runs_the_jobs_in_process(
    desk: Desk,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    jobs_runtime: Runtime,  # creates the effects table the handlers write
) -> None:
    """`servicedesk serve` in the embedded default: the app's lifespan runs the job system."""
    monkeypatch.setenv("SD_CRASH_DIR", str(tmp_path))
    monkeypatch.setenv("SD_CRASH_SINK", str(tmp_path / "sink.txt"))
    # A fresh process-wide registry for this test only (the module registers into it).
    monkeypatch.setattr(jobs, "registry", Registry())
    monkeypatch.delitem(sys.modules, "tests.jobs_crash_handlers", raising=False)
    settings: Settings = test_settings(
        **FAST, SERVICEDESK_HANDLER_MODULES="tests.jobs_crash_handlers"
    )
    assert test_settings(DATABASE_URL=None).runs_inprocess_worker  # embedded: on by default
    assert not test_settings(DATABASE_URL=database_url).runs_inprocess_worker
    served = create_app(settings, database_url=database_url)
    attach_to_app(served)
    async with served.router.lifespan_context(served):
        ticket = await desk.file()

        async def handled() -> bool:
            async with desk.runtime.db.session() as session:
                return bool(
                    (
                        await session.execute(
                            text("SELECT count(*) FROM test_job_effects WHERE note = :t"),
                            {"t": ticket["id"]},
                        )
                    ).scalar_one()
                )

        await eventually(handled)


# Crash test -----------------------------------------------------------------------------------


class Worker:
    """A `servicedesk worker` process against the test database."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "servicedesk", "worker", "--concurrency", "8"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.log.close()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self.log.close()
        return code


async def test_crash_sigkill_anywhere_delivers_every_email_exactly_once(
    desk: Desk, jobs_runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    org = str(desk.org.id)
    sink = tmp_path / "sink.txt"
    base = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SERVICEDESK_", "SD_"))},
        **{k: str(v) for k, v in FAST.items()},
        "SERVICEDESK_JOBS_MAX_ATTEMPTS": "10",
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-" + "x" * 40,
        "SERVICEDESK_MIGRATE_ON_START": "false",
        "SERVICEDESK_DATA_DIR": str(tmp_path / "var"),
        "SERVICEDESK_LOG_LEVEL": "WARNING",
        "SERVICEDESK_HANDLER_MODULES": "tests.jobs_crash_handlers",
        "PYTHONPATH": str(ROOT),
        "SD_CRASH_ORG": org,
        "SD_CRASH_DIR": str(tmp_path),
        "SD_CRASH_SINK": str(sink),
    }

    def start(*points: str) -> Worker:
        return Worker({**base, "SD_CRASH_POINT": ",".join(points)}, tmp_path / "workers.log")

    async def reached(count: int, *points: str) -> None:
        def markers(point: str) -> int:
            return len(list(tmp_path.glob(f"{point}.*.reached")))

        async def all_there() -> bool:
            return all(markers(p) >= count for p in points)

        try:
            await eventually(all_there, within=30)
        except AssertionError:
            raise AssertionError((tmp_path / "workers.log").read_text()[-4000:]) from None

    async def ours(sql: str) -> list[Any]:
        async with jobs_runtime.db.session() as session:
            return list(await session.execute(text(sql), {"org": org}))

    # 1. Committed, not dispatched: the dispatcher dies inside its transaction.
    worker = start("dispatch")
    tickets = [await desk.file() for _ in range(3)]
    await reached(1, "dispatch")
    worker.kill()
    pending = await ours(
        "SELECT id FROM outbox_events WHERE organization_id = CAST(:org AS uuid) "
        "AND event_type = 'ticket.created' AND dispatched_at IS NULL"
    )
    assert len(pending) == 3
    # 2. Mid-handler: the effects are written but not committed (all three).
    worker = start("handler")
    await reached(3, "handler")
    worker.kill()
    assert await ours("SELECT 1 FROM test_job_effects WHERE org_id = CAST(:org AS uuid)") == []
    # 3. After the handlers' commits (the queue still has the jobs running), and mid-send.
    worker = start("committed", "send")
    await reached(3, "committed", "send")
    worker.kill()
    # 4. A healthy worker finds the jobs of the dead ones and finishes everything.
    worker = start()

    async def delivered() -> bool:
        sent = await ours(
            "SELECT 1 FROM test_crash_emails WHERE org_id = CAST(:org AS uuid) AND status = 'sent'"
        )
        left = await ours(
            "SELECT id FROM procrastinate.procrastinate_jobs WHERE args->>'organization_id' = :org"
        )
        return len(sent) == 3 and not left  # every job done (succeeded jobs are deleted)

    try:
        await eventually(delivered, within=30)
    finally:
        assert worker.stop() == 0
    effect_rows = await ours(
        "SELECT event_id, count(*) AS n FROM test_job_effects "
        "WHERE org_id = CAST(:org AS uuid) GROUP BY event_id"
    )
    assert len(effect_rows) == 3 and all(r.n == 1 for r in effect_rows)
    delivered_lines = [line for line in sink.read_text().splitlines() if line.startswith(org)]
    assert len(delivered_lines) == 3 and len(set(delivered_lines)) == 3
    emails = await ours("SELECT id FROM test_crash_emails WHERE org_id = CAST(:org AS uuid)")
    assert {f"{org} {e.id}" for e in emails} == set(delivered_lines)
    # The kills did interrupt work that then ran again.
    runs = (tmp_path / "runs.log").read_text().splitlines()
    assert sum(line.startswith("effect") for line in runs) == 9  # killed twice, run thrice
    assert sum(line.startswith("send") for line in runs) == 6  # killed once, run twice
    assert len(tickets) == 3


async def test_maintenance_forgets_expired_idempotency_keys(
    runtime: Runtime, org: Organization, make_user: Callable[..., Awaitable[Any]]
) -> None:
    """The hourly maintenance deletes Idempotency-Key records past their 24 h and keeps the
    recent ones (a retried POST within the window must still find its first answer)."""
    from datetime import timedelta

    from sqlalchemy import select

    from servicedesk.core.clock import utc_now
    from servicedesk.core.idempotency import RETENTION
    from servicedesk.core.job_runner import maintenance
    from servicedesk.models.idempotency import IdempotencyRecord

    user = await make_user(org, role=Role.AGENT)
    async with runtime.db.session() as session:
        for key, age in (("old-key", RETENTION + timedelta(minutes=5)), ("new-key", None)):
            session.add(
                IdempotencyRecord(
                    organization_id=org.id,
                    user_id=user.id,
                    key=key,
                    request_hash="0" * 64,
                    status_code=201,
                    response_body={},
                    created_at=utc_now() - age if age else utc_now(),
                )
            )
    await maintenance(runtime, utc_now())
    async with runtime.db.session() as session:
        keys = set(
            (
                await session.execute(
                    select(IdempotencyRecord.key).where(IdempotencyRecord.user_id == user.id)
                )
            ).scalars()
        )
    assert keys == {"new-key"}
