"""The documented ACL user is enough, and the probe only ever runs read-only commands."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from probes.redis import ACL_SETUSER, KIND, READ_COMMANDS
from tests.probes_redis.conftest import RedisServer
from tests.probes_redis.helpers import make, one

pytestmark = pytest.mark.anyio

DOC = Path(__file__).resolve().parents[2] / "docs" / "probes" / "redis.md"
EVERY_FEATURE: list[dict[str, Any]] = [
    {"key": "festivals:queue:default", "enqueued_at_field": "enqueued_at"},
    {"key": "festivals:queue:low"},
    {"key": "festivals:scheduled", "max_score": "now", "score_is_timestamp": True},
    {"key": "festivals:events", "group": "workers"},
    {"key": "festivals:events", "name": "events-no-group", "type": "stream"},
    {"key": "festivals:unique", "type": "set"},
    {"key": "festivals:retries"},
    {"pattern": "festivals:tenant:*", "name": "tenants"},
]


@pytest.fixture
async def admin(own_redis: RedisServer) -> AsyncIterator[Redis]:
    client = Redis(port=own_redis.port)
    await client.lpush("festivals:queue:default", json.dumps({"enqueued_at": time.time() - 5}))
    await client.zadd("festivals:scheduled", {"a": time.time() - 1})
    await client.xadd("festivals:events", {"a": "1"})
    await client.xgroup_create("festivals:events", "workers", id="0")
    await client.xadd("festivals:events", {"a": "2"})
    await client.sadd("festivals:unique", "a")
    await client.hset("festivals:retries", "a", "1")
    await client.rpush("festivals:tenant:1", "a", "b")
    await client.select(1)
    await client.rpush("festivals:queue:critical", "x")
    await client.select(0)
    yield client
    await client.aclose()


async def create_user(admin: Redis, line: str, password: str) -> None:
    words = line.replace(">CHANGE-ME", ">" + password).split()
    assert words[:2] == ["ACL", "SETUSER"]
    await admin.execute_command(*words)  # type: ignore[no-untyped-call]


def test_documented_acl_line_is_the_one_tested() -> None:
    assert ACL_SETUSER in DOC.read_text(encoding="utf-8")


async def test_acl_user_with_only_read_commands_suffices(
    own_redis: RedisServer, admin: Redis
) -> None:
    await create_user(admin, ACL_SETUSER, "probe-pass")
    await admin.config_resetstat()
    for db, queues in ((0, EVERY_FEATURE), (1, [{"key": "festivals:queue:critical"}])):
        config, state = make(own_redis.url, username="festivals-probe", password="probe-pass",
                             db=db, queues=queues)
        try:
            for _ in range(2):
                result = await KIND.run(config, state)
                assert result.success, result.detail
        finally:
            await state.aclose()
        if db == 0:
            assert one(result, "redis_queue_length", queue="tenants") == 2
            assert one(result, "redis_stream_group_lag", group="workers") == 2
        else:
            assert one(result, "redis_queue_length", queue="festivals:queue:critical") == 1
    assert await admin.acl_log() == []
    # Every command the server ran since the reset (besides the admin's own) is in the list.
    stats = await admin.info("commandstats")
    ran = {name.removeprefix("cmdstat_") for name in stats} - {"config|resetstat", "acl|log"}
    assert ran <= set(READ_COMMANDS) | {"auth"}, ran - set(READ_COMMANDS)
    assert {"llen", "lindex", "zcount", "zrange", "xpending", "xinfo|groups", "scan",
            "select"} <= ran


async def test_no_listed_command_writes(admin: Redis) -> None:
    for name in READ_COMMANDS:
        reply = await admin.execute_command(  # type: ignore[no-untyped-call]
            "COMMAND", "INFO", name
        )
        (doc,) = reply.values() if isinstance(reply, dict) else reply
        flags = {f.decode() if isinstance(f, bytes) else f for f in doc["flags"]}
        assert "write" not in flags, (name, flags)


async def test_acl_without_a_needed_command_is_forbidden(
    own_redis: RedisServer, admin: Redis
) -> None:
    await create_user(admin, ACL_SETUSER.replace(" +llen", ""), "probe-pass")
    config, state = make(own_redis.url, username="festivals-probe", password="probe-pass")
    try:
        result = await KIND.run(config, state)
        assert result.reason == "forbidden", result.detail
        assert one(result, "redis_up") == 0
    finally:
        await state.aclose()
