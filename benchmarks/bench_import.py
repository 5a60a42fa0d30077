"""Bulk benchmark: a 1,000-row CSV import and a 500-ticket bulk update, through HTTP.

Run with the project's virtualenv:

    .venv/bin/python benchmarks/bench_import.py [--rounds 5]

It prints figures; it is not a test and asserts nothing about them beyond each request
succeeding. PostgreSQL is `DATABASE_URL` when set (a database `servicedesk_bench_import` is
dropped and recreated on that server), else an embedded server in a temporary directory that is
stopped and deleted at the end. The app runs in this process behind httpx's ASGI transport, so
the figures are the application's and the database's time, without a network or ASGI server.

Steps: migrate a fresh database; create an organization, an admin, a requester, an agent and a
category with its own fields; sign in over HTTP; then, per round, POST a 1,000-row CSV to
`/api/v1/tickets/import` and POST a 500-ticket change to `/api/v1/tickets/bulk` (alternating
priority and assignee, so every ticket changes every round). Reports the median and best round:

    import_1000_rows_s=…   bulk_update_500_s=…
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import select
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from servicedesk.accounts import service as accounts  # noqa: E402
from servicedesk.accounts.schemas import UserCreate  # noqa: E402
from servicedesk.app import create_app  # noqa: E402
from servicedesk.config import Settings  # noqa: E402
from servicedesk.core import migrate  # noqa: E402
from servicedesk.core.actor import SYSTEM  # noqa: E402
from servicedesk.core.embedded import EmbeddedPostgres, ensure_database  # noqa: E402
from servicedesk.core.runtime import Runtime  # noqa: E402
from servicedesk.models import Organization, Role, Ticket, User  # noqa: E402
from servicedesk.tenancy import service as tenancy  # noqa: E402
from servicedesk.tenancy.schemas import OrganizationCreate  # noqa: E402

DATABASE = "servicedesk_bench_import"
PASSWORD = "Bench-Horse-Battery-42"
ROWS = 1000
BULK = 500


def settings() -> Settings:
    values: dict[str, object] = {
        "SERVICEDESK_ENV": "test",
        "SECRET_KEY": "bench-secret-" + "x" * 40,
        "SERVICEDESK_COOKIE_SECURE": False,
        "SERVICEDESK_LOG_LEVEL": "WARNING",
        # Sign-in cost is not what this measures.
        "SERVICEDESK_ARGON2_TIME_COST": 1,
        "SERVICEDESK_ARGON2_MEMORY_KIB": 8192,
        "SERVICEDESK_ARGON2_PARALLELISM": 1,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def fresh_database(server_url: str) -> str:
    admin = make_url(server_url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    ensure_database(server_url, DATABASE)
    return make_url(server_url).set(database=DATABASE).render_as_string(hide_password=False)


def csv_bytes(round_no: int, requester: str, agent: str) -> bytes:
    header = [
        "subject",
        "description",
        "category",
        "priority",
        "status",
        "requester_email",
        "assignee_email",
        "tags",
        "submitted_at",
        "field:asset",
        "field:units",
        "field:urgent",
        "field:cost",
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    cost = json.dumps([{"description": "Part", "quantity": 1, "unit_cost": "12.50"}])
    for n in range(ROWS):
        writer.writerow(
            [
                f"Migrated ticket {round_no}-{n:05d} printer offline",
                f"Imported from the legacy desk (round {round_no}, row {n}). The **printer** "
                "on floor 3 shows offline although it is on; users cannot print invoices.",
                "Hardware",
                ("low", "medium", "high", "critical")[n % 4],
                ("new", "open", "in_progress")[n % 3],
                requester,
                agent if n % 2 else "",
                "legacy;printer",
                f"2025-{n % 12 + 1:02d}-{n % 28 + 1:02d}T09:00:00Z",
                f"PRN-{n}",
                str(n % 9),
                "yes" if n % 2 else "no",
                cost if n % 5 == 0 else "",
            ]
        )
    return out.getvalue().encode()


async def make_user(runtime: Runtime, org: Organization, role: Role, email: str) -> User:
    async with runtime.db.tenant_session(org.id) as session:
        return await accounts.do_create_user(
            session,
            runtime.hasher,
            UserCreate(
                email=email,
                password=PASSWORD,
                first_name="Bench",
                last_name=role.capitalize(),
                role=role,
            ),
            organization_id=org.id,
            actor=SYSTEM,
        )


async def run(database_url: str, rounds: int) -> None:
    app = create_app(settings(), database_url=database_url)
    runtime: Runtime = app.state.runtime
    try:
        async with runtime.db.session() as session:
            org = await tenancy.create_organization(
                session, OrganizationCreate(slug="bench", name="Bench"), actor=SYSTEM
            )
        admin = await make_user(runtime, org, Role.ADMIN, "admin@bench.example")
        requester = await make_user(runtime, org, Role.REQUESTER, "req@bench.example")
        agent = await make_user(runtime, org, Role.AGENT, "agent@bench.example")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            r = await client.post(
                "/api/v1/auth/login",
                json={"email": admin.email, "password": PASSWORD},
                headers={"X-Tenant-ID": "bench"},
            )
            r.raise_for_status()
            headers = {
                "Authorization": f"Bearer {r.json()['access_token']}",
                "X-Tenant-ID": "bench",
            }
            r = await client.post(
                "/api/v1/categories",
                json={
                    "name": "Hardware",
                    "fields": [
                        {"key": "asset", "label": "Asset", "type": "text", "required": True},
                        {"key": "units", "label": "Units", "type": "number"},
                        {"key": "urgent", "label": "Urgent", "type": "boolean"},
                        {"key": "cost", "label": "Cost", "type": "cost_items"},
                    ],
                },
                headers=headers,
            )
            r.raise_for_status()

            import_times: list[float] = []
            bulk_times: list[float] = []
            for round_no in range(rounds):
                data = csv_bytes(round_no, requester.email, agent.email)
                started = time.perf_counter()
                r = await client.post(
                    "/api/v1/tickets/import",
                    files={"file": ("tickets.csv", data, "text/csv")},
                    headers=headers,
                )
                import_times.append(time.perf_counter() - started)
                if r.status_code != 201:
                    raise SystemExit(f"import failed: {r.status_code} {r.text[:500]}")

                async with runtime.db.tenant_session(org.id) as session:
                    ids = list(
                        (
                            await session.execute(
                                select(Ticket.id).order_by(Ticket.number.desc()).limit(BULK)
                            )
                        ).scalars()
                    )
                action: dict[str, Any] = {
                    "priority": "critical" if round_no % 2 else "low",
                    "assignee_id": str(agent.id) if round_no % 2 else str(admin.id),
                    "add_tags": [f"round-{round_no}"],
                }
                started = time.perf_counter()
                r = await client.post(
                    "/api/v1/tickets/bulk",
                    json={"ticket_ids": [str(i) for i in ids], "action": action},
                    headers=headers,
                )
                bulk_times.append(time.perf_counter() - started)
                if r.status_code != 200 or r.json()["changed"] != BULK:
                    raise SystemExit(f"bulk update failed: {r.status_code} {r.text[:500]}")
                print(
                    f"round {round_no + 1}: import {import_times[-1]:.3f} s, "
                    f"bulk {bulk_times[-1]:.3f} s",
                    flush=True,
                )
        print(f"import_1000_rows_s={statistics.median(import_times):.3f}")
        print(f"bulk_update_500_s={statistics.median(bulk_times):.3f}")
        print(
            f"(best of {rounds}: import {min(import_times):.3f} s, bulk {min(bulk_times):.3f} s; "
            f"{os.cpu_count()} CPUs)"
        )
    finally:
        await runtime.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    temp: Path | None = None
    server: EmbeddedPostgres | None = None
    if os.environ.get("DATABASE_URL"):
        server_url = os.environ["DATABASE_URL"]
    else:
        temp = Path(tempfile.mkdtemp(prefix="sd-bench-import-"))
        server = EmbeddedPostgres(temp / "pg")
        server_url = server.start(database="postgres")
    try:
        url = fresh_database(server_url)
        migrate.upgrade(url)
        asyncio.run(run(url, args.rounds))
    finally:
        if server is not None:
            server.stop()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
