"""Every notification query. Tenant sessions (RLS) for a user's own rows; the delivery queue
is claimed across organizations in system sessions (`claim_*`, `due_digests`)."""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from datetime import datetime, time
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    String,
    Table,
    Uuid,
    any_,
    func,
    literal,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.models import (
    Email,
    EmailStatus,
    Notification,
    NotificationPreference,
    NotificationReceipt,
    NotificationSettings,
    PushMessage,
    PushStatus,
    PushSubscription,
)

# Emails that went (or go) out one by one: what the digest threshold counts.
INDIVIDUAL = (EmailStatus.QUEUED, EmailStatus.SENT, EmailStatus.FAILED)
# Per-user notification locks: advisory locks (LOCK_SPACE, bucket) with LOCK_BUCKETS buckets.
LOCK_SPACE = 7301
LOCK_BUCKETS = 512


def _any(column: Any, values: Sequence[Any], item: Any = None) -> ColumnElement[bool]:
    """`column = ANY(:array)`: one parameter however many values (an IN list takes one each,
    and the driver allows 32,767 per statement)."""
    return cast(
        "ColumnElement[bool]",
        column == any_(literal(list(values), ARRAY(item if item is not None else Uuid()))),
    )


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


async def _recent_pairs(
    session: AsyncSession,
    model: type[Email] | type[PushMessage],
    keys: Sequence[tuple[uuid.UUID, str]],
    since: datetime,
) -> set[tuple[uuid.UUID, str]]:
    """Those of the (user, dedup key) pairs `keys` with a row of `model` since `since`: one
    query for any number of pairs (de-duplication of a whole fan-out)."""
    if not keys:
        return set()
    query = (
        select(model.user_id, model.dedup_key)
        .where(
            _any(model.user_id, sorted({u for u, _ in keys})),
            _any(model.dedup_key, sorted({k for _, k in keys}), String()),
            model.created_at >= since,
        )
        .distinct()
    )
    found = {(u, k) for u, k in (await session.execute(query)).all() if u and k}
    return found & set(keys)


