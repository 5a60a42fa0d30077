"""Background work of the tickets domain (loaded by the job system, see core/jobs.py)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from servicedesk.core.jobs import periodic
from servicedesk.core.runtime import Runtime
from servicedesk.tickets import attachments

log = logging.getLogger(__name__)

MAX_BATCHES = 50
"""At most this many batches (of attachments.PURGE_BATCH) per run; the next run goes on."""


@periodic("tickets.purge_deleted_attachments", cron="41 * * * *")
async def purge_deleted_attachments(runtime: Runtime, run_at: datetime) -> None:
    """Hourly: delete the stored files of attachments deleted more than
    SERVICEDESK_ATTACHMENT_PURGE_DAYS ago (one transaction per batch)."""
    cutoff = run_at - timedelta(days=runtime.settings.attachment_purge_days)
    total = 0
    for _ in range(MAX_BATCHES):
        async with runtime.db.session() as session:
            purged = await attachments.purge_deleted(session, runtime.storage, older_than=cutoff)
        total += purged
        if purged < attachments.PURGE_BATCH:
            break
    if total:
        log.info("deleted attachments purged", extra={"purged": total})
