"""The demo organization `acme`: departments and a user of every role, same credentials always."""

from __future__ import annotations

import random
import struct
import uuid
import zlib
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk import demo_data
from servicedesk.accounts import service as accounts
from servicedesk.accounts.repository import DepartmentRepository, UserRepository
from servicedesk.accounts.schemas import DepartmentCreate, UserCreate
from servicedesk.config import Settings
from servicedesk.core.actor import SYSTEM
from servicedesk.core.clock import utc_now
from servicedesk.core.runtime import Runtime
from servicedesk.models import Role, TicketStatus, UserStatus
from servicedesk.tenancy import service as tenancy
from servicedesk.tenancy.repository import OrganizationRepository
from servicedesk.tenancy.schemas import OrganizationCreate
from servicedesk.tenancy.service import Tenant
from servicedesk.tickets import attachments, categories, comments
from servicedesk.tickets import service as tickets
from servicedesk.tickets.attachments import Upload
from servicedesk.tickets.auth import Viewer
from servicedesk.tickets.repository import TicketRepository
from servicedesk.tickets.schemas import (
    CategoryCreate,
    CommentCreate,
    StatusChange,
    TicketCreate,
    TicketUpdate,
)

DEMO_ORG = "acme"
DEMO_PASSWORD = "Servicedesk-Demo-2026"  # documented demo credential
DEPARTMENTS = ("IT", "Human Resources", "Facilities", "Finance")
# (email, first, last, role, department, company id, status)
USERS = (
    ("admin@acme.example.com", "Ada", "Admin", Role.ADMIN, "IT", "MA0001", UserStatus.APPROVED),
    ("agent@acme.example.com", "Ana", "Agent", Role.AGENT, "IT", "MA0002", UserStatus.APPROVED),
    (
        "hr.agent@acme.example.com",
        "Hugo",
        "Reyes",
        Role.AGENT,
        "Human Resources",
        "MA0003",
        UserStatus.APPROVED,
    ),
    (
        "manager@acme.example.com",
        "Mia",
        "Manager",
        Role.MANAGER,
        "Finance",
        "MA0004",
        UserStatus.APPROVED,
    ),
    (
        "employee@acme.example.com",
        "Eli",
        "Employee",
        Role.REQUESTER,
        "Facilities",
        "MA0005",
        UserStatus.APPROVED,
    ),
    (
        "pending@acme.example.com",
        "Pat",
        "Pending",
        Role.REQUESTER,
        "Finance",
        "MA0006",
        UserStatus.PENDING,
    ),
)


async def _ensure_departments(session: AsyncSession, org_id: uuid.UUID) -> dict[str, uuid.UUID]:
    repo = DepartmentRepository(session)
    existing = {d.name: d.id for d in await repo.list()}
    for name in DEPARTMENTS:
        if name not in existing:
            dept = await accounts.do_create_department(
                session,
                DepartmentCreate(name=name),
                organization_id=org_id,
                actor=SYSTEM,
            )
            existing[name] = dept.id
    return existing


async def load_demo(settings: Settings, url: str) -> None:
    """Create `acme` with its departments and users; running it again changes nothing."""
    runtime = Runtime.build(settings, url)
    try:
        async with runtime.db.session() as session:
            org = await OrganizationRepository(session).get_by_slug(DEMO_ORG)
            if org is None:
                org = await tenancy.create_organization(
                    session,
                    OrganizationCreate(
                        slug=DEMO_ORG, name="Acme Corporation", timezone="Europe/Berlin"
                    ),
                    actor=SYSTEM,
                )
            org_id = org.id
        async with runtime.db.tenant_session(org_id) as session:
            departments = await _ensure_departments(session, org_id)
            users = UserRepository(session)
            for email, first, last, role, dept, company_id, status in USERS:
                if await users.email_taken(email):
                    continue
                user = await accounts.do_create_user(
                    session,
                    runtime.hasher,
                    UserCreate(
                        email=email,
                        password=DEMO_PASSWORD,
                        first_name=first,
                        last_name=last,
                        role=role,
                        company_id=company_id,
                        department_id=departments[dept],
                    ),
                    organization_id=org_id,
                    actor=SYSTEM,
                )
                if status == UserStatus.PENDING:
                    user.status = UserStatus.PENDING
                    user.approved_at = None
        async with runtime.db.tenant_session(org_id) as session:
            await _ensure_tickets(session, runtime, org_id)
    finally:
        await runtime.db.dispose()


