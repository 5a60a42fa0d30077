"""In-process TTL cache (L1) with tag invalidation and hit/miss counters."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Generic, TypeVar

from prometheus_client import Counter

V = TypeVar("V")

CACHE_HITS = Counter("servicedesk_cache_hits_total", "Cache hits", ["cache"])
CACHE_MISSES = Counter("servicedesk_cache_misses_total", "Cache misses", ["cache"])


class TTLCache(Generic[V]):
    """A small dict with per-entry expiry; `invalidate_tag` drops every key stored under a tag."""

    def __init__(self, name: str, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.name = name
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._data: dict[str, tuple[float, V]] = {}
        self._tags: dict[str, set[str]] = defaultdict(set)

    def get(self, key: str) -> V | None:
        entry = self._data.get(key)
        if entry is None or entry[0] < time.monotonic():
            if entry is not None:
                self._data.pop(key, None)
            CACHE_MISSES.labels(self.name).inc()
            return None
        CACHE_HITS.labels(self.name).inc()
        return entry[1]

    def set(self, key: str, value: V, *, tags: tuple[str, ...] = ()) -> None:
        if len(self._data) >= self.max_entries:
            self._data.clear()
            self._tags.clear()
        self._data[key] = (time.monotonic() + self.ttl, value)
        for tag in tags:
            self._tags[tag].add(key)

    def invalidate(self, key: str) -> None:
        self._data.pop(key, None)

    def invalidate_tag(self, tag: str) -> None:
        for key in self._tags.pop(tag, set()):
            self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()
        self._tags.clear()
