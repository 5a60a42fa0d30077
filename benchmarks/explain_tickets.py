"""EXPLAIN (ANALYZE, BUFFERS) of the ticket queries as the app runs them, in a tenant session.

    .venv/bin/python benchmarks/explain_tickets.py --data-dir /tmp/sd-1m [--org bench-001]
        [--terms printer,kerberos] [--what-if]

The SQL is not retyped: each query is produced by calling the product's `TicketRepository`
(`get_by_number`, `list`, `search`) with a real `Viewer` (an agent of the organization) inside
`Database.tenant_session` (SET LOCAL ROLE servicedesk_app + app.organization_id, so row-level
security applies as in a request). A `before_cursor_execute` hook captures the statement and its
parameters; the query runs three times to warm the cache, then `EXPLAIN (ANALYZE, BUFFERS)` of
that exact statement runs in the same transaction. Each plan is followed by the indexes it uses.

--what-if repeats the search plans after candidate fixes applied *inside a transaction that is
rolled back* (nothing persists): see `WHAT_IF` below.

Needs the seeded data dir (the manifest gives organizations and agents); with the embedded
server it starts PostgreSQL for the data dir (or reuses the one a running server has started).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncSession

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ticket_corpus as corpus

from servicedesk.config import Settings
from servicedesk.core.db import Database
from servicedesk.models import User
from servicedesk.tenancy.repository import OrganizationRepository
from servicedesk.tenancy.service import Tenant
from servicedesk.tickets.auth import Viewer
from servicedesk.tickets.repository import TicketFilters, TicketRepository

INDEX_RE = re.compile(
    r"(Index Only Scan|Index Scan|Bitmap Index Scan)(?: Backward)?(?: using| on) (\S+)"
)
SEQ_RE = re.compile(r"(Seq Scan|Parallel Seq Scan) on (\S+)")
TIME_RE = re.compile(r"Execution Time: ([\d.]+) ms")

# Candidate fixes for the search, each applied inside its own transaction (as the connecting
# superuser, before SET LOCAL ROLE) and rolled back: nothing persists. The repository's SQL is
# captured as usual; a variant may rewrite the captured text (shown in its label).
LEAKY_OPERATORS = (("@@", "tsvector", "tsquery"), ("%>", "text", "text"), ("~~*", "text", "text"))
SCOPE_VIEW = (
    "CREATE VIEW bench_ticket_scope AS SELECT * FROM tickets "
    "WHERE organization_id = NULLIF(current_setting('app.organization_id', true), '')::uuid"
)
COMPOSITE_GIN = (
    "CREATE EXTENSION IF NOT EXISTS btree_gin",
    "SET LOCAL maintenance_work_mem = '1GB'",
    "CREATE INDEX bench_ix_tickets_org_search ON tickets "
    "USING gin (organization_id, search_vector)",
    "CREATE INDEX bench_ix_tickets_org_subject_trgm ON tickets "
    "USING gin (organization_id, subject gin_trgm_ops)",
    "CREATE INDEX bench_ix_tickets_org_number_pattern ON tickets "
    "(organization_id, number varchar_pattern_ops)",
)


def _scope(sql: str) -> str:
    """The search reads the tenant-scoped view instead of the RLS table (both FROMs: with
    one RLS reference left, PostgreSQL 18 merges the self-join and the RLS barrier is back)."""
    return sql.replace("FROM tickets ", "FROM bench_ticket_scope AS tickets ")


def _like(sql: str) -> str:
    """Numbers are upper case and the pattern is upper-cased: LIKE is enough (btree-able)."""
    return sql.replace("tickets.number ILIKE", "tickets.number LIKE")


# `assignee_id IS NULL` is an index condition but not an equality, so no index on
# (organization_id, assignee_id, status, updated_at) can return the unassigned queue in
# updated_at order: PostgreSQL reads the whole queue and sorts it. A partial index can.
QUEUE_INDEX = (
    "CREATE INDEX bench_ix_tickets_org_unassigned ON tickets "
    "(organization_id, status, updated_at, id) WHERE assignee_id IS NULL",
    "ANALYZE tickets",
)

# (key, label, statements, SQL rewrite, which queries to re-plan: search or queue)
WHAT_IF: tuple[tuple[str, str, tuple[str, ...], Callable[[str], str] | None, str], ...] = (
    (
        "leakproof",
        "the three match operators' functions marked LEAKPROOF (superuser catalog change)",
        ("LEAKPROOF",),
        None,
        "search",
    ),
    (
        "view",
        "the search FROM a tenant-scoped view (no RLS barrier, same tenant predicate)",
        (SCOPE_VIEW, "GRANT SELECT ON bench_ticket_scope TO {role}"),
        _scope,
        "search",
    ),
    (
        "view+gin",
        "the view + btree_gin (organization_id, search_vector), (organization_id, subject "
        "gin_trgm_ops), (organization_id, number varchar_pattern_ops) + number LIKE",
        (SCOPE_VIEW, "GRANT SELECT ON bench_ticket_scope TO {role}", *COMPOSITE_GIN),
        lambda sql: _like(_scope(sql)),
        "search",
    ),
    (
        "analyze",
        "fresh statistics only (ANALYZE tickets), current indexes",
        ("ANALYZE tickets",),
        None,
        "queue",
    ),
    (
        "queue-idx",
        "a partial index for the unassigned queue, so ORDER BY updated_at, id LIMIT n reads "
        "n rows instead of the whole queue",
        QUEUE_INDEX,
        None,
        "queue",
    ),
)


def say(message: str = "") -> None:
    print(message, flush=True)


class Capture:
    """The last statement the engine sent, in the driver's own form ($1 … with a tuple)."""

    def __init__(self, db: Database) -> None:
        self.statements: list[tuple[str, Any]] = []
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._hook)

    def _hook(self, conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.statements.append((statement, parameters))

    def first_select(self) -> tuple[str, Any]:
        """The first ticket query of the call (the search's matching statement, not the
        second one that loads the page by id)."""
        for statement, parameters in self.statements:
            if statement.lstrip().upper().startswith("SELECT") and "ticket" in statement:
                return statement, parameters
        raise RuntimeError("no ticket query captured")


def uses(plan: list[str]) -> str:
    found: list[str] = []
    for line in plan:
        for match in INDEX_RE.finditer(line):
            found.append(f"{match.group(2)} ({match.group(1)})")
        for match in SEQ_RE.finditer(line):
            found.append(f"{match.group(2)} ({match.group(1)})")
    return ", ".join(dict.fromkeys(found)) or "no table scan"


async def explain(
    session: AsyncSession,
    capture: Capture,
    title: str,
    call: Callable[[], Awaitable[Any]],
    rewrite: Callable[[str], str] | None = None,
) -> tuple[str, float]:
    timings = []
    for _ in range(3):  # warm the caches; keep the last wall time for reference
        capture.statements.clear()
        started = time.perf_counter()
        result = await call()
        timings.append((time.perf_counter() - started) * 1000)
    statement, parameters = capture.first_select()
    if rewrite is not None:
        statement = rewrite(statement)
    conn = await session.connection()
    rows = await conn.exec_driver_sql(
        "EXPLAIN (ANALYZE, BUFFERS, SETTINGS) " + statement, parameters
    )
    plan = [r[0] for r in rows]
    say(f"\n--- {title}")
    say(
        f"rows returned: {len(result) if isinstance(result, list) else int(result is not None)}; "
        f"round trip from Python (3 warm runs): {', '.join(f'{t:.1f}' for t in timings)} ms"
    )
    say("SQL: " + " ".join(statement.split()))
    say(f"params: {parameters}")
    for line in plan:
        say("  " + line)
    used = uses(plan)
    match = next((TIME_RE.search(line) for line in plan if TIME_RE.search(line)), None)
    execution = float(match.group(1)) if match else float("nan")
    say(f"=> uses: {used}; execution {execution:.2f} ms")
    return used, execution


async def run(args: argparse.Namespace, url: str) -> None:
    manifest = json.loads((Path(args.data_dir) / "bench_seed.json").read_text())
    orgs = {o["slug"]: o for o in manifest["organizations"]}
    org_info = orgs[args.org or manifest["organizations"][0]["slug"]]
    settings = Settings(_env_file=None)
    db = Database(url, app_role=settings.app_db_role, pool_size=2)
    capture = Capture(db)
    summary: list[tuple[str, str, float]] = []
    try:
        async with db.session() as session:
            org = await OrganizationRepository(session).get(uuid.UUID(org_info["id"]))
            assert org is not None
            tenant = Tenant.of(org)
            version = (await session.execute(text("SHOW server_version"))).scalar_one()
            counts = (
                await session.execute(
                    text(
                        "SELECT (SELECT reltuples::bigint FROM pg_class "
                        "WHERE oid = 'tickets'::regclass),"
                        " (SELECT count(*) FROM tickets WHERE organization_id = :org)"
                    ),
                    {"org": org.id},
                )
            ).one()
        say(
            f"PostgreSQL {version}; tickets ≈ {counts[0]:,} in all, {counts[1]:,} in {org.slug}; "
            f"tenant session as {settings.app_db_role} (RLS on)"
        )
        agent_email = args.agent or org_info["agents"][0][0]
        year, last = max(org_info["seeded_numbers"].items())
        number = f"TKT{year}{max(1, int(last) // 2):06d}"
        terms = args.terms.split(",") if args.terms else [t for t, _ in corpus.SEARCH_QUERIES]

        requester_id = uuid.UUID(org_info["requesters"][0])

        async def viewers(session: AsyncSession) -> tuple[Viewer, Viewer]:
            agent = (
                await session.execute(select(User).where(User.email == agent_email))
            ).scalar_one()
            requester = (
                await session.execute(select(User).where(User.id == requester_id))
            ).scalar_one()
            return Viewer.of(agent, tenant), Viewer.of(requester, tenant)

        def build_cases(
            repo: TicketRepository, agent: Viewer, requester: Viewer
        ) -> list[tuple[str, str, Callable[[], Awaitable[Any]]]]:
            """(kind, title, call) for every query explained."""

            def queue(viewer: Viewer, filters: TicketFilters) -> Callable[[], Awaitable[Any]]:
                return partial(
                    repo.list,
                    viewer,
                    filters,
                    sort="updated",
                    descending=True,
                    after=None,
                    limit=26,
                )

            cases: list[tuple[str, str, Callable[[], Awaitable[Any]]]] = [
                ("get", f"get by number {number}", partial(repo.get_by_number, agent, number)),
                (
                    "queue",
                    "queue: status in (open, in_progress), assignee = me, first page",
                    queue(agent, TicketFilters(statuses=["open", "in_progress"], assignee="me")),
                ),
                (
                    "queue",
                    "queue: status = new, unassigned, first page",
                    queue(agent, TicketFilters(statuses=["new"], assignee="none")),
                ),
                (
                    "queue",
                    "all tickets, newest activity first (no filter), first page",
                    queue(agent, TicketFilters()),
                ),
                (
                    "queue",
                    "a requester's own tickets, first page",
                    queue(requester, TicketFilters()),
                ),
            ]
            # Both statements the service may run: exact matches (a first page stops there
            # when they fill it) and, for few exact matches, exact + fuzzy subject matches.
            for term in terms:
                for fuzzy in (False, True):
                    call = partial(repo.search, agent, TicketFilters(), term, after=None, limit=26)
                    cases.append(
                        (
                            "search",
                            f"search q={term!r} ({'with fuzzy subjects' if fuzzy else 'exact'})",
                            partial(call, fuzzy=fuzzy),
                        )
                    )
            return cases

        async with db.tenant_session(org.id) as session:
            agent, requester = await viewers(session)
            say(
                f"viewer: {agent.user.email} ({agent.user.role}), "
                f"restricted={agent.restricted_to_departments}; requester {requester.user.email}"
            )
            for _kind, title, call in build_cases(TicketRepository(session), agent, requester):
                used, ms = await explain(session, capture, title, call)
                summary.append((title, used, ms))

        chosen = [w for w in WHAT_IF if w[0] in args.what_if]
        for key, label, statements, rewrite, kind in chosen:
            say(f"\n=== what if: {label} (in a transaction, rolled back) ===")
            async with db.sessionmaker() as session, session.begin():
                for statement in statements:
                    if statement == "LEAKPROOF":
                        for name, left, right in LEAKY_OPERATORS:
                            proc = (
                                await session.execute(
                                    text(
                                        "SELECT oprcode::regprocedure::text FROM pg_operator "
                                        "WHERE oprname = :n AND oprleft = CAST(:l AS regtype) "
                                        "AND oprright = CAST(:r AS regtype)"
                                    ),
                                    {"n": name, "l": left, "r": right},
                                )
                            ).scalar_one()
                            say(f"  ALTER FUNCTION {proc} LEAKPROOF")
                            await session.execute(text(f"ALTER FUNCTION {proc} LEAKPROOF"))
                        continue
                    sql = statement.format(role=settings.app_db_role)
                    started = time.perf_counter()
                    await session.execute(text(sql))
                    say(f"  {sql}  ({time.perf_counter() - started:.1f} s)")
                await db.bind_tenant(session, org.id)
                agent, requester = await viewers(session)
                for case_kind, title, call in build_cases(
                    TicketRepository(session), agent, requester
                ):
                    if case_kind != kind:
                        continue
                    used, ms = await explain(session, capture, f"[{key}] {title}", call, rewrite)
                    summary.append((f"[{key}] {title}", used, ms))
                await session.rollback()
    finally:
        await db.dispose()

    say("\n=== which query uses which index (execution time inside PostgreSQL) ===")
    for title, used, ms in summary:
        say(f"{title}\n    {ms:8.2f} ms  {used}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="the seeded data dir (has bench_seed.json)")
    p.add_argument("--database-url", help="use this database instead of the embedded one")
    p.add_argument("--org", help="organization slug (default: the first seeded one)")
    p.add_argument("--agent", help="agent email (default: the organization's first agent)")
    p.add_argument("--terms", help="comma-separated search terms (default: the corpus's)")
    p.add_argument(
        "--what-if",
        nargs="?",
        const="leakproof,view,view+gin,analyze,queue-idx",
        default="",
        help="also plan the search with candidate fixes (comma list of "
        + ", ".join(w[0] for w in WHAT_IF)
        + "; default all). view+gin and queue-idx build indexes inside the rolled-back "
        "transaction (up to a minute on 1M tickets; writers wait meanwhile)",
    )
    args = p.parse_args()
    args.what_if = {w.strip() for w in args.what_if.split(",") if w.strip()}
    if args.database_url:
        asyncio.run(run(args, args.database_url))
        return 0
    from servicedesk.core.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(Path(args.data_dir) / "pg")
    url = server.start()
    try:
        asyncio.run(run(args, url))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
