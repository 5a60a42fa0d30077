"""Two cache layers: L1 in-process TTL dicts and, when Redis is configured, a shared L2.

`TTLCache.get/set` are L1 only (synchronous, for hot paths such as tenant resolution).
`TTLCache.get_or_load` reads L1, then L2 (for caches built with a `codec`), then the loader,
and fills both layers. Entries carry tags; `invalidate(key)` and `invalidate_tag(tag)` drop an
entry or a group from L1 at once and from L2 in the background.

Other processes hold their own L1. An invalidation made here reaches them in two ways:
invalidations driven by domain events are applied by every process from the event itself (see
`servicedesk/live/`), and direct calls (`invalidate`, `invalidate_tag`) are handed to the
*listeners* registered with `add_invalidation_listener`, which broadcast them. Receivers apply
them with `apply_invalidation`, which does not broadcast again.

Writes invalidate after their commit, by construction: models registered with `tag_model`
name the tags a change of one of their rows makes stale; a session collects them at flush (and
from `invalidate_after_commit` for writes the ORM does not see, such as bulk UPDATEs), and once
COMMIT returned they are dropped from every cache of this process (synchronously, before the
response goes out), from L2, and broadcast to the other processes. A rolled back transaction
invalidates nothing.

Hit and miss counters are exported as `servicedesk_cache_{hits,misses}_total{cache, layer}`,
the number of entries as `servicedesk_cache_entries{cache}`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Generic, Protocol, TypeVar

from prometheus_client import Counter, Gauge
from sqlalchemy import event
from sqlalchemy.orm import Session, UOWTransaction

V = TypeVar("V")

log = logging.getLogger("servicedesk.cache")

CACHE_HITS = Counter("servicedesk_cache_hits_total", "Cache hits", ["cache", "layer"])
CACHE_MISSES = Counter("servicedesk_cache_misses_total", "Cache misses", ["cache", "layer"])
CACHE_ERRORS = Counter("servicedesk_cache_l2_errors_total", "L2 (Redis) cache errors", ["cache"])
CACHE_ENTRIES = Gauge("servicedesk_cache_entries", "Entries in the L1 cache", ["cache"])

L1 = "l1"
L2 = "l2"


class Codec(Protocol[V]):
    """How a cache's values travel to and from L2 (bytes)."""

    def encode(self, value: V) -> bytes: ...

    def decode(self, data: bytes) -> V: ...


class L2Store(Protocol):
    """A shared cache layer (Redis in production). Keys and tags are already namespaced."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float, tags: Iterable[str]) -> None: ...

    async def delete(self, keys: Iterable[str]) -> None: ...

    async def delete_tags(self, tags: Iterable[str]) -> None: ...


InvalidationListener = Callable[[str | None, tuple[str, ...], tuple[str, ...]], None]
"""Called with (cache name, keys, tags) for every invalidation made in this process; a name of
None means the tags of every cache."""

_caches: dict[str, TTLCache[Any]] = {}
_listeners: list[InvalidationListener] = []
_l2: L2Store | None = None
_background: set[asyncio.Task[None]] = set()

# Invalidations counted per tag, so that a load that raced an invalidation does not store the
# value it read before the change (see `get_or_load`).
_generation = 0
_tag_generations: OrderedDict[str, int] = OrderedDict()
_TAG_GENERATIONS_KEPT = 20_000


def _bump(tags: Iterable[str]) -> None:
    global _generation
    for tag in tags:
        _generation += 1
        _tag_generations[tag] = _generation
        _tag_generations.move_to_end(tag)
    while len(_tag_generations) > _TAG_GENERATIONS_KEPT:
        _tag_generations.popitem(last=False)


def generation() -> int:
    """The invalidation counter: see `TTLCache.set_unless_invalidated`."""
    return _generation


def _invalidated_since(generation: int, tags: Iterable[str]) -> bool:
    return any(_tag_generations.get(tag, 0) > generation for tag in tags)


def _spawn(coro: Coroutine[Any, Any, None]) -> None:
    """Run an L2 operation in the background; without a running loop there is no L2 work."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        coro.close()
        return
    task = loop.create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


