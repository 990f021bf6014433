"""``pgbouncer`` probe: pools, stats and lists from PgBouncer's admin console.

Reads ``SHOW POOLS``, ``SHOW STATS`` and ``SHOW LISTS`` over one held connection to the
``pgbouncer`` admin database (reconnected when it breaks). Keeps ``maxwait_us``, which
pgbouncer_exporter drops, so the longest client wait has sub-second precision. Metric names
follow pgbouncer_exporter. See ``docs/probes/pgbouncer.md``.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import anyio
import psycopg

from probes.base import (
    Metric,
    ProbeKind,
    ProbeResult,
    Reason,
    Sample,
    gauge,
    info,
)
from probes.common.libpq import (
    CONNECTION_REASONS,
    PgConnConfig,
    close_quietly,
    connect,
    error_summary,
    reason_for_pg_error,
)

Conn = psycopg.AsyncConnection[tuple[Any, ...]]


class PgBouncerConfig(PgConnConfig):
    port: int = 6432
    dbname: str = "pgbouncer"
    include_admin_pool: bool = False


class PgBouncerState:
    def __init__(self) -> None:
        self.conn: Conn | None = None
        self.lock = anyio.Lock()

    async def drop(self) -> None:
        conn, self.conn = self.conn, None
        await close_quietly(conn)

    async def aclose(self) -> None:
        await self.drop()


# SHOW POOLS column -> (metric, help). Per database and user.
_POOL_GAUGES = (
    ("cl_active", "pgbouncer_pools_client_active_connections",
     "Clients linked to a server connection or idle with no queries waiting."),
    ("cl_waiting", "pgbouncer_pools_client_waiting_connections",
     "Clients that sent queries but have no server connection yet."),
    ("sv_active", "pgbouncer_pools_server_active_connections",
     "Server connections linked to a client."),
    ("sv_idle", "pgbouncer_pools_server_idle_connections",
     "Server connections unused and immediately usable."),
    ("sv_used", "pgbouncer_pools_server_used_connections",
     "Server connections idle longer than server_check_delay (need a check query)."),
    ("sv_tested", "pgbouncer_pools_server_testing_connections",
     "Server connections running server_reset_query or server_check_query."),
    ("sv_login", "pgbouncer_pools_server_login_connections",
     "Server connections currently logging in."),
)
# SHOW STATS column -> (counter name without _total, scale, help). Per database.
_STATS_COUNTERS = (
    ("total_xact_count", "pgbouncer_stats_sql_transactions_pooled", 1.0,
     "SQL transactions pooled."),
    ("total_query_count", "pgbouncer_stats_queries_pooled", 1.0, "SQL queries pooled."),
    ("total_received", "pgbouncer_stats_received_bytes", 1.0,
     "Bytes received from clients."),
    ("total_sent", "pgbouncer_stats_sent_bytes", 1.0, "Bytes sent to clients."),
    ("total_xact_time", "pgbouncer_stats_server_in_transaction_seconds", 1e-6,
     "Seconds spent in transactions (connected to a server)."),
    ("total_query_time", "pgbouncer_stats_queries_duration_seconds", 1e-6,
     "Seconds spent running queries on servers."),
    ("total_wait_time", "pgbouncer_stats_client_wait_seconds", 1e-6,
     "Seconds clients spent waiting for a server."),
)
_LISTS = {
    "databases": "Databases configured.",
    "users": "Users known.",
    "pools": "Pools.",
    "free_clients": "Free client slots.",
    "used_clients": "Client connections in use.",
    "login_clients": "Clients in login state.",
    "free_servers": "Free server slots.",
    "used_servers": "Server connections in use.",
    "dns_names": "DNS names in the cache.",
    "dns_zones": "DNS zones in the cache.",
    "dns_queries": "DNS queries in flight.",
    "dns_pending": "Pending DNS queries.",
}


async def _show(conn: Conn, what: str) -> list[dict[str, Any]]:
    cur = await conn.execute(f"SHOW {what}")
    cols = [d.name for d in cur.description or ()]
    return [dict(zip(cols, row, strict=True)) for row in await cur.fetchall()]


def _num(value: Any) -> float:
    if isinstance(value, int | float | Decimal):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return 0.0


def with_configured(
    pools: list[dict[str, Any]], stats: list[dict[str, Any]], databases: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pools and stats plus all-zero rows for configured databases no client has used yet.

    PgBouncer creates a pool (and its stats row) only when the first client logs in, so
    "0 clients waiting" would otherwise be an absent series until then. The placeholder
    pool's ``user`` is the database's forced user (the pool a client will get), else "".
    """
    pooled = {str(p.get("database")) for p in pools}
    counted = {str(s.get("database")) for s in stats}
    pools, stats = list(pools), list(stats)
    for db in databases:
        name = str(db.get("name", ""))
        if not name or name == "*":  # the wildcard fallback is not a database of its own
            continue
        if name not in pooled:
            pools.append({"database": name, "user": str(db.get("force_user") or ""),
                          "pool_mode": db.get("pool_mode") or ""})
        if name not in counted:
            stats.append({"database": name})
    return pools, stats


def _up(value: int) -> Metric:
    return gauge("pgbouncer_up", "1 if the admin console answered this run.", value)


