"""Server cost of one ``postgres`` probe run vs. a postgres_exporter-style scrape.

Starts a private PostgreSQL (pg_stat_statements preloaded, ``track = all``), then runs, each
as its own role so pg_stat_statements separates them:

* the probe (held connection; new-client check on, and off),
* a baseline mimicking postgres_exporter 0.11 defaults: a NEW connection per scrape and
  11 statements (the collectors it runs by default).

Reports statements and server execution time per run (from pg_stat_statements), client
wall time per run, and connections opened per run. Ratios are against the baseline of the
same run; absolute times are for context.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import anyio
import psycopg

from probes.postgres import KIND, PostgresState
from tests.probes_postgres._cluster import Cluster, make_template, make_workdir

RUNS = 200

# What postgres_exporter 0.11 runs per scrape with default collectors (11 statements).
BASELINE_SQL = (
    "SELECT version()",
    "SELECT pg_is_in_recovery()",
    "SELECT name, setting, COALESCE(unit, ''), short_desc, vartype FROM pg_settings "
    "WHERE vartype IN ('bool', 'integer', 'real')",
    "SELECT datname, numbackends, xact_commit, xact_rollback, blks_read, blks_hit, "
    "tup_returned, tup_fetched, tup_inserted, tup_updated, tup_deleted, conflicts, "
    "temp_files, temp_bytes, deadlocks, blk_read_time, blk_write_time, stats_reset "
    "FROM pg_stat_database",
    "SELECT * FROM pg_stat_database_conflicts",
    "SELECT pg_database.datname, tmp.mode, COALESCE(count, 0) FROM (VALUES ('accesssharelock'),"
    " ('rowexclusivelock'), ('exclusivelock')) AS tmp(mode) CROSS JOIN pg_database LEFT JOIN "
    "(SELECT database, lower(mode) AS mode, count(*) AS count FROM pg_locks "
    "WHERE database IS NOT NULL GROUP BY database, lower(mode)) AS tmp2 "
    "ON tmp.mode = tmp2.mode AND pg_database.oid = tmp2.database",
    "SELECT * FROM pg_stat_bgwriter",
    "SELECT pg_database.datname, tmp.state, COALESCE(count, 0), COALESCE(max_tx_duration, 0) "
    "FROM (VALUES ('active'), ('idle'), ('idle in transaction'), "
    "('idle in transaction (aborted)'), ('fastpath function call'), ('disabled')) "
    "AS tmp(state) CROSS JOIN pg_database LEFT JOIN (SELECT datname, state, count(*) AS count,"
    " MAX(EXTRACT(EPOCH FROM now() - xact_start))::float AS max_tx_duration "
    "FROM pg_stat_activity GROUP BY datname, state) AS tmp2 "
    "ON tmp.state = tmp2.state AND pg_database.datname = tmp2.datname",
    "SELECT *, (case pg_is_in_recovery() when 't' then null else pg_current_wal_lsn() end) "
    "AS pg_current_wal_lsn FROM pg_stat_replication",
    "SELECT slot_name, database, active FROM pg_replication_slots",
    "SELECT archived_count, failed_count FROM pg_stat_archiver",
)


def _sql(cluster: Cluster, *statements: str) -> list[Any]:
    rows: list[Any] = []
    with psycopg.connect(cluster.admin_dsn(), autocommit=True) as conn:
        for stmt in statements:
            cur = conn.execute(stmt.encode())
            if cur.description is not None:
                rows.extend(cur.fetchall())
    return rows


def _cost(cluster: Cluster, role: str) -> tuple[float, float]:
    """(statements, server exec ms) recorded for ``role``."""
    rows = _sql(
        cluster,
        "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) "
        f"FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE rolname = '{role}'",
    )
    return float(rows[0][0]), float(rows[0][1])


async def _probe(cluster: Cluster, role: str, check_new_client: bool) -> tuple[float, float]:
    config = KIND.config_model.model_validate({
        "host": "127.0.0.1", "port": cluster.port, "user": role, "password": "bench-pw",
        "check_new_client": check_new_client,
    })
    state = PostgresState()
    try:
        result = await KIND.run(config, state)  # warm-up: opens the held connection
        assert result.success, result.detail
        await anyio.to_thread.run_sync(_sql, cluster, "SELECT pg_stat_statements_reset()")
        t0 = time.perf_counter()
        for _ in range(RUNS):
            result = await KIND.run(config, state)
            assert result.success, result.detail
        wall = (time.perf_counter() - t0) / RUNS
        opens = (await KIND.run(config, state)).metrics
        assert any(m.name == "pg_connection_opens" and m.samples[0].value == 1 for m in opens)
    finally:
        await state.aclose()
    return wall, float(RUNS)


async def _baseline(cluster: Cluster, role: str) -> float:
    await anyio.to_thread.run_sync(_sql, cluster, "SELECT pg_stat_statements_reset()")
    t0 = time.perf_counter()
    for _ in range(RUNS):
        conn = await psycopg.AsyncConnection.connect(
            host="127.0.0.1", port=cluster.port, user=role, password="bench-pw",
            dbname="postgres", autocommit=True)
        async with conn:
            for stmt in BASELINE_SQL:
                cur = await conn.execute(stmt.encode())
                await cur.fetchall()
    return (time.perf_counter() - t0) / RUNS


def main() -> None:
    base = make_workdir("fe-pgbench-")
    cluster = Cluster(make_template(base), max_connections=50)
    with (cluster.data / "postgresql.conf").open("a") as f:
        f.write("pg_stat_statements.track = all\npg_stat_statements.track_utility = on\n")
    cluster.start()
    try:
        roles = ("fe_probe", "fe_probe_nocheck", "fe_naive")
        _sql(cluster, "CREATE EXTENSION pg_stat_statements", *(
            f"CREATE ROLE {r} LOGIN PASSWORD 'bench-pw' IN ROLE pg_monitor" for r in roles))

        async def measure() -> dict[str, tuple[float, float, float, int]]:
            out: dict[str, tuple[float, float, float, int]] = {}
            for role, check in (("fe_probe", True), ("fe_probe_nocheck", False)):
                wall, _ = await _probe(cluster, role, check)
                calls, ms = await anyio.to_thread.run_sync(_cost, cluster, role)
                out[role] = (calls / RUNS, ms / RUNS, wall, 1 if check else 0)
            wall = await _baseline(cluster, "fe_naive")
            calls, ms = await anyio.to_thread.run_sync(_cost, cluster, "fe_naive")
            out["fe_naive"] = (calls / RUNS, ms / RUNS, wall, 1)
            return out

        results = anyio.run(measure)
        naive = results["fe_naive"]
        labels = {
            "fe_probe": "probe (held conn + new-client check)",
            "fe_probe_nocheck": "probe (held conn, check_new_client: false)",
            "fe_naive": "baseline: new conn + 11 statements",
        }
        print(f"{RUNS} runs each; pg_stat_statements.track=all; PostgreSQL on 127.0.0.1")
        print(f"{'':44} {'stmts/run':>10} {'server ms/run':>14} {'wall ms/run':>12} "
              f"{'new conns/run':>14} {'server-time ratio':>18}")
        for role, (stmts, ms, wall, conns) in results.items():
            ratio = ms / naive[1] if naive[1] else float("nan")
            print(f"{labels[role]:44} {stmts:10.1f} {ms:14.3f} {wall * 1000:12.2f} "
                  f"{conns:14d} {ratio:18.2f}")
        print("note: server ms is statement execution only; each new connection also costs a "
              "backend fork + authentication that pg_stat_statements does not see.")
    finally:
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
