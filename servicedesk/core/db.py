"""Engine, sessions and the tenant binding that row-level security relies on.

A *tenant session* runs every statement as the unprivileged application role with
`app.organization_id` set for the transaction, so PostgreSQL's row-level security policies
(see the migrations) hide every row of other organizations even from a query that forgets its
filter. A *system session* runs as the connecting user; it is for work that is not on behalf of
one tenant: tenant resolution, migrations, the CLI, cross-tenant jobs.

The binding is made when a transaction takes its connection (the session's `after_begin`
event), not when the request starts: a request answered from the caches never touches the
database (no BEGIN, no binding, no COMMIT), and every transaction of a bound session is bound,
also one begun after a commit.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction

_BIND_TENANT = text(
    "SELECT set_config('role', :role, true), set_config('app.organization_id', :org, true)"
)
_BIND_TENANT_NO_ROLE = text("SELECT set_config('app.organization_id', :org, true)")
_TENANT = "organization_id"
_ROLE = "tenant_role"
_CONNECTED = "tenant_connected"


class BindingSession(Session):
    """A session whose transactions bind themselves to `info["organization_id"]` (see
    `Database.bind_tenant`) as they take their connection."""


@event.listens_for(BindingSession, "after_begin")
def _bind_on_connect(session: Session, transaction: SessionTransaction, conn: Connection) -> None:
    if transaction.nested:  # a savepoint: its outer transaction was bound on the same connection
        return
    session.info[_CONNECTED] = True
    organization_id = session.info.get(_TENANT)
    if organization_id is not None:
        statement, params = _binding(session.info.get(_ROLE), organization_id)
        conn.execute(statement, params)


@event.listens_for(BindingSession, "after_transaction_end")
def _forget_connection(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_CONNECTED, None)


def _binding(role: str | None, organization_id: uuid.UUID) -> tuple[Any, dict[str, str]]:
    if role:
        return _BIND_TENANT, {"role": role, "org": str(organization_id)}
    return _BIND_TENANT_NO_ROLE, {"org": str(organization_id)}


def tenant_of(session: AsyncSession) -> uuid.UUID | None:
    """The organization the session's transaction is bound to, or None (a system session)."""
    bound: uuid.UUID | None = session.info.get(_TENANT)
    return bound


def to_driver_url(url: str | URL, driver: str) -> URL:
    """Rewrite any PostgreSQL URL (`postgres://`, `postgresql://`, …) for the given driver."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.set(drivername=f"postgresql+{driver}")


class Database:
    """One engine and its session factory; one per process."""

    def __init__(self, url: str | URL, *, app_role: str | None, pool_size: int = 10) -> None:
        self.url = to_driver_url(url, "asyncpg")
        self.app_role = app_role or None
        self.engine: AsyncEngine = create_async_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=False,
            connect_args={"server_settings": {"application_name": "servicedesk"}},
        )
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, sync_session_class=BindingSession
        )

    async def bind_tenant(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        """Scope the session to one organization (RLS): its current transaction at once if it
        holds a connection already, else each transaction as it takes one (no round trip
        here).

        The organization is noted in `session.info["organization_id"]` (`tenant_of`), so that
        per-organization caches can key by it without threading it through every call.
        """
        if not isinstance(session.sync_session, BindingSession):
            raise TypeError("bind_tenant needs a session of Database.sessionmaker")
        session.info[_TENANT] = organization_id
        session.info[_ROLE] = self.app_role
        if session.info.get(_CONNECTED):
            statement, params = _binding(self.app_role, organization_id)
            await session.execute(statement, params)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A system session in one transaction: committed on success, rolled back on error."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    @asynccontextmanager
    async def tenant_session(self, organization_id: uuid.UUID) -> AsyncIterator[AsyncSession]:
        """A session bound to one organization, in one transaction."""
        async with self.sessionmaker() as session, session.begin():
            await self.bind_tenant(session, organization_id)
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