async def _insert_many(
    session: AsyncSession, statement: Any, rows: Sequence[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """One INSERT for many rows, run as an executemany of a Core statement: SQLAlchemy's
    "insertmanyvalues" sends pages of rows per round trip from one cached compilation
    (a `.values([...])` with 10,000 rows would be compiled anew, which costs seconds).
    Returns the RETURNING rows (none for rows ON CONFLICT skipped)."""
    if not rows:
        return []
    result = await session.execute(statement, list(rows))
    return [tuple(r) for r in result.all()] if getattr(result, "returns_rows", False) else []


class NotificationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_users(self, user_ids: Sequence[uuid.UUID]) -> None:
        """Serialise notification work for these users until the transaction ends.

        Two events for the same person processed at once would otherwise both miss each
        other's rows in the de-dup and digest checks. A user maps to one of `LOCK_BUCKETS`
        advisory locks, taken in one statement in bucket order (no deadlocks), so a fan-out
        to 10,000 people holds at most that many locks, not one per person (the lock table
        is shared and small).
        """
        if not user_ids:
            return
        await self.session.execute(
            text(
                "SELECT pg_advisory_xact_lock(:space, b) FROM ("
                " SELECT DISTINCT (abs(hashtextextended('notifications:' || u::text, 0))"
                "  % :buckets)::int AS b FROM unnest(CAST(:ids AS uuid[])) AS u ORDER BY b"
                ") AS buckets"
            ),
            {"space": LOCK_SPACE, "buckets": LOCK_BUCKETS, "ids": list(user_ids)},
        )

    async def get(self, user_id: uuid.UUID, notification_id: uuid.UUID) -> Notification | None:
        query = select(Notification).where(
            Notification.id == notification_id, Notification.user_id == user_id
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def list(
        self,
        user_id: uuid.UUID,
        *,
        unread_only: bool,
        before: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> builtins.list[Notification]:
        query = select(Notification).where(Notification.user_id == user_id)
        if unread_only:
            query = query.where(Notification.read_at.is_(None))
        if before is not None:
            query = query.where(tuple_(Notification.updated_at, Notification.id) < tuple_(*before))
        query = query.order_by(Notification.updated_at.desc(), Notification.id.desc()).limit(limit)
        return list((await self.session.execute(query)).scalars())

    async def unread_count(self, user_id: uuid.UUID) -> int:
        query = select(func.count()).where(
            Notification.user_id == user_id, Notification.read_at.is_(None)
        )
        return int((await self.session.execute(query)).scalar_one())

    async def mark_all_read(self, user_id: uuid.UUID, *, at: datetime) -> int:
        result = await self.session.execute(
            update(Notification)
            .where(Notification.user_id == user_id, Notification.read_at.is_(None))
            .values(read_at=at)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def recent(
        self, user_id: uuid.UUID, dedup_key: str, *, since: datetime
    ) -> Notification | None:
        query = (
            select(Notification)
            .where(
                Notification.user_id == user_id,
                Notification.dedup_key == dedup_key,
                Notification.updated_at >= since,
            )
            .order_by(Notification.updated_at.desc())
            .limit(1)
            .with_for_update()
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def recent_many(
        self, keys: Sequence[tuple[uuid.UUID, str]], *, since: datetime
    ) -> dict[tuple[uuid.UUID, str], Notification]:
        """`recent` for many (user, dedup key) pairs in one query: the latest of each, locked."""
        if not keys:
            return {}
        users = sorted({u for u, _ in keys})
        dedup_keys = sorted({k for _, k in keys})
        query = (
            select(Notification)
            .where(
                _any(Notification.user_id, users),
                _any(Notification.dedup_key, dedup_keys, String()),
                Notification.updated_at >= since,
            )
            .order_by(Notification.user_id, Notification.updated_at.desc())
            .with_for_update()
        )
        found: dict[tuple[uuid.UUID, str], Notification] = {}
        wanted = set(keys)
        for row in (await self.session.execute(query)).scalars():
            key = (row.user_id, row.dedup_key or "")
            if key in wanted:
                found.setdefault(key, row)
        return found

    async def add(self, values: dict[str, Any]) -> uuid.UUID | None:
        """Insert unless this event already notified this user; the new id, or None."""
        added = await self.add_many([values])
        return added.get(values["user_id"])

    async def add_many(self, rows: Sequence[dict[str, Any]]) -> dict[uuid.UUID, uuid.UUID]:
        """Insert each unless its event already notified its user: user id → the new id."""
        table = _table(Notification)
        statement = (
            insert(table)
            .on_conflict_do_nothing(index_elements=["user_id", "event_id"])
            .returning(table.c.user_id, table.c.id)
        )
        return dict(
            await _insert_many(self.session, statement, [{"id": uuid.uuid4(), **r} for r in rows])
        )

    # Receipts ------------------------------------------------------------------------------

    async def receipt_exists(self, event_id: uuid.UUID, user_id: uuid.UUID) -> bool:
        query = select(NotificationReceipt.event_id).where(
            NotificationReceipt.event_id == event_id, NotificationReceipt.user_id == user_id
        )
        return (await self.session.execute(query)).first() is not None

    async def receipts_of(
        self, event_id: uuid.UUID, user_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Those of `user_ids` this event has a receipt for (handled already)."""
        query = select(NotificationReceipt.user_id).where(
            NotificationReceipt.event_id == event_id,
            _any(NotificationReceipt.user_id, user_ids),
        )
        return set((await self.session.execute(query)).scalars())

    async def add_receipts(self, rows: Sequence[dict[str, Any]]) -> None:
        statement = insert(_table(NotificationReceipt)).on_conflict_do_nothing()
        await _insert_many(self.session, statement, rows)

    async def receipts(self, event_id: uuid.UUID) -> builtins.list[NotificationReceipt]:
        query = select(NotificationReceipt).where(NotificationReceipt.event_id == event_id)
        return list((await self.session.execute(query)).scalars())


class PreferenceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def for_user(self, user_id: uuid.UUID) -> builtins.list[NotificationPreference]:
        query = select(NotificationPreference).where(NotificationPreference.user_id == user_id)
        return list((await self.session.execute(query)).scalars())

    async def for_users(
        self, user_ids: Sequence[uuid.UUID]
    ) -> builtins.list[NotificationPreference]:
        query = select(NotificationPreference).where(_any(NotificationPreference.user_id, user_ids))
        return list((await self.session.execute(query)).scalars())

    async def settings_of(
        self, user_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, NotificationSettings]:
        query = select(NotificationSettings).where(_any(NotificationSettings.user_id, user_ids))
        return {r.user_id: r for r in (await self.session.execute(query)).scalars()}

    async def upsert(
        self,
        *,
        organization_id: uuid.UUID,
        user_id: uuid.UUID,
        event_type: str,
        channel: str,
        enabled: bool,
        at: datetime,
    ) -> None:
        statement = insert(NotificationPreference).values(
            id=uuid.uuid4(),
            organization_id=organization_id,
            user_id=user_id,
            event_type=event_type,
            channel=channel,
            enabled=enabled,
            updated_at=at,
        )
        statement = statement.on_conflict_do_update(
            index_elements=["user_id", "event_type", "channel"],
            set_={"enabled": statement.excluded.enabled, "updated_at": at},
        )
        await self.session.execute(statement)

    async def settings(self, user_id: uuid.UUID) -> NotificationSettings | None:
        return await self.session.get(NotificationSettings, user_id)

    async def set_quiet_hours(
        self,
        *,
        organization_id: uuid.UUID,
        user_id: uuid.UUID,
        start: time | None,
        end: time | None,
        at: datetime,
    ) -> None:
        statement = insert(NotificationSettings).values(
            organization_id=organization_id,
            user_id=user_id,
            quiet_hours_start=start,
            quiet_hours_end=end,
            updated_at=at,
        )
        statement = statement.on_conflict_do_update(
            index_elements=["user_id"],
            set_={"quiet_hours_start": start, "quiet_hours_end": end, "updated_at": at},
        )
        await self.session.execute(statement)


class EmailRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, values: dict[str, Any]) -> uuid.UUID | None:
        """Insert unless this (event, user, template) exists; the new id, or None."""
        statement = (
            insert(Email)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["event_id", "user_id", "template"])
            .returning(Email.id)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def add_many(self, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
        """`add` for many rows (each with its `id`): the ids that were inserted."""
        table = _table(Email)
        statement = (
            insert(table)
            .on_conflict_do_nothing(index_elements=["event_id", "user_id", "template"])
            .returning(table.c.id)
        )
        return {i for (i,) in await _insert_many(self.session, statement, rows)}

    async def recent_pairs(
        self, keys: Sequence[tuple[uuid.UUID, str]], *, since: datetime
    ) -> set[tuple[uuid.UUID, str]]:
        """Those (user, dedup key) pairs with an email since `since`."""
        return await _recent_pairs(self.session, Email, keys, since)

    async def count_individual_many(
        self, user_ids: Sequence[uuid.UUID], *, since: datetime
    ) -> dict[uuid.UUID, int]:
        """`count_individual` for many users in one query (users without any are left out)."""
        query = (
            select(Email.user_id, func.count())
            .where(
                _any(Email.user_id, user_ids),
                Email.created_at >= since,
                Email.status.in_(INDIVIDUAL),
                Email.template.not_in(("digest", "password_reset")),
            )
            .group_by(Email.user_id)
        )
        return {u: int(n) for u, n in (await self.session.execute(query)).all() if u}

    async def recent_exists(self, user_id: uuid.UUID, dedup_key: str, *, since: datetime) -> bool:
        query = select(Email.id).where(
            Email.user_id == user_id, Email.dedup_key == dedup_key, Email.created_at >= since
        )
        return (await self.session.execute(query.limit(1))).first() is not None

    async def count_individual(self, user_id: uuid.UUID, *, since: datetime) -> int:
        query = select(func.count()).where(
            Email.user_id == user_id,
            Email.created_at >= since,
            Email.status.in_(INDIVIDUAL),
            # Digests and security emails (password reset) are not notifications the user
            # could be flooded with: they never push anyone into digest mode.
            Email.template.not_in(("digest", "password_reset")),
        )
        return int((await self.session.execute(query)).scalar_one())

    async def list(
        self,
        *,
        status: str | None,
        ticket_id: uuid.UUID | None,
        user_id: uuid.UUID | None,
        before: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> builtins.list[Email]:
        query = select(Email)
        if status:
            query = query.where(Email.status == status)
        if ticket_id:
            query = query.where(Email.ticket_id == ticket_id)
        if user_id:
            query = query.where(Email.user_id == user_id)
        if before is not None:
            query = query.where(tuple_(Email.created_at, Email.id) < tuple_(*before))
        query = query.order_by(Email.created_at.desc(), Email.id.desc()).limit(limit)
        return list((await self.session.execute(query)).scalars())

    async def claim_due(
        self, *, now: datetime, ids: builtins.list[uuid.UUID] | None
    ) -> Email | None:
        """Lock one queued email that is due (system session); other senders skip it."""
        query = select(Email).where(Email.status == EmailStatus.QUEUED, Email.send_after <= now)
        if ids is not None:
            query = query.where(Email.id.in_(ids))
        query = query.order_by(Email.send_after).limit(1).with_for_update(skip_locked=True)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def due_digests(
        self, *, now: datetime, collected_since: datetime, limit: int
    ) -> builtins.list[tuple[uuid.UUID, uuid.UUID]]:
        """(organization, user) pairs whose batched emails have waited long enough."""
        query = (
            select(Email.organization_id, Email.user_id)
            .where(Email.status == EmailStatus.BATCHED, Email.user_id.is_not(None))
            .group_by(Email.organization_id, Email.user_id)
            .having(func.min(Email.created_at) <= collected_since)
            .having(func.max(Email.send_after) <= now)
            .limit(limit)
        )
        rows = (await self.session.execute(query)).all()
        return [(org, user) for org, user in rows if user is not None]

    async def batched_for_update(self, user_id: uuid.UUID) -> builtins.list[Email]:
        query = (
            select(Email)
            .where(Email.user_id == user_id, Email.status == EmailStatus.BATCHED)
            .order_by(Email.created_at, Email.id)
            .with_for_update(skip_locked=True)
        )
        return list((await self.session.execute(query)).scalars())


class PushRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def subscriptions(self, user_id: uuid.UUID) -> builtins.list[PushSubscription]:
        query = (
            select(PushSubscription)
            .where(PushSubscription.user_id == user_id)
            .order_by(PushSubscription.created_at, PushSubscription.id)
        )
        return list((await self.session.execute(query)).scalars())

    async def with_subscription(self, user_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Those of `user_ids` with at least one subscription."""
        query = (
            select(PushSubscription.user_id)
            .where(_any(PushSubscription.user_id, user_ids))
            .distinct()
        )
        return set((await self.session.execute(query)).scalars())

    async def recent_pairs(
        self, keys: Sequence[tuple[uuid.UUID, str]], *, since: datetime
    ) -> set[tuple[uuid.UUID, str]]:
        """Those (user, dedup key) pairs with a push message since `since`."""
        return await _recent_pairs(self.session, PushMessage, keys, since)

    async def add_messages(self, rows: Sequence[dict[str, Any]]) -> dict[uuid.UUID, uuid.UUID]:
        """Insert each unless (event, user) exists: user id → the new id."""
        table = _table(PushMessage)
        statement = (
            insert(table)
            .on_conflict_do_nothing(index_elements=["event_id", "user_id"])
            .returning(table.c.user_id, table.c.id)
        )
        return dict(
            await _insert_many(self.session, statement, [{"id": uuid.uuid4(), **r} for r in rows])
        )

    async def has_subscription(self, user_id: uuid.UUID) -> bool:
        query = select(PushSubscription.id).where(PushSubscription.user_id == user_id).limit(1)
        return (await self.session.execute(query)).first() is not None

    async def subscription_by_endpoint(
        self, user_id: uuid.UUID, endpoint: str
    ) -> PushSubscription | None:
        query = select(PushSubscription).where(
            PushSubscription.user_id == user_id, PushSubscription.endpoint == endpoint
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def subscriptions_of(
        self, organization_id: uuid.UUID, user_id: uuid.UUID
    ) -> builtins.list[PushSubscription]:
        """A user's subscriptions, in a system session (explicit organization filter)."""
        query = select(PushSubscription).where(
            PushSubscription.organization_id == organization_id,
            PushSubscription.user_id == user_id,
        )
        return list((await self.session.execute(query)).scalars())

    async def add_message(self, values: dict[str, Any]) -> uuid.UUID | None:
        statement = (
            insert(PushMessage)
            .values(id=uuid.uuid4(), **values)
            .on_conflict_do_nothing(index_elements=["event_id", "user_id"])
            .returning(PushMessage.id)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def recent_exists(self, user_id: uuid.UUID, dedup_key: str, *, since: datetime) -> bool:
        query = select(PushMessage.id).where(
            PushMessage.user_id == user_id,
            PushMessage.dedup_key == dedup_key,
            PushMessage.created_at >= since,
        )
        return (await self.session.execute(query.limit(1))).first() is not None

    async def claim_due(
        self, *, now: datetime, ids: builtins.list[uuid.UUID] | None
    ) -> PushMessage | None:
        query = select(PushMessage).where(
            PushMessage.status == PushStatus.QUEUED, PushMessage.send_after <= now
        )
        if ids is not None:
            query = query.where(PushMessage.id.in_(ids))
        query = query.order_by(PushMessage.send_after).limit(1).with_for_update(skip_locked=True)
        return (await self.session.execute(query)).scalar_one_or_none()