class TTLCache(Generic[V]):
    """A small dict with per-entry expiry; `invalidate_tag` drops every key stored under a tag.

    With a `codec` the cache also uses the process's L2 store (when one is configured) in
    `get_or_load`; entries live there for `l2_ttl_seconds` (default: the L1 TTL).
    """

    def __init__(
        self,
        name: str,
        ttl_seconds: float,
        max_entries: int = 10_000,
        *,
        codec: Codec[V] | None = None,
        l2_ttl_seconds: float | None = None,
    ) -> None:
        self.name = name
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.codec = codec
        self.l2_ttl = l2_ttl_seconds
        self._data: dict[str, tuple[float, V]] = {}
        self._tags: dict[str, set[str]] = defaultdict(set)
        _caches[name] = self
        CACHE_ENTRIES.labels(name).set_function(lambda: len(self._data))

    # L1 -----------------------------------------------------------------------------------

    def get(self, key: str) -> V | None:
        entry = self._data.get(key)
        if entry is None or entry[0] < time.monotonic():
            if entry is not None:
                self._data.pop(key, None)
            CACHE_MISSES.labels(self.name, L1).inc()
            return None
        CACHE_HITS.labels(self.name, L1).inc()
        return entry[1]

    def set(self, key: str, value: V, *, tags: tuple[str, ...] = ()) -> None:
        if len(self._data) >= self.max_entries:
            self._data.clear()
            self._tags.clear()
        self._data[key] = (time.monotonic() + self.ttl, value)
        for tag in tags:
            self._tags[tag].add(key)

    def set_unless_invalidated(
        self, key: str, value: V, *, since: int, tags: tuple[str, ...] = ()
    ) -> bool:
        """Store `value` unless one of `tags` was invalidated after `generation()` was `since`.

        For values read before their tags are known (a ticket looked up by number): take
        `generation()` before the read, and store through this afterwards.
        """
        if _invalidated_since(since, tags):
            return False
        self.set(key, value, tags=tags)
        return True

    def __len__(self) -> int:
        return len(self._data)

    # Invalidation -------------------------------------------------------------------------

    def invalidate(self, key: str, *, propagate: bool = True) -> None:
        """Drop `key` here and in L2; with `propagate`, tell the listeners (other processes)."""
        self._data.pop(key, None)
        if self._l2_store() is not None:
            _spawn(self._l2_delete((key,)))
        if propagate:
            _notify(self.name, (key,), ())

    def invalidate_tag(self, tag: str, *, propagate: bool = True) -> None:
        """Drop every entry tagged `tag` here and in L2; with `propagate`, tell the listeners."""
        self._drop_tag(tag)
        if self._l2_store() is not None:
            _spawn(self._l2_delete_tags((tag,)))
        if propagate:
            _notify(self.name, (), (tag,))

    def clear(self) -> None:
        self._data.clear()
        self._tags.clear()

    def _drop_tag(self, tag: str) -> None:
        _bump((tag,))
        for key in self._tags.pop(tag, set()):
            self._data.pop(key, None)

    def drop_local(self, keys: Iterable[str] = (), tags: Iterable[str] = ()) -> None:
        """Drop from L1 only: an invalidation that another process already made in L2."""
        for key in keys:
            self._data.pop(key, None)
        for tag in tags:
            self._drop_tag(tag)

    # L1 + L2 ------------------------------------------------------------------------------

    async def get_or_load(
        self,
        key: str,
        load: Callable[[], Awaitable[V | None]],
        *,
        tags: tuple[str, ...] = (),
    ) -> V | None:
        """The value from L1, else L2, else `load()`; a found value fills the layers above it.

        `None` from the loader is not cached. A value loaded while one of its tags was
        invalidated is returned but not stored: it may predate the change.
        """
        value = self.get(key)
        if value is not None:
            return value
        store = self._l2_store()
        if store is not None and self.codec is not None:
            raw = await self._l2_get(store, key)
            if raw is not None:
                try:
                    value = self.codec.decode(raw)
                except Exception:  # a value written by another version: reload it
                    log.warning("undecodable L2 entry", extra={"cache": self.name, "key": key})
                    value = None
                if value is not None:
                    CACHE_HITS.labels(self.name, L2).inc()
                    self.set(key, value, tags=tags)
                    return value
            CACHE_MISSES.labels(self.name, L2).inc()
        generation = _generation
        value = await load()
        if value is None or _invalidated_since(generation, tags):
            return value
        self.set(key, value, tags=tags)
        if store is not None and self.codec is not None:
            await self._l2_set(store, key, self.codec.encode(value), tags)
        return value

    def _l2_store(self) -> L2Store | None:
        return _l2 if self.codec is not None else None

    def _l2_key(self, key: str) -> str:
        return f"{self.name}:{key}"

    def _l2_tag(self, tag: str) -> str:
        return f"{self.name}:{tag}"

    async def _l2_get(self, store: L2Store, key: str) -> bytes | None:
        try:
            return await store.get(self._l2_key(key))
        except Exception:  # L2 is an optimisation: fall through to the loader
            CACHE_ERRORS.labels(self.name).inc()
            log.warning("L2 read failed", extra={"cache": self.name}, exc_info=True)
            return None

    async def _l2_set(self, store: L2Store, key: str, raw: bytes, tags: Iterable[str]) -> None:
        try:
            await store.set(
                self._l2_key(key),
                raw,
                self.l2_ttl or self.ttl,
                [self._l2_tag(t) for t in tags],
            )
        except Exception:
            CACHE_ERRORS.labels(self.name).inc()
            log.warning("L2 write failed", extra={"cache": self.name}, exc_info=True)

    async def _l2_delete(self, keys: Iterable[str]) -> None:
        store = self._l2_store()
        if store is None:
            return
        try:
            await store.delete([self._l2_key(k) for k in keys])
        except Exception:
            CACHE_ERRORS.labels(self.name).inc()
            log.warning("L2 delete failed", extra={"cache": self.name}, exc_info=True)

    async def _l2_delete_tags(self, tags: Iterable[str]) -> None:
        store = self._l2_store()
        if store is None:
            return
        try:
            await store.delete_tags([self._l2_tag(t) for t in tags])
        except Exception:
            CACHE_ERRORS.labels(self.name).inc()
            log.warning("L2 tag delete failed", extra={"cache": self.name}, exc_info=True)


