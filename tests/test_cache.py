"""The two cache layers: L1 in-process TTL, L2 Redis, tags, cross-process invalidation, metrics."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as redis

from servicedesk.core import cache
from servicedesk.core.cache import CACHE_HITS, CACHE_MISSES, RedisL2, TTLCache
from tests.conftest import REDIS_URL, require_service


class TextCodec:
    def encode(self, value: str) -> bytes:
        return value.encode()

    def decode(self, data: bytes) -> str:
        return data.decode()


def _hits(name: str, layer: str) -> float:
    return float(CACHE_HITS.labels(name, layer)._value.get())  # type: ignore[attr-defined]


def _misses(name: str, layer: str) -> float:
    return float(CACHE_MISSES.labels(name, layer)._value.get())  # type: ignore[attr-defined]


class Loader:
    def __init__(self, value: str | None) -> None:
        self.value = value
        self.calls = 0

    async def __call__(self) -> str | None:
        self.calls += 1
        return self.value


async def test_l1_loads_once_and_invalidates_by_key_and_tag() -> None:
    c: TTLCache[str] = TTLCache(f"t{secrets.token_hex(4)}", ttl_seconds=60)
    load = Loader("v1")
    assert await c.get_or_load("a", load, tags=("ticket:1",)) == "v1"
    assert await c.get_or_load("a", load, tags=("ticket:1",)) == "v1"
    assert load.calls == 1
    assert _hits(c.name, "l1") == 1 and _misses(c.name, "l1") == 1
    c.invalidate_tag("ticket:1")
    assert c.get("a") is None
    await c.get_or_load("a", load, tags=("ticket:1",))
    c.invalidate("a")
    assert c.get("a") is None
    # None is not cached.
    empty = Loader(None)
    assert await c.get_or_load("b", empty) is None
    assert await c.get_or_load("b", empty) is None
    assert empty.calls == 2


async def test_a_load_that_raced_an_invalidation_is_not_stored() -> None:
    c: TTLCache[str] = TTLCache(f"t{secrets.token_hex(4)}", ttl_seconds=60)

    async def slow() -> str:
        await asyncio.sleep(0.05)
        return "read before the change"

    loading = asyncio.create_task(c.get_or_load("k", slow, tags=("ticket:9",)))
    await asyncio.sleep(0.01)
    cache.invalidate_tags(["ticket:9"], l2=False)  # the committed change's event
    assert await loading == "read before the change"
    assert c.get("k") is None


async def test_invalidations_reach_listeners_and_remote_ones_do_not_echo() -> None:
    c: TTLCache[str] = TTLCache(f"t{secrets.token_hex(4)}", ttl_seconds=60)
    heard: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []

    def listener(name: str, keys: tuple[str, ...], tags: tuple[str, ...]) -> None:
        heard.append((name, keys, tags))

    cache.add_invalidation_listener(listener)
    try:
        c.set("x", "1", tags=("org:1",))
        c.invalidate_tag("org:1")
        c.invalidate("y")
        assert heard == [(c.name, (), ("org:1",)), (c.name, ("y",), ())]
        c.set("x", "1", tags=("org:1",))
        cache.apply_invalidation(c.name, (), ("org:1",))  # from another process
        assert c.get("x") is None
        assert len(heard) == 2
    finally:
        cache.remove_invalidation_listener(listener)


@pytest.fixture
async def l2() -> AsyncIterator[RedisL2]:
    parts = urlsplit(REDIS_URL)
    require_service("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)
    client = redis.Redis.from_url(REDIS_URL)
    store = RedisL2(client, f"sdtest-{secrets.token_hex(4)}")
    cache.configure_l2(store)
    try:
        yield store
    finally:
        cache.configure_l2(None)
        await client.aclose()


async def gone_from(l2: RedisL2, key: str) -> None:
    """Wait (up to 3 s) for a background L2 delete."""
    for _ in range(150):
        if await l2.get(key) is None:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{key} is still in L2")


@pytest.mark.redis
async def test_l2_is_shared_and_dropped_by_tag(l2: RedisL2) -> None:
    name = f"t{secrets.token_hex(4)}"
    here: TTLCache[str] = TTLCache(name, ttl_seconds=60, codec=TextCodec())
    load = Loader("from the database")
    assert await here.get_or_load("k", load, tags=("ticket:5",)) == "from the database"
    assert await l2.get(f"{name}:k") == b"from the database"

    # "Another process": the same cache name with its own empty L1 reads L2, not the loader.
    there: TTLCache[str] = TTLCache(name, ttl_seconds=60, codec=TextCodec())
    assert await there.get_or_load("k", load, tags=("ticket:5",)) == "from the database"
    assert load.calls == 1
    assert _hits(name, "l2") == 1 and _misses(name, "l2") == 1

    # A tag invalidation drops L1 here and L2 for everyone (in the background).
    there.invalidate_tag("ticket:5", propagate=False)
    await gone_from(l2, f"{name}:k")
    here.drop_local(tags=("ticket:5",))
    load.value = "changed"
    assert await here.get_or_load("k", load, tags=("ticket:5",)) == "changed"
    assert load.calls == 2

    # Key invalidation and event-driven invalidation (every cache, L2 included).
    here.invalidate("k", propagate=False)
    await gone_from(l2, f"{name}:k")
    await here.get_or_load("k", load, tags=("ticket:5",))
    assert await l2.get(f"{name}:k") is not None
    cache.invalidate_tags(["ticket:5"], l2=True)
    await gone_from(l2, f"{name}:k")


@pytest.mark.redis
async def test_l2_failure_falls_back_to_the_loader() -> None:
    broken = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    cache.configure_l2(RedisL2(broken, "sdtest"))
    try:
        c: TTLCache[str] = TTLCache(f"t{secrets.token_hex(4)}", ttl_seconds=60, codec=TextCodec())
        assert await c.get_or_load("k", Loader("ok")) == "ok"
        assert c.get("k") == "ok"
    finally:
        cache.configure_l2(None)
        await broken.aclose()


async def test_metrics_carry_the_layer(client: httpx.AsyncClient) -> None:
    c: TTLCache[str] = TTLCache(f"t{secrets.token_hex(4)}", ttl_seconds=60)
    await c.get_or_load("k", Loader("v"))
    await c.get_or_load("k", Loader("v"))
    r = await client.get("/metrics")
    assert f'servicedesk_cache_hits_total{{cache="{c.name}",layer="l1"}} 1.0' in r.text
    assert f'servicedesk_cache_misses_total{{cache="{c.name}",layer="l1"}} 1.0' in r.text
