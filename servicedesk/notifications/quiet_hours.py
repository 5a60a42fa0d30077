"""Quiet hours: a daily range of local time in which email and push wait.

The range is in the user's time zone (`users.timezone`); a start after the end spans midnight
(22:00 to 07:00). Held messages go out at the next local end time, which is computed in that zone,
so a daylight-saving change in between is respected.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def in_range(local: time, start: time, end: time) -> bool:
    if start < end:
        return start <= local < end
    return local >= start or local < end


def release_time(
    now: datetime, *, start: time | None, end: time | None, timezone: str | None
) -> datetime | None:
    """When a message made at `now` may go out, or None when it may go out at once."""
    if start is None or end is None or start == end:
        return None
    tz = zone(timezone)
    local = now.astimezone(tz)
    if not in_range(local.time().replace(tzinfo=None), start, end):
        return None
    day = local.date()
    release = datetime.combine(day, end, tzinfo=tz)
    if release <= local:
        release = datetime.combine(day + timedelta(days=1), end, tzinfo=tz)
    return release.astimezone(UTC)
