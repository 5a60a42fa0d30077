"""User and department rules: registration, approval, roles, deactivation.

Naming follows Zulip: `check_*` validates and authorises, `do_*` mutates, audits and returns.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import passwords
from servicedesk.accounts.repository import DepartmentRepository, SessionRepository, UserRepository
from servicedesk.accounts.schemas import (
    DepartmentCreate,
    DepartmentUpdate,
    MeUpdate,
    PasswordChange,
    RegisterRequest,
    UserCreate,
    UserUpdate,
)
from servicedesk.accounts.user_cache import load_user
from servicedesk.audit import service as audit
from servicedesk.core import events
from servicedesk.core.actor import ANONYMOUS, Actor
from servicedesk.core.clock import utc_now
from servicedesk.core.db import tenant_of
from servicedesk.core.errors import Conflict, NotFound, Unauthorized, Unprocessable
from servicedesk.core.security import PasswordHashing
from servicedesk.models import Department, Role, User, UserStatus

AUDITED_USER_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "middle_name",
    "suffix",
    "company_id",
    "department_id",
    "role",
    "status",
    "is_active",
    "timezone",
)


# Audit actions that are also domain events (notifications and live views react to them).
USER_EVENTS = frozenset(
    {
        "user.approved",
        "user.rejected",
        "user.suspended",
        "user.deactivated",
        "user.reactivated",
        "user.role_changed",
    }
)


def user_snapshot(user: User) -> dict[str, Any]:
    return {field: getattr(user, field) for field in AUDITED_USER_FIELDS}


async def _audit_user_change(
    session: AsyncSession, user: User, before: dict[str, Any], *, actor: Actor, action: str
) -> None:
    old, new = audit.diff(before, user_snapshot(user))
    if not new:
        return
    await audit.record(
        session,
        organization_id=user.organization_id,
        actor=actor,
        action=action,
        table="users",
        record_id=user.id,
        old=old,
        new=new,
    )
    if action in USER_EVENTS:
        events.emit(
            session,
            organization_id=user.organization_id,
            event_type=action,
            actor=actor,
            payload={"user_id": user.id, "email": user.email, "role": user.role, "changes": new},
        )


async def access_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The user of the bound organization, or 404 (the same for missing and not yours)."""
    user = await UserRepository(session).get(user_id)
    if user is None:
        raise NotFound("User not found.")
    return user


async def check_department(session: AsyncSession, department_id: uuid.UUID | None) -> None:
    if department_id is None:
        return
    department = await DepartmentRepository(session).get(department_id)
    if department is None or not department.is_active:
        raise Unprocessable(
            "The department does not exist or is inactive.",
            code="unknown_department",
            errors=[{"loc": ["body", "department_id"], "msg": "unknown department", "type": "x"}],
        )


async def check_new_identity(session: AsyncSession, *, email: str, company_id: str | None) -> None:
    repo = UserRepository(session)
    if await repo.email_taken(email):
        raise Conflict("A user with this email exists.", code="email_taken")
    if company_id and await repo.company_id_taken(company_id):
        raise Conflict("A user with this company id exists.", code="company_id_taken")


async def do_register(
    session: AsyncSession,
    hasher: PasswordHashing,
    data: RegisterRequest,
    *,
    organization_id: uuid.UUID,
) -> User:
    """Self-registration of an employee: the account waits in `pending` for an admin."""
    passwords.check_password(data.password, email=data.email)
    await check_department(session, data.department_id)
    await check_new_identity(session, email=data.email, company_id=data.company_id)
    user = User(
        organization_id=organization_id,
        email=data.email.lower(),
        first_name=data.first_name,
        last_name=data.last_name,
        middle_name=data.middle_name,
        suffix=data.suffix or None,
        company_id=data.company_id,
        department_id=data.department_id,
        role=Role.REQUESTER,
        status=UserStatus.PENDING,
        password_hash=await hasher.hash(data.password),
    )
    session.add(user)
    await session.flush()
    await audit.record(
        session,
        organization_id=organization_id,
        actor=ANONYMOUS,
        action="user.registered",
        table="users",
        record_id=user.id,
        new=user_snapshot(user),
    )
    events.emit(
        session,
        organization_id=organization_id,
        event_type="user.registered",
        actor=ANONYMOUS,
        payload={"user_id": user.id, "email": user.email, "department_id": user.department_id},
    )
    return user