def _metrics(
    config: PgBouncerConfig,
    version: str,
    pools: list[dict[str, Any]],
    stats: list[dict[str, Any]],
    lists: list[dict[str, Any]],
) -> list[Metric]:
    out: list[Metric] = [_up(1), info("pgbouncer_version", "PgBouncer version.",
                                      {"version": version})]

    def pool_labels(p: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        return (("database", str(p.get("database", ""))), ("user", str(p.get("user", ""))))

    for column, name, help_ in _POOL_GAUGES:
        out.append(Metric(name, help_, "gauge",
                          tuple(Sample(_num(p.get(column, 0)), pool_labels(p)) for p in pools)))
    out.append(Metric(
        "pgbouncer_pools_client_maxwait_seconds",
        "Age of the oldest waiting client, microsecond precision (maxwait + maxwait_us).",
        "gauge",
        tuple(Sample(_num(p.get("maxwait", 0)) + _num(p.get("maxwait_us", 0)) / 1e6,
                     pool_labels(p)) for p in pools),
    ))
    for column, name, scale, help_ in _STATS_COUNTERS:
        out.append(Metric(name, help_, "counter", tuple(
            Sample(_num(s.get(column, 0)) * scale, (("database", str(s.get("database", ""))),))
            for s in stats)))
    seen = {str(row.get("list")): _num(row.get("items", 0)) for row in lists}
    for list_name, help_ in _LISTS.items():
        if list_name in seen:
            out.append(gauge(f"pgbouncer_{list_name}", help_ + " (SHOW LISTS)", seen[list_name]))
    return out


def _pools_table(pools: list[dict[str, Any]]) -> tuple[str, tuple[tuple[str, ...], ...]]:
    head: tuple[str, ...] = ("database", "user", "cl_active", "cl_waiting", "sv_active",
                             "sv_idle", "sv_used", "maxwait s", "pool_mode")
    rows: list[tuple[str, ...]] = [head]
    for p in pools:
        wait = _num(p.get("maxwait", 0)) + _num(p.get("maxwait_us", 0)) / 1e6
        rows.append((str(p.get("database")), str(p.get("user")), *(
            str(p.get(c, 0)) for c in ("cl_active", "cl_waiting", "sv_active", "sv_idle",
                                        "sv_used")), f"{wait:.6f}", str(p.get("pool_mode"))))
    return ("Pools", tuple(rows))


def reason_for_bouncer_error(exc: BaseException) -> str:
    """As :func:`reason_for_pg_error`, plus PgBouncer's "not allowed" for a user in
    neither ``admin_users`` nor ``stats_users`` (but not its "no more connections allowed").
    """
    reason = reason_for_pg_error(exc)
    if (
        isinstance(exc, psycopg.Error)
        and reason != Reason.TOO_MANY_CLIENTS
        and "not allowed" in str(exc).lower()
    ):
        return Reason.FORBIDDEN
    return reason


_SHOWS = ("VERSION", "POOLS", "STATS", "LISTS", "DATABASES")


async def _read(
    config: PgBouncerConfig, state: PgBouncerState, params: dict[str, Any], detail: list[str]
) -> list[list[dict[str, Any]]]:
    """The ``SHOW`` answers, on the held connection (opened if needed).

    A held connection that PgBouncer closed since the last run (a restart, a
    ``client_idle_timeout``) is replaced at once, in this run: its loss is not the state
    of PgBouncer, so it never becomes the run's reason (the fresh attempt says what is).
    """
    if state.conn is not None and (state.conn.closed or state.conn.broken):
        await state.drop()
    for attempt in range(2):
        fresh = state.conn is None
        if state.conn is None:
            state.conn = await connect(params, config.effective_connect_timeout())
            detail.append("opened the admin console connection")
        conn = state.conn
        t0 = time.perf_counter()
        try:
            answers = [await _show(conn, what) for what in _SHOWS]
        except psycopg.OperationalError as exc:
            if fresh or attempt or not (conn.closed or conn.broken):
                raise
            detail.append(f"held connection lost ({error_summary(exc)}): reconnecting")
            await state.drop()
            continue
        detail.append(f"SHOW {'/'.join(_SHOWS)}: {(time.perf_counter() - t0) * 1000:.2f} ms, "
                      f"{len(answers[1])} pools")
        return answers
    raise AssertionError("unreachable: the second attempt returns or raises")


async def run(config: PgBouncerConfig, state: PgBouncerState) -> ProbeResult:
    detail: list[str] = []
    async with state.lock:
        try:
            params = await config.read_conn_params()
        except ValueError as exc:
            return ProbeResult.fail(Reason.CONFIG, [_up(0)], [f"config: {exc}"])
        try:
            with anyio.fail_after(config.client_timeout):
                version_rows, pools, stats, lists, databases = await _read(
                    config, state, params, detail)
        except TimeoutError:
            await state.drop()
            detail.append(f"deadline of {config.client_timeout:g}s exceeded")
            return ProbeResult.fail(Reason.TIMEOUT, [_up(0)], detail)
        except (psycopg.Error, OSError) as exc:
            reason = reason_for_bouncer_error(exc)
            await state.drop()
            detail.append(f"admin console failed: {error_summary(exc)} -> {reason}")
            return ProbeResult.fail(reason, [_up(0)], detail)
    version = str(version_rows[0].get("version", "")) if version_rows else ""
    pools, stats = with_configured(pools, stats, databases)
    if not config.include_admin_pool:
        pools = [p for p in pools if p.get("database") != "pgbouncer"]
        stats = [s for s in stats if s.get("database") != "pgbouncer"]
    metrics = _metrics(config, version, pools, stats, lists)
    return ProbeResult.ok(metrics, detail, [_pools_table(pools)])


def _target(config: PgBouncerConfig) -> str:
    return f"pgbouncer://{config.target_text()}"


KIND: ProbeKind[PgBouncerConfig, PgBouncerState] = ProbeKind(
    name="pgbouncer",
    config_model=PgBouncerConfig,
    run=run,
    new_state=lambda config: PgBouncerState(),
    target=_target,
    reasons=CONNECTION_REASONS,
    failure_metrics=(_up(0),),
    sample_labels=frozenset({"database", "user", "version"}),
)
