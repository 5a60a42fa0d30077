"""The `servicedesk` command: serve, worker, migrate, demo, create-org, create-admin."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import typer

from servicedesk.config import Settings, get_settings
from servicedesk.core import migrate as migrations
from servicedesk.core.embedded import EmbeddedPostgres
from servicedesk.core.logging import configure_logging

app = typer.Typer(help="Servicedesk: an open-source, AI-native, multi-tenant help desk.")
log = logging.getLogger("servicedesk.cli")


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The configured database, or the embedded server (started here, stopped on exit)."""
    if settings.database_url:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(settings.pg_dir)
    started = time.perf_counter()
    url = embedded.start()
    log.info(
        "embedded PostgreSQL ready",
        extra={
            "data_dir": str(settings.pg_dir),
            "seconds": round(time.perf_counter() - started, 2),
        },
    )
    try:
        yield url
    finally:
        embedded.stop()
        log.info("embedded PostgreSQL stopped")


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(
        1, min=1, max=64, help="Worker processes (each runs the app; embedded or DATABASE_URL)."
    ),
    demo: bool = typer.Option(False, help="Load the demo organization before serving."),
    job_process: bool = typer.Option(
        False,
        "--job-process",
        help="Run the job system in one separate `servicedesk worker` process (started and "
        "stopped with the server) instead of inside the web process(es).",
    ),
) -> None:
    """Start the web server (and the embedded PostgreSQL when no DATABASE_URL is set)."""
    import uvicorn

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    started = time.perf_counter()
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into SystemExit so the
    # embedded PostgreSQL below is stopped instead of the process dying on the spot.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    with database(settings) as url, contextlib.ExitStack() as stack:
        if settings.run_migrations_on_start:
            migrations.upgrade(url)
        if demo:
            from servicedesk.demo import load_demo, print_credentials

            asyncio.run(load_demo(settings, url))
            print_credentials()
        stack.enter_context(_job_process(url, enabled=job_process))  # after the migrations
        inprocess_jobs = settings.runs_inprocess_worker and not job_process
        if workers > 1:
            # Several processes: each worker builds its own app from the environment
            # (servicedesk.asgi). On the embedded default they reach this process's server
            # through DATABASE_URL, and each runs the job system in-process unless
            # SERVICEDESK_INPROCESS_WORKER says otherwise: the dispatcher, the workers and
            # the scheduler are safe to run several times (docs/jobs.md).
            if not settings.database_url:
                os.environ["DATABASE_URL"] = url
                if settings.inprocess_worker is None:
                    os.environ["SERVICEDESK_INPROCESS_WORKER"] = "true"
            if job_process:
                os.environ["SERVICEDESK_INPROCESS_WORKER"] = "false"
            _log_serving(host, port, started, workers)
            uvicorn.run(
                "servicedesk.asgi:app",
                host=host,
                port=port,
                workers=workers,
                log_config=None,
                proxy_headers=True,
            )
            return
        from servicedesk.app import create_app

        application = create_app(settings, database_url=url)
        if inprocess_jobs:
            from servicedesk.core.job_runner import attach_to_app

            attach_to_app(application)  # dispatcher, worker and scheduler in this process
        _log_serving(host, port, started, workers)
        uvicorn.run(application, host=host, port=port, log_config=None, proxy_headers=True)


