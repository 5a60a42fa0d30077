"""Handlers of the crash test in tests/test_jobs.py, run inside `servicedesk worker` processes.

`ticket.created` → `tests.crash.effect`: writes an effect row and the intent of an email (a
`test_crash_emails` row, status queued) and defers `tests.crash.send` for it, all in the
handled transaction. `tests.crash.send` claims the email row (`FOR UPDATE SKIP LOCKED`, status
check), appends it to the sink file and marks it sent: the exactly-once recipe of docs/jobs.md.

The environment steers where a worker stops, for events of the organization `SD_CRASH_ORG`
only: `SD_CRASH_POINT` is a comma-separated list of

  dispatch   the dispatcher queued the batch but has not committed (outbox row committed,
             not dispatched)
  handler    the handler wrote its effect but has not committed
  committed  the handler committed; the queue does not know yet (job still running)
  send       the sender claimed the email but has not sent it

Reaching a point writes `<SD_CRASH_DIR>/<point>.<key>.reached` (key: the event or email id)
and sleeps until the test kills the process with SIGKILL. Every run appends a line to
`<SD_CRASH_DIR>/runs.log`.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.core.job_runner import Dispatcher
from servicedesk.core.jobs import JobContext, TaskContext, defer_job, job, on_event

ORG = os.environ.get("SD_CRASH_ORG", "")
POINTS = {p for p in os.environ.get("SD_CRASH_POINT", "").split(",") if p}
DIR = Path(os.environ.get("SD_CRASH_DIR", "/tmp"))
SINK = Path(os.environ.get("SD_CRASH_SINK", "/tmp/sd-crash-sink.txt"))


def _note(line: str) -> None:
    with (DIR / "runs.log").open("a") as f:
        f.write(line + "\n")


def deliver(line: str) -> None:
    with SINK.open("a") as sink:
        sink.write(line + "\n")
        sink.flush()
        os.fsync(sink.fileno())


async def pause(point: str, organization_id: str, key: object) -> None:
    if point not in POINTS or organization_id != ORG:
        return
    (DIR / f"{point}.{key}.reached").write_text(str(os.getpid()))
    await asyncio.sleep(600)  # until SIGKILL


if "dispatch" in POINTS:
    _original_defer = Dispatcher._defer

    async def _defer_then_pause(
        self: Dispatcher, session: AsyncSession, jobs: list[dict[str, Any]]
    ) -> None:
        await _original_defer(self, session, jobs)
        if any(j["args"]["organization_id"] == ORG for j in jobs):
            await pause("dispatch", ORG, "batch")

    Dispatcher._defer = _defer_then_pause  # type: ignore[method-assign]


@on_event("ticket.created", name="tests.crash.effect")
async def effect(ctx: JobContext) -> None:
    org = str(ctx.organization_id)
    _note(f"effect {ctx.event_id} attempt={ctx.attempt}")
    async with ctx.tenant_session() as session:
        await session.execute(
            text(
                "INSERT INTO test_job_effects (event_id, handler, org_id, note) "
                "VALUES (:e, 'tests.crash.effect', :o, :n)"
            ),
            {"e": ctx.event_id, "o": ctx.organization_id, "n": ctx.payload.get("ticket_id")},
        )
        email_id = uuid.uuid4()
        await session.execute(
            text(
                "INSERT INTO test_crash_emails (id, event_id, org_id, status) "
                "VALUES (:id, :e, :o, 'queued')"
            ),
            {"id": email_id, "e": ctx.event_id, "o": ctx.organization_id},
        )
        await defer_job(
            session,
            "tests.crash.send",
            organization_id=ctx.organization_id,
            args={"email_id": str(email_id)},
        )
        await pause("handler", org, ctx.event_id)
    await pause("committed", org, ctx.event_id)


@job("tests.crash.send")
async def send(ctx: TaskContext) -> None:
    org = str(ctx.organization_id)
    email_id = ctx.args["email_id"]
    _note(f"send {email_id} attempt={ctx.attempt}")
    async with ctx.tenant_session() as session:
        row = (
            await session.execute(
                text("SELECT status FROM test_crash_emails WHERE id = :id FOR UPDATE SKIP LOCKED"),
                {"id": email_id},
            )
        ).first()
        if row is None:
            raise RuntimeError("another sender holds this email; try again later")
        if row.status == "sent":
            return
        await pause("send", org, email_id)
        deliver(f"{org} {email_id}")  # the "SMTP server"
        await session.execute(
            text("UPDATE test_crash_emails SET status = 'sent' WHERE id = :id"), {"id": email_id}
        )
