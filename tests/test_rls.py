"""Row-level security: the second wall holds even when a query forgets its tenant filter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import event, func, select, text, update
from sqlalchemy.exc import DBAPIError, ProgrammingError

from servicedesk.core.runtime import Runtime
from servicedesk.models import AuditLog, Department, Organization, Role, User
from tests.ticket_helpers import API, Desk, desk_fixture  # noqa: F401


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


async def test_search_view_is_scoped_to_the_bound_tenant(
    runtime: Runtime,
    make_org: Callable[..., Awaitable[Organization]],
    make_user: Callable[..., Awaitable[User]],
) -> None:
    """`ticket_search_scope` bypasses RLS by design; its own WHERE must keep tenants apart."""
    orgs = [await make_org("A"), await make_org("B")]
    for n, org in enumerate(orgs, start=1):
        requester = await make_user(org, Role.REQUESTER)
        async with runtime.db.session() as session:
            category = await session.execute(
                text(
                    "INSERT INTO categories (id, organization_id, name, default_priority, fields) "
                    "VALUES (gen_random_uuid(), :org, 'Cat', 'low', '[]') RETURNING id"
                ),
                {"org": org.id},
            )
            await session.execute(
                text(
                    "INSERT INTO tickets (id, organization_id, number, subject, description, "
                    "description_html, category_id, priority, status, requester_id, channel) "
                    "VALUES (gen_random_uuid(), :org, :number, 'Printer jammed', "
                    "'The printer is jammed again', '', :cat, 'low', 'new', :req, 'web')"
                ),
                {
                    "org": org.id,
                    "number": f"TKT2026{n:06d}",
                    "cat": category.scalar_one(),
                    "req": requester.id,
                },
            )
    a = orgs[0]
    async with runtime.db.tenant_session(a.id) as session:
        seen = await session.execute(
            text(
                "SELECT organization_id FROM ticket_search_scope "
                "WHERE search_vector @@ websearch_to_tsquery('english', 'printer')"
            )
        )
        assert set(seen.scalars()) == {a.id}
    async with runtime.db.session() as session:
        await session.execute(text(f"SET LOCAL ROLE {runtime.settings.app_db_role}"))
        unbound = await session.execute(text("SELECT count(*) FROM ticket_search_scope"))
        assert unbound.scalar_one() == 0


# The binding is made as a transaction takes its connection (core/db.py) ---------------------

BOUND = text("SELECT current_user, current_setting('app.organization_id', true)")


async def test_every_transaction_of_a_tenant_session_is_bound(
    runtime: Runtime, org: Organization
) -> None:
    role = runtime.settings.app_db_role
    async with runtime.db.sessionmaker() as session:
        await runtime.db.bind_tenant(session, org.id)  # no connection yet: bound on first use
        assert tuple((await session.execute(BOUND)).one()) == (role, str(org.id))
        async with session.begin_nested() as savepoint:
            assert tuple((await session.execute(BOUND)).one()) == (role, str(org.id))
            await savepoint.rollback()
        assert tuple((await session.execute(BOUND)).one()) == (role, str(org.id))
        await session.commit()
        # A new transaction of the same session (after the commit) is bound as well.
        assert tuple((await session.execute(BOUND)).one()) == (role, str(org.id))
        await session.rollback()
    async with runtime.db.tenant_session(org.id) as session:
        assert tuple((await session.execute(BOUND)).one()) == (role, str(org.id))


async def test_binding_a_session_that_holds_a_connection_binds_at_once(
    runtime: Runtime, org: Organization
) -> None:
    async with runtime.db.sessionmaker() as session, session.begin():
        before = (await session.execute(BOUND)).one()
        assert before[0] != runtime.settings.app_db_role  # a system session
        await runtime.db.bind_tenant(session, org.id)
        after = (await session.execute(BOUND)).one()
        assert tuple(after) == (runtime.settings.app_db_role, str(org.id))


async def test_binding_needs_a_session_of_the_database(runtime: Runtime, org: Organization) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession

    async with AsyncSession(runtime.db.engine) as session:
        with pytest.raises(TypeError):
            await runtime.db.bind_tenant(session, org.id)


async def test_a_read_answered_from_the_caches_takes_no_connection(desk: Desk) -> None:
    """A GET whose tenant, user and ticket are cached sends nothing to PostgreSQL: no BEGIN,
    no binding, no COMMIT."""
    ticket = await desk.file()
    url = f"{API}/tickets/by-number/{ticket['number']}"
    r = await desk.client.get(url, headers=desk.agent.headers)  # fills the ticket cache
    assert r.status_code == 200
    checkouts: list[object] = []
    pool = desk.runtime.db.engine.sync_engine.pool
    listener = lambda *args: checkouts.append(args)  # noqa: E731
    event.listen(pool, "checkout", listener)
    try:
        r = await desk.client.get(url, headers=desk.agent.headers)
        assert r.status_code == 200 and r.json()["id"] == ticket["id"]
        assert checkouts == []
        # A cache miss still binds the tenant before its first statement (and works).
        r = await desk.client.get(
            f"{API}/tickets/{ticket['id']}/comments", headers=desk.agent.headers
        )
        assert r.status_code == 200
        assert len(checkouts) == 1
    finally:
        event.remove(pool, "checkout", listener)
