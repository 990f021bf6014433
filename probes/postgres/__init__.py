"""``postgres`` probe: up, pool usage, long/idle transactions and slow queries.

Keeps ONE long-lived connection (``application_name=festivals-exporter``) in the probe
state and reconnects with exponential backoff, so activity metrics keep flowing when the
server is at ``max_connections``. A separate short connection per run answers "can a NEW
client connect right now" (reason ``too_many_clients`` when refused for capacity). Every
statement is bounded server-side by ``statement_timeout`` (a startup option) and
client-side by the run deadline. See ``docs/probes/postgres.md``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

import anyio
import psycopg
from pydantic import Field, field_validator

from probes.base import (
    Duration,
    Metric,
    ProbeKind,
    ProbeResult,
    Reason,
    counter,
    gauge,
)
from probes.common.libpq import (
    CONNECTION_REASONS,
    PgConnConfig,
    close_quietly,
    connect,
    error_summary,
    reason_for_pg_error,
)
from probes.postgres import sql as q

log = logging.getLogger(__name__)

EXTENSION_MISSING = "extension_missing"

Conn = psycopg.AsyncConnection[tuple[Any, ...]]


class PostgresConfig(PgConnConfig):
    statement_timeout: Duration = 2.0
    idle_threshold: Duration = 600.0
    idle_in_transaction_threshold: Duration = 60.0
    top_queries: int = Field(default=5, ge=0, le=100)
    query_text_length: int = Field(default=200, ge=16, le=4096)
    pg_stat_statements: Literal["auto", "require", "off"] = "auto"
    statements_top_k: int = Field(default=10, ge=0, le=100)
    statements_info: bool = False
    check_new_client: bool = True
    reconnect_backoff_max: Duration = 30.0

    @field_validator("pg_stat_statements", mode="before")
    @classmethod
    def _off_as_yaml_types_it(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted ``off`` as false: the documented value must work
        return "off" if value is False else value

    def effective_statement_timeout(self) -> float:
        return max(0.001, min(self.statement_timeout, self.client_timeout))


class PostgresState:
    """The held connection, its reconnect backoff and per-connection caches."""

    def __init__(self) -> None:
        self.conn: Conn | None = None
        self.failures = 0
        self.next_connect = 0.0
        self.last_reason = ""
        self.opens = 0
        self.pgss_columns: tuple[str, str] | None = None
        self.pgss_logged = False
        self.texts: dict[str, str] = {}
        # queryids of the probe's own statements, left out of the slow-query figures
        self.own_query_ids: set[int] = set()
        self.lock = anyio.Lock()

    async def drop(self) -> None:
        conn, self.conn = self.conn, None
        self.pgss_columns = None
        await close_quietly(conn)

    async def aclose(self) -> None:
        await self.drop()

    def schedule_retry(self, reason: str, cap: float) -> None:
        self.failures += 1
        self.last_reason = reason
        self.next_connect = time.monotonic() + min(cap, 0.5 * 2 ** (self.failures - 1))


def _target(config: PostgresConfig) -> str:
    return f"postgres://{config.target_text()}"


class _Run:
    """Accumulates metrics, detail lines and tables of one run."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}
        self.detail: list[str] = []
        self.tables: list[tuple[str, tuple[tuple[str, ...], ...]]] = []
        self.held_done = False  # the held connection finished its work this run

    def add(self, *metrics: Metric) -> None:
        for m in metrics:
            self.metrics[m.name] = m

    def result(self, reason: str = "") -> ProbeResult:
        if reason:
            return ProbeResult.fail(reason, self.metrics.values(), self.detail, self.tables)
        return ProbeResult.ok(self.metrics.values(), self.detail, self.tables)


def _up(value: int) -> Metric:
    return gauge("pg_up", "1 if the held connection answered SELECT 1 this run.", value)


def _new_client(value: int, seconds: float = 0.0) -> list[Metric]:
    return [
        gauge(
            "pg_new_client_up",
            "1 if a NEW connection could be opened this run (0: refused, e.g. too many clients).",
            value,
        ),
        gauge(
            "pg_new_client_connect_seconds",
            "Time to open (and authenticate) the new connection; 0 if it failed.",
            seconds,
        ),
    ]


