"""Queue lengths and ages against the session's own redis-server."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from probes.base import ProbeResult
from probes.redis import KIND, RedisConfig, RedisState
from tests.probes_redis.conftest import RedisServer
from tests.probes_redis.helpers import has_metric, make, one, values
from tests.promtool import assert_promtool_clean

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("redis_shared")]


@pytest.fixture
async def admin(shared_redis: RedisServer) -> AsyncIterator[Redis]:
    client = Redis(port=shared_redis.port)
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


async def test_lengths_of_every_type_follow_pushes_and_pops(
    shared_redis: RedisServer, admin: Redis, prefix: str
) -> None:
    queues = [
        {"key": prefix + "list"}, {"key": prefix + "zset", "type": "zset"},
        {"key": prefix + "stream"}, {"key": prefix + "set", "type": "set"},
        {"key": prefix + "hash"},
    ]
    config, state = make(shared_redis.url, queues=queues)
    try:
        await admin.rpush(prefix + "list", "a", "b", "c")
        await admin.zadd(prefix + "zset", {"a": 1, "b": 2})
        for i in range(4):
            await admin.xadd(prefix + "stream", {"n": str(i)})
        await admin.sadd(prefix + "set", "a")
        await admin.hset(prefix + "hash", mapping={k: "1" for k in "abcde"})
        result = await config_run(config, state)
        assert result.success, result.detail
        got = {q["key"]: one(result, "redis_queue_length", queue=q["key"]) for q in queues}
        assert list(got.values()) == [3, 2, 4, 1, 5]
        assert one(result, "redis_key_size", key=prefix + "stream", db="db0") == 4
        await admin.lpop(prefix + "list")
        await admin.zpopmin(prefix + "zset")
        await admin.xtrim(prefix + "stream", maxlen=1, approximate=False)
        await admin.sadd(prefix + "set", "b", "c")
        await admin.hdel(prefix + "hash", "a")
        result = await config_run(config, state)
        got = {q["key"]: one(result, "redis_queue_length", queue=q["key"]) for q in queues}
        assert list(got.values()) == [2, 1, 1, 3, 4]
        # Drain everything: a drained key does not exist in Redis, the series stays at 0.
        await admin.delete(*(q["key"] for q in queues))
        result = await config_run(config, state)
        assert result.success
        got = {q["key"]: one(result, "redis_queue_length", queue=q["key"]) for q in queues}
        assert list(got.values()) == [0, 0, 0, 0, 0]
        assert one(result, "redis_key_size", key=prefix + "hash") == 0
        assert one(result, "redis_up") == 1
    finally:
        await state.aclose()


async def config_run(config: RedisConfig, state: RedisState) -> ProbeResult:
    return await KIND.run(config, state)


async def test_missing_and_empty_queues_read_zero_with_age(
    shared_redis: RedisServer, admin: Redis, prefix: str
) -> None:
    config, state = make(shared_redis.url, queues=[
        {"key": prefix + "never", "enqueued_at_field": "enqueued_at"},
        {"key": prefix + "drained", "type": "list", "enqueued_at_field": "enqueued_at"},
        {"key": prefix + "delayed", "type": "zset", "score_is_timestamp": True},
    ])
    try:
        await admin.lpush(prefix + "drained", json.dumps({"enqueued_at": time.time()}))
        await admin.rpop(prefix + "drained")
        result = await config_run(config, state)
        assert result.success, result.detail
        for q in ("never", "drained", "delayed"):
            assert one(result, "redis_queue_length", queue=prefix + q) == 0
            assert one(result, "redis_queue_oldest_job_age_seconds", queue=prefix + q) == 0
    finally:
        await state.aclose()


async def test_list_job_age_from_json_field(
    shared_redis: RedisServer, admin: Redis, prefix: str
) -> None:
    now = time.time()
    key = prefix + "jobs"
    # Workers LPUSH and BRPOP: the oldest job sits at the tail.
    await admin.lpush(key, json.dumps({"id": 1, "meta": {"at": now - 120}}))
    await admin.lpush(key, json.dumps({"id": 2, "meta": {"at": (now - 60) * 1000}}))
    iso = datetime.fromtimestamp(now - 10, UTC).isoformat().replace("+00:00", "Z")
    await admin.lpush(key, json.dumps({"id": 3, "meta": {"at": iso}}))
    config, state = make(shared_redis.url, queues=[
        {"key": key, "name": "tail", "enqueued_at_field": "meta.at"},
        {"key": key, "name": "head", "enqueued_at_field": "meta.at", "oldest_at": "head"},
    ])
    try:
        result = await config_run(config, state)
        assert result.success, result.detail
        assert 119 < one(result, "redis_queue_oldest_job_age_seconds", queue="tail") < 125
        assert 9 < one(result, "redis_queue_oldest_job_age_seconds", queue="head") < 15
        await admin.rpop(key)  # the 120 s job is done: the next (ms timestamp) is 60 s old
        result = await config_run(config, state)
        assert 59 < one(result, "redis_queue_oldest_job_age_seconds", queue="tail") < 65
    finally:
        await state.aclose()


async def test_sorted_set_due_now_range_and_age(
    shared_redis: RedisServer, admin: Redis, prefix: str
) -> None:
    now = time.time()
    key = prefix + "scheduled"
    await admin.zadd(key, {"overdue": (now - 300) * 1000, "due": (now - 2) * 1000,
                           "later": (now + 3600) * 1000})
    config, state = make(shared_redis.url, queues=[
        {"key": key, "name": "due", "max_score": "now", "score_is_timestamp": True,
         "score_unit": "ms"},
        {"key": key, "name": "next-hour", "min_score": "now", "max_score": "now+2h",
         "score_unit": "ms"},
    ])
    try:
        result = await config_run(config, state)
        assert result.success, result.detail
        assert one(result, "redis_queue_length", queue="due") == 2
        assert one(result, "redis_queue_length", queue="next-hour") == 1
        assert one(result, "redis_key_size", key=key) == 3
        assert 299 < one(result, "redis_queue_oldest_job_age_seconds", queue="due") < 305
        assert not has_metric(result, "redis_queue_keys")
    finally:
        await state.aclose()


async def test_stream_group_pending_lag_and_age(
    shared_redis: RedisServer, admin: Redis, prefix: str
) -> None:
    key = prefix + "events"
    old_ms = int((time.time() - 90) * 1000)
    await admin.xadd(key, {"n": "0"}, id=f"{old_ms}-0")
    await admin.xadd(key, {"n": "1"}, id=f"{old_ms + 30_000}-0")
    await admin.xadd(key, {"n": "2"})
    config, state = make(shared_redis.url, queues=[
        {"key": key, "group": "workers"}, {"key": key, "name": "plain", "type": "stream"}
    ])
    labels = {"stream": key, "group": "workers"}
    try:
        # No group yet: nothing pending, every entry is lag, the oldest entry is 90 s old.
        result = await config_run(config, state)
        assert result.success, result.detail
        assert one(result, "redis_stream_group_lag", **labels) == 3
        assert one(result, "redis_stream_group_messages_pending", **labels) == 0
        assert 89 < one(result, "redis_queue_oldest_job_age_seconds", queue=key) < 95
        await admin.xgroup_create(key, "workers", id="0")
        await admin.xreadgroup("workers", "c1", {key: ">"}, count=1)
        result = await config_run(config, state)
        assert one(result, "redis_stream_group_messages_pending", **labels) == 1
        assert one(result, "redis_stream_group_lag", **labels) == 2
        assert one(result, "redis_queue_length", queue=key) == 3
        assert 89 < one(result, "redis_queue_oldest_job_age_seconds", queue=key) < 95
        # Ack the first: no pending, the oldest job is the first undelivered (60 s old).
        await admin.xack(key, "workers", f"{old_ms}-0")
        result = await config_run(config, state)
        assert one(result, "redis_stream_group_messages_pending", **labels) == 0
        assert 59 < one(result, "redis_queue_oldest_job_age_seconds", queue=key) < 65
        assert one(result, "redis_queue_length", queue=key) == 2
        assert 89 < one(result, "redis_queue_oldest_job_age_seconds", queue="plain") < 95
        await admin.xreadgroup("workers", "c1", {key: ">"})
        entries = await admin.xrange(key)
        assert entries is not None
        await admin.xack(key, "workers", *[e[0] for e in entries if isinstance(e[0], bytes)])
        result = await config_run(config, state)
        assert one(result, "redis_queue_oldest_job_age_seconds", queue=key) == 0
        assert one(result, "redis_queue_length", queue=key) == 0
    finally:
        await state.aclose()


async def test_unexpected_type_gives_wrong_type(
    shared_redis: RedisServer, admin: Redis, prefix: str
) -> None:
    await admin.set(prefix + "str", "x")
    await admin.sadd(prefix + "set", "x")
    await admin.rpush(prefix + "ok", "x")
    config, state = make(shared_redis.url, queues=[
        {"key": prefix + "ok"}, {"key": prefix + "set", "type": "list"}, {"key": prefix + "str"},
    ])
    try:
        result = await config_run(config, state)
        assert not result.success and result.reason == "wrong_type"
        assert one(result, "redis_up") == 1
        assert one(result, "redis_queue_length", queue=prefix + "ok") == 1
        assert math.isnan(one(result, "redis_queue_length", queue=prefix + "set"))
        assert any("expected list, is set" in line for line in result.detail)
        assert any("is string" in line for line in result.detail)
    finally:
        await state.aclose()


@pytest.mark.parametrize(
    ("job", "reason"),
    [(b"not json at all", "bad_job"), (json.dumps({"other": 1}).encode(), "bad_job"),
     (b"\xff\xfe binary", "bad_job"), (json.dumps({"at": 1, "pad": "x" * 5000}).encode(),
                                      "too_large"),
     (b'{"at": ' + b"9" * 400 + b"}", "bad_job")],  # an integer no float can hold
)
async def test_bad_or_huge_job_gives_a_reason(
    shared_redis: RedisServer, admin: Redis, prefix: str, job: bytes, reason: str
) -> None:
    await admin.rpush(prefix + "q", job)
    config, state = make(shared_redis.url, max_job_bytes=4096, queues=[
        {"key": prefix + "q", "enqueued_at_field": "at"}])
    try:
        result = await config_run(config, state)
        assert not result.success and result.reason == reason, result.detail
        assert one(result, "redis_queue_length", queue=prefix + "q") == 1
        assert math.isnan(one(result, "redis_queue_oldest_job_age_seconds", queue=prefix + "q"))
    finally:
        await state.aclose()


async def test_info_metrics_and_ping_samples(shared_redis: RedisServer, admin: Redis) -> None:
    await admin.get("festivals:cache:missing-key")
    config, state = make(shared_redis.url, ping_samples=7, queues=[])
    try:
        result = await config_run(config, state)
        assert result.success
        assert one(result, "redis_memory_used_bytes") > 100_000
        assert one(result, "redis_memory_max_bytes") == 0
        assert one(result, "redis_connected_clients") >= 2
        assert one(result, "redis_keyspace_misses") >= 1
        assert 0 < one(result, "redis_ping_latency_seconds") <= one(
            result, "redis_ping_latency_max_seconds") < 1
        assert any(line.startswith("PING x7") for line in result.detail)
        (lbl,) = values(result, "redis_instance")
        assert dict(lbl)["role"] == "master" and dict(lbl)["redis_version"].startswith("7.")
        assert not has_metric(result, "redis_master_link_up")
        await assert_promtool_clean("redis", [result])
    finally:
        await state.aclose()


async def test_pattern_sums_keys_and_ignores_non_queue_types(
    shared_redis: RedisServer, admin: Redis, prefix: str
) -> None:
    for i in range(5):
        await admin.rpush(f"{prefix}queue:{i}", *range(i + 1))
    await admin.set(f"{prefix}queue:lock", "1")
    config, state = make(shared_redis.url, queues=[{"pattern": prefix + "queue:*",
                                                    "name": "all"}])
    try:
        result = await config_run(config, state)
        assert result.success, result.detail
        assert one(result, "redis_queue_length", queue="all") == 15
        assert one(result, "redis_queue_keys", queue="all") == 5
        assert one(result, "redis_queue_scan_cap_hit", queue="all") == 0
        assert one(result, "redis_key_size", key=f"{prefix}queue:4") == 5
        assert any("ignored 1 keys" in line for line in result.detail)
        for i in range(5):
            await admin.delete(f"{prefix}queue:{i}")
        result = await config_run(config, state)
        assert one(result, "redis_queue_length", queue="all") == 0  # drained: 0, not absent
        assert one(result, "redis_queue_keys", queue="all") == 0
    finally:
        await state.aclose()


async def test_keys_left_out_of_the_last_scan_reply_count_as_cap_hit(
    shared_redis: RedisServer, admin: Redis, prefix: str
) -> None:
    for i in range(10):
        await admin.rpush(f"{prefix}q:{i}", "job")
    # one SCAN call returns all 10 keys with cursor 0: 5 are kept, the cap is hit
    config, state = make(shared_redis.url, max_keys=5, queues=[
        {"pattern": prefix + "q:*", "name": "capped"}])
    try:
        result = await config_run(config, state)
        assert result.success, result.detail
        assert one(result, "redis_queue_keys", queue="capped") == 5
        assert one(result, "redis_queue_scan_cap_hit", queue="capped") == 1
        assert one(result, "redis_queue_length", queue="capped") == 5
    finally:
        await state.aclose()
    config, state = make(shared_redis.url, max_keys=10, queues=[
        {"pattern": prefix + "q:*", "name": "exact"}])
    try:
        result = await config_run(config, state)
        assert one(result, "redis_queue_keys", queue="exact") == 10
        assert one(result, "redis_queue_scan_cap_hit", queue="exact") == 0
    finally:
        await state.aclose()
