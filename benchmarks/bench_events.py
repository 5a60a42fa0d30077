"""Events per second end to end (commit → handler done) with N `servicedesk worker` processes.

    .venv/bin/python benchmarks/bench_events.py [--workers 2] [--concurrency 8]
        [--backlog 5000] [--rate 200] [--duration 10] [--producers 4] [--database-url URL]

On a fresh database (an embedded PostgreSQL 18 in a temporary directory, or the database
`servicedesk_bench_events`, dropped and recreated, on the server of --database-url), migrated,
with one organization, it starts `--workers` worker processes (each: dispatcher + worker with
`--concurrency` jobs at once + scheduler) whose only handler is benchmarks/bench_handlers.py:
one row per event written in the handled transaction (handled_events + the row, one commit).
Events are `bench.ping` rows written to the outbox with `core.events.emit` in a tenant
transaction, exactly as a service writes them. Three runs:

  backlog     --backlog events committed while no worker runs, then the workers start: the
              drain rate (events / time from the first to the last handler done).
  paced       --rate events per second for --duration s, one transaction each: latency from
              each commit to its handler's commit (p50, p95, p99, max).
  saturated   --producers concurrent producers commit as fast as they can for --duration s:
              end-to-end throughput (handled events per second while producing) and latency.

Everything runs on this machine (producers, workers and PostgreSQL share its cores), so the
figures are a floor for a deployment where they do not. Latency uses the machine's one clock
(PostgreSQL's clock_timestamp() and Python's time.time()).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from scratch_db import scratch_database  # noqa: E402

from servicedesk.config import Settings  # noqa: E402
from servicedesk.core import migrate, rls  # noqa: E402
from servicedesk.core.actor import SYSTEM  # noqa: E402
from servicedesk.core.events import emit  # noqa: E402
from servicedesk.core.runtime import Runtime  # noqa: E402
from servicedesk.tenancy import service as tenancy  # noqa: E402
from servicedesk.tenancy.schemas import OrganizationCreate  # noqa: E402

SECRET = "bench-secret-" + "x" * 40


def say(message: str) -> None:
    print(message, flush=True)


def percentile(values: list[float], pct: float) -> float:
    data = sorted(values)
    if not data:
        return float("nan")
    rank = (len(data) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


class Workers:
    def __init__(self, count: int, concurrency: int, url: str, data_dir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICEDESK_")}
        env.update(
            DATABASE_URL=url,
            SECRET_KEY=SECRET,
            SERVICEDESK_MIGRATE_ON_START="false",
            SERVICEDESK_DATA_DIR=str(data_dir),
            SERVICEDESK_LOG_LEVEL="WARNING",
            SERVICEDESK_HANDLER_MODULES="bench_handlers",
            SERVICEDESK_JOBS_POLL_SECONDS="1",
            PYTHONPATH=os.pathsep.join([str(ROOT / "benchmarks"), str(ROOT)]),
        )
        self.log = (data_dir / "workers.log").open("ab")
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "servicedesk", "worker", "--concurrency", str(concurrency)],
                env=env,
                cwd=data_dir,
                stdout=self.log,
                stderr=subprocess.STDOUT,
            )
            for _ in range(count)
        ]

    def cpu_seconds(self) -> float:
        """User + system CPU of the worker processes so far."""
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.log.close()


async def produce(runtime: Runtime, org_id: uuid.UUID, commits: dict[str, float]) -> None:
    """Commit one event in its own transaction; remember when the commit returned."""
    async with runtime.db.tenant_session(org_id) as session:
        event = emit(
            session, organization_id=org_id, event_type="bench.ping", actor=SYSTEM, payload={}
        )
    commits[str(event.id)] = time.time()


async def wait_handled(runtime: Runtime, expected: int, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with runtime.db.session() as session:
            done = (await session.execute(text("SELECT count(*) FROM bench_effects"))).scalar_one()
        if done >= expected:
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"only {done} of {expected} events handled within {within:.0f} s")


async def done_times(runtime: Runtime, ids: list[str]) -> dict[str, float]:
    async with runtime.db.session() as session:
        rows = await session.execute(
            text(
                "SELECT event_id::text AS id, extract(epoch FROM done_at) AS done "
                "FROM bench_effects WHERE event_id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": ids},
        )
        return {r.id: float(r.done) for r in rows}


async def reset(runtime: Runtime) -> None:
    async with runtime.db.session() as session:
        await session.execute(text("TRUNCATE bench_effects"))


def latency_line(commits: dict[str, float], done: dict[str, float]) -> str:
    ms = [(done[k] - commits[k]) * 1000 for k in commits if k in done]
    return (
        f"p50={percentile(ms, 50):.1f} ms  p95={percentile(ms, 95):.1f} ms  "
        f"p99={percentile(ms, 99):.1f} ms  max={max(ms):.1f} ms  mean={statistics.mean(ms):.1f} ms"
    )


async def main_async(args: argparse.Namespace, url: str, data_dir: Path) -> None:
    settings = Settings(_env_file=None, SECRET_KEY=SECRET, SERVICEDESK_DATA_DIR=data_dir)  # type: ignore[call-arg]
    migrate.upgrade(url)
    runtime = Runtime.build(settings, url)
    try:
        async with runtime.db.session() as session:
            org = await tenancy.create_organization(
                session, OrganizationCreate(slug="bench", name="Bench"), actor=SYSTEM
            )
            await session.execute(
                text(
                    "CREATE TABLE bench_effects (event_id uuid PRIMARY KEY, "
                    "done_at timestamptz NOT NULL DEFAULT clock_timestamp())"
                )
            )
            await session.execute(text(f"GRANT ALL ON bench_effects TO {rls.app_role()}"))

        # 1. Backlog drain.
        commits: dict[str, float] = {}
        started = time.perf_counter()
        for start in range(0, args.backlog, 10):  # 10 at a time: within the pool
            batch = min(10, args.backlog - start)
            await asyncio.gather(*(produce(runtime, org.id, commits) for _ in range(batch)))
        say(
            f"backlog: {len(commits)} events committed in {time.perf_counter() - started:.1f} s "
            f"(no worker running)"
        )
        workers = Workers(args.workers, args.concurrency, url, data_dir)
        try:
            load_before = os.getloadavg()[0]
            await wait_handled(runtime, len(commits), within=600)
            done = await done_times(runtime, list(commits))
            span = max(done.values()) - min(done.values())
            cpu = workers.cpu_seconds()
            say(
                f"backlog drain with {args.workers} workers x concurrency {args.concurrency}: "
                f"{len(done)} events in {span:.2f} s = {len(done) / span:,.0f} events/s; "
                f"worker CPU {cpu * 1000 / len(done):.2f} ms/event (incl. start-up); "
                f"load average {load_before:.1f} → {os.getloadavg()[0]:.1f} on "
                f"{os.cpu_count()} cores"
            )
            await reset(runtime)

            # 2. Paced.
            commits = {}
            interval = 1 / args.rate
            t0 = time.perf_counter()
            n = int(args.rate * args.duration)
            tasks = []
            for i in range(n):
                delay = t0 + i * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(produce(runtime, org.id, commits)))
            await asyncio.gather(*tasks)
            await wait_handled(runtime, n, within=120)
            done = await done_times(runtime, list(commits))
            say(f"paced {args.rate}/s for {args.duration:g} s ({n} events): commit → handler done")
            say("  " + latency_line(commits, done))
            await reset(runtime)

            # 3. Saturated.
            commits = {}
            stop_at = time.monotonic() + args.duration

            async def producer() -> None:
                while time.monotonic() < stop_at:
                    await produce(runtime, org.id, commits)

            first = time.time()
            await asyncio.gather(*(producer() for _ in range(args.producers)))
            produced = len(commits)
            await wait_handled(runtime, produced, within=300)
            done = await done_times(runtime, list(commits))
            last = max(done.values())
            say(
                f"saturated ({args.producers} producers, {args.duration:g} s): {produced} events "
                f"committed ({produced / args.duration:,.0f}/s), all handled "
                f"{last - first:.2f} s after the first commit = "
                f"{produced / (last - first):,.0f} events/s end to end"
            )
            say("  " + latency_line(commits, done))
        finally:
            workers.stop()
    finally:
        await runtime.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if not (1 <= args.workers <= 16 and 1 <= args.backlog <= 200_000):
        raise SystemExit("--workers 1..16, --backlog 1..200000")
    if not (0 < args.duration <= 120 and 0 < args.rate <= 5000 and 1 <= args.producers <= 32):
        raise SystemExit("--duration ≤ 120 s, --rate ≤ 5000/s, --producers 1..32")
    with scratch_database(name="events", database_url=args.database_url, keep=args.keep) as (
        url,
        data_dir,
    ):
        asyncio.run(main_async(args, url, data_dir))


if __name__ == "__main__":
    main()