async def run(config: PostgresConfig, state: PostgresState) -> ProbeResult:
    out = _Run()
    out.add(_up(0))
    if config.check_new_client:  # absent when off: a 0 would read as "refused"
        out.add(*_new_client(0))
    async with state.lock:
        out.add(counter("pg_connection_opens", "Held connections opened by this probe.",
                        state.opens))
        try:
            params = await config.read_conn_params()
        except ValueError as exc:
            out.detail.append(f"config: {exc}")
            return out.result(Reason.CONFIG)
        timeout_ms = int(config.effective_statement_timeout() * 1000)
        held_params = dict(params)
        options = f"{held_params.get('options', '')} -c statement_timeout={timeout_ms}".strip()
        held_params["options"] = options
        try:
            with anyio.fail_after(config.client_timeout):
                return await _run(config, state, params, held_params, out)
        except TimeoutError:
            if out.held_done:  # only the new-client check hung: keep the held connection
                out.detail.append(f"deadline of {config.client_timeout:g}s exceeded during "
                                  "the new-client check")
                return out.result(Reason.TIMEOUT)
            out.add(_up(0))
            out.detail.append(f"deadline of {config.client_timeout:g}s exceeded: dropped "
                              "the held connection")
            await state.drop()
            state.schedule_retry(Reason.TIMEOUT, config.reconnect_backoff_max)
            return out.result(Reason.TIMEOUT)


async def _run(
    config: PostgresConfig,
    state: PostgresState,
    params: dict[str, Any],
    held_params: dict[str, Any],
    out: _Run,
    replacing: bool = False,
) -> ProbeResult:
    connect_timeout = config.effective_connect_timeout()
    fresh = False
    if state.conn is not None and (state.conn.closed or state.conn.broken):
        await state.drop()
    if state.conn is None:
        wait = state.next_connect - time.monotonic()
        if wait > 0:
            out.detail.append(f"held connection down ({state.last_reason}); "
                              f"next reconnect in {wait:.1f}s")
            return out.result(state.last_reason or Reason.UNREACHABLE)
        t0 = time.perf_counter()
        try:
            state.conn = await connect(held_params, connect_timeout)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            reason = Reason.TIMEOUT if isinstance(exc, TimeoutError) else reason_for_pg_error(exc)
            state.schedule_retry(reason, config.reconnect_backoff_max)
            out.detail.append(f"connect failed: {error_summary(exc)} -> {reason}")
            return out.result(reason)
        state.failures = 0
        state.opens += 1
        fresh = True
        if config.check_new_client:
            out.add(*_new_client(1, time.perf_counter() - t0))
        out.add(counter("pg_connection_opens", "Held connections opened by this probe.",
                        state.opens))
        out.detail.append("opened the held connection (it also served as the new-client check)")
    conn = state.conn
    try:
        t0 = time.perf_counter()
        await conn.execute("SELECT 1")
        ping = time.perf_counter() - t0
        out.add(_up(1), gauge("pg_ping_seconds", "SELECT 1 round trip on the held connection.",
                              ping))
        out.detail.append(f"SELECT 1: {ping * 1000:.2f} ms")
        cur = await conn.execute(
            q.activity_sql(conn.info.server_version),
            {
                "idle": config.idle_threshold,
                "idle_tx": config.idle_in_transaction_threshold,
                "qlen": config.query_text_length,
                "n": config.top_queries,
                "idle_n": q.IDLE_SESSIONS_LIMIT,
            },
        )
        row = await cur.fetchone()
    except psycopg.Error as exc:
        reason = reason_for_pg_error(exc)
        out.add(_up(0))
        if not fresh and not replacing and (conn.broken or conn.closed):
            # The server ended the held connection since the last run (stopped,
            # restarted, pg_terminate_backend): that is not the server's state now. A new
            # connection says what it is (refused, too_many_clients, or fine), so one
            # cause reads as one reason from the first failed run on.
            out.detail.append(f"held connection lost ({error_summary(exc)}): reconnecting")
            await state.drop()
            return await _run(config, state, params, held_params, out, replacing=True)
        out.detail.append(f"query on held connection failed: {error_summary(exc)} -> {reason}")
        if conn.broken or conn.closed or reason != Reason.TIMEOUT:
            await state.drop()
            state.schedule_retry(reason, config.reconnect_backoff_max)
        return out.result(reason)
    assert row is not None
    doc: dict[str, Any] = row[0]
    _remember_own(state, doc.get("own_query_id"))
    out.add(*q.activity_metrics(doc))
    out.tables.append(q.activity_table(doc))
    out.tables.append(q.idle_sessions_table(doc))
    monitor = bool(doc["monitor"])
    out.add(gauge("pg_role_pg_monitor",
                  "1 if the probe's role has pg_monitor (or is superuser), else 0.",
                  1 if monitor else 0))
    reason = ""
    if not monitor:
        reason = Reason.FORBIDDEN
        out.detail.append("role lacks pg_monitor: other sessions' state and query are hidden, "
                          "counts are incomplete")

    if config.pg_stat_statements != "off":
        try:
            ok = await _statements(config, state, conn, doc.get("pgss_schema"), out)
        except psycopg.Error as exc:  # only when the connection itself broke
            why = reason_for_pg_error(exc)
            out.add(_up(0))
            out.detail.append(f"held connection lost: {error_summary(exc)} -> {why}")
            await state.drop()
            state.schedule_retry(why, config.reconnect_backoff_max)
            return out.result(why)
        if not ok and config.pg_stat_statements == "require" and not reason:
            reason = EXTENSION_MISSING

    out.held_done = True
    if config.check_new_client and not fresh:
        t0 = time.perf_counter()
        try:
            extra = await connect(params, connect_timeout)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            why = Reason.TIMEOUT if isinstance(exc, TimeoutError) else reason_for_pg_error(exc)
            out.detail.append(f"new client refused: {error_summary(exc)} -> {why}")
            reason = reason or why
        else:
            out.add(*_new_client(1, time.perf_counter() - t0))
            await close_quietly(extra)
    return out.result(reason)


