"""Seed a Servicedesk database with many tickets for the ticket benchmarks (PostgreSQL COPY).

    .venv/bin/python benchmarks/seed_tickets.py --data-dir /tmp/sd-1m \\
        [--orgs 100] [--tickets 1000000] [--comments-per-ticket 3] [--reset]
    .venv/bin/python benchmarks/seed_tickets.py --database-url postgresql://... [--reset]

With `--data-dir` it starts the embedded PostgreSQL 18 of that SERVICEDESK_DATA_DIR (data in
`DIR/pg`, the layout `servicedesk serve` uses) and stops it at the end; `servicedesk serve` with
`SERVICEDESK_DATA_DIR=DIR` then serves the seeded data. It needs a superuser connection (the
embedded server's `postgres` user is one): the load bypasses row-level security and triggers.

What it builds (defaults): 100 organizations `bench-001` … `bench-100`, each with 4 departments,
6 categories (+ 8 sub-categories), 1 admin, 1 manager, 10 agents and 200 requesters (all with
the password `BENCH_PASSWORD`, hashed once with the product's `PasswordHashing` and the
configured Argon2 parameters), and `--tickets` tickets spread evenly over the organizations,
submitted over the last two years, each with `--comments-per-ticket` comments (public replies and
some internal notes). Statuses follow the age of a ticket (old ones are mostly closed, recent ones
new/open/in progress); numbers are `TKT{year}{seq}` in submission order per organization and
year, and `ticket_counters` is set from them, so tickets created later continue the sequence.

How (phases, each timed):
  prepare   drop/recreate the database with --reset, run the migrations, check what exists;
  setup     organizations, departments, users, categories (one transaction, COPY);
  drop-idx  drop the secondary indexes of tickets and comments (their DDL is kept in the
            `bench_seed.state` table, so an interrupted run recreates exactly those);
  load      time slices in parallel worker processes (--jobs). Per slice, one transaction:
            COPY the tickets into a temporary stage table, COPY the comments into `comments`,
            then one set-based INSERT … SELECT into `tickets` in submission order that computes
            `search_vector` with the same expression as the `tickets_search_vector` trigger
            (subject A, description B, public comments C). The sessions run with
            `session_replication_role = replica`: the two search triggers and the foreign-key
            triggers do not fire (the data is consistent by construction and checked in
            `verify`), and nothing stays disabled if the process dies, unlike
            `ALTER TABLE … DISABLE TRIGGER`. Finished slices are recorded: a rerun without
            --reset resumes with the missing ones;
  counters  `ticket_counters` = highest number per organization and year;
  indexes   recreate the dropped indexes (--jobs in parallel, maintenance_work_mem 1GB);
  verify    no dangling or cross-tenant references, and `search_vector` equals the trigger's
            expression on a sample;
  vacuum    VACUUM (ANALYZE) of the seeded tables.

For the embedded server it raises `max_wal_size`/`checkpoint_timeout` (ALTER SYSTEM) during the
load and resets them at the end, so the benchmark server runs with the defaults. A finished seed
is left alone by a second run (it only rewrites the manifest); a different `--orgs/--tickets/...`
needs `--reset`. The manifest `DIR/bench_seed.json` (or `--manifest`) lists organizations,
agents, categories and number ranges for `bench_tickets.py` and `explain_tickets.py`.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import multiprocessing
import os
import random
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ticket_corpus as corpus

BENCH_PASSWORD = "Bench-Tickets-2026!"  # documented benchmark credential, all seeded users
SLUG_PREFIX = "bench-"
DAY = 86400.0
HISTORY_DAYS = 730

DEPARTMENTS = ("IT", "Human Resources", "Facilities", "Finance")
AGENT_DEPARTMENT_SHARE = (0.5, 0.2, 0.15, 0.15)
# (name, kind, department, default priority, weight, sub-categories [(name, priority)], fields)
CATEGORIES: tuple[tuple[str, str, str, str, float, tuple[tuple[str, str], ...], list[Any]], ...] = (
    (
        "IT Support",
        "it",
        "IT",
        "medium",
        0.45,
        (
            ("Email and calendar", "medium"),
            ("VPN and remote access", "high"),
            ("Hardware", "medium"),
            ("Software", "low"),
        ),
        [{"key": "asset_name", "label": "Asset name", "type": "text", "max": 120}],
    ),
    ("Access Request", "access", "IT", "medium", 0.15, (), []),
    ("Asset Request", "asset", "IT", "low", 0.08, (), []),
    (
        "HR Request",
        "hr",
        "Human Resources",
        "medium",
        0.12,
        (("Payroll", "high"), ("Leave", "low")),
        [],
    ),
    (
        "Facility Request",
        "facility",
        "Facilities",
        "low",
        0.12,
        (("Repairs", "medium"), ("Cleaning", "low")),
        [],
    ),
    ("Budget Request", "finance", "Finance", "medium", 0.08, (), []),
)

# Status mix by age of the ticket: (max age in days, [(status, weight)]).
STATUS_BY_AGE = (
    (2, (("new", 45), ("open", 25), ("in_progress", 20), ("on_hold", 5), ("resolved", 5))),
    (
        14,
        (
            ("new", 8),
            ("open", 20),
            ("in_progress", 22),
            ("on_hold", 10),
            ("resolved", 25),
            ("closed", 12),
            ("rejected", 3),
        ),
    ),
    (
        60,
        (
            ("new", 1),
            ("open", 5),
            ("in_progress", 6),
            ("on_hold", 6),
            ("resolved", 12),
            ("closed", 65),
            ("rejected", 5),
        ),
    ),
    (
        10**9,
        (
            ("open", 0.5),
            ("in_progress", 0.5),
            ("on_hold", 1),
            ("resolved", 1),
            ("closed", 92),
            ("rejected", 5),
        ),
    ),
)
PRIORITIES = (("low", 25), ("medium", 50), ("high", 20), ("critical", 5))
CHANNELS = (("web", 50), ("email", 35), ("chat", 10), ("api", 5))
TAGS = ("urgent", "vip", "hardware", "software", "network", "onboarding", "recurring", "remote")
REJECTIONS = ("Duplicate of an existing ticket.", "Not handled by the service desk.")
VERSION_BY_STATUS = {
    "new": (1, 2),
    "open": (2, 3),
    "in_progress": (3, 4),
    "on_hold": (3, 5),
    "resolved": (4, 5),
    "closed": (5, 6),
    "rejected": (2, 3),
}

SEARCH_VECTOR_SQL = (
    "setweight(to_tsvector('english', coalesce({s}.subject, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce({s}.description, '')), 'B') || "
    "setweight(to_tsvector('english', coalesce({c}, '')), 'C')"
)
TICKET_COLUMNS = (
    "id, organization_id, number, subject, description, description_html, category_id, "
    "subcategory_id, priority, status, department_id, requester_id, assignee_id, channel, tags, "
    "custom_fields, rejection_reason, reopened_count, version, submitted_at, updated_at, "
    "first_response_at, resolved_at, closed_at"
)
STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS seed_stage (
    id uuid, organization_id uuid, number text, subject text, description text,
    description_html text, category_id uuid, subcategory_id uuid, priority text, status text,
    department_id uuid, requester_id uuid, assignee_id uuid, channel text, tags varchar[],
    custom_fields jsonb, rejection_reason text, reopened_count int, version int,
    submitted_at timestamptz, updated_at timestamptz, first_response_at timestamptz,
    resolved_at timestamptz, closed_at timestamptz, comment_text text
) ON COMMIT DELETE ROWS
"""
COMMENT_COLUMNS = (
    "id, organization_id, ticket_id, author_id, body, body_html, is_internal, created_at"
)
STATE_DDL = """
CREATE SCHEMA IF NOT EXISTS bench_seed;
CREATE TABLE IF NOT EXISTS bench_seed.state (key text PRIMARY KEY, value jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS bench_seed.slices (
    slice int PRIMARY KEY, tickets int NOT NULL, comments int NOT NULL,
    seconds real NOT NULL, done_at timestamptz NOT NULL DEFAULT now()
);
"""
LOAD_SETTINGS = {"max_wal_size": "16GB", "checkpoint_timeout": "30min"}


