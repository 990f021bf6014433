"""pgbouncer probe against a real PgBouncer in front of the shared cluster."""

from __future__ import annotations

from typing import Any

import anyio
import psycopg
import pytest

from probes.base import ProbeResult, Reason
from probes.pgbouncer import KIND, PgBouncerConfig, PgBouncerState
from tests.probes_postgres._cluster import Bouncer, Cluster
from tests.probes_postgres.helpers import assert_no_secret, poll, value
from tests.promtool import assert_promtool_clean
from tests.runs import run_once

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
    """A stopped PgBouncer reads refused from the first failed run on (the held connection's
    loss is not a reason of its own); a restarted one is back on the next run."""
    bouncer = await anyio.to_thread.run_sync(Bouncer, pg_shared)
    config = bouncer_config(bouncer, client_timeout=1.0)
    state = PgBouncerState()
    try:
        assert (await KIND.run(config, state)).success
        await anyio.to_thread.run_sync(bouncer.stop)
        for _ in range(3):
            down = await KIND.run(config, state)
            assert not down.success and down.reason == Reason.REFUSED, down.detail
            assert value(down, "pgbouncer_up") == 0
            assert state.conn is None
        await anyio.to_thread.run_sync(bouncer.start)
        assert (await KIND.run(config, state)).success
        held = state.conn
        await anyio.to_thread.run_sync(bouncer.stop)
        await anyio.to_thread.run_sync(bouncer.start)
        back = await KIND.run(config, state)
        assert back.success, back.detail
        assert state.conn is not held
    finally:
        await state.aclose()
        await anyio.to_thread.run_sync(bouncer.destroy)


async def test_configured_pools_exist_before_the_first_client(pg_shared: Cluster) -> None:
    bouncer = await anyio.to_thread.run_sync(Bouncer, pg_shared)
    state = PgBouncerState()
    try:
        first = await KIND.run(bouncer_config(bouncer), state)
        assert first.success, first.detail
        for name in ("pgbouncer_pools_client_waiting_connections",
                     "pgbouncer_pools_client_maxwait_seconds",
                     "pgbouncer_pools_server_active_connections"):
            assert value(first, name, database="appdb", user="postgres") == 0
        assert value(first, "pgbouncer_stats_client_wait_seconds", database="appdb") == 0
        assert [r[:4] for r in dict(first.tables)["Pools"][1:]] == [
            ("appdb", "postgres", "0", "0")]
        client = await _client(bouncer)
        try:
            await client.execute("SELECT 1")
            used = await KIND.run(bouncer_config(bouncer), state)
        finally:
            await client.close()
        samples = [s.labels for m in used.metrics
                   if m.name == "pgbouncer_pools_client_waiting_connections" for s in m.samples]
        assert samples == [(("database", "appdb"), ("user", "postgres"))]  # no duplicate
        await assert_promtool_clean("pgbouncer", [first, used])
    finally:
        await state.aclose()
        await anyio.to_thread.run_sync(bouncer.destroy)


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


async def test_twelve_runs_on_one_held_connection(pgbouncer: Bouncer) -> None:
    """psycopg prepares a query after five executions on one connection; the admin console
    rejects the extended protocol, so without prepare_threshold=None run six failed."""
    config = bouncer_config(pgbouncer)
    state = PgBouncerState()
    results: list[ProbeResult] = []
    conns: set[int | None] = set()
    try:
        for _ in range(12):
            results.append(await KIND.run(config, state))
            conns.add(None if state.conn is None else id(state.conn))
    finally:
        await state.aclose()
    failed = [(n, r.reason, r.detail) for n, r in enumerate(results, 1) if not r.success]
    assert not failed
    assert all(value(r, "pgbouncer_up") == 1 for r in results)
    opened = [n for n, r in enumerate(results) if "opened the admin console connection"
              in r.detail]
    assert opened == [0] and len(conns) == 1 and None not in conns


async def test_scram_wrong_password_is_auth(pg_shared: Cluster) -> None:
    """libpq reports a failed SCRAM exchange as "SASL authentication failed" without a
    SQLSTATE."""
    bouncer = await anyio.to_thread.run_sync(
        lambda: Bouncer(pg_shared, auth_type="scram-sha-256"))
    try:
        good = await run_once(KIND, bouncer_config(bouncer))
        assert good.success, good.detail
        bad = await run_once(KIND, bouncer_config(bouncer, password="wrong-Pw-123"))
        assert not bad.success and bad.reason == Reason.AUTH, bad.detail
        assert_no_secret(bad, "wrong-Pw-123")
    finally:
        await anyio.to_thread.run_sync(bouncer.destroy)
