"""The handler of benchmarks/bench_events.py, loaded by its workers (SERVICEDESK_HANDLER_MODULES).

`bench.ping` → `bench.record`: one row per event, written in the handled transaction (the
realistic shape of a handler with an exactly-once effect), stamped with the database clock.
"""

from __future__ import annotations

from sqlalchemy import text

from servicedesk.core.jobs import JobContext, on_event


@on_event("bench.ping", name="bench.record")
async def record(ctx: JobContext) -> None:
    async with ctx.tenant_session() as session:
        await session.execute(
            text("INSERT INTO bench_effects (event_id) VALUES (:e)"), {"e": ctx.event_id}
        )
