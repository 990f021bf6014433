"""Failures and recovery against redis-servers the tests own: kill, SIGSTOP, restart,
wrong password, maxclients, maxmemory, TLS, and the 100,000-key pattern."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import anyio.abc
import pytest
import trustme
from redis.asyncio import Redis

from probes.redis import KIND
from tests.probes_redis.conftest import RedisServer
from tests.probes_redis.helpers import make, one

pytestmark = pytest.mark.anyio


@pytest.fixture
async def admin(own_redis: RedisServer) -> AsyncIterator[Redis]:
    client = Redis(port=own_redis.port, socket_timeout=5)
    yield client
    await client.aclose()


async def other_clients(admin: Redis) -> int:
    """Connections on the server besides the admin's own."""
    return len(await admin.client_list()) - 1


async def test_killed_then_restarted_server_recovers_without_leaks(
    own_redis: RedisServer, admin: Redis
) -> None:
    await admin.rpush("festivals:queue:default", "job")
    config, state = make(own_redis.url, client_timeout=1.0)
    try:
        assert (await KIND.run(config, state)).success
        assert await other_clients(admin) == 1
        await anyio.to_thread.run_sync(own_redis.kill)
        # one cause, one reason: the held connection's loss is not "unreachable" first
        result = await KIND.run(config, state)
        assert not result.success and result.reason == "refused", result.detail
        assert [m.name for m in result.metrics] == ["redis_up"]
        assert one(result, "redis_up") == 0
        result = await KIND.run(config, state)
        assert result.reason == "refused"
        await anyio.to_thread.run_sync(own_redis.start)
        async with Redis(port=own_redis.port) as fresh:
            for _ in range(3):
                result = await KIND.run(config, state)
                assert result.success, result.detail
            assert one(result, "redis_up") == 1
            assert one(result, "redis_queue_length", queue="festivals:queue:default") == 0
            assert len(await fresh.client_list()) - 1 == 1  # the probe holds one connection
    finally:
        await state.aclose()


async def test_paused_server_times_out_then_recovers_without_leaks(
    own_redis: RedisServer, admin: Redis
) -> None:
    config, state = make(own_redis.url, client_timeout=0.3)
    try:
        assert (await KIND.run(config, state)).success
        own_redis.pause()
        try:
            # The client-side timeout fires first: reason timeout, redis_up 0.
            start = time.monotonic()
            result = await KIND.run(config, state)
            assert time.monotonic() - start < 1.5
            assert result.reason == "timeout" and one(result, "redis_up") == 0, result.detail
            # The scheduler's hard deadline fires first: cancelled cleanly, nothing swallowed.
            slow, slow_state = make(own_redis.url, client_timeout=30.0)
            try:
                start = time.monotonic()
                with pytest.raises(TimeoutError):
                    with anyio.fail_after(0.3):
                        await KIND.run(slow, slow_state)
                assert time.monotonic() - start < 2.0
                assert slow_state.client is not None
                assert not slow_state.client.connection_pool._in_use_connections
            finally:
                await slow_state.aclose()
        finally:
            own_redis.resume()
        result = await KIND.run(config, state)
        assert result.success, result.detail
        for _ in range(50):  # the server notices closed sockets when it reads them
            if await other_clients(admin) == 1:
                break
            await anyio.sleep(0.05)
        assert await other_clients(admin) == 1
    finally:
        await state.aclose()
    for _ in range(50):
        if await other_clients(admin) == 0:
            break
        await anyio.sleep(0.05)
    assert await other_clients(admin) == 0  # aclose() released the connection


