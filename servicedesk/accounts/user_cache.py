"""The user cache: users by organization and id, without a query on a hit.

Users are cached (`users`, L1, keyed by organization and user, tag `user:{id}`, TTL
`SERVICEDESK_USER_CACHE_SECONDS`) as an immutable snapshot of their columns. On a hit the caller
gets a fresh `User` built from the snapshot and attached to its session as persistent and
unchanged, so code that reads or changes the user works as before, without a query. Any
committed write of a user row drops the entry in this process before the response goes out,
and in the others through the broadcast and the `user.*` events (docs/live.md#the-cache).
Readers: the signed-in user of every request (`accounts.auth`), the requester a ticket is filed
for (`accounts.service.check_requester`).
"""

from __future__ import annotations

import uuid
from types import MappingProxyType
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.util import identity_key

from servicedesk.accounts.repository import UserRepository, user_tag
from servicedesk.core import cache
from servicedesk.models import User

UserRow = MappingProxyType[str, Any]
"""A user's column values (all immutable: text, ids, numbers, times)."""

user_cache: cache.TTLCache[UserRow] = cache.TTLCache("users", ttl_seconds=30.0)
_COLUMNS = tuple(attr.key for attr in inspect(User).column_attrs)


def _row(user: User) -> UserRow:
    return MappingProxyType({key: getattr(user, key) for key in _COLUMNS})


def _attach(session: AsyncSession, row: UserRow) -> User:
    """A `User` for `row`, persistent in `session` and unchanged, without a query."""
    key = identity_key(User, row["id"])
    present = session.identity_map.get(key)
    if isinstance(present, User):
        return present
    user = User(**row)
    make_transient_to_detached(user)
    session.add(user)
    return user


async def load_user(
    session: AsyncSession, *, organization_id: uuid.UUID, user_id: uuid.UUID
) -> User | None:
    """The user of the bound organization, through the user cache."""
    if cache.writes_pending(session):
        return await UserRepository(session).get(user_id)
    loaded: list[User] = []

    async def load() -> UserRow | None:
        user = await UserRepository(session).get(user_id)
        if user is None or user.organization_id != organization_id:
            return None
        loaded.append(user)
        return _row(user)

    row = await user_cache.get_or_load(
        f"{organization_id}:{user_id}", load, tags=(user_tag(user_id),)
    )
    if loaded:
        return loaded[0]
    return None if row is None else _attach(session, row)
