"""Every query on users, departments, sessions, recovery codes and login attempts.

All run in tenant sessions, so row-level security already confines them to one organization;
the explicit filters are kept anyway so that a query reads like the rule it serves.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Select, Uuid, any_, case, func, literal, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.core import cache
from servicedesk.core.pagination import like_pattern
from servicedesk.models import (
    Department,
    LoginAttempt,
    PasswordResetToken,
    RecoveryCode,
    RefreshToken,
    User,
)


def user_tag(user_id: uuid.UUID) -> str:
    """The cache tag of a user's cached row (accounts.auth)."""
    return f"user:{user_id}"


# Every committed write of a user row drops its cached copy (the auth facts of each request).
cache.tag_model(User, lambda u: (user_tag(u.id),))


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def get_for_update(self, user_id: uuid.UUID) -> User | None:
        result = await self.session.execute(
            select(User).where(User.id == user_id).with_for_update()
        )
        return result.scalar_one_or_none()

    async def get_by_email(self, email: str) -> User | None:
        result = await self.session.execute(
            select(User).where(func.lower(User.email) == email.strip().lower())
        )
        return result.scalar_one_or_none()

    async def list_by_emails(self, emails: list[str]) -> list[User]:
        lowered = sorted({e.strip().lower() for e in emails})
        result = await self.session.execute(select(User).where(func.lower(User.email).in_(lowered)))
        return list(result.scalars())

    async def get_many(self, user_ids: list[uuid.UUID]) -> list[User]:
        if not user_ids:
            return []
        ids = literal(sorted(set(user_ids)), ARRAY(Uuid()))  # one parameter, however many
        result = await self.session.execute(select(User).where(User.id == any_(ids)))
        return list(result.scalars())

    async def active_ids(
        self, *, roles: list[str], department_id: uuid.UUID | None = None
    ) -> list[uuid.UUID]:
        """Ids of approved, active users of these roles (and department), without a limit."""
        query = select(User.id).where(
            User.role.in_(roles), User.status == "approved", User.is_active.is_(True)
        )
        if department_id is not None:
            query = query.where(User.department_id == department_id)
        return list((await self.session.execute(query.order_by(User.id))).scalars())

    async def email_taken(self, email: str) -> bool:
        result = await self.session.execute(
            select(User.id).where(func.lower(User.email) == email.strip().lower())
        )
        return result.first() is not None

    async def company_id_taken(self, company_id: str) -> bool:
        result = await self.session.execute(select(User.id).where(User.company_id == company_id))
        return result.first() is not None

    def _filtered(
        self,
        *,
        status: str | None,
        role: str | None,
        department_id: uuid.UUID | None,
        q: str | None,
        include_inactive: bool,
    ) -> Select[User]:
        query = select(User)
        if status:
            query = query.where(User.status == status)
        if role:
            query = query.where(User.role == role)
        if department_id:
            query = query.where(User.department_id == department_id)
        if not include_inactive:
            query = query.where(User.is_active.is_(True))
        if q:
            pattern = like_pattern(q.lower())
            query = query.where(
                or_(
                    func.lower(User.email).like(pattern, escape="\\"),
                    func.lower(User.first_name + " " + User.last_name).like(pattern, escape="\\"),
                    User.company_id == q.upper(),
                )
            )
        return query

    async def list(
        self,
        *,
        status: str | None = None,
        role: str | None = None,
        department_id: uuid.UUID | None = None,
        q: str | None = None,
        include_inactive: bool = False,
        after: tuple[int, datetime, uuid.UUID] | None = None,
        limit: int = 50,
    ) -> list[User]:
        """Pending users first, then newest first; keyset on (pending rank, created_at, id)."""
        query = self._filtered(
            status=status,
            role=role,
            department_id=department_id,
            q=q,
            include_inactive=include_inactive,
        )
        rank = case((User.status == "pending", 0), else_=1)
        if after is not None:
            rank_after, created_after, id_after = after
            query = query.where(
                or_(
                    rank > rank_after,
                    (rank == rank_after)
                    & (tuple_(User.created_at, User.id) < tuple_(created_after, id_after)),
                )
            )
        query = query.order_by(rank, User.created_at.desc(), User.id.desc()).limit(limit)
        return list((await self.session.execute(query)).scalars())

    async def register_failure(
        self, user_id: uuid.UUID, *, threshold: int, locked_until: datetime
    ) -> datetime | None:
        """Count one failed sign-in atomically; lock once the threshold is reached.

        Returns the lock expiry when this failure locked the account.
        """
        reached = User.failed_login_count + 1 >= threshold
        result = await self.session.execute(
            update(User)
            .where(User.id == user_id)
            .values(
                failed_login_count=case((reached, 0), else_=User.failed_login_count + 1),
                locked_until=case((reached, locked_until), else_=User.locked_until),
            )
            # RETURNING sees the updated row: the count is back at 0 only when this locked.
            .returning(User.locked_until, User.failed_login_count == 0)
            .execution_options(synchronize_session=False)
        )
        row = result.one()
        # The ORM does not see this UPDATE: drop the cached user row after the commit ourselves.
        cache.invalidate_after_commit(self.session, (user_tag(user_id),))
        return row[0] if row[1] else None


class SessionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_hash_for_update(self, token_hash: str) -> RefreshToken | None:
        result = await self.session.execute(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
        )
        return result.scalar_one_or_none()

    async def revoke_family(
        self,
        family_id: uuid.UUID,
        *,
        at: datetime,
        reason: str,
        user_id: uuid.UUID | None = None,
    ) -> int:
        """Revoke a session; with `user_id`, only if it is that user's."""
        query = (
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=at, revoked_reason=reason)
            .execution_options(synchronize_session=False)
        )
        if user_id is not None:
            query = query.where(RefreshToken.user_id == user_id)
        result = await self.session.execute(query)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def revoke_user(self, user_id: uuid.UUID, *, at: datetime, reason: str) -> int:
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=at, revoked_reason=reason)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def active_links(self, user_id: uuid.UUID, *, now: datetime) -> list[RefreshToken]:
        """The live link of each active session of a user, with the family's start time."""
        result = await self.session.execute(
            select(RefreshToken)
            .where(
                RefreshToken.user_id == user_id,
                RefreshToken.revoked_at.is_(None),
                RefreshToken.rotated_at.is_(None),
                RefreshToken.expires_at > now,
            )
            .order_by(RefreshToken.issued_at.desc())
        )
        return list(result.scalars())

    async def active_links_of_organization(
        self, organization_id: uuid.UUID, *, now: datetime, limit: int
    ) -> list[RefreshToken]:
        """The live link of every active session in the organization, last used first."""
        result = await self.session.execute(
            select(RefreshToken)
            .where(
                RefreshToken.organization_id == organization_id,
                RefreshToken.revoked_at.is_(None),
                RefreshToken.rotated_at.is_(None),
                RefreshToken.expires_at > now,
            )
            .order_by(RefreshToken.issued_at.desc(), RefreshToken.id.desc())
            .limit(limit)
        )
        return list(result.scalars())

    async def family_starts(self, family_ids: list[uuid.UUID]) -> dict[uuid.UUID, datetime]:
        if not family_ids:
            return {}
        result = await self.session.execute(
            select(RefreshToken.family_id, func.min(RefreshToken.issued_at))
            .where(RefreshToken.family_id.in_(family_ids))
            .group_by(RefreshToken.family_id)
        )
        return {row[0]: row[1] for row in result}


class RecoveryCodeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def delete_all(self, user_id: uuid.UUID) -> None:
        codes = await self.session.execute(
            select(RecoveryCode).where(RecoveryCode.user_id == user_id)
        )
        for code in codes.scalars():
            await self.session.delete(code)

    async def find_unused_for_update(
        self, user_id: uuid.UUID, code_hash: str
    ) -> RecoveryCode | None:
        result = await self.session.execute(
            select(RecoveryCode)
            .where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == code_hash,
                RecoveryCode.used_at.is_(None),
            )
            .with_for_update()
        )
        return result.scalar_one_or_none()

    async def count_unused(self, user_id: uuid.UUID) -> int:
        result = await self.session.execute(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
        )
        return int(result.scalar_one())


class DepartmentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, department_id: uuid.UUID) -> Department | None:
        return await self.session.get(Department, department_id)

    async def name_taken(self, name: str, *, exclude: uuid.UUID | None = None) -> bool:
        query = select(Department.id).where(func.lower(Department.name) == name.lower())
        if exclude is not None:
            query = query.where(Department.id != exclude)
        return (await self.session.execute(query)).first() is not None

    async def list(self, *, include_inactive: bool = True) -> list[Department]:
        query = select(Department).order_by(Department.name)
        if not include_inactive:
            query = query.where(Department.is_active.is_(True))
        return list((await self.session.execute(query)).scalars())


class LoginAttemptRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, attempt: LoginAttempt) -> None:
        self.session.add(attempt)

    async def list(
        self,
        *,
        email: str | None,
        success: bool | None,
        before: tuple[datetime, uuid.UUID] | None,
        limit: int,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[LoginAttempt]:
        query = select(LoginAttempt)
        if email:
            query = query.where(LoginAttempt.email == email.strip().lower())
        if success is not None:
            query = query.where(LoginAttempt.success.is_(success))
        if since is not None:
            query = query.where(LoginAttempt.created_at >= since)
        if until is not None:
            query = query.where(LoginAttempt.created_at < until)
        if before:
            query = query.where(tuple_(LoginAttempt.created_at, LoginAttempt.id) < tuple_(*before))
        query = query.order_by(LoginAttempt.created_at.desc(), LoginAttempt.id.desc()).limit(limit)
        return list((await self.session.execute(query)).scalars())


class PasswordResetRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_hash_for_update(self, token_hash: str) -> PasswordResetToken | None:
        result = await self.session.execute(
            select(PasswordResetToken)
            .where(PasswordResetToken.token_hash == token_hash)
            .with_for_update()
        )
        return result.scalar_one_or_none()

    async def retire_open(self, user_id: uuid.UUID, *, at: datetime) -> int:
        """Mark every unused link of a user as used (a newer link or a new password wins)."""
        result = await self.session.execute(
            update(PasswordResetToken)
            .where(PasswordResetToken.user_id == user_id, PasswordResetToken.used_at.is_(None))
            .values(used_at=at)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def count_recent(self, user_id: uuid.UUID, *, since: datetime) -> int:
        result = await self.session.execute(
            select(func.count())
            .select_from(PasswordResetToken)
            .where(PasswordResetToken.user_id == user_id, PasswordResetToken.created_at >= since)
        )
        return int(result.scalar_one())