@pytest.fixture
def password_server() -> Iterator[RedisServer]:
    server = RedisServer("--requirepass", "right-horse-battery")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def tls_files(tmp_path: Path) -> Path:
    """trustme certificates, made outside the event loop (key generation is CPU work)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(tmp_path / "other.pem"))
    return tmp_path


async def test_password_wrong_missing_and_from_file(
    password_server: RedisServer, tmp_path: Path
) -> None:
    for keys, reason in [({"password": "wrong-guess"}, "auth"), ({}, "auth"),
                         ({"password_file": str(tmp_path / "absent")}, "config")]:
        config, state = make(password_server.url, **keys)
        try:
            result = await KIND.run(config, state)
            assert result.reason == reason, result.detail
            assert "wrong-guess" not in "\n".join(result.detail)
        finally:
            await state.aclose()
    secret = tmp_path / "redis-password"
    secret.write_text("right-horse-battery\n")
    config, state = make(password_server.url, password_file=str(secret))
    try:
        result = await KIND.run(config, state)
        assert result.success, result.detail
        text = repr(result) + KIND.target(config)
        assert "right-horse-battery" not in text
        secret.write_text("rotated-wrong\n")  # a rotated file is re-read on the next run
        assert (await KIND.run(config, state)).reason == "auth"
    finally:
        await state.aclose()


async def test_maxclients_reached_gives_too_many_clients(tmp_path: Path) -> None:
    server = RedisServer("--maxclients", "1")
    await anyio.to_thread.run_sync(server.start)
    try:
        async with Redis(port=server.port) as holder:
            await holder.ping()
            config, state = make(server.url)
            try:
                result = await KIND.run(config, state)
                assert result.reason == "too_many_clients", result.detail
            finally:
                await state.aclose()
    finally:
        await anyio.to_thread.run_sync(server.kill)


async def test_maxmemory_reported_and_required(own_redis: RedisServer, admin: Redis) -> None:
    config, state = make(own_redis.url, require_maxmemory=True, queues=[])
    try:
        result = await KIND.run(config, state)
        assert result.reason == "maxmemory_unset"
        assert one(result, "redis_memory_max_bytes") == 0 and one(result, "redis_up") == 1
        await admin.config_set("maxmemory", str(64 * 1024 * 1024))
        result = await KIND.run(config, state)
        assert result.success and one(result, "redis_memory_max_bytes") == 64 * 1024 * 1024
    finally:
        await state.aclose()


async def test_pattern_over_100k_keys_stays_within_caps(
    own_redis: RedisServer, admin: Redis
) -> None:
    await admin.execute_command(  # type: ignore[no-untyped-call]
        "DEBUG", "POPULATE", 100_000, "festivals:queue:job"
    )
    for chunk in range(0, 500, 50):
        async with admin.pipeline(transaction=False) as pipe:
            for i in range(chunk, chunk + 50):
                pipe.rpush(f"festivals:queue:tenant:{i}", "job")
            await pipe.execute()
    assert await admin.dbsize() == 100_500
    # Cap on keys: 200 keys examined at most, flagged as a metric.
    config, state = make(own_redis.url, max_keys=200, queues=[
        {"pattern": "festivals:queue:*", "name": "all"}])
    try:
        start = time.monotonic()
        result = await KIND.run(config, state)
        took = time.monotonic() - start
        assert result.success, result.detail
        assert one(result, "redis_queue_scan_cap_hit", queue="all") == 1
        assert len([m for m in result.metrics if m.name == "redis_key_size"][0].samples) <= 200
        assert took < 2.0
    finally:
        await state.aclose()
    # Cap on time: a type-filtered SCAN over the whole keyspace stops after max_scan_seconds.
    config, state = make(own_redis.url, max_keys=100_000, max_scan_seconds="50ms", scan_count=100,
                         queues=[{"pattern": "festivals:queue:*", "type": "list", "name": "l"}])
    try:
        start = time.monotonic()
        result = await KIND.run(config, state)
        took = time.monotonic() - start
        assert result.success, result.detail
        assert one(result, "redis_queue_scan_cap_hit", queue="l") == 1
        assert one(result, "redis_queue_keys", queue="l") < 500
        assert took < 1.0
    finally:
        await state.aclose()
    # The time cap is per run, shared by every pattern, and below the client timeout:
    # walking 100,500 keys 1 per call would take many seconds.
    config, state = make(own_redis.url, max_scan_seconds="10s", scan_count=1,
                         client_timeout=0.4, queues=[
                             {"pattern": f"nomatch{i}:*", "name": f"p{i}"} for i in range(3)])
    try:
        start = time.monotonic()
        result = await KIND.run(config, state)
        took = time.monotonic() - start
        assert result.success, result.detail
        assert took < 1.5
        for i in range(3):
            assert one(result, "redis_queue_scan_cap_hit", queue=f"p{i}") == 1
        # the budget is spent by the first pattern; the others get one SCAN call each
        calls = [line for line in result.detail if line.startswith("SCAN 'nomatch")]
        assert [line.split(" in ")[1].split(" ")[0] for line in calls[1:]] == ["1", "1"]
    finally:
        await state.aclose()
    # Uncapped, the same pattern finds every list key.
    config, state = make(own_redis.url, max_keys=1000, max_scan_seconds="10s", scan_count=5000,
                         queues=[{"pattern": "festivals:queue:*", "type": "list", "name": "l"}])
    try:
        result = await KIND.run(config, state)
        assert one(result, "redis_queue_scan_cap_hit", queue="l") == 0
        assert one(result, "redis_queue_keys", queue="l") == 500
        assert one(result, "redis_queue_length", queue="l") == 500
    finally:
        await state.aclose()


async def test_tls_with_custom_ca(tls_files: Path) -> None:
    tmp_path = tls_files
    server = RedisServer(
        "--tls-cert-file", str(tmp_path / "cert.pem"), "--tls-key-file", str(tmp_path / "key.pem"),
        "--tls-ca-cert-file", str(tmp_path / "ca.pem"), "--tls-auth-clients", "no", tls=True,
    )
    await anyio.to_thread.run_sync(server.start)
    try:
        config, state = make(server.url, ca_file=str(tmp_path / "ca.pem"))
        try:
            result = await KIND.run(config, state)
            assert result.success, result.detail
            assert KIND.target(config).startswith("rediss://")
        finally:
            await state.aclose()
        config, state = make(server.url, ca_file=str(tmp_path / "other.pem"))
        try:
            result = await KIND.run(config, state)
            assert result.reason == "tls", result.detail
        finally:
            await state.aclose()
        config, state = make(server.url.replace("rediss", "redis"), client_timeout=0.5)
        try:
            result = await KIND.run(config, state)  # plain text to a TLS port
            assert not result.success and result.reason in ("unreachable", "timeout", "protocol")
        finally:
            await state.aclose()
    finally:
        await anyio.to_thread.run_sync(server.kill)


async def test_unusable_ca_file_is_a_reason_not_a_crash(tls_files: Path) -> None:
    garbage = tls_files / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    for ca_file, reason in ((garbage, "tls"), (tls_files / "absent.pem", "config")):
        config, state = make("rediss://127.0.0.1:1", ca_file=str(ca_file))
        try:
            result = await KIND.run(config, state)
            assert result.reason == reason, result.detail
            assert one(result, "redis_up") == 0
        finally:
            await state.aclose()


async def test_restart_under_the_held_connection_reads_ok_on_the_next_run(
    own_redis: RedisServer,
) -> None:
    config, state = make(own_redis.url, client_timeout=1.0)
    try:
        assert (await KIND.run(config, state)).success
        await anyio.to_thread.run_sync(own_redis.kill)
        await anyio.to_thread.run_sync(own_redis.start)
        result = await KIND.run(config, state)
        assert result.success, result.detail
    finally:
        await state.aclose()


@pytest.mark.parametrize("hang_up", [True, False])
async def test_bytes_that_are_not_resp_are_protocol_as_soon_as_they_arrive(
    hang_up: bool,
) -> None:
    """4 KB without a line break, then a hang-up or nothing: not Redis either way."""
    async def serve(client: anyio.abc.SocketStream) -> None:
        async with client:
            await client.send(b"x" * 4096)
            if not hang_up:
                await anyio.sleep(30)

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, serve)
            config, state = make(f"redis://127.0.0.1:{port}", client_timeout=3.0)
            try:
                for _ in range(2):
                    start = time.monotonic()
                    result = await KIND.run(config, state)
                    assert not result.success and result.reason == "protocol", result.detail
                    assert time.monotonic() - start < 1.5
            finally:
                await state.aclose()
                tg.cancel_scope.cancel()
