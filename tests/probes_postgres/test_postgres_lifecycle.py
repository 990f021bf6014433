"""postgres probe on private clusters: stopped, paused, restarted, exhausted."""

from __future__ import annotations

import time
from typing import Any

import anyio
import psycopg
import pytest

from probes.base import Reason
from probes.postgres import KIND, PostgresState
from tests.probes_postgres._cluster import Cluster
from tests.probes_postgres.helpers import (
    admin,
    admin_exec,
    exporter_backends,
    pg_config,
    poll,
    value,
)

pytestmark = pytest.mark.anyio

async def _until_ok(config: Any, state: PostgresState, timeout: float = 15) -> None:
    async def ok() -> bool:
        return (await KIND.run(config, state)).success

    await poll(ok, timeout=timeout, every=0.1)


async def _backends(cluster: Cluster, n: int) -> None:
    async def right() -> bool:
        return await exporter_backends(cluster) == n

    await poll(right, timeout=5)


async def test_stopped_restarted_paused_no_leaks(pg_private: Cluster) -> None:
    config = pg_config(pg_private, client_timeout=1.0, connect_timeout="1s",
                       pg_stat_statements="off")
    state = PostgresState()
    try:
        assert (await KIND.run(config, state)).success
        await _backends(pg_private, 1)

        # stopped: refused from the first failed run on (the held connection's loss is
        # not a reason of its own), then recovers by itself once started again
        await anyio.to_thread.run_sync(pg_private.stop)
        down = await KIND.run(config, state)
        assert not down.success and down.reason == Reason.REFUSED, down.detail
        assert value(down, "pg_up") == 0
        again = await KIND.run(config, state)  # backing off or retrying: still down, fast
        assert not again.success and again.reason == Reason.REFUSED, again.detail
        assert value(again, "pg_up") == 0
        await anyio.to_thread.run_sync(pg_private.start)
        await _until_ok(config, state)
        await _backends(pg_private, 1)

        # restarted under the held connection: the next run replaces it and succeeds
        await anyio.to_thread.run_sync(pg_private.restart)
        back = await KIND.run(config, state)
        assert back.success, back.detail
        await _backends(pg_private, 1)

        # paused (SIGSTOP): the client deadline fires, nothing hangs
        await anyio.to_thread.run_sync(pg_private.pause)
        try:
            for _ in range(2):
                t0 = time.monotonic()
                paused = await KIND.run(config, state)
                elapsed = time.monotonic() - t0
                assert not paused.success and paused.reason == Reason.TIMEOUT, paused.detail
                assert value(paused, "pg_up") == 0
                assert elapsed < 1.5
        finally:
            await anyio.to_thread.run_sync(pg_private.resume)
        await _until_ok(config, state)
        await _backends(pg_private, 1)
        assert value(await KIND.run(config, state), "pg_connection_opens") >= 3
    finally:
        await state.aclose()
    await _backends(pg_private, 0)


async def test_cancelled_run_leaks_nothing(pg_private: Cluster) -> None:
    """The scheduler's hard deadline cancels a run mid-query: no connection is left over."""
    config = pg_config(pg_private, pg_stat_statements="off")
    state = PostgresState()
    try:
        assert (await KIND.run(config, state)).success
        await anyio.to_thread.run_sync(pg_private.pause)
        try:
            with anyio.move_on_after(0.3) as scope:
                await KIND.run(config, state)
            assert scope.cancelled_caught
        finally:
            await anyio.to_thread.run_sync(pg_private.resume)
        await _until_ok(config, state)
        await _backends(pg_private, 1)
    finally:
        await state.aclose()
    await _backends(pg_private, 0)