def say(message: str) -> None:
    print(message, flush=True)


def conninfo_of(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def weighted(rng: random.Random, pairs: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([p[0] for p in pairs], [p[1] for p in pairs])[0]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


_ESC = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def esc(value: Any) -> str:
    """A value in COPY text format (None is \\N)."""
    if value is None:
        return "\\N"
    return str(value).translate(_ESC)


class Phases:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()

    @contextlib.contextmanager
    def run(self, name: str) -> Iterator[None]:
        say(f"\n[{name}]")
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
            say(f"  {name}: {elapsed:.1f} s")

    def report(self) -> None:
        total = time.perf_counter() - self.started
        say("\n=== seeding time per phase ===")
        for name, seconds in self.seconds.items():
            say(f"  {name:<10} {seconds:8.1f} s")
        say(f"  {'total':<10} {total:8.1f} s  ({total / 60:.1f} min)")


# The server -------------------------------------------------------------------------------


@contextlib.contextmanager
def database(args: argparse.Namespace) -> Iterator[str]:
    if args.database_url:
        yield args.database_url
        return
    from servicedesk.core.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(Path(args.data_dir) / "pg")
    started = time.perf_counter()
    url = server.start()
    say(f"embedded PostgreSQL up in {time.perf_counter() - started:.1f} s ({server.data_dir})")
    try:
        yield url
    finally:
        server.stop()
        say("embedded PostgreSQL stopped")


def reset_database(url: str) -> None:
    from servicedesk.core.embedded import ensure_database

    parsed = make_url(url)
    name = parsed.database
    admin = conninfo_of(parsed.set(database="postgres").render_as_string(hide_password=False))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    ensure_database(url, str(name))
    say(f"  dropped and recreated database {name}")


def tune_server(conninfo: str, on: bool) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for key, value in LOAD_SETTINGS.items():
            if on:
                conn.execute(f"ALTER SYSTEM SET {key} = '{value}'")
            else:
                conn.execute(f"ALTER SYSTEM RESET {key}")
        conn.execute("SELECT pg_reload_conf()")
        if not on:
            conn.execute("CHECKPOINT")
    say(
        "  server settings for the load: "
        + (", ".join(f"{k}={v}" for k, v in LOAD_SETTINGS.items()) if on else "reset to defaults")
    )


# State ------------------------------------------------------------------------------------


def get_state(conn: psycopg.Connection[Any], key: str) -> Any:
    row = conn.execute("SELECT value FROM bench_seed.state WHERE key = %s", (key,)).fetchone()
    return None if row is None else row[0]


def set_state(conn: psycopg.Connection[Any], key: str, value: Any) -> None:
    conn.execute(
        "INSERT INTO bench_seed.state (key, value) VALUES (%s, %s::jsonb) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        (key, json.dumps(value)),
    )


def params_of(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "orgs": args.orgs,
        "tickets": args.tickets,
        "comments_per_ticket": args.comments_per_ticket,
        "agents": args.agents,
        "requesters": args.requesters,
        "seed": args.seed,
    }


# Setup: organizations, departments, users, categories -------------------------------------


def password_hash() -> tuple[str, str]:
    """One Argon2id hash of BENCH_PASSWORD with the parameters the server will use."""
    import asyncio

    from servicedesk.config import Settings
    from servicedesk.core.security import PasswordHashing

    settings = Settings(_env_file=None)
    hasher = PasswordHashing(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    return asyncio.run(hasher.hash(BENCH_PASSWORD)), hasher.parameters


def copy_rows(
    cur: psycopg.Cursor[Any], table: str, columns: str, rows: list[tuple[Any, ...]]
) -> None:
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        buffer: list[str] = []
        for row in rows:
            buffer.append("\t".join(esc(v) for v in row) + "\n")
            if len(buffer) >= 2000:
                copy.write("".join(buffer))
                buffer.clear()
        if buffer:
            copy.write("".join(buffer))


def setup_orgs(conn: psycopg.Connection[Any], args: argparse.Namespace, now: float) -> None:
    hashed, parameters = password_hash()
    say(f"  one password hash ({parameters}) for every seeded user")
    rng = random.Random(args.seed)
    created = iso(now - (HISTORY_DAYS + 30) * DAY)
    orgs: list[tuple[Any, ...]] = []
    depts: list[tuple[Any, ...]] = []
    users: list[tuple[Any, ...]] = []
    cats: list[tuple[Any, ...]] = []
    for i in range(args.orgs):
        slug = f"{SLUG_PREFIX}{i + 1:03d}"
        org_id = uuid.uuid4()
        tz = rng.choice(("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo"))
        orgs.append((org_id, slug, f"Bench Org {i + 1:03d}", tz, "{}", created, created))
        dept_ids = {}
        for name in DEPARTMENTS:
            dept_ids[name] = uuid.uuid4()
            depts.append((dept_ids[name], org_id, name, created, created))
        domain = f"{slug}.example.com"
        accounts = [(f"admin@{domain}", "admin", "IT"), (f"manager@{domain}", "manager", "Finance")]
        accounts += [
            (
                f"agent{a + 1:02d}@{domain}",
                "agent",
                rng.choices(DEPARTMENTS, AGENT_DEPARTMENT_SHARE)[0],
            )
            for a in range(args.agents)
        ]
        accounts += [
            (f"user{r + 1:04d}@{domain}", "requester", rng.choice(DEPARTMENTS))
            for r in range(args.requesters)
        ]
        for n, (email, role, dept) in enumerate(accounts, start=1):
            first, last = rng.choice(corpus.FIRST_NAMES), rng.choice(corpus.LAST_NAMES)
            users.append(
                (
                    uuid.uuid4(),
                    org_id,
                    email,
                    first,
                    last,
                    f"MA{n:04d}",
                    dept_ids[dept],
                    role,
                    "approved",
                    hashed,
                    created,
                    created,
                    created,
                )
            )
        for order, (name, _kind, dept, prio, _w, children, fields) in enumerate(CATEGORIES):
            parent = uuid.uuid4()
            cats.append(
                (
                    parent,
                    org_id,
                    name,
                    None,
                    prio,
                    dept_ids[dept],
                    json.dumps(fields),
                    order,
                    created,
                    created,
                )
            )
            for sub_order, (sub, sub_prio) in enumerate(children):
                cats.append(
                    (
                        uuid.uuid4(),
                        org_id,
                        sub,
                        parent,
                        sub_prio,
                        None,
                        "[]",
                        sub_order,
                        created,
                        created,
                    )
                )
    with conn.transaction(), conn.cursor() as cur:
        copy_rows(
            cur, "organizations", "id, slug, name, timezone, settings, created_at, updated_at", orgs
        )
        copy_rows(cur, "departments", "id, organization_id, name, created_at, updated_at", depts)
        copy_rows(
            cur,
            "users",
            "id, organization_id, email, first_name, last_name, company_id, department_id, role, "
            "status, password_hash, approved_at, created_at, updated_at",
            users,
        )
        copy_rows(
            cur,
            "categories",
            "id, organization_id, name, parent_id, default_priority, department_id, fields, "
            "sort_order, created_at, updated_at",
            cats,
        )
        set_state(conn, "setup_done", True)
    say(
        f"  {len(orgs)} organizations, {len(depts)} departments, {len(users)} users, "
        f"{len(cats)} categories"
    )


def load_setup(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Per organization (in slug order): the ids the ticket generator needs."""
    orgs = conn.execute(
        "SELECT id, slug FROM organizations WHERE slug LIKE %s ORDER BY slug", (SLUG_PREFIX + "%",)
    ).fetchall()
    out = []
    for org_id, slug in orgs:
        depts = dict(
            conn.execute(
                "SELECT id, name FROM departments WHERE organization_id = %s", (org_id,)
            ).fetchall()
        )
        users = conn.execute(
            "SELECT id, role, department_id, email FROM users WHERE organization_id = %s "
            "ORDER BY email",
            (org_id,),
        ).fetchall()
        cats = conn.execute(
            "SELECT id, name, parent_id, default_priority, department_id FROM categories "
            "WHERE organization_id = %s ORDER BY sort_order, name",
            (org_id,),
        ).fetchall()
        agents = [(str(u[0]), depts.get(u[2])) for u in users if u[1] in ("agent", "admin")]
        top = {}
        for cid, name, parent, prio, dept in cats:
            if parent is None:
                top[str(cid)] = {
                    "id": str(cid),
                    "name": name,
                    "priority": prio,
                    "department_id": str(dept) if dept else None,
                    "children": [],
                }
        for cid, name, parent, prio, _dept in cats:
            if parent is not None:
                top[str(parent)]["children"].append(
                    {"id": str(cid), "name": name, "priority": prio}
                )
        kinds = {c[0]: c[1] for c in CATEGORIES}
        weights = {c[0]: c[4] for c in CATEGORIES}
        categories = [
            {**c, "kind": kinds[c["name"]], "weight": weights[c["name"]]} for c in top.values()
        ]
        out.append(
            {
                "id": str(org_id),
                "slug": slug,
                "agents": agents,
                "agents_by_dept": {d: [a for a, ad in agents if ad == d] for d in DEPARTMENTS},
                "requesters": [str(u[0]) for u in users if u[1] == "requester"],
                "categories": categories,
                "dept_name": {str(k): v for k, v in depts.items()},
            }
        )
    return out


# Ticket generation (worker processes) ------------------------------------------------------

_worker: dict[str, Any] = {}


def worker_init(conninfo: str, setup: list[dict[str, Any]], params: dict[str, Any]) -> None:
    conn = psycopg.connect(conninfo)
    conn.execute("SET session_replication_role = replica")
    conn.execute("SET synchronous_commit = off")
    conn.execute("SET temp_buffers = '256MB'")
    conn.execute(STAGE_DDL)
    conn.commit()
    _worker.update(conn=conn, setup=setup, params=params)


def _status(rng: random.Random, age_days: float) -> str:
    for limit, mix in STATUS_BY_AGE:
        if age_days < limit:
            return weighted(rng, mix)
    raise AssertionError


def generate_slice(
    slice_no: int,
    items: list[tuple[int, float, str]],
    setup: list[dict[str, Any]],
    params: dict[str, Any],
) -> tuple[list[str], list[tuple[float, str]]]:
    """COPY lines of the stage (tickets) and (created_at, line) of the comments."""
    rng = random.Random(params["seed"] * 1_000_003 + slice_no)
    now = params["now"]
    per_ticket = params["comments_per_ticket"]
    ticket_lines: list[str] = []
    comment_lines: list[tuple[float, str]] = []
    for org_idx, ts, number in items:
        org = setup[org_idx]
        org_id = org["id"]
        cat = rng.choices(org["categories"], [c["weight"] for c in org["categories"]])[0]
        sub = rng.choice(cat["children"]) if cat["children"] and rng.random() < 0.7 else None
        kind = cat["kind"]
        subject = corpus.subject(rng, kind)
        if len(subject) < 5:
            subject = f"{subject} issue"
        description = corpus.description(rng, kind)
        age_days = (now - ts) / DAY
        status = _status(rng, age_days)
        priority = (sub or cat)["priority"] if rng.random() < 0.7 else weighted(rng, PRIORITIES)
        dept_id = cat["department_id"]
        dept_agents = org["agents_by_dept"].get(org["dept_name"].get(dept_id, ""), [])
        agent = (
            rng.choice(dept_agents)
            if dept_agents and rng.random() < 0.8
            else rng.choice(org["agents"])[0]
        )
        if status == "new":
            assignee = None if rng.random() < 0.9 else agent
        elif status == "rejected":
            assignee = None if rng.random() < 0.5 else agent
        else:
            assignee = agent
        requester = rng.choice(org["requesters"])
        tags = rng.sample(corpus_tags(), rng.choice((0, 0, 0, 1, 1, 2)))
        custom = (
            {"asset_name": f"{rng.choice(corpus.VENDORS)} {rng.choice(corpus.DEVICES)}"}
            if kind == "it" and rng.random() < 0.5
            else {}
        )
        ticket_id = uuid.uuid4()

        # Comments: spread after submission, never in the future.
        available = max(60.0, (now - ts) * 0.9)
        gaps = [rng.expovariate(1 / (8 * 3600)) + 60 for _ in range(per_ticket)]
        total = sum(gaps)
        scale = min(1.0, available / total) if total else 1.0
        t = ts
        public: list[str] = []
        first_response = None
        for k in range(per_ticket):
            t += gaps[k] * scale
            if status == "new":
                internal = k % 3 == 2
                author = agent if internal else requester
                body = corpus.internal_note(rng) if internal else corpus.requester_reply(rng)
            else:
                role = k % 3  # agent reply, requester reply, agent reply or internal note
                internal = role == 2 and rng.random() < 0.25
                if role == 1:
                    author, body = requester, corpus.requester_reply(rng)
                else:
                    author = assignee or agent
                    body = corpus.internal_note(rng) if internal else corpus.agent_reply(rng)
                if not internal and role != 1 and first_response is None:
                    first_response = t
            if not internal:
                public.append(body)
            comment_lines.append(
                (
                    t,
                    f"{uuid.uuid4()}\t{org_id}\t{ticket_id}\t{author}\t{esc(body)}\t"
                    f"{esc(corpus.to_html(body))}\t{'t' if internal else 'f'}\t{iso(t)}\n",
                )
            )
        last = t
        resolved_at = closed_at = None
        rejection = None
        reopened = 0
        left = max(1.0, now - last)
        if status == "resolved":
            resolved_at = last + min(left * 0.5, rng.uniform(3600, 2 * DAY))
            updated = resolved_at
        elif status == "closed":
            resolved_at = last + min(left * 0.3, rng.uniform(3600, 2 * DAY))
            closed_at = resolved_at + min((now - resolved_at) * 0.9, 7 * DAY)
            updated = closed_at
            reopened = 1 if rng.random() < 0.03 else 0
        elif status == "rejected":
            closed_at = last + min(left * 0.5, rng.uniform(1800, DAY))
            rejection = rng.choice(REJECTIONS)
            updated = closed_at
        else:
            updated = last
        lo, hi = VERSION_BY_STATUS[status]
        version = rng.randint(lo, hi) + reopened * 2
        channel = weighted(rng, CHANNELS)
        ticket_lines.append(
            "\t".join(
                (
                    str(ticket_id),
                    org_id,
                    number,
                    esc(subject),
                    esc(description),
                    esc(corpus.to_html(description)),
                    cat["id"],
                    sub["id"] if sub else "\\N",
                    priority,
                    status,
                    dept_id or "\\N",
                    requester,
                    assignee or "\\N",
                    channel,
                    "{" + ",".join(tags) + "}",
                    esc(json.dumps(custom)),
                    esc(rejection),
                    str(reopened),
                    str(version),
                    iso(ts),
                    iso(updated),
                    iso(first_response) if first_response else "\\N",
                    iso(resolved_at) if resolved_at else "\\N",
                    iso(closed_at) if closed_at else "\\N",
                    esc(" ".join(public)) if public else "\\N",
                )
            )
            + "\n"
        )
    return ticket_lines, comment_lines


def corpus_tags() -> tuple[str, ...]:
    return TAGS


def _write(copy: Any, lines: list[str]) -> None:
    for i in range(0, len(lines), 2000):
        copy.write("".join(lines[i : i + 2000]))


def load_slice(
    task: tuple[int, list[tuple[int, float, str]]],
) -> tuple[int, int, int, float, float]:
    slice_no, items = task
    conn: psycopg.Connection[Any] = _worker["conn"]
    started = time.perf_counter()
    tickets, comments = generate_slice(slice_no, items, _worker["setup"], _worker["params"])
    comments.sort(key=lambda c: c[0])
    generated = time.perf_counter() - started
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy("COPY seed_stage FROM STDIN") as copy:
            _write(copy, tickets)
        with cur.copy(f"COPY comments ({COMMENT_COLUMNS}) FROM STDIN") as copy:
            _write(copy, [c[1] for c in comments])
        vector = SEARCH_VECTOR_SQL.format(s="s", c="s.comment_text")
        cur.execute(
            f"INSERT INTO tickets ({TICKET_COLUMNS}, search_vector) "  # noqa: S608 (constants)
            f"SELECT {', '.join('s.' + c.strip() for c in TICKET_COLUMNS.split(','))}, {vector} "
            "FROM seed_stage s ORDER BY s.submitted_at"
        )
        elapsed = time.perf_counter() - started
        cur.execute(
            "INSERT INTO bench_seed.slices (slice, tickets, comments, seconds) "
            "VALUES (%s, %s, %s, %s)",
            (slice_no, len(tickets), len(comments), elapsed),
        )
    return slice_no, len(tickets), len(comments), generated, time.perf_counter() - started


# Phases ------------------------------------------------------------------------------------


def plan_slices(
    args: argparse.Namespace, now: float, n_orgs: int
) -> dict[int, list[tuple[int, float, str]]]:
    """Every ticket's (organization, submission time, number), grouped by time slice."""
    start = now - HISTORY_DAYS * DAY
    end = now - 600
    n_slices = max(4, min(200, args.tickets // 20_000 or 1))
    bounds = [start + (end - start) * k / n_slices for k in range(n_slices + 1)]
    slices: dict[int, list[tuple[int, float, str]]] = {k: [] for k in range(n_slices)}
    base, extra = divmod(args.tickets, n_orgs)
    for org_idx in range(n_orgs):
        rng = random.Random(args.seed * 7919 + org_idx)
        count = base + (1 if org_idx < extra else 0)
        # Half uniform, half growing towards today: desks get busier over time.
        times = sorted(
            start + (end - start) * (u if rng.random() < 0.5 else u**0.5)
            for u in (rng.random() for _ in range(count))
        )
        seq: dict[int, int] = {}
        for ts in times:
            year = datetime.fromtimestamp(ts, UTC).year
            seq[year] = seq.get(year, 0) + 1
            k = min(n_slices - 1, bisect.bisect_right(bounds, ts) - 1)
            slices[k].append((org_idx, ts, f"TKT{year}{seq[year]:06d}"))
    return slices


def drop_indexes(conn: psycopg.Connection[Any]) -> list[dict[str, str]]:
    saved: list[dict[str, str]] | None = get_state(conn, "dropped_indexes")
    if saved is None:
        rows = conn.execute(
            """
            SELECT i.relname, t.relname, pg_get_indexdef(ix.indexrelid),
                   pg_relation_size(ix.indexrelid)
            FROM pg_index ix
            JOIN pg_class i ON i.oid = ix.indexrelid
            JOIN pg_class t ON t.oid = ix.indrelid
            WHERE t.relname IN ('tickets', 'comments')
              AND t.relnamespace = 'public'::regnamespace
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = ix.indexrelid)
            ORDER BY t.relname, i.relname
            """
        ).fetchall()
        saved = [{"name": r[0], "table": r[1], "ddl": r[2]} for r in rows]
        set_state(conn, "dropped_indexes", saved)
    for index in saved:
        conn.execute(f'DROP INDEX IF EXISTS public."{index["name"]}"')
    conn.commit()
    say(f"  dropped {len(saved)} secondary indexes (kept the primary keys)")
    return saved


def index_cost(index: dict[str, str]) -> int:
    ddl = index["ddl"]
    if "gin" in ddl.lower():
        return 0 if "search_vector" in ddl else 1
    return 2 if index["table"] == "comments" else 3


def build_one(conninfo: str, index: dict[str, str]) -> tuple[str, float]:
    started = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        exists = conn.execute(
            "SELECT 1 FROM pg_class WHERE relname = %s AND relnamespace = 'public'::regnamespace",
            (index["name"],),
        ).fetchone()
        if not exists:
            conn.execute(index["ddl"])
    return index["name"], time.perf_counter() - started


def recreate_indexes(conninfo: str, jobs: int) -> None:
    with psycopg.connect(conninfo) as conn:
        saved = get_state(conn, "dropped_indexes") or []
    ordered = sorted(saved, key=index_cost)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for name, seconds in pool.map(lambda ix: build_one(conninfo, ix), ordered):
            say(f"  {name:<34} {seconds:6.1f} s")
    with psycopg.connect(conninfo) as conn:
        conn.execute("DELETE FROM bench_seed.state WHERE key = 'dropped_indexes'")


def set_counters(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute(
            """
            INSERT INTO ticket_counters (organization_id, year, last_value)
            SELECT organization_id, substring(number from 4 for 4)::int,
                   max(substring(number from 8)::int)
            FROM tickets GROUP BY 1, 2
            ON CONFLICT (organization_id, year)
            DO UPDATE SET last_value = GREATEST(ticket_counters.last_value, EXCLUDED.last_value)
            """
        )
    rows = conn.execute(
        "SELECT year, count(*), sum(last_value) FROM ticket_counters GROUP BY year ORDER BY year"
    ).fetchall()
    for year, orgs, total in rows:
        say(f"  {year}: {orgs} organizations, {total} numbers used")


def verify(conn: psycopg.Connection[Any]) -> None:
    checks = {
        "comments without their ticket": "SELECT count(*) FROM comments c "
        "LEFT JOIN tickets t ON t.id = c.ticket_id WHERE t.id IS NULL",
        "comments of another organization's ticket": "SELECT count(*) FROM comments c "
        "JOIN tickets t ON t.id = c.ticket_id WHERE t.organization_id <> c.organization_id",
        "tickets whose requester/assignee is elsewhere": "SELECT count(*) FROM tickets t "
        "JOIN users r ON r.id = t.requester_id LEFT JOIN users a ON a.id = t.assignee_id "
        "WHERE r.organization_id <> t.organization_id OR a.organization_id <> t.organization_id",
        "tickets whose category is elsewhere": "SELECT count(*) FROM tickets t "
        "JOIN categories c ON c.id = t.category_id WHERE c.organization_id <> t.organization_id",
        "duplicate numbers": "SELECT count(*) FROM (SELECT 1 FROM tickets "
        "GROUP BY organization_id, number HAVING count(*) > 1) d",
    }
    bad = 0
    for label, sql in checks.items():
        count = conn.execute(sql).fetchone()[0]  # type: ignore[index]
        bad += count
        say(f"  {label}: {count}")
    trigger_expr = SEARCH_VECTOR_SQL.format(
        s="t",
        c="(SELECT string_agg(c.body, ' ' ORDER BY c.created_at) FROM comments c "
        "WHERE c.ticket_id = t.id AND NOT c.is_internal AND c.deleted_at IS NULL)",
    )
    sample, differ = conn.execute(
        "SELECT count(*), count(*) FILTER "  # noqa: S608 (constants)
        f"(WHERE t.search_vector IS DISTINCT FROM {trigger_expr}) "
        "FROM tickets t TABLESAMPLE BERNOULLI (0.5) REPEATABLE (1)"
    ).fetchone()  # type: ignore[misc]
    say(f"  search_vector differs from the trigger's expression: {differ} of {sample} sampled")
    bad += differ
    triggers = conn.execute(
        "SELECT tgname, tgenabled FROM pg_trigger WHERE tgname IN "
        "('tickets_search_vector', 'comments_touch_ticket_search') ORDER BY tgname"
    ).fetchall()
    say(f"  search triggers (O = enabled): {', '.join(f'{n}={e}' for n, e in triggers)}")
    if bad:
        raise SystemExit("verification failed: see the counts above")


def vacuum(conninfo: str, jobs: int) -> None:
    def run(table: str) -> tuple[str, float]:
        started = time.perf_counter()
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '1GB'")
            conn.execute(f"VACUUM (ANALYZE) {table}")
        return table, time.perf_counter() - started

    tables = [
        "tickets",
        "comments",
        "users",
        "categories",
        "departments",
        "organizations",
        "ticket_counters",
    ]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for table, seconds in pool.map(run, tables):
            say(f"  VACUUM (ANALYZE) {table:<16} {seconds:6.1f} s")


def sizes(conn: psycopg.Connection[Any]) -> None:
    for table in ("tickets", "comments"):
        row = conn.execute(
            "SELECT pg_size_pretty(pg_table_size(%s)), pg_size_pretty(pg_indexes_size(%s)), "
            "(SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass)",
            (table, table, table),
        ).fetchone()
        say(f"  {table}: ~{row[2]} rows, table {row[0]} (incl. TOAST), indexes {row[1]}")  # type: ignore[index]
    db = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
    say(f"  database: {db[0]}")  # type: ignore[index]


def write_manifest(conn: psycopg.Connection[Any], path: Path, params: dict[str, Any]) -> None:
    setup = load_setup(conn)
    counters = conn.execute(
        "SELECT o.slug, c.year, c.last_value FROM ticket_counters c "
        "JOIN organizations o ON o.id = c.organization_id WHERE o.slug LIKE %s",
        (SLUG_PREFIX + "%",),
    ).fetchall()
    by_org: dict[str, dict[str, int]] = {}
    for slug, year, last in counters:
        by_org.setdefault(slug, {})[str(year)] = last
    emails = dict(
        conn.execute(
            "SELECT u.id::text, u.email FROM users u "
            "JOIN organizations o ON o.id = u.organization_id "
            "WHERE o.slug LIKE %s AND u.role IN ('agent', 'admin', 'manager')",
            (SLUG_PREFIX + "%",),
        ).fetchall()
    )
    manifest = {
        "params": params,
        "password": BENCH_PASSWORD,
        "organizations": [
            {
                "id": o["id"],
                "slug": o["slug"],
                "admin": f"admin@{o['slug']}.example.com",
                "manager": f"manager@{o['slug']}.example.com",
                "agents": sorted(
                    (emails[a], a) for a, _d in o["agents"] if emails[a].startswith("agent")
                ),
                "categories": [
                    {
                        "id": c["id"],
                        "name": c["name"],
                        "children": [ch["id"] for ch in c["children"]],
                    }
                    for c in o["categories"]
                ],
                "requesters": o["requesters"][:20],
                "seeded_numbers": by_org.get(o["slug"], {}),
            }
            for o in setup
        ],
    }
    path.write_text(json.dumps(manifest, indent=1))
    say(f"  manifest: {path}")


# Main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", help="SERVICEDESK_DATA_DIR: embedded PostgreSQL in DIR/pg")
    where.add_argument("--database-url", help="an existing database (superuser connection)")
    p.add_argument("--orgs", type=int, default=100)
    p.add_argument("--tickets", type=int, default=1_000_000, help="total, spread over the orgs")
    p.add_argument("--comments-per-ticket", type=int, default=3)
    p.add_argument("--agents", type=int, default=10, help="agents per organization")
    p.add_argument("--requesters", type=int, default=200, help="requesters per organization")
    p.add_argument("--seed", type=int, default=42, help="random seed of the generated content")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="parallel loaders")
    p.add_argument("--reset", action="store_true", help="drop and recreate the database first")
    p.add_argument("--manifest", help="where to write the manifest (default DIR/bench_seed.json)")
    args = p.parse_args()
    if args.orgs < 1 or args.orgs > 999 or args.tickets < 1 or args.comments_per_ticket < 0:
        p.error("need 1 ≤ --orgs ≤ 999, --tickets ≥ 1, --comments-per-ticket ≥ 0")
    if args.agents < 1 or args.requesters < 1 or args.agents + args.requesters > 9990:
        p.error("need ≥ 1 agent and requester, and < 9990 users per organization")
    if args.manifest is None:
        if args.data_dir is None:
            p.error("--manifest is required with --database-url")
        args.manifest = str(Path(args.data_dir) / "bench_seed.json")
    args.jobs = max(1, min(args.jobs, 16))
    return args


def main() -> int:
    args = parse_args()
    phases = Phases()
    params = params_of(args)
    say(
        f"seeding {args.tickets:,} tickets x {args.comments_per_ticket} comments over "
        f"{args.orgs} organizations ({args.jobs} loaders, {os.cpu_count()} CPUs)"
    )
    with database(args) as url:
        conninfo = conninfo_of(url)
        tuned = False
        try:
            with phases.run("prepare"):
                from servicedesk.core import migrate

                if args.reset:
                    reset_database(url)
                migrate.upgrade(url)
                with psycopg.connect(conninfo) as conn:
                    if not conn.execute(
                        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                    ).fetchone()[0]:  # type: ignore[index]
                        raise SystemExit("the seeder needs a superuser connection")
                    has_state = conn.execute("SELECT to_regclass('bench_seed.state')").fetchone()[0]  # type: ignore[index]
                    has_tickets = conn.execute("SELECT EXISTS (SELECT 1 FROM tickets)").fetchone()[
                        0
                    ]  # type: ignore[index]
                    if has_tickets and not has_state:
                        raise SystemExit(
                            "the database has tickets this seeder did not make: use --reset"
                        )
                    conn.execute(STATE_DDL)
                    stored = get_state(conn, "params")
                    if stored is not None and stored != {**params, "now": stored.get("now")}:
                        raise SystemExit(
                            f"the database was seeded with {stored}; use --reset to seed {params}"
                        )
                    if stored is None:
                        stored = {**params, "now": time.time()}
                        set_state(conn, "params", stored)
                    params = stored
                    done = get_state(conn, "done")
                    conn.commit()
                    if done:
                        say(f"  already seeded ({done}); nothing to do")
                        write_manifest(conn, Path(args.manifest), params)
                        sizes(conn)
                        return 0
                    say(f"  reference time (now): {iso(params['now'])}")
            if not args.database_url:
                tune_server(conninfo, on=True)
                tuned = True
            with psycopg.connect(conninfo) as conn:
                if not get_state(conn, "setup_done"):
                    with phases.run("setup"):
                        setup_orgs(conn, args, params["now"])
                setup = load_setup(conn)
                with phases.run("drop-idx"):
                    drop_indexes(conn)
                done_slices = {r[0] for r in conn.execute("SELECT slice FROM bench_seed.slices")}
            with phases.run("load"):
                slices = plan_slices(args, params["now"], len(setup))
                todo = [(k, v) for k, v in slices.items() if k not in done_slices]
                total = sum(len(v) for _k, v in todo)
                say(
                    f"  {len(slices)} time slices, {len(todo)} to load ({total:,} tickets); "
                    f"{len(done_slices)} already loaded"
                )
                started = time.perf_counter()
                loaded = loaded_comments = 0
                gen_seconds = 0.0
                ctx = multiprocessing.get_context("spawn")
                with ctx.Pool(args.jobs, worker_init, (conninfo, setup, params)) as pool:
                    for k, n_t, n_c, gen, secs in pool.imap_unordered(load_slice, todo):
                        loaded += n_t
                        loaded_comments += n_c
                        gen_seconds += gen
                        elapsed = time.perf_counter() - started
                        say(
                            f"  slice {k + 1:>3}/{len(slices)}: {n_t:,} tickets, {n_c:,} comments "
                            f"in {secs:.1f} s (python {gen:.1f} s) | total {loaded:,}/{total:,} "
                            f"tickets, {loaded / elapsed:,.0f} tickets/s, {elapsed:.0f} s"
                        )
                say(f"  python generation: {gen_seconds:.0f} CPU-s of the loaders")
            with psycopg.connect(conninfo) as conn:
                with phases.run("counters"):
                    set_counters(conn)
            with phases.run("indexes"):
                recreate_indexes(conninfo, args.jobs)
            with phases.run("verify"), psycopg.connect(conninfo) as conn:
                verify(conn)
            with phases.run("vacuum"):
                vacuum(conninfo, args.jobs)
            with psycopg.connect(conninfo) as conn:
                set_state(conn, "done", {"at": iso(time.time()), "seconds": phases.seconds})
                conn.commit()
                sizes(conn)
                write_manifest(conn, Path(args.manifest), params)
        finally:
            if tuned:
                tune_server(conninfo, on=False)
    phases.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
