"""Failed jobs (the dead letters): list, replay, discard, scoped to one organization or all.

The queue's tables are not tenant tables (no RLS): they are read in a system session and every
query here filters by the organization stored in the job's arguments, in one place, so an
organization's admin never sees nor touches another organization's job (404).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.audit import service as audit
from servicedesk.core.actor import Actor
from servicedesk.core.errors import Conflict, NotFound
from servicedesk.jobs.schemas import JobKind, JobRead, JobStats, QueueStats

_JOB_COLUMNS = """
    j.id, j.task_name, j.queue_name, j.status::text AS status, j.args, j.attempts,
    e.error, e.traceback, e.failed_at
FROM procrastinate.procrastinate_jobs j
LEFT JOIN procrastinate.job_errors e ON e.job_id = j.id
"""
_SCOPE = "(CAST(:org AS text) IS NULL OR j.args->>'organization_id' = CAST(:org AS text))"


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _kind(args: dict[str, Any]) -> JobKind:
    if "event" in args:
        return "event"
    if "timestamp" in args:
        return "periodic"
    return "job"


def _read(row: Any, *, with_traceback: bool) -> JobRead:
    args: dict[str, Any] = row.args or {}
    event: dict[str, Any] = args.get("event") or {}
    return JobRead(
        id=row.id,
        handler=row.task_name,
        queue=row.queue_name,
        kind=_kind(args),
        status=row.status,
        organization_id=_uuid(args.get("organization_id")),
        event_id=_uuid(event.get("event_id")),
        event_type=event.get("event_type"),
        attempts=row.attempts,
        error=row.error,
        failed_at=row.failed_at,
        traceback=row.traceback if with_traceback else None,
    )


async def list_failed(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID | None,
    handler: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
    with_traceback: bool = False,
) -> list[JobRead]:
    """Failed jobs, newest first; `organization_id=None` means all (platform operator)."""
    rows = await session.execute(
        text(
            f"SELECT {_JOB_COLUMNS} WHERE j.status = 'failed' AND {_SCOPE} "
            "AND (CAST(:handler AS text) IS NULL OR j.task_name = CAST(:handler AS text)) "
            "AND (CAST(:before AS bigint) IS NULL OR j.id < CAST(:before AS bigint)) "
            "ORDER BY j.id DESC LIMIT :limit"
        ),
        {
            "org": str(organization_id) if organization_id else None,
            "handler": handler,
            "before": before_id,
            "limit": limit,
        },
    )
    return [_read(row, with_traceback=with_traceback) for row in rows]


async def _get(
    session: AsyncSession, job_id: int, organization_id: uuid.UUID | None, *, lock: bool
) -> Any:
    row = (
        await session.execute(
            text(
                f"SELECT {_JOB_COLUMNS} WHERE j.id = :id AND {_SCOPE}"
                + (" FOR UPDATE OF j" if lock else "")
            ),
            {"id": job_id, "org": str(organization_id) if organization_id else None},
        )
    ).first()
    if row is None:
        raise NotFound("No such job.", code="job_not_found")
    return row


async def get_job(
    session: AsyncSession,
    job_id: int,
    *,
    organization_id: uuid.UUID | None,
    with_traceback: bool = False,
) -> JobRead:
    row = await _get(session, job_id, organization_id, lock=False)
    return _read(row, with_traceback=with_traceback)


async def replay(
    session: AsyncSession, job_id: int, *, organization_id: uuid.UUID | None, actor: Actor
) -> JobRead:
    """Queue a failed job again, now, for one more attempt (its error stays until it runs)."""
    row = await _get(session, job_id, organization_id, lock=True)
    if row.status != "failed":
        raise Conflict(
            f"Only failed jobs can be replayed; this one is {row.status}.", code="job_not_failed"
        )
    try:
        async with session.begin_nested():
            await session.execute(
                # Not procrastinate_retry_job_v2: it would count a run that did not happen.
                text(
                    "UPDATE procrastinate.procrastinate_jobs "
                    "SET status = 'todo', scheduled_at = now(), worker_id = NULL "
                    "WHERE id = :id AND status = 'failed'"
                ),
                {"id": job_id},
            )
    except IntegrityError as exc:  # a periodic job whose next run is already waiting
        raise Conflict(
            "Another run of this job is already waiting.", code="job_already_queued"
        ) from exc
    await _audit(session, row, actor, "job.replayed")
    replayed = await _get(session, job_id, organization_id, lock=False)
    return _read(replayed, with_traceback=False)


async def discard(
    session: AsyncSession, job_id: int, *, organization_id: uuid.UUID | None, actor: Actor
) -> None:
    """Delete a failed job for good (with its error)."""
    row = await _get(session, job_id, organization_id, lock=True)
    if row.status != "failed":
        raise Conflict(
            f"Only failed jobs can be discarded; this one is {row.status}.", code="job_not_failed"
        )
    await session.execute(
        text("DELETE FROM procrastinate.procrastinate_jobs WHERE id = :id"), {"id": job_id}
    )
    await _audit(session, row, actor, "job.discarded")


async def _audit(session: AsyncSession, row: Any, actor: Actor, action: str) -> None:
    job = _read(row, with_traceback=False)
    if job.organization_id is None:
        return  # platform jobs (periodic) belong to no organization's audit log
    await audit.record(
        session,
        organization_id=job.organization_id,
        actor=actor,
        action=action,
        table="jobs",
        record_id=str(job.id),
        new={
            "handler": job.handler,
            "event_id": job.event_id,
            "event_type": job.event_type,
            "attempts": job.attempts,
            "error": job.error,
        },
    )


async def status_counts(session: AsyncSession, *, organization_id: uuid.UUID) -> dict[str, int]:
    """How many of the organization's jobs are in each state (todo, doing, failed, …)."""
    rows = await session.execute(
        text(
            "SELECT j.status::text AS status, count(*) AS n "
            "FROM procrastinate.procrastinate_jobs j "
            "WHERE j.args->>'organization_id' = CAST(:org AS text) GROUP BY 1"
        ),
        {"org": str(organization_id)},
    )
    return {row.status: row.n for row in rows}


async def stats(session: AsyncSession) -> JobStats:
    """Queue depth by queue and status, and the outbox backlog (platform operator)."""
    pending = (
        await session.execute(
            text(
                "SELECT count(*) AS n, min(occurred_at) AS oldest FROM outbox_events "
                "WHERE dispatched_at IS NULL"
            )
        )
    ).one()
    rows = await session.execute(
        text(
            "SELECT queue_name, status::text AS status, count(*) AS n "
            "FROM procrastinate.procrastinate_jobs GROUP BY 1, 2 ORDER BY 1, 2"
        )
    )
    oldest: datetime | None = pending.oldest
    return JobStats(
        outbox_pending=pending.n,
        outbox_oldest_pending=oldest,
        jobs=[QueueStats(queue=r.queue_name, status=r.status, count=r.n) for r in rows],
    )
