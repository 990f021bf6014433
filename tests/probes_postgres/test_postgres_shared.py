"""postgres probe against the shared test cluster (pg_stat_statements preloaded)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from probes.base import ProbeResult, Reason
from probes.postgres import KIND, PostgresState
from probes.postgres.sql import IDLE_SESSIONS_LIMIT, IDLE_SESSIONS_TITLE, TOP_QUERIES_TITLE
from tests.probes_postgres._cluster import SUPERUSER_PASSWORD, Cluster
from tests.probes_postgres.helpers import (
    admin,
    admin_exec,
    assert_no_secret,
    exporter_backends,
    names,
    pg_config,
    poll,
    value,
)
from tests.promtool import assert_promtool_clean
from tests.runs import run_once

pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("pg_shared")]


async def _fresh_db(cluster: Cluster, name: str, extension: bool = False) -> None:
    await admin_exec(cluster, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
                     f"CREATE DATABASE {name}")
    if extension:
        await admin_exec(cluster, "CREATE EXTENSION pg_stat_statements", dbname=name)


async def test_counts_by_state_and_thresholds(pg_shared: Cluster) -> None:
    await _fresh_db(pg_shared, "t_states")
    config = pg_config(pg_shared, dbname="t_states", idle_threshold="300ms",
                       idle_in_transaction_threshold="300ms", pg_stat_statements="off")
    state = PostgresState()
    idle = await admin(pg_shared, "t_states")
    in_tx = await admin(pg_shared, "t_states")
    busy = await admin(pg_shared, "t_states")
    try:
        first = await KIND.run(config, state)
        assert first.success, first.detail
        # pre-created series exist at 0 before anything happens; own connection excluded
        assert value(first, "pg_stat_activity_connections", datname="t_states", state="active") == 0
        assert value(first, "pg_stat_activity_connections", datname="t_states",
                     state="idle in transaction (aborted)") == 0
        assert value(first, "pg_stat_activity_connections", datname="t_states", state="idle") == 3

        await idle.execute("SELECT 1")  # idle age counts from the last query_start
        await in_tx.execute("BEGIN")
        await in_tx.execute("SELECT 1")
        async with anyio.create_task_group() as tg:
            async def sleeper() -> None:
                await busy.execute("SELECT pg_sleep(3)")
            tg.start_soon(sleeper)

            result: ProbeResult = first

            async def moved() -> bool:
                nonlocal result
                result = await KIND.run(config, state)
                return (
                    value(result, "pg_stat_activity_connections", datname="t_states",
                          state="active") == 1
                    and value(result, "pg_stat_activity_connections", datname="t_states",
                              state="idle in transaction") == 1
                    and value(result, "pg_stat_activity_idle_over_threshold") >= 1
                    and value(result, "pg_stat_activity_idle_in_transaction_over_threshold") == 1
                    and value(result, "pg_stat_activity_max_query_duration_seconds") > 0.3
                )

            await poll(moved, timeout=2.5)  # within the 3 s sleep, with slack for load
            assert value(result, "pg_stat_activity_connections", datname="t_states",
                         state="idle") == 1
            assert value(result, "pg_stat_activity_max_tx_duration", datname="t_states",
                         state="idle in transaction") > 0.3
            assert value(result, "pg_stat_activity_oldest_transaction_seconds") > 0.3
            table = dict(result.tables)[TOP_QUERIES_TITLE]
            assert table[0][0] == "pid"
            assert any("pg_sleep" in row[-1] and row[2] == "active" for row in table[1:])
            # the runbook's state != 'idle': the idle-in-transaction pid to terminate too
            assert (str(in_tx.info.backend_pid), "idle in transaction") in {
                (row[0], row[2]) for row in table[1:]}
            assert str(idle.info.backend_pid) not in {row[0] for row in table[1:]}
        # "used" counts every client backend, the exporter's own included
        assert value(result, "pg_connections_used") >= 4
        assert value(result, "pg_settings_max_connections") == 20
        assert value(result, "pg_settings_superuser_reserved_connections") == 3
        assert value(result, "pg_connections_available") == 17
        assert value(result, "pg_connections_used_ratio") == pytest.approx(
            value(result, "pg_connections_used") / 17)
        assert value(result, "pg_replication_is_replica") == 0
        assert value(result, "pg_replication_lag_seconds") == 0
        assert value(result, "pg_up") == 1
        assert value(result, "pg_new_client_up") == 1
        assert value(result, "pg_connection_opens") == 1
        await assert_promtool_clean("postgres", [first, result])
    finally:
        for c in (idle, in_tx, busy):
            await c.close()
        await state.aclose()


async def test_statement_timeout_application_name_and_target(pg_shared: Cluster) -> None:
    config = pg_config(pg_shared, statement_timeout="750ms")
    state = PostgresState()
    try:
        result = await KIND.run(config, state)
        assert result.success, result.detail
        assert state.conn is not None
        cur = await state.conn.execute("SHOW statement_timeout")
        assert await cur.fetchone() == ("750ms",)
        assert await exporter_backends(pg_shared) == 1
        assert KIND.target(config) == f"postgres://127.0.0.1:{pg_shared.port}/postgres"
        assert_no_secret(result, SUPERUSER_PASSWORD)
    finally:
        await state.aclose()
    await poll(lambda: _backends_are(pg_shared, 0))


async def test_new_client_series_absent_when_the_check_is_off(pg_shared: Cluster) -> None:
    state = PostgresState()
    try:
        for _ in range(2):  # the run that opens the held connection, then a steady one
            result = await KIND.run(pg_config(pg_shared, check_new_client=False), state)
            assert result.success, result.detail
            assert "pg_up" in names(result)
            assert not {"pg_new_client_up", "pg_new_client_connect_seconds"} & names(result)
    finally:
        await state.aclose()


async def _backends_are(cluster: Cluster, n: int) -> bool:
    return await exporter_backends(cluster) == n


async def test_dsn_and_password_file(pg_shared: Cluster, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text(SUPERUSER_PASSWORD + "\n")
    dsn = f"postgresql://postgres:{SUPERUSER_PASSWORD}@127.0.0.1:{pg_shared.port}/postgres"
    for config in (
        pg_config(pg_shared, password=None, password_file=str(pw)),
        KIND.config_model.model_validate({"dsn": dsn, "reconnect_backoff_max": 0.2}),
    ):
        state = PostgresState()
        try:
            result = await KIND.run(config, state)
            assert result.success, result.detail
            assert SUPERUSER_PASSWORD not in KIND.target(config)
            assert_no_secret(result, SUPERUSER_PASSWORD)
        finally:
            await state.aclose()
    with pytest.raises(ValueError, match="not a valid libpq DSN") as err:
        KIND.config_model.model_validate({"dsn": "host=x password='oops"})
    assert "oops" not in str(err.value)


async def test_least_privilege_role_and_role_without_pg_monitor(pg_shared: Cluster) -> None:
    # The exact lines docs/probes/postgres.md shows:
    await admin_exec(
        pg_shared,
        "DROP ROLE IF EXISTS fe_monitor",
        "CREATE ROLE fe_monitor LOGIN PASSWORD 'mon-Pw-1' CONNECTION LIMIT 3",
        "GRANT pg_monitor TO fe_monitor",
        "GRANT CONNECT ON DATABASE postgres TO fe_monitor",
        "DROP ROLE IF EXISTS fe_nomon",
        "CREATE ROLE fe_nomon LOGIN PASSWORD 'nomon-Pw-1'",
    )
    other = await admin(pg_shared)  # a superuser session the probe must see
    busy = await admin(pg_shared)
    try:
        async with anyio.create_task_group() as tg:
            async def sleeper() -> None:
                await busy.execute("SELECT pg_sleep(2)")  # outlasts both runs
            tg.start_soon(sleeper)
            await anyio.sleep(0.2)
            state = PostgresState()
            try:
                good = await KIND.run(pg_config(pg_shared, user="fe_monitor",
                                                password="mon-Pw-1"), state)
            finally:
                await state.aclose()
            state = PostgresState()
            try:
                bad = await KIND.run(pg_config(pg_shared, user="fe_nomon",
                                               password="nomon-Pw-1"), state)
            finally:
                await state.aclose()
        assert good.success, good.detail
        assert value(good, "pg_role_pg_monitor") == 1
        assert value(good, "pg_stat_activity_connections", datname="postgres", state="active") >= 1
        table = dict(good.tables)[TOP_QUERIES_TITLE]
        assert any("pg_sleep" in row[-1] for row in table[1:])
        assert value(good, "pg_stat_statements_available") == 1

        assert not bad.success and bad.reason == Reason.FORBIDDEN
        assert value(bad, "pg_role_pg_monitor") == 0
        assert value(bad, "pg_up") == 1  # still reports what it can see
        assert value(bad, "pg_stat_activity_connections", datname="postgres", state="unknown") >= 1
        assert_no_secret(good, "mon-Pw-1")
        assert_no_secret(bad, "nomon-Pw-1")
    finally:
        await other.close()
        await busy.close()


async def test_wrong_password_unknown_database(pg_shared: Cluster) -> None:
    for overrides, reason in (
        ({"password": "wrong-Pw-xyz"}, Reason.AUTH),
        ({"user": "nobody_here", "password": "wrong-Pw-xyz"}, Reason.AUTH),
        ({"dbname": "no_such_db"}, Reason.NOT_FOUND),
    ):
        state = PostgresState()
        try:
            result = await KIND.run(pg_config(pg_shared, **overrides), state)
        finally:
            await state.aclose()
        assert not result.success
        assert result.reason == reason, (overrides, result.detail)
        assert value(result, "pg_up") == 0
        assert value(result, "pg_new_client_up") == 0
        assert_no_secret(result, "wrong-Pw-xyz", SUPERUSER_PASSWORD)
    # an unreadable password file is a config problem, named without its content
    state = PostgresState()
    result = await KIND.run(pg_config(pg_shared, password=None,
                                      password_file="/nonexistent/pw"), state)
    assert result.reason == Reason.CONFIG and "/nonexistent/pw" in result.detail[0]


async def test_missing_extension(pg_shared: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    await _fresh_db(pg_shared, "t_noext")
    state = PostgresState()
    try:
        result = await KIND.run(pg_config(pg_shared, dbname="t_noext"), state)
        again = await KIND.run(pg_config(pg_shared, dbname="t_noext"), state)
    finally:
        await state.aclose()
    assert result.success and again.success
    assert value(result, "pg_stat_statements_available") == 0
    assert "pg_stat_statements_top_mean_seconds" not in names(result)
    assert value(result, "pg_stat_activity_connections", datname="t_noext", state="idle") == 0
    logs = [r.getMessage() for r in caplog.records if "pg_stat_statements" in r.getMessage()]
    assert len(logs) == 1 and "not installed" in logs[0]  # logged once, not every run
    state = PostgresState()
    try:
        strict = await KIND.run(
            pg_config(pg_shared, dbname="t_noext", pg_stat_statements="require"), state)
    finally:
        await state.aclose()
    assert not strict.success and strict.reason == "extension_missing"
    assert value(strict, "pg_up") == 1


async def test_slow_queries_top_k_bounded(pg_shared: Cluster) -> None:
    await _fresh_db(pg_shared, "t_pgss", extension=True)
    await admin_exec(pg_shared, "SELECT pg_stat_statements_reset()", dbname="t_pgss")
    await admin_exec(pg_shared, "SELECT pg_sleep(0.4) AS deliberately_slow", dbname="t_pgss")
    # 1,000 distinct statements (IN lists of different length have different query ids)
    batch = ";".join(
        "SELECT 1 WHERE 1 IN (" + ",".join(["1"] * i) + ")" for i in range(1, 1001)
    )
    await admin_exec(pg_shared, batch, dbname="t_pgss")
    config = pg_config(pg_shared, dbname="t_pgss", statements_top_k=7, statements_info=True,
                       query_text_length=40)
    state = PostgresState()
    try:
        result = await KIND.run(config, state)
        second = await KIND.run(config, state)
    finally:
        await state.aclose()
    assert result.success, result.detail
    assert value(result, "pg_stat_statements_available") == 1
    assert value(result, "pg_stat_statements_entries") >= 1000
    top = next(m for m in result.metrics if m.name == "pg_stat_statements_top_mean_seconds")
    assert len(top.samples) == 7
    assert {k for s in top.samples for k, _ in s.labels} == {"queryid", "datname", "user"}
    first = top.samples[0]
    assert first.value >= 0.4
    assert dict(first.labels)["datname"] == "t_pgss"
    info = next(m for m in result.metrics if m.name == "pg_stat_statements_top_query")
    texts = {dict(s.labels)["queryid"]: dict(s.labels)["query"] for s in info.samples}
    assert "pg_sleep" in texts[dict(first.labels)["queryid"]]
    assert all(len(t) <= 40 for t in texts.values())
    table = dict(result.tables)["Slowest statements (mean execution time)"]
    assert "pg_sleep" in table[1][-1]
    # totals do not depend on K: calls of the 1,000 + the slow one at least
    assert value(result, "pg_stat_statements_calls", datname="t_pgss") >= 1001
    assert value(result, "pg_stat_statements_seconds", datname="t_pgss") >= 0.4
    assert value(second, "pg_stat_statements_calls", datname="t_pgss") >= value(
        result, "pg_stat_statements_calls", datname="t_pgss")
    assert len(state.texts) <= 28


async def test_broken_held_connection_is_replaced(pg_shared: Cluster) -> None:
    """A terminated held connection (pg_terminate_backend, idle_session_timeout) is replaced
    in the same run: the server is up, so the run succeeds."""
    config = pg_config(pg_shared, reconnect_backoff_max=0.05)
    state = PostgresState()
    try:
        assert (await KIND.run(config, state)).success
        await admin_exec(pg_shared, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'festivals-exporter'")
        replaced = await KIND.run(config, state)
        assert replaced.success, replaced.detail
        assert value(replaced, "pg_up") == 1 and value(replaced, "pg_connection_opens") == 2
        assert any(line.startswith("held connection lost") for line in replaced.detail)
        assert await exporter_backends(pg_shared) == 1
    finally:
        await state.aclose()
    assert state.conn is None


async def test_sessions_that_never_ran_a_query_count_as_idle(pg_shared: Cluster) -> None:
    """A pool's spare connections have no query_start; they are what the runbook kills."""
    await _fresh_db(pg_shared, "t_unused")
    config = pg_config(pg_shared, idle_threshold="300ms", pg_stat_statements="off")
    spare = [await admin(pg_shared, "t_unused") for _ in range(10)]
    try:
        rows = await admin_exec(pg_shared, "SELECT count(*) FROM pg_stat_activity WHERE "
                                "datname = 't_unused' AND query_start IS NULL")
        assert rows[0][0] == 10
        await anyio.sleep(0.4)
        result = await run_once(KIND, config)
        assert result.success, result.detail
        assert value(result, "pg_stat_activity_idle_over_threshold") >= 10
        oldest = value(result, "pg_stat_activity_oldest_idle_seconds")
        assert oldest is not None and oldest >= 0.3
        # The table names the pids the runbook's pg_terminate_backend step would end.
        table = dict(result.tables)[IDLE_SESSIONS_TITLE]
        ages = [float(age) for _pid, age, _db, _user in table[1:]]
        assert ages == sorted(ages, reverse=True) and len(ages) <= IDLE_SESSIONS_LIMIT
        pids = {int(pid) for pid, _age, db, _user in table[1:] if db == "t_unused"}
        assert pids == {c.info.backend_pid for c in spare}
    finally:
        for c in spare:
            await c.close()


