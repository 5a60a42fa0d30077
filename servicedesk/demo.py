"""The demo organization `acme`: departments and a user of every role, same credentials always."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import service as accounts
from servicedesk.accounts.repository import DepartmentRepository, UserRepository
from servicedesk.accounts.schemas import DepartmentCreate, UserCreate
from servicedesk.config import Settings
from servicedesk.core.actor import SYSTEM
from servicedesk.core.runtime import Runtime
from servicedesk.models import Role, UserStatus
from servicedesk.tenancy import service as tenancy
from servicedesk.tenancy.repository import OrganizationRepository
from servicedesk.tenancy.schemas import OrganizationCreate

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
    finally:
        await runtime.db.dispose()


def print_credentials() -> None:
    print(f"\nDemo organization: {DEMO_ORG}  (send X-Tenant-ID: {DEMO_ORG}, or use /t/{DEMO_ORG}/)")
    print(f"Password for every demo user: {DEMO_PASSWORD}")
    for email, _first, _last, role, _dept, _cid, status in USERS:
        note = "" if status == UserStatus.APPROVED else "(pending approval)"
        print(f"  {role:<10} {email:<30} {note}")
    print()
