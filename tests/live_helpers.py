"""Helpers of the live tests: `servicedesk serve` subprocesses and a WebSocket client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import Session, test_settings

SECRET_KEY = test_settings().secret_key or ""

# Short TTLs so that expiry is observable in a test.
# (Presence and replying stay long enough not to lapse on a loaded machine mid-test; their
# expiry is the same code as typing's, and test_live_hub checks it with short TTLs.)
LIVE_ENV = {
    "SERVICEDESK_LIVE_PRESENCE_SECONDS": "8",
    "SERVICEDESK_LIVE_TYPING_SECONDS": "0.8",
    "SERVICEDESK_LIVE_REPLYING_SECONDS": "8",
    "SERVICEDESK_LIVE_SSE_HEARTBEAT_SECONDS": "0.2",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One `servicedesk serve` process on the tests' database."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    work: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def launch_server(
    database_url: str,
    *,
    redis_url: str | None = None,
    redis_prefix: str = "servicedesk",
    env: dict[str, str] | None = None,
) -> Server:
    """Start `servicedesk serve` on a free port (see `wait_ready`)."""
    work = Path(tempfile.mkdtemp(prefix="sd-live-"))
    port = _free_port()
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environment.update(
        DATABASE_URL=database_url,
        SECRET_KEY=SECRET_KEY,
        SERVICEDESK_DATA_DIR=str(work),
        SERVICEDESK_MIGRATE_ON_START="false",
        SERVICEDESK_COOKIE_SECURE="false",
        SERVICEDESK_ARGON2_TIME_COST="1",
        SERVICEDESK_ARGON2_MEMORY_KIB="8192",
        SERVICEDESK_ARGON2_PARALLELISM="1",
        SERVICEDESK_LOG_LEVEL="WARNING",
        SERVICEDESK_REDIS_PREFIX=redis_prefix,
        **LIVE_ENV,
        **(env or {}),
    )
    if redis_url:
        environment["REDIS_URL"] = redis_url
    log = work / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "servicedesk", "serve", "--port", str(port)],
            cwd=work,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Server(port, proc, log, work)


def wait_ready(server: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.http}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready:\n{server.log_tail()}")


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=5)
    shutil.rmtree(server.work, ignore_errors=True)


@contextlib.contextmanager
def servers(database_url: str, count: int, **kwargs: Any) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for _ in range(count):
            started.append(launch_server(database_url, **kwargs))
        for server in started:
            wait_ready(server)
        yield started
    finally:
        for server in started:
            stop_server(server)


@dataclass
class LiveClient:
    """A WebSocket client that keeps every message it read."""

    ws: ClientConnection
    received: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, **message: Any) -> None:
        await self.ws.send(orjson.dumps(message).decode())

    async def next(
        self,
        kind: str | None = None,
        *,
        within: float = 10.0,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """The next message of type `kind` (matching `where`), skipping others."""
        async with asyncio.timeout(within):
            while True:
                message = orjson.loads(await self.ws.recv())
                self.received.append(message)
                if (kind is None or message["type"] == kind) and (where is None or where(message)):
                    return message  # type: ignore[no-any-return]

    async def event(
        self, event_type: str, *, within: float = 3.0, **payload: Any
    ) -> dict[str, Any]:
        def match(m: dict[str, Any]) -> bool:
            e = m["event"]
            return e["event_type"] == event_type and all(
                e["payload"].get(k) == v for k, v in payload.items()
            )

        return await self.next("event", within=within, where=match)

    async def drain(self, seconds: float) -> list[dict[str, Any]]:
        """Every message that arrives within `seconds`."""
        got: list[dict[str, Any]] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    message = orjson.loads(await self.ws.recv())
                    self.received.append(message)
                    got.append(message)
        return got

    async def closed_with(self, within: float = 3.0) -> int | None:
        """Read until the server closes the socket; its close code (None: still open)."""
        try:
            async with asyncio.timeout(within):
                while True:
                    self.received.append(orjson.loads(await self.ws.recv()))
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        except TimeoutError:
            return None

    def latest(self, kind: str, room: str) -> dict[str, Any] | None:
        """The last message of type `kind` for `room` read so far."""
        found = [m for m in self.received if m["type"] == kind and m.get("room") == room]
        return found[-1] if found else None

    def events(self) -> list[dict[str, Any]]:
        return [m["event"] for m in self.received if m["type"] == "event"]


@contextlib.asynccontextmanager
async def live(
    server: Server,
    who: Session | None = None,
    *,
    token: str | None = None,
    tenant: str | None = None,
    path: str = "/api/v1/ws",
    headers: dict[str, str] | None = None,
    **params: Any,
) -> AsyncIterator[LiveClient]:
    """A connected client; `who` gives the token and tenant unless they are given."""
    query = dict(params)
    if who is not None:
        query.setdefault("token", token or who.access_token)
        query.setdefault("tenant", tenant or who.org.slug)
    else:
        if token is not None:
            query["token"] = token
        if tenant is not None:
            query["tenant"] = tenant
    url = f"{server.ws}{path}?{urlencode(query)}"
    async with connect(url, additional_headers=headers, proxy=None, open_timeout=5) as ws:
        client = LiveClient(ws)
        hello = await client.next("hello")
        assert hello["type"] == "hello"
        yield client


async def close_code(server: Server, path: str = "/api/v1/ws", **kwargs: Any) -> int | None:
    """Connect and return the code the server closed with (None: it did not close)."""
    headers = kwargs.pop("headers", None)
    url = f"{server.ws}{path}?{urlencode(kwargs)}"
    async with connect(url, additional_headers=headers, proxy=None, open_timeout=5) as ws:
        try:
            async with asyncio.timeout(3):
                while True:
                    await ws.recv()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
        except TimeoutError:
            return None
