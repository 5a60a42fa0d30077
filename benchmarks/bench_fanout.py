"""One event, 10,000 recipients: a new unassigned ticket in a department of 10,000 agents.

    .venv/bin/python benchmarks/bench_fanout.py [--agents 10000] [--no-smtp] [--database-url URL]

On a fresh database (an embedded PostgreSQL 18 in a temporary directory, or the database
`servicedesk_bench_fanout`, dropped and recreated, on the server of --database-url), migrated,
it creates one organization with one department of --agents active agents (inserted with
COPY, one precomputed Argon2 hash), a category routed to that department, and a requester. The
requester files one ticket through `tickets.service.create_ticket` (the `ticket.created` event
in the same transaction, as the API does). The job system then runs in this process (the
dispatcher and a worker with the `notifications.*` handlers, `core.job_runner.JobSystem`), and
the script waits until the fan-out handler has committed.

Printed: the time from the ticket's commit to all in-app notifications stored (the fan-out is
one transaction, so they appear together), the rows it wrote (notifications, receipts, emails,
queued send jobs), the SQL statements the process sent through SQLAlchemy from the commit until
then (the handler and the dispatcher; procrastinate's own queries are not counted), and the
process's peak RSS. Email goes to an SMTP sink (aiosmtpd) started in this process, so emails
are rendered and queued like in production; the job system stops before it would send them.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import resource
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scratch_db import scratch_database  # noqa: E402

from servicedesk.accounts import service as accounts  # noqa: E402
from servicedesk.accounts.schemas import DepartmentCreate, UserCreate  # noqa: E402
from servicedesk.config import Settings  # noqa: E402
from servicedesk.core import migrate  # noqa: E402
from servicedesk.core.actor import SYSTEM  # noqa: E402
from servicedesk.core.runtime import Runtime  # noqa: E402
from servicedesk.tenancy import service as tenancy  # noqa: E402
from servicedesk.tenancy.schemas import OrganizationCreate  # noqa: E402
from servicedesk.tenancy.service import Tenant  # noqa: E402
from servicedesk.tickets import categories  # noqa: E402
from servicedesk.tickets import service as tickets_service  # noqa: E402
from servicedesk.tickets.auth import Viewer  # noqa: E402
from servicedesk.tickets.schemas import CategoryCreate, TicketCreate  # noqa: E402

SECRET = "bench-secret-" + "x" * 40
PASSWORD = "Bench-password-42!"


def say(message: str) -> None:
    print(message, flush=True)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_sink() -> tuple[asyncio.AbstractServer, list[int]]:
    """An SMTP server that accepts and counts messages (aiosmtpd, in this process)."""
    from aiosmtpd import smtp

    received = [0]

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            received[0] += 1
            return "250 Message accepted"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: smtp.SMTP(Handler()), "127.0.0.1", free_port())
    return server, received


def copy_agents(url: str, org_id: uuid.UUID, department_id: uuid.UUID, n: int, hash_: str) -> None:
    """`n` approved, active agents of the department, in one COPY (as the superuser: no RLS)."""
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    buffer = io.StringIO()
    for i in range(n):
        buffer.write(
            f"{uuid.uuid4()}\t{org_id}\tagent{i:05d}@bench.example.com\tAgent\t{i:05d}\t"
            f"agent\tapproved\tt\tUTC\t{hash_}\t{department_id}\tnow\tnow\tnow\n"
        )
    columns = (
        "id, organization_id, email, first_name, last_name, role, status, is_active, "
        "timezone, password_hash, department_id, created_at, updated_at, approved_at"
    )
    with psycopg.connect(plain) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY users ({columns}) FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        conn.commit()


async def counts(runtime: Runtime, event_id: uuid.UUID) -> dict[str, int]:
    async with runtime.db.session() as session:
        row = (
            await session.execute(
                text(
                    "SELECT (SELECT count(*) FROM notifications WHERE event_id = :e) AS in_app, "
                    "(SELECT count(*) FROM notification_receipts WHERE event_id = :e) AS receipts,"
                    " (SELECT count(*) FROM emails WHERE event_id = :e) AS emails, "
                    "(SELECT count(*) FROM procrastinate.procrastinate_jobs "
                    " WHERE task_name = 'notifications.send_email') AS send_jobs, "
                    "(SELECT count(*) FROM handled_events WHERE event_id = :e "
                    " AND handler = 'notifications.fan_out') AS handled"
                ),
                {"e": event_id},
            )
        ).one()
    return dict(row._mapping)


async def profile_fan_out(runtime: Runtime, org: Any, requester: Any, category_id: Any) -> None:
    """--profile: file the ticket, then run `notify_for_event` directly under cProfile."""
    import cProfile
    import pstats

    from servicedesk.core.events import envelope
    from servicedesk.models import OutboxEvent
    from servicedesk.notifications import service

    tenant = Tenant.of(org)
    async with runtime.db.tenant_session(org.id) as session:
        await tickets_service.create_ticket(
            session,
            Viewer.of(requester, tenant),
            tenant,
            TicketCreate(
                subject="Profiled",
                description="Nothing connects since 9:00.",
                category_id=category_id,
            ),
        )
    async with runtime.db.session() as session:
        row = (
            await session.execute(
                text("SELECT * FROM outbox_events WHERE event_type = 'ticket.created'")
            )
        ).one()
        event = envelope(OutboxEvent(**row._mapping))
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    async with runtime.db.tenant_session(org.id) as session:
        deliveries = await service.notify_for_event(session, runtime, event)
    profiler.disable()
    say(f"notify_for_event: {len(deliveries)} deliveries in {time.perf_counter() - started:.2f} s")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


async def main_async(args: argparse.Namespace, url: str, data_dir: Path) -> None:
    from servicedesk.core.job_runner import JobSystem
    from servicedesk.core.jobs import Registry, load_handler_modules, registry

    sink = None
    extra: dict[str, Any] = {}
    if not args.no_smtp:
        sink, _received = await start_sink()
        port = sink.sockets[0].getsockname()[1]
        extra = {"SMTP_URL": f"smtp://127.0.0.1:{port}", "SMTP_FROM": "desk@bench.example.com"}
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        SECRET_KEY=SECRET,
        SERVICEDESK_DATA_DIR=data_dir,
        SERVICEDESK_JOBS_POLL_SECONDS=0.2,
        SERVICEDESK_LOG_LEVEL="WARNING",
        **extra,
    )
    migrate.upgrade(url)
    runtime = Runtime.build(settings, url)
    probe = Runtime.build(settings, url)  # the polling below is not counted with the handler
    try:
        async with runtime.db.session() as session:
            org = await tenancy.create_organization(
                session, OrganizationCreate(slug="bench", name="Bench"), actor=SYSTEM
            )
        async with runtime.db.tenant_session(org.id) as session:
            department = await accounts.do_create_department(
                session, DepartmentCreate(name="Support"), organization_id=org.id, actor=SYSTEM
            )
            category = await categories.create_category(
                session,
                CategoryCreate(name="Everything", department_id=department.id),
                organization_id=org.id,
                actor=SYSTEM,
            )
            requester = await accounts.do_create_user(
                session,
                runtime.hasher,
                UserCreate(
                    email="rita@bench.example.com",
                    password=PASSWORD,
                    first_name="Rita",
                    last_name="Requester",
                ),
                organization_id=org.id,
                actor=SYSTEM,
            )
        hash_ = await runtime.hasher.hash(PASSWORD)
        started = time.perf_counter()
        copy_agents(url, org.id, department.id, args.agents, hash_)
        took = time.perf_counter() - started
        say(f"setup: {args.agents} agents inserted with COPY in {took:.2f} s")

        if args.profile:
            await profile_fan_out(runtime, org, requester, category.id)
            return

        load_handler_modules(settings)
        mine = Registry()
        mine.handlers = {k: v for k, v in registry.handlers.items() if k == "notifications.fan_out"}
        mine.tasks = {k: v for k, v in registry.tasks.items() if k.startswith("notifications.")}

        statements = [0]

        def count(*_: Any) -> None:
            statements[0] += 1

        async with JobSystem(runtime, registry=mine, scheduler=False, concurrency=1) as jobs:
            await asyncio.sleep(1)  # let the dispatcher and worker settle
            rss_before = peak_rss_mib()
            tenant = Tenant.of(org)
            async with runtime.db.tenant_session(org.id) as session:
                viewer = Viewer.of(requester, tenant)
                ticket = await tickets_service.create_ticket(
                    session,
                    viewer,
                    tenant,
                    TicketCreate(
                        subject="The whole building lost the network",
                        description="Nothing connects since 9:00.",
                        category_id=category.id,
                    ),
                )
                ticket_id = ticket.id
            committed = time.perf_counter()
            event.listen(runtime.db.engine.sync_engine, "before_cursor_execute", count)
            async with probe.db.session() as session:
                event_id = (
                    await session.execute(
                        text(
                            "SELECT id FROM outbox_events WHERE event_type = 'ticket.created' "
                            "AND payload->>'ticket_id' = :t"
                        ),
                        {"t": str(ticket_id)},
                    )
                ).scalar_one()
            found: dict[str, int] = {}
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                found = await counts(probe, event_id)
                if found["handled"]:  # the handler's transaction committed
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - committed
            event.remove(runtime.db.engine.sync_engine, "before_cursor_execute", count)
            sql = statements[0]
            await jobs.stop()
        found = await counts(probe, event_id)
        say(f"fan-out of one ticket.created to a department of {args.agents} agents:")
        say(f"  commit → fan-out committed (all in-app notifications stored): {elapsed:.2f} s")
        say(
            f"  rows: {found['in_app']} notifications, {found['receipts']} receipts, "
            f"{found['emails']} emails queued, "
            f"{found['send_jobs']} send jobs still waiting (the others already sent)"
        )
        say(f"  SQL statements through SQLAlchemy (commit → stored): {sql}")
        say(
            f"  peak RSS of the process: {peak_rss_mib():.0f} MiB "
            f"(before the event: {rss_before:.0f} MiB)"
        )
        if found["in_app"] < args.agents:
            say(f"  NOTE: only {found['in_app']} of {args.agents} agents were notified")
    finally:
        await runtime.db.dispose()
        await probe.db.dispose()
        if sink is not None:
            sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--no-smtp", action="store_true", help="no SMTP_URL: no emails")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--profile", action="store_true", help="cProfile the fan-out itself")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if not 1 <= args.agents <= 100_000:
        raise SystemExit("--agents 1..100000")
    with scratch_database(name="fanout", database_url=args.database_url, keep=args.keep) as (
        url,
        data_dir,
    ):
        asyncio.run(main_async(args, url, data_dir))


if __name__ == "__main__":
    main()