async def do_create_user(
    session: AsyncSession,
    hasher: PasswordHashing,
    data: UserCreate,
    *,
    organization_id: uuid.UUID,
    actor: Actor,
) -> User:
    """An admin (or the CLI) adds a user who is approved at once."""
    passwords.check_password(data.password, email=data.email)
    await check_department(session, data.department_id)
    await check_new_identity(session, email=data.email, company_id=data.company_id)
    now = utc_now()
    user = User(
        organization_id=organization_id,
        email=data.email.lower(),
        first_name=data.first_name,
        last_name=data.last_name,
        middle_name=data.middle_name,
        suffix=data.suffix or None,
        company_id=data.company_id,
        department_id=data.department_id,
        role=data.role,
        status=UserStatus.APPROVED,
        approved_at=now,
        approved_by_id=actor.id if actor.type == "user" else None,
        password_hash=await hasher.hash(data.password),
    )
    session.add(user)
    await session.flush()
    await audit.record(
        session,
        organization_id=organization_id,
        actor=actor,
        action="user.created",
        table="users",
        record_id=user.id,
        new=user_snapshot(user),
    )
    return user


async def end_all_sessions(session: AsyncSession, user: User, *, reason: str) -> int:
    """Revoke every refresh token and invalidate every access token of a user."""
    user.session_version += 1
    return await SessionRepository(session).revoke_user(user.id, at=utc_now(), reason=reason)


# Status transitions an admin may make, and the audit action of each.
_TRANSITIONS: dict[str, tuple[set[str], str]] = {
    UserStatus.APPROVED: (
        {UserStatus.PENDING, UserStatus.SUSPENDED, UserStatus.REJECTED},
        "user.approved",
    ),
    UserStatus.REJECTED: ({UserStatus.PENDING}, "user.rejected"),
    UserStatus.SUSPENDED: ({UserStatus.APPROVED, UserStatus.PENDING}, "user.suspended"),
}


async def do_set_status(
    session: AsyncSession, user_id: uuid.UUID, status: UserStatus, *, actor: Actor
) -> User:
    user = await access_user(session, user_id)
    allowed_from, action = _TRANSITIONS[status]
    if user.status not in allowed_from:
        raise Unprocessable(
            f"A {user.status} user cannot become {status}.",
            code="invalid_status_transition",
            extra={"allowed_from": sorted(allowed_from)},
        )
    if actor.id == user.id:
        raise Unprocessable("You cannot change your own status.", code="self_status_change")
    before = user_snapshot(user)
    user.status = status
    if status == UserStatus.APPROVED:
        user.approved_at = utc_now()
        user.approved_by_id = actor.id
    else:
        await end_all_sessions(session, user, reason=f"user_{status}")
    await session.flush()
    await _audit_user_change(session, user, before, actor=actor, action=action)
    return user


async def do_update_user(
    session: AsyncSession, user_id: uuid.UUID, data: UserUpdate, *, actor: Actor
) -> User:
    user = await access_user(session, user_id)
    changes = data.model_dump(exclude_unset=True)
    if "role" in changes:
        if changes["role"] is None:
            raise Unprocessable("role cannot be null.", code="validation_error")
        if actor.id == user.id and changes["role"] != user.role:
            raise Unprocessable("You cannot change your own role.", code="self_role_change")
    if "department_id" in changes:
        await check_department(session, changes["department_id"])
    before = user_snapshot(user)
    for field, value in changes.items():
        if value is None and field in ("first_name", "last_name"):
            continue
        setattr(user, field, value)
    await session.flush()
    action = "user.role_changed" if before["role"] != user.role else "user.updated"
    await _audit_user_change(session, user, before, actor=actor, action=action)
    return user