async def test_twelve_runs_on_one_held_connection(pg_shared: Cluster) -> None:
    """Every statement of a run is repeated on one connection: nothing may change on the
    sixth use (psycopg prepares a query then, unless told not to)."""
    state = PostgresState()
    results: list[ProbeResult] = []
    try:
        for _ in range(12):
            results.append(await KIND.run(pg_config(pg_shared, statements_info=True), state))
            # the new-client check's backend exits a moment after its close
            await poll(lambda: _backends_are(pg_shared, 1))
    finally:
        await state.aclose()
    assert [(n, r.reason) for n, r in enumerate(results) if not r.success] == []
    assert {value(r, "pg_connection_opens") for r in results} == {1}
    assert all(value(r, "pg_stat_statements_available") == 1 for r in results)
    assert all(value(r, "pg_new_client_up") == 1 for r in results)


async def test_the_probes_own_statements_are_not_among_the_slowest(pg_shared: Cluster) -> None:
    """On a quiet database the probe's own statements (activity, pg_stat_statements,
    columns, texts) were most of the "slowest statements" the runbook's step 2 reads."""
    await admin_exec(pg_shared, "SELECT pg_stat_statements_reset()",
                     "SELECT pg_sleep(0.01)", "SELECT count(*) FROM pg_class")
    state = PostgresState()
    try:
        for _ in range(12):
            result = await KIND.run(pg_config(pg_shared, statements_top_k=50), state)
            assert result.success, result.detail
    finally:
        await state.aclose()
    texts = [row[-1] for row in dict(result.tables)["Slowest statements (mean execution time)"][1:]]
    assert any("pg_sleep" in t for t in texts), texts
    own = [t for t in texts if any(mark in t for mark in (
        "json_build_object", "pg_stat_statements(", "pg_attribute"))]
    assert own == []
