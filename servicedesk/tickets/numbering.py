"""Ticket numbers `TKT{YEAR}{######}`: per organization and year, gap-free under concurrency.

The counter row is incremented with an upsert that keeps its row lock until the creating
transaction ends: concurrent creators queue on it, and a rolled-back creation gives its number
back, so committed numbers are consecutive.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_NEXT = text(
    """
    INSERT INTO ticket_counters (organization_id, year, last_value)
    VALUES (:org, :year, 1)
    ON CONFLICT (organization_id, year)
    DO UPDATE SET last_value = ticket_counters.last_value + 1
    RETURNING last_value
    """
)


def format_number(year: int, value: int) -> str:
    return f"TKT{year}{value:06d}"


async def next_number(session: AsyncSession, organization_id: uuid.UUID, year: int) -> str:
    value = (await session.execute(_NEXT, {"org": organization_id, "year": year})).scalar_one()
    return format_number(year, int(value))


_RESERVE = text(
    """
    INSERT INTO ticket_counters (organization_id, year, last_value)
    VALUES (:org, :year, :count)
    ON CONFLICT (organization_id, year)
    DO UPDATE SET last_value = ticket_counters.last_value + :count
    RETURNING last_value
    """
)


async def reserve_numbers(
    session: AsyncSession, organization_id: uuid.UUID, year: int, count: int
) -> int:
    """Take `count` consecutive numbers of `year` in one counter update; return the first value.

    Same gap-free contract as `next_number`: the counter row stays locked until the caller's
    transaction ends, and a rollback gives the whole block back.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    last = (
        await session.execute(_RESERVE, {"org": organization_id, "year": year, "count": count})
    ).scalar_one()
    return int(last) - count + 1