async def do_deactivate(session: AsyncSession, user_id: uuid.UUID, *, actor: Actor) -> User:
    """Soft delete: the user can no longer sign in; their rows and history stay."""
    user = await access_user(session, user_id)
    if actor.id == user.id:
        raise Unprocessable("You cannot deactivate yourself.", code="self_deactivation")
    if not user.is_active:
        return user
    before = user_snapshot(user)
    user.is_active = False
    await end_all_sessions(session, user, reason="user_deactivated")
    await session.flush()
    await _audit_user_change(session, user, before, actor=actor, action="user.deactivated")
    return user


async def do_reactivate(session: AsyncSession, user_id: uuid.UUID, *, actor: Actor) -> User:
    user = await access_user(session, user_id)
    if user.is_active:
        return user
    before = user_snapshot(user)
    user.is_active = True
    await session.flush()
    await _audit_user_change(session, user, before, actor=actor, action="user.reactivated")
    return user


async def do_update_me(session: AsyncSession, user: User, data: MeUpdate) -> User:
    before = user_snapshot(user)
    for field, value in data.model_dump(exclude_unset=True).items():
        if value is not None or field == "middle_name":
            setattr(user, field, value)
    await session.flush()
    await _audit_user_change(
        session, user, before, actor=Actor.user(user.id), action="user.profile_updated"
    )
    return user


async def do_change_password(
    session: AsyncSession, hasher: PasswordHashing, user: User, data: PasswordChange
) -> None:
    if not await hasher.verify(user.password_hash, data.current_password):
        raise Unauthorized("The current password is wrong.", code="invalid_credentials")
    passwords.check_password(data.new_password, email=user.email, field="new_password")
    user.password_hash = await hasher.hash(data.new_password)
    await end_all_sessions(session, user, reason="password_changed")
    await session.flush()
    await audit.record(
        session,
        organization_id=user.organization_id,
        actor=Actor.user(user.id),
        action="user.password_changed",
        table="users",
        record_id=user.id,
    )


# Departments -----------------------------------------------------------------------------


def _department_snapshot(department: Department) -> dict[str, Any]:
    return {
        "name": department.name,
        "head_email": department.head_email,
        "is_active": department.is_active,
    }


async def access_department(session: AsyncSession, department_id: uuid.UUID) -> Department:
    department = await DepartmentRepository(session).get(department_id)
    if department is None:
        raise NotFound("Department not found.")
    return department


async def do_create_department(
    session: AsyncSession, data: DepartmentCreate, *, organization_id: uuid.UUID, actor: Actor
) -> Department:
    if await DepartmentRepository(session).name_taken(data.name):
        raise Conflict("A department with this name exists.", code="department_name_taken")
    department = Department(
        organization_id=organization_id,
        name=data.name,
        head_email=str(data.head_email).lower() if data.head_email else None,
    )
    session.add(department)
    await session.flush()
    await audit.record(
        session,
        organization_id=organization_id,
        actor=actor,
        action="department.created",
        table="departments",
        record_id=department.id,
        new=_department_snapshot(department),
    )
    return department


