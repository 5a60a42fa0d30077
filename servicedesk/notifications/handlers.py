"""The notification jobs (the job system imports this module by name, core.jobs).

- `notifications.fan_out`: for each event of rules.EVENT_TYPES, in the handled transaction,
  write the in-app rows, queue the emails and pushes, and defer one send job for each. The
  rows and the send jobs commit together with the handled mark: exactly once.
- `notifications.send_email` / `notifications.send_push`: send one queued row (see
  notifications.delivery for the claim and the crash window).
- `notifications.password_reset`: for `user.password_reset_requested`, queue the sealed reset
  email (notifications.security_email: no preferences, quiet hours, de-dup or digest) and defer
  its send job, in the handled transaction.
- `notifications.deliver`: every minute, build the digests that are due and send whatever is
  due and still queued (held by quiet hours, retries after an SMTP failure, digests).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import password_reset
from servicedesk.core.jobs import (
    JobContext,
    PermanentError,
    TaskContext,
    defer_job,
    defer_jobs,
    job,
    on_event,
    periodic,
)
from servicedesk.core.runtime import Runtime
from servicedesk.notifications import delivery, rules, security_email, service

SEND_EMAIL = "notifications.send_email"
SEND_PUSH = "notifications.send_push"


async def schedule_sends(
    session: AsyncSession, deliveries: list[service.Delivery], *, organization_id: uuid.UUID
) -> int:
    """Defer a send job for each queued or held email and push, in the caller's transaction
    (one statement per kind of job, however many recipients)."""
    jobs: dict[str, list[tuple[dict[str, Any], datetime | None]]] = {SEND_EMAIL: [], SEND_PUSH: []}
    for d in deliveries:
        if d.outcome not in ("queued", "held") or d.channel not in ("email", "push"):
            continue
        name = SEND_EMAIL if d.channel == "email" else SEND_PUSH
        jobs[name].append(({"id": str(d.id)}, d.send_after if d.outcome == "held" else None))
    deferred = 0
    for name, batch in jobs.items():
        deferred += await defer_jobs(session, name, organization_id=organization_id, jobs=batch)
    return deferred


@on_event(*rules.EVENT_TYPES, name="notifications.fan_out")
async def fan_out(ctx: JobContext) -> None:
    async with ctx.tenant_session() as session:
        deliveries = await service.notify_for_event(session, ctx.runtime, ctx.event)
        await schedule_sends(session, deliveries, organization_id=ctx.organization_id)


@on_event(password_reset.EVENT_TYPE, name="notifications.password_reset")
async def password_reset_email(ctx: JobContext) -> None:
    async with ctx.tenant_session() as session:
        try:
            email_id = await security_email.queue_password_reset_email(
                session, ctx.runtime, ctx.event
            )
        except security_email.UnreadableEvent as exc:
            raise PermanentError(str(exc)) from exc
        if email_id is not None:
            await defer_job(
                session,
                SEND_EMAIL,
                organization_id=ctx.organization_id,
                args={"id": str(email_id)},
            )


@job(SEND_EMAIL)
async def send_email(ctx: TaskContext) -> None:
    await delivery.send_due_emails(ctx.runtime, ids=[uuid.UUID(str(ctx.args["id"]))])


@job(SEND_PUSH)
async def send_push(ctx: TaskContext) -> None:
    await delivery.send_due_push(ctx.runtime, ids=[uuid.UUID(str(ctx.args["id"]))])


@periodic("notifications.deliver", cron="* * * * *")
async def deliver(runtime: Runtime, run_at: datetime) -> None:
    await delivery.deliver_due(runtime)
