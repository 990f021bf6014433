"""Server cost of one ``postgres`` probe run vs. a scrape of Debian's postgres_exporter.

Starts a private PostgreSQL (pg_stat_statements preloaded, ``track = all``) and Debian's
``prometheus-postgres-exporter`` (default collectors) on free loopback ports. Each side
connects as its own role to its own database, so pg_stat_statements and
``pg_stat_database.sessions`` separate them. The sides alternate in rounds; per probe run
or scrape the table reports statements, server execution time, new connections and client
wall time.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from typing import Any

import anyio
import httpx
import psycopg

from bench.peers import free_port, start, stop
from bench.report import Row
from probes.postgres import KIND, PostgresState
from tests.probes_postgres._cluster import Cluster, make_template, make_workdir

RUNS = 100
ROUNDS = 2
PEER = "/usr/bin/prometheus-postgres-exporter"

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


def _sessions(cluster: Cluster, db: str) -> float:
    rows = _sql(cluster, f"SELECT sessions FROM pg_stat_database WHERE datname = '{db}'")
    return float(rows[0][0])


def _reset(cluster: Cluster) -> None:
    _sql(cluster, "SELECT pg_stat_statements_reset()")


async def _probe_round(cluster: Cluster, check_new_client: bool) -> dict[str, float]:
    role, db = ("fe_probe", "fe_probe") if check_new_client else ("fe_nocheck", "fe_nocheck")
    config = KIND.config_model.model_validate({
        "host": "127.0.0.1", "port": cluster.port, "user": role, "password": "bench-pw",
        "dbname": db, "check_new_client": check_new_client,
    })
    state = PostgresState()
    try:
        result = await KIND.run(config, state)  # warm-up: opens the held connection
        assert result.success, result.detail
        await anyio.to_thread.run_sync(_reset, cluster)
        sessions = await anyio.to_thread.run_sync(_sessions, cluster, db)
        t0 = time.perf_counter()
        for _ in range(RUNS):
            result = await KIND.run(config, state)
            assert result.success, result.detail
        wall = (time.perf_counter() - t0) / RUNS
        opened = await anyio.to_thread.run_sync(_sessions, cluster, db) - sessions
    finally:
        await state.aclose()
    calls, ms = await anyio.to_thread.run_sync(_cost, cluster, role)
    return {"stmts": calls / RUNS, "ms": ms / RUNS, "conns": opened / RUNS, "wall": wall}


async def _peer_round(cluster: Cluster, port: int) -> dict[str, float]:
    await anyio.to_thread.run_sync(_reset, cluster)
    sessions = await anyio.to_thread.run_sync(_sessions, cluster, "fe_peer")
    async with httpx.AsyncClient(timeout=30) as http:
        t0 = time.perf_counter()
        for _ in range(RUNS):
            response = await http.get(f"http://127.0.0.1:{port}/metrics")
            response.raise_for_status()
        wall = (time.perf_counter() - t0) / RUNS
    assert "pg_up 1" in response.text, "postgres_exporter did not reach the server"
    opened = await anyio.to_thread.run_sync(_sessions, cluster, "fe_peer") - sessions
    calls, ms = await anyio.to_thread.run_sync(_cost, cluster, "fe_peer")
    return {"stmts": calls / RUNS, "ms": ms / RUNS, "conns": opened / RUNS, "wall": wall}


def _mean(rounds: list[dict[str, float]], key: str) -> float:
    return statistics.fmean(r[key] for r in rounds)


def main() -> list[Row]:
    base = make_workdir("fe-pgbench-")
    cluster = Cluster(make_template(base), max_connections=50)
    with (cluster.data / "postgresql.conf").open("a") as f:
        f.write("pg_stat_statements.track = all\npg_stat_statements.track_utility = off\n")
    cluster.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        roles = ("fe_probe", "fe_nocheck", "fe_peer")
        _sql(cluster, "CREATE EXTENSION pg_stat_statements", *(
            f"CREATE ROLE {r} LOGIN PASSWORD 'bench-pw' IN ROLE pg_monitor" for r in roles))
        _sql(cluster, *(f"CREATE DATABASE {r} OWNER {r}" for r in roles))
        for db in roles:  # the probe's slow-query part reads it in its own database
            with psycopg.connect(cluster.admin_dsn(db), autocommit=True) as conn:
                conn.execute(b"CREATE EXTENSION pg_stat_statements")
        port = free_port()
        dsn = (f"postgresql://fe_peer:bench-pw@127.0.0.1:{cluster.port}/fe_peer"
               "?sslmode=disable")
        procs.append(start(
            [PEER, f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
            port, env={"DATA_SOURCE_NAME": dsn},
        ))

        async def measure() -> tuple[list[dict[str, float]], ...]:
            ours, nocheck, peer = [], [], []
            for _ in range(ROUNDS):  # alternate, so load changes hit both sides
                ours.append(await _probe_round(cluster, True))
                peer.append(await _peer_round(cluster, port))
                nocheck.append(await _probe_round(cluster, False))
            return ours, nocheck, peer

        ours, nocheck, peer = anyio.run(measure)
    finally:
        stop(procs)
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)
    command = "make bench ARGS=postgres"
    name = "postgres_exporter 0.11"
    rows = []
    for key, what, unit, goal in (
        ("stmts", "statements", "", True),
        ("ms", "server execution time", "ms", True),
        ("wall", "client wall time", "s", False),
    ):
        rows.append(Row(
            f"postgres: {what} per run vs per scrape", _mean(ours, key), unit,
            _mean(peer, key), name, goal="<= 1.0x" if goal else "",
            met=(_mean(ours, key) <= _mean(peer, key)) if goal else None,
            command=command,
        ))
    # check_new_client opens (and closes) one connection per run on purpose: it is the
    # "can a new client get in" signal at max_connections. Without it the probe opens none.
    rows.append(Row(
        "postgres: new connections per run (check_new_client on) vs per scrape",
        _mean(ours, "conns"), "", _mean(peer, "conns"), name, command=command,
    ))
    rows.append(Row(
        "postgres: new connections per run (check_new_client: false) vs per scrape",
        _mean(nocheck, "conns"), "", _mean(peer, "conns"), name, command=command,
    ))
    rows.append(Row(
        "postgres: server time per run (check_new_client: false) vs per scrape",
        _mean(nocheck, "ms"), "ms", _mean(peer, "ms"), name, command=command,
    ))
    return rows
