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
