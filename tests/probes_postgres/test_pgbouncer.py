"""pgbouncer probe against a real PgBouncer in front of the shared cluster."""

from __future__ import annotations

from typing import Any

import anyio
import psycopg
import pytest

from probes.base import Reason
from probes.pgbouncer import KIND, PgBouncerConfig, PgBouncerState
from tests.probes_postgres._cluster import Bouncer, Cluster
from tests.probes_postgres.helpers import assert_no_secret, poll, value
from tests.promtool import assert_promtool_clean

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("pg_shared")]


def bouncer_config(bouncer: Bouncer, **overrides: Any) -> PgBouncerConfig:
    values: dict[str, Any] = {"port": bouncer.port, "user": "postgres",
                              "password": bouncer.ADMIN_PASSWORD, "client_timeout": 3.0}
    values.update(overrides)
    return PgBouncerConfig.model_validate(values)


async def _client(bouncer: Bouncer) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(
        host="127.0.0.1", port=bouncer.port, dbname="appdb", user="app", password="app-pw",
        autocommit=True)


async def test_pools_waiting_clients_and_maxwait(pgbouncer: Bouncer) -> None:
    config = bouncer_config(pgbouncer)
    state = PgBouncerState()
    holders = [await _client(pgbouncer) for _ in range(2)]
    waiter = await _client(pgbouncer)
    try:
        for h in holders:  # pool_size 2: both server connections stay linked (session mode)
            await h.execute("SELECT 1")
        idle = await KIND.run(config, state)
        assert idle.success, idle.detail
        assert value(idle, "pgbouncer_up") == 1
        assert value(idle, "pgbouncer_pools_client_waiting_connections",
                     database="appdb", user="postgres") == 0
        assert value(idle, "pgbouncer_pools_client_maxwait_seconds", database="appdb") == 0
        async with anyio.create_task_group() as tg:
            async def wait_for_server() -> None:
                await waiter.execute("SELECT 1")
            tg.start_soon(wait_for_server)
            result = idle

            async def waiting() -> bool:
                nonlocal result
                result = await KIND.run(config, state)
                return value(result, "pgbouncer_pools_client_waiting_connections",
                             database="appdb", user="postgres") == 1 and value(
                    result, "pgbouncer_pools_client_maxwait_seconds", database="appdb") > 0.05

            await poll(waiting, timeout=3)
            maxwait = value(result, "pgbouncer_pools_client_maxwait_seconds", database="appdb")
            assert 0.05 < maxwait < 1.0  # sub-second precision: maxwait alone would say 0
            assert value(result, "pgbouncer_pools_server_active_connections",
                         database="appdb") == 2
            assert value(result, "pgbouncer_used_clients") >= 4
            await holders[0].close()  # frees a server: the waiter proceeds
        after = await KIND.run(config, state)
        assert value(after, "pgbouncer_pools_client_waiting_connections", database="appdb") == 0
        assert value(after, "pgbouncer_stats_queries_pooled", database="appdb") >= 3
        assert value(after, "pgbouncer_stats_client_wait_seconds", database="appdb") > 0.05
        assert "pgbouncer" not in {
            dict(s.labels).get("database")
            for m in after.metrics if m.name.startswith("pgbouncer_pools_") for s in m.samples
        }
        table = dict(after.tables)["Pools"]
        assert table[0][0] == "database" and [r[0] for r in table[1:]] == ["appdb"]
        assert_no_secret(after, pgbouncer.ADMIN_PASSWORD)
        await assert_promtool_clean("pgbouncer", [idle, after])
    finally:
        for c in (*holders, waiter):
            await c.close()
        await state.aclose()


async def test_stats_user_auth_and_forbidden(pgbouncer: Bouncer) -> None:
    state = PgBouncerState()
    try:
        stats_user = await KIND.run(bouncer_config(pgbouncer, user="app",
                                                   password="app-pw"), state)
    finally:
        await state.aclose()
    assert stats_user.success, stats_user.detail
    state = PgBouncerState()
    try:
        bad = await KIND.run(bouncer_config(pgbouncer, password="wrong-Pw-123"), state)
    finally:
        await state.aclose()
    assert not bad.success and bad.reason == Reason.AUTH
    assert value(bad, "pgbouncer_up") == 0
    assert_no_secret(bad, "wrong-Pw-123")
    for overrides, reason in (
        ({"user": "plain", "password": "plain-pw"}, Reason.FORBIDDEN),  # not a stats user
        ({"dbname": "nodb"}, Reason.NOT_FOUND),
    ):
        state = PgBouncerState()
        try:
            result = await KIND.run(bouncer_config(pgbouncer, **overrides), state)
        finally:
            await state.aclose()
        assert not result.success and result.reason == reason, result.detail
        assert_no_secret(result, "plain-pw", pgbouncer.ADMIN_PASSWORD)
    assert KIND.target(bouncer_config(pgbouncer)) == (
        f"pgbouncer://127.0.0.1:{pgbouncer.port}/pgbouncer")


async def test_bouncer_down_and_back(pg_shared: Cluster) -> None:
    bouncer = await anyio.to_thread.run_sync(Bouncer, pg_shared)
    config = bouncer_config(bouncer, client_timeout=1.0)
    state = PgBouncerState()
    try:
        assert (await KIND.run(config, state)).success
        await anyio.to_thread.run_sync(bouncer.destroy)
        down = await KIND.run(config, state)
        assert not down.success and down.reason in {Reason.REFUSED, Reason.UNREACHABLE}
        assert value(down, "pgbouncer_up") == 0
        assert state.conn is None
    finally:
        await state.aclose()


async def test_admin_console_still_answers_at_max_client_conn(pg_shared: Cluster) -> None:
    """PgBouncer exempts its admin database from max_client_conn: when applications are
    refused, the probe still reports the pools (and a refusal would be too_many_clients)."""
    bouncer = await anyio.to_thread.run_sync(lambda: Bouncer(pg_shared, max_client_conn=2))
    state = PgBouncerState()
    clients: list[psycopg.AsyncConnection[Any]] = []
    try:
        with pytest.raises(psycopg.OperationalError, match="no more connections allowed"):
            for _ in range(3):
                clients.append(await _client(bouncer))
        assert len(clients) == 2
        result = await KIND.run(bouncer_config(bouncer, user="app", password="app-pw"), state)
        assert result.success, result.detail
        assert value(result, "pgbouncer_pools_client_active_connections",
                     database="appdb", user="postgres") == 2
    finally:
        for c in clients:
            await c.close()
        await state.aclose()
        await anyio.to_thread.run_sync(bouncer.destroy)
