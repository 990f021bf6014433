"""The cache hit ratio the runbook asks for, with the probe's own lookups left out, over
12 runs on one held connection."""

from __future__ import annotations

import math

import pytest
from redis.asyncio import Redis

from probes.redis import KIND
from tests.probes_redis.conftest import RedisServer
from tests.probes_redis.helpers import make, one

pytestmark = pytest.mark.anyio

# Enough keys for the probe's lookups to swamp the application's (the issue saw 2,500 lists
# move the hits by 4,000), few enough to keep each loop step short in debug mode.
LISTS = 250


async def _app_traffic(app: Redis) -> None:
    """30 hits and 10 misses, as the Festivals API's cache reads would be."""
    for n in range(30):
        assert await app.get(f"cache:page:{n % 3}") is not None
    for n in range(10):
        assert await app.get(f"cache:absent:{n}") is None


async def test_hit_ratio_excludes_the_probes_own_lookups(own_redis: RedisServer) -> None:
    app = Redis(port=own_redis.port, socket_timeout=5)
    config, state = make(own_redis.url, max_keys=5000, client_timeout=5.0, queues=[
        {"pattern": "festivals:queue:tenant:*", "type": "list", "name": "tenants"},
        {"key": "festivals:queue:critical"},  # missing: a miss per read
        {"key": "festivals:queue:default"},
        {"key": "festivals:scheduled", "max_score": "now", "score_is_timestamp": True},
    ])
    try:
        async with app.pipeline(transaction=False) as pipe:
            for n in range(LISTS):
                pipe.rpush(f"festivals:queue:tenant:{n}", "job")
            for n in range(3):
                pipe.set(f"cache:page:{n}", "html")
            await pipe.execute()
        first = await KIND.run(config, state)
        assert first.success, first.detail
        assert one(first, "redis_queue_length", queue="tenants") == LISTS
        assert math.isnan(one(first, "redis_keyspace_hit_ratio"))  # no previous run yet
        previous = first
        for _ in range(12):
            await _app_traffic(app)
            result = await KIND.run(config, state)
            assert result.success, result.detail
            assert len(await app.client_list()) == 2  # the app and the probe's one connection

            moved = {name: one(result, name) - one(previous, name) for name in (
                "redis_keyspace_hits", "redis_keyspace_misses", "redis_probe_keyspace_hits",
                "redis_probe_keyspace_misses")}
            # Redis's own counters are mostly the probe ...
            assert moved["redis_keyspace_hits"] > LISTS
            assert moved["redis_keyspace_misses"] >= 3
            # ... which the probe measured and reports apart
            assert moved["redis_keyspace_hits"] - moved["redis_probe_keyspace_hits"] == 30
            assert moved["redis_keyspace_misses"] - moved["redis_probe_keyspace_misses"] == 10
            assert one(result, "redis_keyspace_hit_ratio") == 0.75
            previous = result
    finally:
        await state.aclose()
        await app.aclose()