async def _statements(
    config: PostgresConfig, state: PostgresState, conn: Conn, schema: str | None, out: _Run
) -> bool:
    """Add pg_stat_statements metrics; False (flag 0, log once) when unavailable."""
    version = conn.info.server_version
    why = ""
    doc: dict[str, Any] | None = None
    try:
        if schema is None:
            why = "extension pg_stat_statements is not installed in this database"
        else:
            if state.pgss_columns is None:
                cur = await conn.execute(q.columns_sql(version), (schema,))
                cols = await cur.fetchone()
                state.pgss_columns = q.statement_columns(cols[0] if cols else [])
                _remember_own(state, cols[1] if cols else None)
            if state.pgss_columns is None:
                why = "pg_stat_statements has neither *_exec_time nor *_time columns"
            else:
                mean, total = state.pgss_columns
                cur = await conn.execute(
                    q.statements_sql(schema, mean, total, version),
                    {"k": config.statements_top_k, "own": sorted(state.own_query_ids)},
                )
                row = await cur.fetchone()
                doc = row[0] if row else None
                _remember_own(state, (doc or {}).get("own_query_id"))
                await _fetch_texts(config, state, conn, schema, doc)
    except psycopg.errors.ObjectNotInPrerequisiteState:
        why = "pg_stat_statements is not in shared_preload_libraries"
    except psycopg.Error as exc:
        if conn.broken:
            raise
        why = f"reading pg_stat_statements failed: {error_summary(exc)}"
    if why:
        out.detail.append(why)
        if not state.pgss_logged:
            log.warning("postgres probe %s: %s; slow-query metrics disabled", _target(config),
                        why)
            state.pgss_logged = True
        doc = None
    metrics, table = q.statements_metrics(doc, state.texts, config.statements_info)
    out.add(*metrics)
    if table is not None:
        out.tables.append(table)
    return doc is not None


async def _fetch_texts(
    config: PostgresConfig, state: PostgresState, conn: Conn, schema: str,
    doc: dict[str, Any] | None,
) -> None:
    """Query texts for top-K ids not cached yet (reads the query-text file only then)."""
    ids = [str(t["queryid"]) for t in (doc or {}).get("top") or []]
    missing = [i for i in ids if i not in state.texts]
    if missing:
        cur = await conn.execute(
            q.texts_sql(schema, conn.info.server_version),
            {"qlen": config.query_text_length, "ids": [int(i) for i in missing]},
        )
        for qid, text, own in await cur.fetchall():
            state.texts[str(qid)] = q.redact(text)
            _remember_own(state, own)
    if len(state.texts) > 4 * max(1, config.statements_top_k):  # keep the cache bounded
        state.texts = {i: state.texts[i] for i in ids if i in state.texts}


def _remember_own(state: PostgresState, query_id: Any) -> None:
    # a handful of statements; a bound in case the server's query ids ever vary
    if isinstance(query_id, int) and len(state.own_query_ids) < 64:
        state.own_query_ids.add(query_id)


KIND: ProbeKind[PostgresConfig, PostgresState] = ProbeKind(
    name="postgres",
    config_model=PostgresConfig,
    run=run,
    new_state=lambda config: PostgresState(),
    target=_target,
    reasons=CONNECTION_REASONS | {EXTENSION_MISSING},
    failure_metrics=(_up(0),),
    sample_labels=frozenset({"datname", "query", "queryid", "state", "user", "version"}),
)