@contextmanager
def _job_process(url: str, *, enabled: bool) -> Iterator[None]:
    """`servicedesk worker` in a child process for the lifetime of the server, restarted (after
    a pause) if it exits. The web event loops then only serve requests: a fan-out to thousands
    of recipients no longer delays the responses in flight; the operating system shares the
    cores between the two kinds of work."""
    if not enabled:
        yield
        return
    import subprocess
    import sys
    import threading

    env = {**os.environ, "DATABASE_URL": url, "SERVICEDESK_MIGRATE_ON_START": "false"}
    command = [sys.executable, "-m", "servicedesk", "worker"]
    stopping = threading.Event()
    current: list[subprocess.Popen[bytes]] = []

    def supervise() -> None:
        while not stopping.is_set():
            # Its own session: a terminal's Ctrl-C reaches the server, which stops it here.
            proc = subprocess.Popen(  # noqa: S603 (our own command, fixed argv)
                command, env=env, stdin=subprocess.DEVNULL, start_new_session=True
            )
            current[:] = [proc]
            log.info("job process started", extra={"pid": proc.pid})
            code = proc.wait()
            if stopping.is_set():
                return
            log.error("job process exited; restarting in 5 s", extra={"exit_code": code})
            stopping.wait(5)

    thread = threading.Thread(target=supervise, name="job-process", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopping.set()
        for proc in current:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        thread.join(timeout=5)


def _log_serving(host: str, port: int, started: float, workers: int) -> None:
    log.info(
        "serving",
        extra={
            "url": f"http://{host}:{port}",
            "workers": workers,
            "startup_seconds": round(time.perf_counter() - started, 2),
        },
    )


@app.command()
def worker(
    concurrency: int = typer.Option(
        None, help="Jobs run at once (default SERVICEDESK_JOBS_CONCURRENCY)."
    ),
    scheduler: bool = typer.Option(True, help="Also schedule the periodic jobs."),
    dispatcher: bool = typer.Option(True, help="Also move outbox events into the queue."),
    queues: str = typer.Option(None, help="Comma-separated queues to work (default: all)."),
    metrics_port: int = typer.Option(0, help="Serve Prometheus metrics on this port (0: off)."),
    metrics_host: str = typer.Option("127.0.0.1", help="Interface of the metrics port."),
) -> None:
    """Run the job system: outbox dispatcher, worker and scheduler (any number, any machine)."""
    from servicedesk.core.job_runner import run_worker_process

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    if not settings.database_url:
        # The embedded server belongs to `servicedesk serve`, which runs the jobs itself.
        typer.echo(
            "servicedesk worker needs DATABASE_URL (embedded: serve runs the jobs)", err=True
        )
        raise typer.Exit(2)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=metrics_host)
    with database(settings) as url:
        if settings.run_migrations_on_start:
            migrations.upgrade(url)
        asyncio.run(
            run_worker_process(
                settings,
                url,
                concurrency=concurrency,
                scheduler=scheduler,
                dispatcher=dispatcher,
                queues=[q.strip() for q in queues.split(",") if q.strip()] if queues else None,
            )
        )


@app.command()
def migrate(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply the database migrations up to REVISION."""
    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    with database(settings) as url:
        migrations.upgrade(url, revision)
    typer.echo(f"migrated to {revision}")


@app.command()
def demo() -> None:
    """Load (or refresh) the demo organization `acme` and print its credentials."""
    from servicedesk.demo import load_demo, print_credentials

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    with database(settings) as url:
        migrations.upgrade(url)
        asyncio.run(load_demo(settings, url))
    print_credentials()


@app.command("create-org")
def create_org(
    slug: str = typer.Argument(..., help="Unique URL-safe handle, e.g. acme."),
    name: str = typer.Argument(..., help="Display name."),
    timezone: str = typer.Option("UTC", help="IANA time zone."),
) -> None:
    """Create an organization (tenant)."""
    from servicedesk.admin_tasks import create_organization

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    with database(settings) as url:
        migrations.upgrade(url)
        org_id = asyncio.run(create_organization(settings, url, slug, name, timezone))
    typer.echo(f"created organization {slug} ({org_id})")


@app.command("create-admin")
def create_admin(
    org: str = typer.Argument(..., help="Organization slug."),
    email: str = typer.Argument(...),
    first_name: str = typer.Option("Admin", help="First name."),
    last_name: str = typer.Option("User", help="Last name."),
    password: str = typer.Option(
        None,
        help="Password (prompted when omitted; env SERVICEDESK_ADMIN_PASSWORD)",
        envvar="SERVICEDESK_ADMIN_PASSWORD",
    ),
) -> None:
    """Create an approved admin user in an organization."""
    from servicedesk.admin_tasks import create_admin_user

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    if not password:
        password = getpass.getpass("Password: ")
    with database(settings) as url:
        migrations.upgrade(url)
        user_id = asyncio.run(
            create_admin_user(settings, url, org, email, password, first_name, last_name)
        )
    typer.echo(f"created admin {email} ({user_id})")


def main() -> None:
    app()