EXTRA_REQUESTERS = (
    ("lena.fischer@acme.example.com", "Lena", "Fischer", "MA0101"),
    ("omar.haddad@acme.example.com", "Omar", "Haddad", "MA0102"),
    ("sofia.rossi@acme.example.com", "Sofia", "Rossi", "MA0103"),
    ("kenji.sato@acme.example.com", "Kenji", "Sato", "MA0104"),
)
TICKET_COUNT = 100
# How a ticket reaches each status through the workflow.
PATHS: dict[TicketStatus, list[TicketStatus]] = {
    TicketStatus.NEW: [],
    TicketStatus.OPEN: [TicketStatus.OPEN],
    TicketStatus.IN_PROGRESS: [TicketStatus.OPEN, TicketStatus.IN_PROGRESS],
    TicketStatus.ON_HOLD: [TicketStatus.OPEN, TicketStatus.IN_PROGRESS, TicketStatus.ON_HOLD],
    TicketStatus.RESOLVED: [TicketStatus.OPEN, TicketStatus.IN_PROGRESS, TicketStatus.RESOLVED],
    TicketStatus.CLOSED: [
        TicketStatus.OPEN,
        TicketStatus.IN_PROGRESS,
        TicketStatus.RESOLVED,
        TicketStatus.CLOSED,
    ],
    TicketStatus.REJECTED: [TicketStatus.REJECTED],
}
STATUS_MIX = (
    [TicketStatus.NEW] * 18
    + [TicketStatus.OPEN] * 18
    + [TicketStatus.IN_PROGRESS] * 20
    + [TicketStatus.ON_HOLD] * 8
    + [TicketStatus.RESOLVED] * 14
    + [TicketStatus.CLOSED] * 16
    + [TicketStatus.REJECTED] * 6
)


async def _ensure_categories(
    session: AsyncSession, org_id: uuid.UUID, departments: dict[str, uuid.UUID]
) -> dict[str, uuid.UUID]:
    existing = {
        c.name: c.id for c in await categories.list_categories(session, include_inactive=True)
    }
    for spec in demo_data.CATEGORIES:
        if spec["name"] in existing:
            continue
        parent = await categories.create_category(
            session,
            CategoryCreate(
                name=spec["name"],
                description=spec["description"],
                default_priority=spec["default_priority"],
                department_id=departments[spec["department"]],
                fields=spec["fields"],
            ),
            organization_id=org_id,
            actor=SYSTEM,
        )
        existing[parent.name] = parent.id
        for child in spec.get("children", []):
            sub = await categories.create_category(
                session,
                CategoryCreate(
                    name=child["name"],
                    parent_id=parent.id,
                    default_priority=child["default_priority"],
                    department_id=departments[spec["department"]],
                ),
                organization_id=org_id,
                actor=SYSTEM,
            )
            existing[sub.name] = sub.id
    return existing


