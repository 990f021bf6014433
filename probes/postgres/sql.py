"""SQL of the ``postgres`` probe and the translation of its answers into metrics.

One statement (:func:`activity_sql`) returns settings, recovery state, pg_stat_activity
aggregates and the longest-running queries as a single JSON document, so a probe run costs
one round trip for all of it. pg_stat_statements is read with ``showtext => false``
(no query-text file read); texts are fetched only for top-K query ids not yet cached.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from psycopg import sql

from probes.base import Metric, Sample, gauge, gauges, info

# The running statement's own pg_stat_statements queryid (PG14+, computed when
# pg_stat_statements is loaded): each statement of the probe reports it, so the slow-query
# figures can leave the probe's own statements out. NULL before PG14.
OWN_QUERY_ID = "(SELECT query_id FROM pg_stat_activity WHERE pid = pg_backend_pid())"
NO_QUERY_ID = "NULL::bigint"


def own_query_id(version_num: int) -> str:
    return OWN_QUERY_ID if version_num >= 140000 else NO_QUERY_ID


# Own connection excluded (pid <> pg_backend_pid()) from everything but "used".
_ACTIVITY_SQL = """
WITH a AS (
  SELECT pid, datname, usename, state,
         extract(epoch FROM now() - xact_start)::float8 AS xact_age,
         extract(epoch FROM now() - query_start)::float8 AS query_age,
         -- a session that never ran a query (a pool's spare connection) has no
         -- query_start: it has been idle since it connected
         extract(epoch FROM now() - coalesce(query_start, backend_start))::float8 AS idle_age,
         extract(epoch FROM now() - state_change)::float8 AS state_age,
         query
  FROM pg_stat_activity
  -- backend_type is NULL on rows hidden from a role without pg_monitor
  WHERE coalesce(backend_type, 'client backend') = 'client backend'
), o AS (SELECT * FROM a WHERE pid <> pg_backend_pid())
SELECT json_build_object(
  'own_query_id', __OWN__,
  'version', current_setting('server_version'),
  'version_num', current_setting('server_version_num')::int,
  'max_connections', current_setting('max_connections')::int,
  'superuser_reserved', current_setting('superuser_reserved_connections')::int,
  'reserved', coalesce(current_setting('reserved_connections', true), '0')::int,
  'is_replica', pg_is_in_recovery(),
  'lag', CASE WHEN NOT pg_is_in_recovery() THEN 0
              WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
              ELSE greatest(0, extract(epoch FROM now() - pg_last_xact_replay_timestamp()))
         END,
  'monitor', pg_has_role(current_user, 'pg_monitor', 'USAGE'),
  'pgss_schema', (SELECT n.nspname FROM pg_extension e
                  JOIN pg_namespace n ON n.oid = e.extnamespace
                  WHERE e.extname = 'pg_stat_statements'),
  'databases', (SELECT json_agg(datname ORDER BY datname) FROM pg_database
                WHERE datallowconn AND NOT datistemplate),
  'used', (SELECT count(*) FROM a),
  'by_state', (SELECT json_agg(json_build_object('datname', datname, 'state', state,
                                                 'n', n, 'max_tx', max_tx))
               FROM (SELECT coalesce(datname, '') AS datname,
                            coalesce(state, 'unknown') AS state, count(*) AS n,
                            coalesce(max(xact_age), 0) AS max_tx
                     FROM o GROUP BY 1, 2) s),
  'idle_old', (SELECT count(*) FROM o
               WHERE state = 'idle' AND idle_age > %(idle)s::float8),
  'idle_tx_old', (SELECT count(*) FROM o
                  WHERE state LIKE 'idle in transaction%%' AND state_age > %(idle_tx)s::float8),
  'idle_oldest', (SELECT coalesce(max(idle_age), 0) FROM o WHERE state = 'idle'),
  -- the sessions the runbook's pg_terminate_backend would end, oldest first (bounded)
  'idle_sessions', (SELECT json_agg(t) FROM (
            SELECT pid, datname, usename, idle_age AS seconds
            FROM o WHERE state = 'idle' AND idle_age > %(idle)s::float8
            ORDER BY idle_age DESC LIMIT %(idle_n)s::int) t),
  'max_query', (SELECT coalesce(max(query_age), 0) FROM o WHERE state = 'active'),
  'max_tx', (SELECT coalesce(max(xact_age), 0) FROM o WHERE xact_age IS NOT NULL),
  'top', (SELECT json_agg(t) FROM (
            -- the runbook's "active queries": state != 'idle', so the idle-in-transaction
            -- session holding locks shows beside the running ones
            SELECT pid, datname, usename, state, query_age AS seconds,
                   left(query, %(qlen)s::int) AS query
            FROM o WHERE state <> 'idle'
            ORDER BY query_age DESC NULLS LAST LIMIT %(n)s::int) t)
)
"""

TOP_QUERIES_TITLE = "Longest-running queries (state != 'idle')"
IDLE_SESSIONS_TITLE = "Idle sessions past idle_threshold (oldest first)"
IDLE_SESSIONS_LIMIT = 20  # rows of that table: enough for a terminate command line



def activity_sql(version_num: int) -> str:
    return _ACTIVITY_SQL.replace("__OWN__", own_query_id(version_num))


_COLUMNS_SQL = """
SELECT coalesce(array_agg(attname::text), '{}'), __OWN__ FROM pg_attribute
WHERE attrelid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = %s AND c.relname = 'pg_stat_statements')
  AND attnum > 0 AND NOT attisdropped