async def do_update_department(
    session: AsyncSession, department_id: uuid.UUID, data: DepartmentUpdate, *, actor: Actor
) -> Department:
    department = await access_department(session, department_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("name") and await DepartmentRepository(session).name_taken(
        changes["name"], exclude=department.id
    ):
        raise Conflict("A department with this name exists.", code="department_name_taken")
    before = _department_snapshot(department)
    if changes.get("name"):
        department.name = changes["name"]
    if "head_email" in changes:
        department.head_email = (
            str(changes["head_email"]).lower() if changes["head_email"] else None
        )
    if changes.get("is_active") is not None:
        department.is_active = changes["is_active"]
    await session.flush()
    old, new = audit.diff(before, _department_snapshot(department))
    await audit.record(
        session,
        organization_id=department.organization_id,
        actor=actor,
        action="department.updated",
        table="departments",
        record_id=department.id,
        old=old,
        new=new,
    )
    return department


# Lookups other domains use ---------------------------------------------------------------

STAFF_ROLES = frozenset({Role.AGENT, Role.ADMIN})


def _may_sign_in(user: User) -> bool:
    return user.is_active and user.status == UserStatus.APPROVED


async def check_assignable(session: AsyncSession, user_id: uuid.UUID, *, field: str) -> User:
    """An active agent or admin of the bound organization, or 422 naming `field`."""
    user = await UserRepository(session).get(user_id)
    if user is None or not _may_sign_in(user) or user.role not in STAFF_ROLES:
        raise Unprocessable(
            "Tickets can only be assigned to an active agent or admin of this organization.",
            code="invalid_assignee",
            errors=[{"loc": ["body", field], "msg": "not an active agent", "type": "invalid"}],
        )
    return user


async def check_requester(session: AsyncSession, user_id: uuid.UUID, *, field: str) -> User:
    """An active user of the bound organization who can be a ticket's requester (through the
    user cache: no query on a hit)."""
    organization_id = tenant_of(session)
    if organization_id is None:
        user = await UserRepository(session).get(user_id)
    else:
        user = await load_user(session, organization_id=organization_id, user_id=user_id)
    if user is None or not _may_sign_in(user):
        raise Unprocessable(
            "The requester must be an active user of this organization.",
            code="invalid_requester",
            errors=[{"loc": ["body", field], "msg": "not an active user", "type": "invalid"}],
        )
    return user


async def find_staff_by_emails(session: AsyncSession, emails: list[str]) -> list[User]:
    """Active agents and admins with these emails (for @mentions); unknown emails are ignored."""
    if not emails:
        return []
    users = await UserRepository(session).list_by_emails(emails)
    return [u for u in users if _may_sign_in(u) and u.role in STAFF_ROLES]


async def get_users(session: AsyncSession, user_ids: list[uuid.UUID]) -> list[User]:
    return await UserRepository(session).get_many(user_ids)


async def active_user_ids(
    session: AsyncSession, *, roles: list[Role], department_id: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """Every user of these roles (and department) who can sign in, by id: whom to notify."""
    return await UserRepository(session).active_ids(
        roles=[str(r) for r in roles], department_id=department_id
    )


async def list_active_users(
    session: AsyncSession, *, role: Role, department_id: uuid.UUID | None = None, limit: int = 1000
) -> list[User]:
    """Users of one role (and department) who can sign in: e.g. whom to notify."""
    users = await UserRepository(session).list(
        status=UserStatus.APPROVED, role=role, department_id=department_id, limit=limit
    )
    return [u for u in users if _may_sign_in(u)]


async def find_users_by_emails(session: AsyncSession, emails: list[str]) -> list[User]:
    """Users of the bound organization with these emails (any role or status)."""
    if not emails:
        return []
    return await UserRepository(session).list_by_emails(emails)


async def list_departments(
    session: AsyncSession, *, include_inactive: bool = True
) -> list[Department]:
    return await DepartmentRepository(session).list(include_inactive=include_inactive)


async def list_users(
    session: AsyncSession,
    *,
    status: str | None = None,
    role: str | None = None,
    q: str | None = None,
    include_inactive: bool = True,
    after: tuple[int, Any, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[User]:
    """Users of the bound organization for the admin console: pending first, newest first."""
    return await UserRepository(session).list(
        status=status, role=role, q=q, include_inactive=include_inactive, after=after, limit=limit
    )
