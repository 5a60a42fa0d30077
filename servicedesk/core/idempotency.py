"""`Idempotency-Key` for POSTs: a retried request gets the first answer, never a second effect.

The key is claimed *before* the work with `INSERT … ON CONFLICT DO NOTHING`: a concurrent
duplicate blocks on the uncommitted claim, then sees the committed answer (or, if the first
attempt rolled back, claims the key itself). The answer is stored in the same transaction as
the effect, so both exist or neither does.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.core.clock import utc_now
from servicedesk.core.errors import BadRequest, Unprocessable
from servicedesk.models import IdempotencyRecord

KEY_MAX = 255
RETENTION = timedelta(hours=24)


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: dict[str, Any]


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


async def claim(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    user_id: uuid.UUID,
    key: str,
    fingerprint: str,
) -> Replay | None:
    """Claim `key` for this request; return the stored answer if it was already used."""
    if not key or len(key) > KEY_MAX or not key.isprintable():
        raise BadRequest(
            f"Idempotency-Key must be 1 to {KEY_MAX} printable characters.",
            code="invalid_idempotency_key",
        )
    inserted = await session.execute(
        insert(IdempotencyRecord)
        .values(
            id=uuid.uuid4(),
            organization_id=organization_id,
            user_id=user_id,
            key=key,
            request_hash=fingerprint,
            status_code=0,
            response_body={},
        )
        .on_conflict_do_nothing(index_elements=["organization_id", "user_id", "key"])
        .returning(IdempotencyRecord.id)
    )
    if inserted.first() is not None:
        return None
    record = (
        await session.execute(
            select(IdempotencyRecord).where(
                IdempotencyRecord.organization_id == organization_id,
                IdempotencyRecord.user_id == user_id,
                IdempotencyRecord.key == key,
            )
        )
    ).scalar_one()
    if record.request_hash != fingerprint:
        raise Unprocessable(
            "This Idempotency-Key was used for a different request.",
            code="idempotency_key_reused",
        )
    return Replay(record.status_code, record.response_body)


async def remember(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    user_id: uuid.UUID,
    key: str,
    status_code: int,
    body: dict[str, Any],
) -> None:
    record = (
        await session.execute(
            select(IdempotencyRecord).where(
                IdempotencyRecord.organization_id == organization_id,
                IdempotencyRecord.user_id == user_id,
                IdempotencyRecord.key == key,
            )
        )
    ).scalar_one()
    record.status_code = status_code
    record.response_body = body


async def purge_expired(session: AsyncSession) -> int:
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < utc_now() - RETENTION)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