"""



def columns_sql(version_num: int) -> str:
    return _COLUMNS_SQL.replace("__OWN__", own_query_id(version_num))


STATES = (
    "active",
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
)


def statements_sql(
    schema: str, mean_col: str, total_col: str, version_num: int
) -> sql.Composed:
    """Totals per database and the top K by mean execution time, without query text.

    PG14+ keeps a top-level and a nested entry per (user, database, queryid) when
    ``pg_stat_statements.track = all``: the top K merges them, so its label set
    (``queryid``, ``datname``, ``user``) never repeats within one run.

    The probe's own statements (``%(own)s``, this one included), run as its role, are left
    out of everything: they would otherwise be among the "slowest" on a quiet database.
    """
    own = sql.SQL(own_query_id(version_num))
    return sql.SQL(
        """
WITH e AS (
  SELECT userid, dbid, queryid, calls, {total} AS total_ms, {mean} AS mean_ms, rows
  FROM {schema}.pg_stat_statements(false)
  WHERE NOT coalesce(userid = (SELECT oid FROM pg_roles WHERE rolname = current_user)
                     AND queryid = ANY(%(own)s::bigint[] || {own}), false)
), s AS (
  SELECT userid, dbid, queryid, sum(calls) AS calls, sum(total_ms) AS total_ms,
         CASE WHEN sum(calls) > 0 THEN sum(total_ms) / sum(calls)
              ELSE coalesce(max(mean_ms), 0) END AS mean_ms,
         sum(rows) AS rows
  FROM e GROUP BY userid, dbid, queryid
)
SELECT json_build_object(
  'own_query_id', {own},
  'entries', (SELECT count(*) FROM e),
  'totals', (SELECT json_agg(json_build_object('datname', coalesce(d.datname, ''),
                                               'calls', x.c, 'ms', x.t, 'rows', x.r))
             FROM (SELECT dbid, sum(calls) AS c, sum(total_ms) AS t, sum(rows) AS r
                   FROM s GROUP BY dbid) x
             LEFT JOIN pg_database d ON d.oid = x.dbid),
  'top', (SELECT json_agg(json_build_object(
                   'queryid', t.queryid::text, 'datname', coalesce(d.datname, ''),
                   'user', coalesce(r.rolname, ''), 'calls', t.calls,
                   'mean_ms', t.mean_ms, 'total_ms', t.total_ms))
          FROM (SELECT * FROM s WHERE queryid IS NOT NULL
                ORDER BY mean_ms DESC LIMIT %(k)s::int) t
          LEFT JOIN pg_database d ON d.oid = t.dbid
          LEFT JOIN pg_roles r ON r.oid = t.userid)
)
"""
    ).format(
        schema=sql.Identifier(schema),
        mean=sql.Identifier(mean_col),
        total=sql.Identifier(total_col),
        own=own,
    )


def texts_sql(schema: str, version_num: int) -> sql.Composed:
    return sql.SQL(
        "SELECT queryid::text, left(query, %(qlen)s::int), {own}"
        " FROM {schema}.pg_stat_statements(true) WHERE queryid = ANY(%(ids)s::bigint[])"
    ).format(schema=sql.Identifier(schema),
             own=sql.SQL(own_query_id(version_num)))


_PASSWORD_RE = re.compile(r"(?i)(password\s*)([eE]?'(?:[^']|'')*'?|\$\w*\$.*)")
# libpq conninfo (``password=x``) and URI (``postgresql://user:x@host``) passwords, as in
# dblink/postgres_fdw calls, which pg_stat_activity shows verbatim
_CONNINFO_RE = re.compile(
    r"""(?i)(\bpassword\s*=\s*)(?!\$\d)(?:''(?:[^']|'''')*(?:''|$)|"[^"]*"?|[^\s'",)]+)"""
)
_URI_RE = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/@'\"]*:)[^\s@'\"]*(@)")


def redact(text: str | None) -> str:
    """Query text for display: ``PASSWORD '...'`` literals (CREATE/ALTER ROLE) and
    connection-string passwords masked.

    pg_stat_statements keeps utility statements verbatim and pg_stat_activity shows every
    query verbatim, so a role's password would otherwise reach the probe's page.
    """
    masked = _PASSWORD_RE.sub(r"\1'***'", text or "")
    masked = _CONNINFO_RE.sub(r"\1***", masked)
    return _URI_RE.sub(r"\1***\2", masked)


def statement_columns(columns: Iterable[str]) -> tuple[str, str] | None:
    """(mean, total) column names: PG13+ ``*_exec_time``, older ``*_time``; None if neither."""
    cols = set(columns)
    if {"mean_exec_time", "total_exec_time"} <= cols:
        return ("mean_exec_time", "total_exec_time")
    if {"mean_time", "total_time"} <= cols:
        return ("mean_time", "total_time")
    return None


def activity_metrics(doc: Mapping[str, Any]) -> list[Metric]:
    """Metrics from the :func:`activity_sql` document."""
    databases: list[str] = list(doc.get("databases") or [])
    counts: dict[tuple[str, str], float] = {(d, s): 0.0 for d in databases for s in STATES}
    max_tx: dict[tuple[str, str], float] = dict.fromkeys(counts, 0.0)
    for row in doc.get("by_state") or []:
        key = (str(row["datname"]), str(row["state"]))
        counts[key] = float(row["n"])
        max_tx[key] = float(row["max_tx"] or 0)
    max_conn = float(doc["max_connections"])
    su_reserved = float(doc["superuser_reserved"])
    reserved = float(doc["reserved"])
    available = max(0.0, max_conn - su_reserved - reserved)
    used = float(doc["used"])
    # Slots are not partitioned: PostgreSQL refuses an ordinary role once no more than the
    # reserved number of slots is free. Sessions beyond ``available`` (superusers, roles
    # with pg_use_reserved_connections) sit in reserved slots: they do not make the
    # ordinary pool "more than full".
    ordinary = min(used, available)

    def lbl(key: tuple[str, str]) -> dict[str, str]:
        return {"datname": key[0], "state": key[1]}

    excl = " The exporter's own connection is excluded."
    return [
        info("pg_version", "PostgreSQL server version.", {"version": str(doc["version"])}),
        gauge("pg_server_version_num", "server_version_num setting.", doc["version_num"]),
        gauge(
            "pg_replication_is_replica",
            "1 if the server is in recovery (a replica), else 0.",
            1 if doc["is_replica"] else 0,
        ),
        gauge(
            "pg_replication_lag_seconds",
            "Replica: seconds since the last replayed transaction (0 when caught up or primary).",
            float(doc["lag"] or 0),
        ),
        gauge("pg_settings_max_connections", "max_connections setting.", max_conn),
        gauge(
            "pg_settings_superuser_reserved_connections",
            "superuser_reserved_connections setting.",
            su_reserved,
        ),
        gauge(
            "pg_settings_reserved_connections",
            "reserved_connections setting (PG16+, 0 on older servers).",
            reserved,
        ),
        gauges(
            "pg_stat_activity_connections",
            "Client backends by database and state." + excl,
            [(lbl(k), v) for k, v in sorted(counts.items())],
        ),
        gauges(
            "pg_stat_activity_max_tx_duration",
            "Age in seconds of the oldest open transaction by database and state." + excl,
            [(lbl(k), v) for k, v in sorted(max_tx.items())],
        ),
        gauge(
            "pg_connections_used",
            "Client backends occupying a connection slot, the exporter's own included.",
            used,
        ),
        gauge(
            "pg_connections_available",
            "Slots for ordinary roles: max_connections minus superuser/reserved slots.",
            available,
        ),
        gauge(
            "pg_connections_reserved_used",
            "Client backends in reserved slots: pg_connections_used beyond "
            "pg_connections_available (superusers, pg_use_reserved_connections).",
            used - ordinary,
        ),
        gauge(
            "pg_connections_used_ratio",
            "Share of the ordinary slots taken, 0..1: min(used, available) / available "
            "(1 = ordinary clients are refused).",
            ordinary / available if available else 1.0,
        ),
        gauge(
            "pg_stat_activity_idle_over_threshold",
            "Idle connections whose last query started longer ago than idle_threshold." + excl,
            float(doc["idle_old"]),
        ),
        gauge(
            "pg_stat_activity_oldest_idle_seconds",
            "How long the longest-idle session has been idle (0 if none)." + excl,
            float(doc.get("idle_oldest") or 0),
        ),
        gauge(
            "pg_stat_activity_idle_in_transaction_over_threshold",
            "Sessions idle in transaction (or aborted) longer than idle_in_transaction_threshold."
            + excl,
            float(doc["idle_tx_old"]),
        ),
        gauge(
            "pg_stat_activity_max_query_duration_seconds",
            "Running time of the longest active query (0 if none)." + excl,
            float(doc["max_query"]),
        ),
        gauge(
            "pg_stat_activity_oldest_transaction_seconds",
            "Age of the oldest open transaction, any state (0 if none)." + excl,
            float(doc["max_tx"]),
        ),
    ]


def activity_table(doc: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, ...], ...]]:
    rows: list[tuple[str, ...]] = [("pid", "seconds", "state", "datname", "user", "query")]
    for r in doc.get("top") or []:
        rows.append(
            (
                str(r["pid"]),
                f"{float(r['seconds'] or 0):.3f}",
                str(r["state"]),
                str(r["datname"] or ""),
                str(r["usename"] or ""),
                redact(r["query"]),
            )
        )
    return (TOP_QUERIES_TITLE, tuple(rows))


def idle_sessions_table(doc: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, ...], ...]]:
    """The idle sessions past ``idle_threshold`` (pids for the runbook's terminate step)."""
    rows: list[tuple[str, ...]] = [("pid", "idle seconds", "datname", "user")]
    for r in doc.get("idle_sessions") or []:
        rows.append(
            (str(r["pid"]), f"{float(r['seconds'] or 0):.0f}", str(r["datname"] or ""),
             str(r["usename"] or ""))
        )
    return (IDLE_SESSIONS_TITLE, tuple(rows))


def statements_metrics(
    doc: Mapping[str, Any] | None, texts: Mapping[str, str], with_info: bool
) -> tuple[list[Metric], tuple[str, tuple[tuple[str, ...], ...]] | None]:
    """pg_stat_statements metrics (``doc`` None: extension unavailable, flag only)."""
    metrics = [
        gauge(
            "pg_stat_statements_available",
            "1 if pg_stat_statements is installed, preloaded and readable, else 0.",
            1 if doc is not None else 0,
        )
    ]
    if doc is None:
        return metrics, None
    totals = [(str(t["datname"]), t) for t in doc.get("totals") or []]
    top = sorted(doc.get("top") or [], key=lambda t: -float(t["mean_ms"] or 0))
    metrics.append(
        gauge("pg_stat_statements_entries", "Statements tracked by pg_stat_statements.",
              float(doc["entries"] or 0))
    )
    for name, field, scale, help_ in (
        ("pg_stat_statements_calls", "calls", 1.0, "Calls of all tracked statements, by database."),
        ("pg_stat_statements_seconds", "ms", 0.001,
         "Execution seconds of all tracked statements, by database."),
        ("pg_stat_statements_rows", "rows", 1.0, "Rows of all tracked statements, by database."),
    ):
        samples = tuple(
            Sample(float(t[field] or 0) * scale, (("datname", d),)) for d, t in totals
        )
        metrics.append(Metric(name, help_, "counter", samples))

    def lbl(t: Mapping[str, Any]) -> dict[str, str]:
        return {"queryid": str(t["queryid"]), "datname": str(t["datname"]),
                "user": str(t["user"])}

    metrics.append(gauges(
        "pg_stat_statements_top_mean_seconds",
        "Top-K statements by mean execution time: mean seconds per call.",
        [(lbl(t), float(t["mean_ms"] or 0) / 1000) for t in top],
    ))
    metrics.append(gauges(
        "pg_stat_statements_top_calls",
        "Top-K statements by mean execution time: calls so far (gauge: the set changes).",
        [(lbl(t), float(t["calls"] or 0)) for t in top],
    ))
    if with_info and top:
        # one series per queryid: the same statement run by two roles (or in two
        # databases) is two top-K entries but one text
        ids = dict.fromkeys(str(t["queryid"]) for t in top)
        metrics.append(Metric(
            "pg_stat_statements_top_query",
            "Truncated query text of the top-K statements.",
            "info",
            tuple(Sample(1.0, (("queryid", i), ("query", texts.get(i, "")))) for i in ids),
        ))
    rows: list[tuple[str, ...]] = [
        ("queryid", "datname", "user", "calls", "mean ms", "total ms", "query")
    ]
    for t in top:
        rows.append((
            str(t["queryid"]), str(t["datname"]), str(t["user"]), str(t["calls"]),
            f"{float(t['mean_ms'] or 0):.3f}", f"{float(t['total_ms'] or 0):.1f}",
            texts.get(str(t["queryid"]), ""),
        ))
    return metrics, ("Slowest statements (mean execution time)", tuple(rows))
