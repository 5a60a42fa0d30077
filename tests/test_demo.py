"""The demo desk (`servicedesk serve --demo`, `servicedesk demo`): a populated `acme` with users
of every role, tickets in every status, replies, internal notes and attachments; loading it
again changes nothing."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from servicedesk.core import filetypes, migrate
from servicedesk.core.runtime import Runtime
from servicedesk.demo import DEMO_ORG, TICKET_COUNT, USERS, load_demo
from servicedesk.models import Attachment, Comment, Organization, Ticket, TicketStatus, User
from tests.conftest import fresh_database, test_settings


async def test_demo_is_a_populated_desk_and_loads_once(
    server_url: str, worker_id: str, tmp_path: Path
) -> None:
    url = fresh_database(server_url, f"servicedesk_demo_{worker_id}")
    migrate.upgrade(url)
    settings = test_settings(SERVICEDESK_FILES_DIR=str(tmp_path / "files"))
    await load_demo(settings, url)
    await load_demo(settings, url)  # the second run adds nothing

    runtime = Runtime.build(settings, url)
    try:
        async with runtime.db.session() as session:
            org = (
                await session.execute(select(Organization).where(Organization.slug == DEMO_ORG))
            ).scalar_one()
            roles = set(
                (
                    await session.execute(select(User.role).where(User.organization_id == org.id))
                ).scalars()
            )
            statuses = (
                await session.execute(
                    select(Ticket.status, func.count())
                    .where(Ticket.organization_id == org.id)
                    .group_by(Ticket.status)
                )
            ).all()
            notes = (
                await session.execute(
                    select(Comment.is_internal, func.count())
                    .join(Ticket, Ticket.id == Comment.ticket_id)
                    .where(Ticket.organization_id == org.id)
                    .group_by(Comment.is_internal)
                )
            ).all()
            files = list(
                (
                    await session.execute(
                        select(Attachment).where(Attachment.organization_id == org.id)
                    )
                ).scalars()
            )
        assert roles == {role for *_, role, _dept, _cid, _status in USERS}
        by_status = dict(statuses)
        assert sum(by_status.values()) == TICKET_COUNT
        assert set(by_status) == set(TicketStatus)
        by_kind = dict(notes)
        assert by_kind.get(False, 0) >= 50 and by_kind.get(True, 0) >= 10
        assert len(files) >= 20
        kinds = {f.content_type for f in files}
        assert {"image/png", "application/pdf"} <= kinds
        for f in files:
            body = await runtime.storage.get(f.storage_key)
            assert len(body) == f.size
            assert filetypes.sniff(body).mime == f.content_type
    finally:
        await runtime.db.dispose()