async def _ensure_tickets(session: AsyncSession, runtime: Runtime, org_id: uuid.UUID) -> None:
    """About a hundred tickets in every status, with replies and internal notes."""
    departments = await _ensure_departments(session, org_id)
    category_ids = await _ensure_categories(session, org_id, departments)
    users = UserRepository(session)
    if await TicketRepository(session).count_all() > 0:
        return
    org = await OrganizationRepository(session).get_by_slug(DEMO_ORG)
    assert org is not None
    tenant = Tenant.of(org)  # from the database, never the process's tenant cache
    for email, first, last, company_id in EXTRA_REQUESTERS:
        if not await users.email_taken(email):
            await accounts.do_create_user(
                session,
                runtime.hasher,
                UserCreate(
                    email=email,
                    password=DEMO_PASSWORD,
                    first_name=first,
                    last_name=last,
                    company_id=company_id,
                    department_id=departments["Finance"],
                ),
                organization_id=org_id,
                actor=SYSTEM,
            )
    by_email = {u.email: u for u in await users.list(limit=200)}
    requesters = [by_email["employee@acme.example.com"]] + [
        by_email[e[0]] for e in EXTRA_REQUESTERS
    ]
    agents = [by_email["agent@acme.example.com"], by_email["hr.agent@acme.example.com"]]
    admin = by_email["admin@acme.example.com"]
    rng = random.Random(2026)  # the same demo every time  # noqa: S311
    now = utc_now()
    for i in range(TICKET_COUNT):
        category_name, subject, description, custom = demo_data.REQUESTS[
            i % len(demo_data.REQUESTS)
        ]
        requester = requesters[i % len(requesters)]
        agent = agents[1] if category_name == "HR Request" else agents[0]
        status = STATUS_MIX[i % len(STATUS_MIX)]
        ticket = await tickets.create_ticket(
            session,
            Viewer(requester),
            tenant,
            TicketCreate(
                subject=subject if i < len(demo_data.REQUESTS) else f"{subject} (#{i // 20 + 1})",
                description=description,
                category_id=category_ids[category_name],
                channel=rng.choice(["web", "web", "web", "email", "api"]),
                priority=rng.choice(["low", "medium", "medium", "high", "critical"]),
                custom_fields=custom,
                tags=rng.sample(["vip", "onboarding", "hardware", "follow-up", "urgent"], k=i % 3),
            ),
        )
        if i % 4 == 1:
            await _attach(session, runtime, Viewer(requester), tenant, ticket.id, i)
        staff = Viewer(agent)
        if status != TicketStatus.NEW:
            ticket = await tickets.update_ticket(
                session,
                Viewer(admin),
                tenant,
                ticket.id,
                TicketUpdate(assignee_id=agent.id),
                version=ticket.version,
            )
        for step_no, step in enumerate(PATHS[status]):
            if step_no == 1 or step == TicketStatus.REJECTED:
                await comments.add_comment(
                    session,
                    staff,
                    tenant,
                    ticket.id,
                    CommentCreate(body=rng.choice(demo_data.PUBLIC_REPLIES)),
                )
                if i % 3 == 0:
                    await comments.add_comment(
                        session,
                        staff,
                        tenant,
                        ticket.id,
                        CommentCreate(body=rng.choice(demo_data.INTERNAL_NOTES), is_internal=True),
                    )
                if i % 2 == 0 and step != TicketStatus.REJECTED:
                    await comments.add_comment(
                        session,
                        Viewer(requester),
                        tenant,
                        ticket.id,
                        CommentCreate(body=rng.choice(demo_data.REQUESTER_REPLIES)),
                    )
            reason = "Duplicate of an earlier request." if step == TicketStatus.REJECTED else None
            ticket = await tickets.change_status(
                session,
                staff,
                tenant,
                ticket.id,
                StatusChange(status=step, reason=reason),
                version=ticket.version,
            )
        # Spread the desk over the last six weeks, oldest first.
        age = timedelta(hours=(TICKET_COUNT - i) * 10 + rng.randint(0, 9))
        shift = now - age - ticket.submitted_at
        ticket.submitted_at += shift
        ticket.updated_at = min(
            now, ticket.updated_at + shift + timedelta(hours=rng.randint(1, 48))
        )
        for stamp in ("first_response_at", "resolved_at", "closed_at"):
            value = getattr(ticket, stamp)
            if value is not None:
                setattr(ticket, stamp, min(ticket.updated_at, value + shift + timedelta(hours=2)))
    await session.flush()


def _png(width: int, height: int, seed: int) -> bytes:
    """A small real PNG (a coloured gradient, like a cropped screenshot)."""
    rows = b"".join(
        b"\x00"
        + bytes(
            v
            for x in range(width)
            for v in ((x * 255 // width), (y * 255 // height), (seed * 37) % 256)
        )
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def _pdf(title: str) -> bytes:
    """A one-page PDF with a line of text."""
    text = title.replace("\\", "").replace("(", "").replace(")", "")
    content = f"BT /F1 14 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


async def _attach(
    session: AsyncSession,
    runtime: Runtime,
    viewer: Viewer,
    tenant: Tenant,
    ticket_id: uuid.UUID,
    i: int,
) -> None:
    """A requester's file on some tickets: a screenshot, a PDF or a log, in turn."""
    kind = (i // 4) % 3
    if kind == 0:
        upload = Upload(f"screenshot-{i:03d}.png", _png(160, 90, i))
    elif kind == 1:
        upload = Upload(f"quote-{i:03d}.pdf", _pdf(f"Acme demo document {i}"))
    else:
        log = "\n".join(
            f"2026-11-{1 + n % 28:02d} 09:{n % 60:02d}:00 WARN vpn-client: handshake timeout "
            f"(attempt {n + 1})"
            for n in range(12)
        )
        upload = Upload(f"vpn-client-{i:03d}.log", log.encode())
    inspected = await attachments.inspect_upload(
        upload, max_bytes=runtime.settings.max_upload_bytes
    )
    await attachments.add_attachment(
        session, viewer, tenant, runtime.storage, ticket_id, upload, inspected
    )


def print_credentials() -> None:
    print(f"\nDemo organization: {DEMO_ORG}  (send X-Tenant-ID: {DEMO_ORG}, or use /t/{DEMO_ORG}/)")
    print(f"Password for every demo user: {DEMO_PASSWORD}")
    for email, _first, _last, role, _dept, _cid, status in USERS:
        note = "" if status == UserStatus.APPROVED else "(pending approval)"
        print(f"  {role:<10} {email:<30} {note}")
    print()
