"""Row-level security: the second wall holds even when a query forgets its tenant filter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError, ProgrammingError

from servicedesk.core.runtime import Runtime
from servicedesk.models import AuditLog, Department, Organization, Role, User


async def test_unfiltered_query_sees_only_bound_tenant(
    runtime: Runtime,
    make_org: Callable[..., Awaitable[Organization]],
    make_user: Callable[..., Awaitable[User]],
) -> None:
    a, b = await make_org("A"), await make_org("B")
    for _ in range(2):
        await make_user(a, Role.AGENT)
    await make_user(b, Role.AGENT)

    async with runtime.db.tenant_session(a.id) as session:
        # No WHERE on organization_id at all: RLS filters.
        orgs = set((await session.execute(select(User.organization_id))).scalars())
        assert orgs == {a.id}
        assert (await session.execute(select(func.count()).select_from(User))).scalar_one() == 2
        seen_orgs = set((await session.execute(select(Organization.id))).scalars())
        assert seen_orgs == {a.id}
        audit_orgs = set((await session.execute(select(AuditLog.organization_id))).scalars())
        assert audit_orgs == {a.id}
        # Raw SQL is no way around it either.
        raw = await session.execute(
            text("SELECT count(*) FROM users WHERE organization_id = :b"), {"b": b.id}
        )
        assert raw.scalar_one() == 0


async def test_cannot_write_into_another_tenant(
    runtime: Runtime, make_org: Callable[..., Awaitable[Organization]]
) -> None:
    a, b = await make_org("A"), await make_org("B")
    async with runtime.db.tenant_session(a.id) as session:
        session.add(Department(organization_id=b.id, name="Smuggled"))
        with pytest.raises((ProgrammingError, DBAPIError), match="row-level security"):
            await session.flush()
        await session.rollback()
    async with runtime.db.session() as session:
        smuggled = await session.execute(select(Department).where(Department.name == "Smuggled"))
        assert smuggled.first() is None


async def test_update_of_other_tenant_rows_touches_nothing(
    runtime: Runtime,
    make_org: Callable[..., Awaitable[Organization]],
    make_user: Callable[..., Awaitable[User]],
) -> None:
    a, b = await make_org("A"), await make_org("B")
    victim = await make_user(b, Role.AGENT)
    async with runtime.db.tenant_session(a.id) as session:
        result = await session.execute(
            update(User).where(User.id == victim.id).values(role="admin")
        )
        assert result.rowcount == 0  # type: ignore[attr-defined]
    async with runtime.db.tenant_session(b.id) as session:
        assert (await session.get(User, victim.id)).role == "agent"  # type: ignore[union-attr]


async def test_tenant_session_runs_as_unprivileged_role(
    runtime: Runtime, org: Organization
) -> None:
    async with runtime.db.tenant_session(org.id) as session:
        row = (
            await session.execute(
                text(
                    "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles "
                    "WHERE rolname = current_user"
                )
            )
        ).one()
    assert row[0] == runtime.settings.app_db_role
    assert row[1] is False and row[2] is False


async def test_unbound_app_role_sees_nothing(runtime: Runtime, org: Organization) -> None:
    """Without a tenant bound, the application role sees no tenant rows at all."""
    async with runtime.db.session() as session:
        await session.execute(text(f"SET LOCAL ROLE {runtime.settings.app_db_role}"))
        assert (await session.execute(select(func.count()).select_from(User))).scalar_one() == 0
        assert (
            await session.execute(select(func.count()).select_from(Organization))
        ).scalar_one() == 0


async def test_audit_log_is_append_only_for_the_app(runtime: Runtime, org: Organization) -> None:
    async with runtime.db.tenant_session(org.id) as session:
        with pytest.raises((ProgrammingError, DBAPIError), match="permission denied"):
            await session.execute(text("DELETE FROM audit_log"))
        await session.rollback()
    async with runtime.db.tenant_session(org.id) as session:
        with pytest.raises((ProgrammingError, DBAPIError), match="permission denied"):
            await session.execute(text("UPDATE login_attempts SET success = true"))
        await session.rollback()
    async with runtime.db.session() as session:
        count = await session.execute(
            select(func.count()).select_from(AuditLog).where(AuditLog.organization_id == org.id)
        )
        assert count.scalar_one() >= 1
