"""Rate limits on top of the `limits` library: in memory by default, Redis when configured."""

from __future__ import annotations

import math
import time

from limits import parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from servicedesk.core.errors import RateLimited


class RateLimiter:
    def __init__(self, redis_url: str | None = None) -> None:
        storage: Storage
        if redis_url:
            # redis-py is already a dependency (pub/sub, cache); no second Redis client.
            storage = RedisStorage(f"async+{redis_url}", implementation="redispy")
        else:
            storage = MemoryStorage()
        self.storage = storage
        self._limiter = MovingWindowRateLimiter(storage)

    async def hit(self, limit: str, *identifiers: str) -> None:
        """Count one hit against `limit` for `identifiers`; raise 429 with Retry-After if over."""
        item = parse(limit)
        if await self._limiter.hit(item, "servicedesk", *identifiers):
            return
        stats = await self._limiter.get_window_stats(item, "servicedesk", *identifiers)
        raise RateLimited(retry_after=math.ceil(stats.reset_time - time.time()))

    async def reset(self) -> None:
        await self.storage.reset()