async def test_exhaustion_held_connection_keeps_reporting(pg_small: Cluster) -> None:
    await admin_exec(
        pg_small,
        "CREATE ROLE fe_monitor LOGIN PASSWORD 'mon-Pw-1'",
        "GRANT pg_monitor TO fe_monitor",
        "CREATE ROLE app LOGIN PASSWORD 'app-Pw-1'",
    )
    config = pg_config(pg_small, user="fe_monitor", password="mon-Pw-1",
                       pg_stat_statements="off")
    state = PostgresState()
    hogs: list[psycopg.AsyncConnection[Any]] = []
    try:
        first = await KIND.run(config, state)
        assert first.success, first.detail
        assert value(first, "pg_connections_available") == 5
        # fill the ordinary slots (5, the probe holds one) until the server refuses
        with pytest.raises(psycopg.OperationalError, match="slots are reserved"):
            for _ in range(10):
                hogs.append(await psycopg.AsyncConnection.connect(
                    host="127.0.0.1", port=pg_small.port, user="app", password="app-Pw-1",
                    dbname="postgres", autocommit=True))
        assert len(hogs) == 4
        t0 = time.monotonic()
        full = await KIND.run(config, state)
        assert time.monotonic() - t0 < 2.5
        assert not full.success and full.reason == Reason.TOO_MANY_CLIENTS, full.detail
        assert value(full, "pg_up") == 1
        assert value(full, "pg_new_client_up") == 0
        assert value(full, "pg_connections_used") == 5
        assert value(full, "pg_connections_used_ratio") == 1
        assert value(full, "pg_stat_activity_connections", datname="postgres", state="idle") == 4
        assert value(full, "pg_connections_reserved_used") == 0
        # superusers take the reserved slots: the ordinary pool is full, not "140 %" full
        supers = [await admin(pg_small) for _ in range(2)]
        try:
            beyond = await KIND.run(config, state)
        finally:
            for s in supers:
                await s.close()
        assert value(beyond, "pg_connections_used") == 7
        assert value(beyond, "pg_connections_reserved_used") == 2
        assert value(beyond, "pg_connections_used_ratio") == 1
        await hogs.pop().close()

        async def accepted() -> bool:
            result = await KIND.run(config, state)
            return result.success and value(result, "pg_new_client_up") == 1

        await poll(accepted, timeout=5)
        await _backends(pg_small, 1)
    finally:
        for hog in hogs:
            await hog.close()
        await state.aclose()


async def test_replica_and_replication_lag(pg_private: Cluster) -> None:
    replica = await anyio.to_thread.run_sync(lambda: Cluster(None, primary=pg_private))
    try:
        await anyio.to_thread.run_sync(replica.start)
        config = pg_config(replica, pg_stat_statements="off")
        state = PostgresState()
        try:
            primary = await KIND.run(pg_config(pg_private, pg_stat_statements="off"),
                                     PostgresState())
            assert value(primary, "pg_replication_is_replica") == 0
            await admin_exec(pg_private, "CREATE TABLE t (x int)", "INSERT INTO t VALUES (1)")

            async def caught_up() -> bool:
                rows = await admin_exec(replica, "SELECT count(*) FROM pg_class "
                                        "WHERE relname = 't'")
                return bool(rows[0][0])

            await poll(caught_up)
            result = await KIND.run(config, state)
            assert result.success, result.detail
            assert value(result, "pg_replication_is_replica") == 1
            assert value(result, "pg_replication_lag_seconds") == 0  # caught up
            await admin_exec(replica, "SELECT pg_wal_replay_pause()")
            await anyio.sleep(1.0)
            await admin_exec(pg_private, "INSERT INTO t VALUES (2)")

            async def lagging() -> bool:
                result = await KIND.run(config, state)
                return value(result, "pg_replication_lag_seconds") >= 1.0

            await poll(lagging, timeout=5)
        finally:
            await state.aclose()
    finally:
        await anyio.to_thread.run_sync(replica.destroy)


async def test_top_k_series_unique_with_nested_entries_and_shared_queryids(
    pg_private: Cluster,
) -> None:
    """track = all keeps a top-level and a nested entry per statement (PG14+), and two
    roles running one statement share its queryid: neither may repeat a label set."""
    await admin_exec(
        pg_private,
        "ALTER SYSTEM SET pg_stat_statements.track = 'all'",
        "SELECT pg_reload_conf()",
        "CREATE EXTENSION pg_stat_statements",
        "CREATE ROLE fe_u1 SUPERUSER",
        "CREATE ROLE fe_u2 SUPERUSER",
    )
    await admin_exec(
        pg_private,
        "SELECT pg_stat_statements_reset()",
        "SELECT pg_sleep(0.2)",
        "DO $$BEGIN PERFORM pg_sleep(0.2); END$$",  # the same statement, nested
        "SET ROLE fe_u1", "SELECT pg_sleep(0.1)", "RESET ROLE",
        "SET ROLE fe_u2", "SELECT pg_sleep(0.1)", "RESET ROLE",
    )
    state = PostgresState()
    try:
        result = await KIND.run(pg_config(pg_private, statements_info=True), state)
    finally:
        await state.aclose()
    assert result.success, result.detail
    for name in ("pg_stat_statements_top_mean_seconds", "pg_stat_statements_top_calls",
                 "pg_stat_statements_top_query"):
        samples = next(m for m in result.metrics if m.name == name).samples
        labels = [s.labels for s in samples]
        assert len(labels) == len(set(labels)), name
    (qid,) = {str(r[0]) for r in await admin_exec(
        pg_private, "SELECT queryid FROM pg_stat_statements WHERE query = 'SELECT pg_sleep($1)'")}
    calls = {
        dict(s.labels)["user"]: s.value for m in result.metrics
        if m.name == "pg_stat_statements_top_calls" for s in m.samples
        if dict(s.labels)["queryid"] == qid
    }
    assert calls == {"postgres": 2, "fe_u1": 1, "fe_u2": 1}  # top-level + nested merged