# Process-wide configuration -----------------------------------------------------------------


def configure_l2(store: L2Store | None) -> None:
    """Use `store` as L2 for every cache that has a codec (None: L1 only)."""
    global _l2
    _l2 = store


def l2_configured() -> bool:
    return _l2 is not None


def add_invalidation_listener(listener: InvalidationListener) -> None:
    _listeners.append(listener)


def remove_invalidation_listener(listener: InvalidationListener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def _notify(name: str | None, keys: tuple[str, ...], tags: tuple[str, ...]) -> None:
    for listener in list(_listeners):
        try:
            listener(name, keys, tags)
        except Exception:  # a broadcast failure must not fail the request that invalidated
            log.exception("cache invalidation listener failed")


def apply_invalidation(name: str | None, keys: Iterable[str], tags: Iterable[str]) -> None:
    """Apply an invalidation received from another process: L1 only, not broadcast again.

    `name=None` applies the tags to every cache (keys need a cache name).
    """
    keys, tags = tuple(keys), tuple(tags)
    if name is None:
        for cache in list(_caches.values()):
            cache.drop_local((), tags)
        return
    named = _caches.get(name)
    if named is not None:
        named.drop_local(keys, tags)


def invalidate_tags(tags: Iterable[str], *, l2: bool) -> None:
    """Drop `tags` from every cache of this process (and from L2 when `l2`); no broadcast.

    Driven by committed domain events, which every process receives itself.
    """
    tags = tuple(tags)
    if not tags:
        return
    for cache in list(_caches.values()):
        for tag in tags:
            cache._drop_tag(tag)
        if l2 and cache._l2_store() is not None:
            _spawn(cache._l2_delete_tags(tags))


def caches() -> dict[str, TTLCache[Any]]:
    """The caches created in this process, by name."""
    return dict(_caches)


def invalidate_everywhere(tags: Iterable[str]) -> None:
    """Drop `tags` from every cache here and in L2 at once, and tell the other processes."""
    tags = tuple(dict.fromkeys(tags))
    if not tags:
        return
    invalidate_tags(tags, l2=True)
    _notify(None, (), tags)


# Invalidation after commit ------------------------------------------------------------------

ModelTags = Callable[[Any], Iterable[str]]
_model_tags: dict[type, ModelTags] = {}
_PENDING_TAGS = "servicedesk_cache_tags"


def tag_model(model: type, tags: ModelTags) -> None:
    """Every committed insert, update or delete of a `model` row invalidates `tags(row)`."""
    _model_tags[model] = tags


def invalidate_after_commit(session: Any, tags: Iterable[str]) -> None:
    """Invalidate `tags` once the session's transaction commits (nothing if it rolls back).

    For changes the flush does not see: Core or bulk UPDATE/DELETE statements. `session` is a
    `Session` or an `AsyncSession` (both share `info`).
    """
    pending: set[str] = session.info.setdefault(_PENDING_TAGS, set())
    pending.update(tags)


def writes_pending(session: Any) -> bool:
    """True when the session's transaction has changed (or is about to flush) cached rows.

    Such a transaction must neither read cached values (they predate its own change) nor store
    what it reads (it may roll back): domain caches load directly instead.
    """
    if session.info.get(_PENDING_TAGS):
        return True
    return any(type(obj) in _model_tags for obj in (*session.new, *session.dirty, *session.deleted))


def _collect(session: Session, flush_context: UOWTransaction) -> None:
    if not _model_tags:
        return
    found: list[str] = []
    for obj in (*session.new, *session.dirty, *session.deleted):
        tags = _model_tags.get(type(obj))
        if tags is not None:
            found.extend(tags(obj))
    if found:
        invalidate_after_commit(session, found)


def _after_commit(session: Session) -> None:
    tags: set[str] = session.info.pop(_PENDING_TAGS, set())
    if not tags:
        return
    try:
        invalidate_everywhere(sorted(tags))
    except Exception:  # the commit happened; never turn it into an error
        log.exception("cache: invalidation after commit failed")


def _after_rollback(session: Session) -> None:
    # A rolled back savepoint keeps the outer transaction's tags; invalidating a few extra is
    # harmless, missing one is not.
    if not session.in_transaction():
        session.info.pop(_PENDING_TAGS, None)


event.listen(Session, "after_flush", _collect)
event.listen(Session, "after_commit", _after_commit)
event.listen(Session, "after_rollback", _after_rollback)


# Redis --------------------------------------------------------------------------------------

# Deletes every key listed in a tag set, then the set; atomic on the Redis server.
_DELETE_TAGS = """
local n = 0
for _, tag in ipairs(KEYS) do
    local members = redis.call('SMEMBERS', tag)
    for i = 1, #members, 500 do
        redis.call('DEL', unpack(members, i, math.min(i + 499, #members)))
    end
    n = n + #members
    redis.call('DEL', tag)
end
return n
"""


class RedisL2:
    """L2 on Redis: a value per key (with expiry) and a set of keys per tag.

    Values live under `<prefix>:cache:`, tag sets under `<prefix>:cachetag:`. A tag set expires
    with the last entry added to it, so abandoned tags do not accumulate.
    """

    def __init__(self, client: Any, prefix: str) -> None:
        self._redis = client
        self._prefix = f"{prefix}:cache:"
        self._tag_prefix = f"{prefix}:cachetag:"
        self._delete_tags = client.register_script(_DELETE_TAGS)

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._redis.get(self._prefix + key)
        return value

    async def set(self, key: str, value: bytes, ttl: float, tags: Iterable[str]) -> None:
        full = self._prefix + key
        millis = max(1, int(ttl * 1000))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(full, value, px=millis)
            for tag in tags:
                pipe.sadd(self._tag_prefix + tag, full)
                # Entries of one cache share a TTL, so the set outlives each of its members.
                pipe.pexpire(self._tag_prefix + tag, millis)
            await pipe.execute()

    async def delete(self, keys: Iterable[str]) -> None:
        names = [self._prefix + k for k in keys]
        if names:
            await self._redis.delete(*names)

    async def delete_tags(self, tags: Iterable[str]) -> None:
        names = [self._tag_prefix + t for t in tags]
        if names:
            await self._delete_tags(keys=names)
