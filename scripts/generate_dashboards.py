"""Generate the Grafana dashboards of festivals-exporter (dashboards as code).

Usage: ``.venv/bin/python scripts/generate_dashboards.py`` writes ``grafana/dashboards/*.json``.
``--check`` exits 1 (and names the files) when the committed JSON differs from the code.

Built with grafana-foundation-sdk (Grafana 11.6 build); serialized with the SDK's
``JSONEncoder(sort_keys=True, indent=2)``. Conventions of grafana/dashboard-linter: one
datasource variable ``datasource`` used by every panel and query, rates over
``$__rate_interval``, every panel with a title, description and unit, a stable ``uid``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DashboardLinkType, DataSourceRef

OUT_DIR = Path(__file__).resolve().parent.parent / "grafana" / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["festivals", "festivals-exporter"]

API = 'kind="http", service="festivals-api"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class P:
    """One panel: ``stat`` for current values, else a time series."""

    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    kind: str = "timeseries"
    width: int = 12
    height: int = 8


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[P, ...]


@dataclass(frozen=True)
class Board:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...] = field(default_factory=tuple)


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


# Redis counts the redis probe's own key reads as hits and misses; it reports them apart
# (docs/probes/redis.md, "Cache hit ratio"), so the applications' ratio subtracts them.
_APP_HITS = (
    "sum by (probe) (rate(redis_keyspace_hits_total[$__rate_interval]) "
    "- rate(redis_probe_keyspace_hits_total[$__rate_interval]))"
)
_APP_MISSES = (
    "sum by (probe) (rate(redis_keyspace_misses_total[$__rate_interval]) "
    "- rate(redis_probe_keyspace_misses_total[$__rate_interval]))"
)


def _panel(spec: P, panel_id: int) -> timeseries.Panel | stat.Panel:
    panel: timeseries.Panel | stat.Panel
    panel = stat.Panel() if spec.kind == "stat" else timeseries.Panel()
    panel.id(panel_id).title(spec.title).description(spec.description).unit(spec.unit)
    panel.datasource(DATASOURCE).span(spec.width).height(spec.height)
    for index, query in enumerate(spec.queries):
        target = (
            prometheus.Dataquery()
            .expr(query.expr)
            .ref_id(chr(ord("A") + index))
            .datasource(DATASOURCE)
        )
        if query.legend:
            target.legend_format(query.legend)
        if spec.kind == "stat":
            target.instant()
        panel.with_target(target)
    return panel


def build(board: Board) -> db.Dashboard:
    dash = (
        db.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags(TAGS)
        .editable()
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("utc")
        .with_variable(
            db.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .link(
            db.DashboardLink("Festivals dashboards")
            .type(DashboardLinkType.DASHBOARDS)
            .tags(["festivals"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    panel_id = 1
    for row in board.rows:
        dash.with_row(db.Row(row.title).id(panel_id))
        panel_id += 1
        for spec in row.panels:
            dash.with_panel(_panel(spec, panel_id))
            panel_id += 1
    return dash


# ----------------------------------------------------------------- the dashboards

PROBES_ROW = Row(
    "Probes",
    (
        P(
            "Probe success",
            "probe_success of every probe: 1 when the last run succeeded.",
            "bool_yes_no",
            (q("min by (probe, kind) (probe_success)", "{{probe}} ({{kind}})"),),
            kind="stat",
            width=24,
        ),
        P(
            "Failures by reason",
            "Failed runs per second by probe and reason.",
            "ops",
            (
                q(
                    "sum by (probe, reason) (rate(probe_failures_total[$__rate_interval])) > 0",
                    "{{probe}} {{reason}}",
                ),
            ),
        ),
        P(
            "Probe error ratio (5m)",
            "Share of failed runs over 5 minutes (recording rule "
            "probe:probe_failures:ratio_rate5m).",
            "percentunit",
            (q("probe:probe_failures:ratio_rate5m", "{{probe}}"),),
        ),
        P(
            "Probe run duration p99",
            "99th percentile of probe run durations (histogram probe_run_duration_seconds).",
            "s",
            (
                q(
                    "histogram_quantile(0.99, sum by (probe, le) "
                    "(rate(probe_run_duration_seconds_bucket[$__rate_interval])))",
                    "{{probe}}",
                ),
            ),
        ),
        P(
            "Seconds since last run",
            "Time since each probe last started a run; FestivalsProbeStale fires above 900 s.",
            "s",
            (q("time() - probe_last_run_timestamp_seconds", "{{probe}}"),),
        ),
    ),
)

EXPORTER_ROW = Row(
    "Exporter",
    (
        P(
            "Exporter up",
            "Whether Prometheus scrapes festivals-exporter (up).",
            "bool_yes_no",
            (q('up{job="festivals-exporter"}', "{{instance}}"),),
            kind="stat",
            width=6,
        ),
        P(
            "Config reload",
            "1 when the last config load or reload succeeded.",
            "bool_yes_no",
            (q("festivals_exporter_config_last_reload_successful", "{{instance}}"),),
            kind="stat",
            width=6,
        ),
        P(
            "Configured probes",
            "Probes in the running configuration.",
            "short",
            (q("festivals_exporter_probes", "{{instance}}"),),
            kind="stat",
            width=6,
        ),
        P(
            "Runs in flight",
            "Probe runs in progress.",
            "short",
            (q("festivals_exporter_probes_in_flight", "{{instance}}"),),
            kind="stat",
            width=6,
        ),
        P(
            "Scheduler lag p99",
            "How late scheduled runs start against their schedule (99th percentile).",
            "s",
            (
                q(
                    "histogram_quantile(0.99, sum by (instance, le) "
                    "(rate(festivals_exporter_scheduler_lag_seconds_bucket[$__rate_interval])))",
                    "{{instance}}",
                ),
            ),
            width=24,
        ),
    ),
)

OVERVIEW = Board(
    "festivals-overview",
    "Festivals / Overview",
    "Every probe of festivals-exporter and the exporter's own health (meta alerts).",
    (
        Row(
            "Runbook alerts",
            (
                P(
                    "Firing runbook alerts",
                    "Alerts of the Festivals runbook currently firing, by name and severity.",
                    "short",
                    (
                        q(
                            'sum by (alertname, severity) (ALERTS{alertstate="firing", '
                            'alertname=~"APIServiceDown|HighErrorRate|DatabaseDown|'
                            "DatabaseConnectionPoolExhausted|HighPaymentFailureRate|"
                            "HighLatencyP99|HighCPUUsage|HighMemoryUsage|QueueBacklog|"
                            'SSLCertificateExpiringSoon|APIErrorBudgetBurn"})',
                            "{{alertname}} ({{severity}})",
                        ),
                    ),
                    width=24,
                ),
            ),
        ),
        PROBES_ROW,
        EXPORTER_ROW,
    ),
)

API_BOARD = Board(
    "festivals-api",
    "Festivals / API",
    "Runbook sections API Down, High Error Rate and High Latency: the API's own metrics "
    "(festivals_http_*) and the synthetic http probes labelled service=festivals-api.",
    (
        Row(
            "Synthetic checks",
            (
                P(
                    "API health check",
                    "probe_success of the http probes with service=festivals-api "
                    "(APIServiceDown).",
                    "bool_yes_no",
                    (q(f"probe_success{{{API}}}", "{{probe}}"),),
                    kind="stat",
                    width=8,
                ),
                P(
                    "HTTP status",
                    "Status code of the last answer (0: no answer).",
                    "short",
                    (q(f"probe_http_status_code{{{API}}}", "{{probe}}"),),
                    kind="stat",
                    width=8,
                ),
                P(
                    "Available API replicas",
                    "Available replicas of deployment festivals-api (kubernetes probe).",
                    "short",
                    (
                        q(
                            'kube_deployment_status_replicas_available{deployment="festivals-api"}',
                            "{{namespace}}",
                        ),
                    ),
                    kind="stat",
                    width=8,
                ),
                P(
                    "Probe error ratio",
                    "Share of failed API probe runs over 5 minutes and 1 hour; HighErrorRate "
                    "(probe) fires above 5%.",
                    "percentunit",
                    (
                        q(f"probe:probe_failures:ratio_rate5m{{{API}}}", "{{probe}} 5m"),
                        q(f"probe:probe_failures:ratio_rate1h{{{API}}}", "{{probe}} 1h"),
                    ),
                ),
                P(
                    "Request phases",
                    "Seconds per phase of the last probe request (resolve, connect, tls, "
                    "processing, transfer).",
                    "s",
                    (
                        q(
                            f"sum by (probe, phase) (probe_http_duration_seconds{{{API}}})",
                            "{{probe}} {{phase}}",
                        ),
                    ),
                ),
                P(
                    "Probe p99 run duration",
                    "99th percentile run time of the API probes over 30 minutes; "
                    "HighLatencyP99 (probe) fires above 500 ms.",
                    "s",
                    (q(f"probe:probe_run_duration_seconds:p99_rate30m{{{API}}}", "{{probe}}"),),
                    width=24,
                ),
            ),
        ),
        Row(
            "API metrics (exported by the Festivals API)",
            (
                P(
                    "Requests per second",
                    "Requests served, by status code.",
                    "reqps",
                    (
                        q(
                            "sum by (status) "
                            "(rate(festivals_http_requests_total[$__rate_interval]))",
                            "{{status}}",
                        ),
                    ),
                ),
                P(
                    "5xx ratio",
                    "Share of requests answered 5xx; HighErrorRate fires above 1%.",
                    "percentunit",
                    (
                        q(
                            'sum(rate(festivals_http_requests_total{status=~"5.."}'
                            "[$__rate_interval])) / "
                            "sum(rate(festivals_http_requests_total[$__rate_interval]))",
                            "5xx ratio",
                        ),
                    ),
                ),
                P(
                    "p99 latency by path",
                    "99th percentile request latency per path; HighLatencyP99 fires above "
                    "500 ms overall.",
                    "s",
                    (
                        q(
                            "histogram_quantile(0.99, sum by (le, path) "
                            "(rate(festivals_http_request_duration_seconds_bucket"
                            "[$__rate_interval])))",
                            "{{path}}",
                        ),
                    ),
                    width=24,
                ),
            ),
        ),
    ),
)

DATABASE = Board(
    "festivals-database",
    "Festivals / Database",
    "Runbook section Database Issues: PostgreSQL (postgres probe) and PgBouncer pools.",
    (
        Row(
            "PostgreSQL",
            (
                P(
                    "PostgreSQL up",
                    "pg_up: the held connection answered SELECT 1 (DatabaseDown).",
                    "bool_yes_no",
                    (q("pg_up", "{{probe}}"),),
                    kind="stat",
                    width=8,
                ),
                P(
                    "New clients accepted",
                    "pg_new_client_up: a new connection could be opened this run.",
                    "bool_yes_no",
                    (q("pg_new_client_up", "{{probe}}"),),
                    kind="stat",
                    width=8,
                ),
                P(
                    "Connection slots used",
                    "Used share of the ordinary connection slots "
                    "(DatabaseConnectionPoolExhausted above 90%).",
                    "percentunit",
                    (q("pg_connections_used_ratio", "{{probe}}"),),
                    kind="stat",
                    width=8,
                ),
                P(
                    "Connections by state",
                    "Client backends by state (the exporter's own connection excluded).",
                    "short",
                    (
                        q(
                            "sum by (probe, state) (pg_stat_activity_connections)",
                            "{{probe}} {{state}}",
                        ),
                    ),
                ),
                P(
                    "Idle sessions to kill",
                    "Idle sessions over idle_threshold and sessions idle in transaction too "
                    "long (the runbook's kill list).",
                    "short",
                    (
                        q("pg_stat_activity_idle_over_threshold", "{{probe}} idle"),
                        q(
                            "pg_stat_activity_idle_in_transaction_over_threshold",
                            "{{probe}} idle in transaction",
                        ),
                    ),
                ),
                P(
                    "Longest query and transaction",
                    "Running time of the longest active query and age of the oldest "
                    "transaction.",
                    "s",
                    (
                        q("pg_stat_activity_max_query_duration_seconds", "{{probe}} query"),
                        q("pg_stat_activity_oldest_transaction_seconds", "{{probe}} transaction"),
                    ),
                ),
                P(
                    "Statement time per second",
                    "Execution seconds per second of all statements tracked by "
                    "pg_stat_statements, by database.",
                    "s",
                    (
                        q(
                            "sum by (probe, datname) "
                            "(rate(pg_stat_statements_seconds_total[$__rate_interval]))",
                            "{{probe}} {{datname}}",
                        ),
                    ),
                ),
                P(
                    "Slowest statements (mean)",
                    "Mean execution time per call of the top K statements by query id.",
                    "s",
                    (
                        q(
                            "topk(10, pg_stat_statements_top_mean_seconds)",
                            "{{datname}} {{queryid}}",
                        ),
                    ),
                ),
                P(
                    "Ping and new-client connect time",
                    "SELECT 1 round trip on the held connection and the time to open a new "
                    "connection.",
                    "s",
                    (
                        q("pg_ping_seconds", "{{probe}} ping"),
                        q("pg_new_client_connect_seconds", "{{probe}} connect"),
                    ),
                ),
                P(
                    "Replication lag",
                    "Seconds since the last replayed transaction on replicas.",
                    "s",
                    (q("pg_replication_lag_seconds", "{{probe}}"),),
                ),
            ),
        ),
        Row(
            "PgBouncer",
            (
                P(
                    "Waiting clients",
                    "Clients waiting for a server connection, per pool.",
                    "short",
                    (
                        q(
                            "pgbouncer_pools_client_waiting_connections",
                            "{{database}}/{{user}}",
                        ),
                    ),
                ),
                P(
                    "Oldest client wait",
                    "Wait of the oldest waiting client (DatabaseConnectionPoolExhausted "
                    "above 1 s).",
                    "s",
                    (q("pgbouncer_pools_client_maxwait_seconds", "{{database}}/{{user}}"),),
                ),
                P(
                    "Server connections",
                    "Active and idle server connections per pool.",
                    "short",
                    (
                        q(
                            "pgbouncer_pools_server_active_connections",
                            "{{database}}/{{user}} active",
                        ),
                        q(
                            "pgbouncer_pools_server_idle_connections",
                            "{{database}}/{{user}} idle",
                        ),
                    ),
                    width=24,
                ),
            ),
        ),
    ),
)

QUEUES = Board(
    "festivals-queues",
    "Festivals / Queues",
    "Runbook section Queue Backlog and the Redis part of High Latency (redis probe).",
    (
        Row(
            "Queues",
            (
                P(
                    "Queue length",
                    "Jobs waiting per queue (0 when drained); QueueBacklog (length) fires "
                    "above 1000 for 15 minutes.",
                    "short",
                    (q("redis_queue_length", "{{queue}}"),),
                ),
                P(
                    "Oldest job age",
                    "Age of the oldest waiting job per queue; QueueBacklog (age) fires above "
                    "10 minutes. Long queue with low age = moving; high age = stuck.",
                    "s",
                    (q("redis_queue_oldest_job_age_seconds", "{{queue}}"),),
                ),
                P(
                    "Stream consumer groups",
                    "Pending (delivered, not acknowledged) and lag (not delivered) entries.",
                    "short",
                    (
                        q(
                            "redis_stream_group_messages_pending",
                            "{{stream}}/{{group}} pending",
                        ),
                        q("redis_stream_group_lag", "{{stream}}/{{group}} lag"),
                    ),
                    width=24,
                ),
            ),
        ),
        Row(
            "Redis server",
            (
                P(
                    "Redis up",
                    "redis_up: PING, INFO and the queue reads answered.",
                    "bool_yes_no",
                    (q("redis_up", "{{probe}}"),),
                    kind="stat",
                    width=8,
                ),
                P(
                    "Blocked clients (idle workers)",
                    "Clients blocked in BLPOP/BRPOP/XREAD: workers waiting for jobs.",
                    "short",
                    (q("redis_blocked_clients", "{{probe}}"),),
                    kind="stat",
                    width=8,
                ),
                P(
                    "Memory used vs max",
                    "used_memory and maxmemory (0 = no limit).",
                    "bytes",
                    (
                        q("redis_memory_used_bytes", "{{probe}} used"),
                        q("redis_memory_max_bytes", "{{probe}} max"),
                    ),
                    kind="stat",
                    width=8,
                ),
                P(
                    "PING latency",
                    "Median and slowest PING round trip per run.",
                    "s",
                    (
                        q("redis_ping_latency_seconds", "{{probe}} median"),
                        q("redis_ping_latency_max_seconds", "{{probe}} max"),
                    ),
                ),
                P(
                    "Cache hit ratio",
                    "Keyspace hits / (hits + misses) of the applications: the runbook's "
                    "cache hit rate, without the lookups of the probe's own reads "
                    "(redis_probe_keyspace_*).",
                    "percentunit",
                    (
                        q(
                            f"{_APP_HITS} / ({_APP_HITS} + {_APP_MISSES})",
                            "{{probe}}",
                        ),
                    ),
                ),
                P(
                    "Evictions",
                    "Keys evicted per second because of maxmemory.",
                    "ops",
                    (
                        q(
                            "sum by (probe) (rate(redis_evicted_keys_total[$__rate_interval]))",
                            "{{probe}}",
                        ),
                    ),
                    width=24,
                ),
            ),
        ),
    ),
)

PAYMENTS = Board(
    "festivals-payments",
    "Festivals / Payments and status pages",
    "Runbook section Payment Failures: Stripe's status page (statuspage probe, "
    "service=payments), the webhook endpoint check (http probe, service=payments) and other "
    "vendors.",
    (
        Row(
            "Payments",
            (
                P(
                    "Webhook endpoint check",
                    "probe_success of the http probe POSTing a test event to the Stripe "
                    "webhook endpoint.",
                    "bool_yes_no",
                    (q('probe_success{kind="http", service="payments"}', "{{probe}}"),),
                    kind="stat",
                    width=12,
                ),
                P(
                    "Stripe overall status",
                    "Overall status as severity: 0 ok, 1 maintenance, 2 degraded, 3 partial "
                    "outage, 4 major outage.",
                    "short",
                    (q('statuspage_overall_status{service="payments"}', "{{probe}}"),),
                    kind="stat",
                    width=12,
                ),
                P(
                    "Component status",
                    "Component status as severity (HighPaymentFailureRate fires at 2 or more "
                    "for Stripe's API and webhooks).",
                    "short",
                    (q("statuspage_component_status", "{{probe}} {{component}}"),),
                ),
                P(
                    "Status page answer age",
                    "Seconds since each status page last answered; FestivalsStatusPageStale "
                    "fires above 900 s.",
                    "s",
                    (q("statuspage_answer_age_seconds", "{{probe}}"),),
                ),
                P(
                    "Unresolved incidents",
                    "Unresolved incidents by impact (Statuspage v2 pages).",
                    "short",
                    (
                        q(
                            "sum by (probe, impact) (statuspage_incidents_unresolved)",
                            "{{probe}} {{impact}}",
                        ),
                    ),
                    width=24,
                ),
            ),
        ),
    ),
)

TLS = Board(
    "festivals-tls",
    "Festivals / TLS certificates",
    "Runbook section SSL Certificate Renewal: tls probe sources, http/tcp endpoints and "
    "cert-manager Certificates.",
    (
        Row(
            "Expiry",
            (
                P(
                    "Days left per source",
                    "Days until the earliest certificate of each source expires (0 values, "
                    "i.e. unknown, left out); SSLCertificateExpiringSoon fires below 14 days.",
                    "d",
                    (
                        q(
                            "(min by (probe, source) "
                            "(tls_earliest_cert_expiry_timestamp_seconds > 0) - time()) / 86400",
                            "{{source}}",
                        ),
                    ),
                    kind="stat",
                    width=24,
                ),
                P(
                    "Endpoint certificates (http/tcp probes)",
                    "Days until the leaf certificate served to http and tcp probes expires.",
                    "d",
                    (
                        q(
                            '((probe_ssl_earliest_cert_expiry{kind=~"http|tcp"} > 0) - time()) '
                            "/ 86400",
                            "{{probe}}",
                        ),
                    ),
                ),
                P(
                    "cert-manager Certificates",
                    "Days until each issued cert-manager Certificate expires.",
                    "d",
                    (
                        q(
                            "((certmanager_certificate_expiration_timestamp_seconds > 0) "
                            "- time()) / 86400",
                            "{{namespace}}/{{name}}",
                        ),
                    ),
                ),
                P(
                    "Chain verification",
                    "tls_verify_success: the chain verified (trust, dates, hostname).",
                    "bool_yes_no",
                    (q("tls_verify_success", "{{source}}"),),
                    kind="stat",
                    width=12,
                ),
                P(
                    "Verification failures",
                    "Failing verification reason per source (expired, untrusted_root...).",
                    "short",
                    (q("tls_verify_failed == 1", "{{source}} {{reason}}"),),
                    kind="stat",
                    width=12,
                ),
            ),
        ),
    ),
)

KUBERNETES = Board(
    "festivals-kubernetes",
    "Festivals / Kubernetes resources",
    "Runbook sections API Down (pods, rollouts) and Resource Exhaustion (CPU, memory, "
    "OOMKilled, HPA) from the kubernetes probe.",
    (
        Row(
            "Workloads",
            (
                P(
                    "Available replicas",
                    "Available vs desired replicas per deployment.",
                    "short",
                    (
                        q(
                            "kube_deployment_status_replicas_available",
                            "{{deployment}} available",
                        ),
                        q("kube_deployment_spec_replicas", "{{deployment}} desired"),
                    ),
                ),
                P(
                    "Pods not ready",
                    "Pods whose Ready condition is not true.",
                    "short",
                    (
                        q(
                            'sum by (namespace) (kube_pod_status_ready{condition!="true"})',
                            "{{namespace}}",
                        ),
                    ),
                ),
                P(
                    "Waiting containers by reason",
                    "Containers waiting, by reason (CrashLoopBackOff, ImagePullBackOff...).",
                    "short",
                    (
                        q(
                            "sum by (reason) (kube_pod_container_status_waiting_reason)",
                            "{{reason}}",
                        ),
                    ),
                ),
                P(
                    "Container restarts",
                    "Container restarts per second.",
                    "ops",
                    (
                        q(
                            "sum by (pod, container) (rate("
                            "kube_pod_container_status_restarts_total[$__rate_interval]))",
                            "{{pod}}/{{container}}",
                        ),
                    ),
                ),
                P(
                    "Rollout in progress",
                    "1 while a deployment's rollout is not done; with the revision, answers "
                    "the runbook's 'recent deployment?'.",
                    "short",
                    (
                        q(
                            "probe_kubernetes_deployment_rollout_in_progress",
                            "{{deployment}} in progress",
                        ),
                        q("probe_kubernetes_deployment_revision", "{{deployment}} revision"),
                    ),
                    width=24,
                ),
            ),
        ),
        Row(
            "Resources",
            (
                P(
                    "CPU use vs limit",
                    "CPU use / CPU limit per container; HighCPUUsage fires above 90% for "
                    "15 minutes.",
                    "percentunit",
                    (
                        q(
                            "probe_kubernetes_container_cpu_limit_ratio",
                            "{{pod}}/{{container}}",
                        ),
                    ),
                ),
                P(
                    "Memory use vs limit",
                    "Working set / memory limit per container; HighMemoryUsage fires above "
                    "90% for 10 minutes.",
                    "percentunit",
                    (
                        q(
                            "probe_kubernetes_container_memory_limit_ratio",
                            "{{pod}}/{{container}}",
                        ),
                    ),
                ),
                P(
                    "OOMKilled containers",
                    "Containers whose last termination was OOMKilled.",
                    "short",
                    (
                        q(
                            'kube_pod_container_status_last_terminated_reason{reason="OOMKilled"}'
                            " == 1",
                            "{{pod}}/{{container}}",
                        ),
                    ),
                    kind="stat",
                ),
                P(
                    "HPA replicas",
                    "Current vs maximum replicas per HPA (at max: scaling cannot help).",
                    "short",
                    (
                        q(
                            "kube_horizontalpodautoscaler_status_current_replicas",
                            "{{horizontalpodautoscaler}} current",
                        ),
                        q(
                            "kube_horizontalpodautoscaler_spec_max_replicas",
                            "{{horizontalpodautoscaler}} max",
                        ),
                    ),
                ),
            ),
        ),
    ),
)

BOARDS: tuple[Board, ...] = (OVERVIEW, API_BOARD, DATABASE, QUEUES, PAYMENTS, TLS, KUBERNETES)


def render(board: Board) -> str:
    """The dashboard's JSON text exactly as committed (trailing newline included)."""
    return JSONEncoder(sort_keys=True, indent=2).encode(build(board).build()) + "\n"


def rendered() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{board.uid}.json": render(board) for board in BOARDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the files differ")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    args = parser.parse_args(argv)
    stale = []
    for name, text in rendered().items():
        path = args.out / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    for name in stale:
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
