"""The Grafana dashboards, one per runbook area, built from the mixin values.

Built with grafana-foundation-sdk (Grafana 11.6 build), serialized with the SDK's
``JSONEncoder(sort_keys=True, indent=2)``. Conventions of grafana/dashboard-linter: a
``datasource`` variable used by every panel and query; ``job`` and ``instance`` (and the
cluster label's) variables used by every selector; rates over ``$__rate_interval``; every
panel with a title, description and unit; stable uids; read-only. Panels that show an
alert's signal carry threshold steps equal to that alert's threshold in the values.

In the query texts below, ``name@`` or ``name@{matchers}`` marks a selector: :func:`scope`
adds the dashboard variables to it, so no selector can forget them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models.dashboard import (
    DashboardLinkType,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from exporter.mixin.values import Area, MixinValues, duration_seconds

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["festivals", "festivals-exporter"]
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)@(\{([^}]*)\})?")

Steps = tuple[tuple[float | None, str], ...]
GREEN, RED, YELLOW, ORANGE = "green", "red", "yellow", "orange"


def above(threshold: float) -> Steps:
    """Green below the alert's threshold, red at and above it."""
    return ((None, GREEN), (threshold, RED))


def below(threshold: float) -> Steps:
    """Red below the threshold (days left, success), green at and above it."""
    return ((None, RED), (threshold, GREEN))


UP = below(1)  # 1 = up/ok is green, 0 red


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
    steps: Steps | None = None


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[P, ...]


@dataclass(frozen=True)
class Board:
    area: Area
    title: str
    description: str
    jobs: tuple[str, ...]
    rows: tuple[Row, ...] = field(default_factory=tuple)


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


class Scope:
    """The variables every selector carries."""

    def __init__(self, values: MixinValues) -> None:
        self.cluster = values.selectors.cluster_label
        self.matchers = ['job=~"$job"', 'instance=~"$instance"']
        if self.cluster:
            self.matchers.append(f'{self.cluster}=~"${self.cluster}"')

    def __call__(self, expr: str) -> str:
        def add(match: re.Match[str]) -> str:
            own = (match.group(3) or "").strip()
            return f"{match.group(1)}{{{', '.join([*([own] if own else []), *self.matchers])}}}"

        return _SELECTOR.sub(add, expr)


def _thresholds(steps: Steps) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def _panel(spec: P, panel_id: int, scope: Scope) -> timeseries.Panel | stat.Panel:
    panel: timeseries.Panel | stat.Panel
    panel = stat.Panel() if spec.kind == "stat" else timeseries.Panel()
    panel.id(panel_id).title(spec.title).description(spec.description).unit(spec.unit)
    panel.datasource(DATASOURCE).span(spec.width).height(spec.height)
    if spec.steps:
        panel.thresholds(_thresholds(spec.steps))
        if isinstance(panel, timeseries.Panel):
            panel.thresholds_style(
                cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)
            )
        else:
            panel.color_mode(cm.BigValueColorMode.BACKGROUND)
    for index, query in enumerate(spec.queries):
        target = (
            prometheus.Dataquery()
            .expr(scope(query.expr))
            .ref_id(chr(ord("A") + index))
            .datasource(DATASOURCE)
        )
        if query.legend:
            target.legend_format(query.legend)
        if spec.kind == "stat":
            target.instant()
        panel.with_target(target)
    return panel


def _variable(name: str, label: str, query: str) -> db.QueryVariable:
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        # ".*" also matches series without the label (fleet recording rules have no
        # instance): "All" must show them.
        .all_value(".*")
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )


def build(board: Board, values: MixinValues) -> db.Dashboard:
    scope = Scope(values)
    jobs = "|".join(board.jobs)
    dash = (
        db.Dashboard(board.title)
        .uid(values.dashboards.uid(board.area))
        .description(board.description)
        .tags(TAGS)
        .readonly()
        .refresh(values.dashboards.refresh)
        .time("now-6h", "now")
        .timezone("utc")
        .with_variable(
            db.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
    )
    if scope.cluster:
        dash.with_variable(_variable(
            scope.cluster, scope.cluster.capitalize(),
            f'label_values(up{{job=~"{jobs}"}}, {scope.cluster})',
        ))
    in_cluster = f', {scope.cluster}=~"${scope.cluster}"' if scope.cluster else ""
    dash.with_variable(_variable(
        "job", "Job", f'label_values(up{{job=~"{jobs}"{in_cluster}}}, job)'
    ))
    dash.with_variable(_variable(
        "instance", "Instance", f'label_values(up{{job=~"$job"{in_cluster}}}, instance)'
    ))
    dash.link(
        db.DashboardLink("Festivals dashboards")
        .type(DashboardLinkType.DASHBOARDS)
        .tags(["festivals"])
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
    )
    panel_id = 1
    for row in board.rows:
        dash.with_row(db.Row(row.title).id(panel_id))
        panel_id += 1
        for spec in row.panels:
            dash.with_panel(_panel(spec, panel_id, scope))
            panel_id += 1
    return dash


# ----------------------------------------------------------------- the dashboards


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def boards(values: MixinValues) -> tuple[Board, ...]:  # noqa: PLR0915 - one table
    s, a = values.selectors, values.alerts
    exporter, api_job = s.exporter_job, s.api_job
    api = f'kind="http", service="{s.api_service}"'
    pay = f'kind="http", service="{s.payments_service}"'
    stale = duration_seconds(a.meta.probe_stale_after)
    sp_stale = duration_seconds(a.meta.statuspage_stale_after)
    cp = a.database_connection_pool_exhausted
    he, se, hl, sl = a.high_error_rate, a.synthetic_high_error_rate, a.high_latency_p99, \
        a.synthetic_high_latency_p99
    qb, ssl = a.queue_backlog, a.ssl_certificate_expiring_soon
    hp = a.high_payment_failure_rate
    runbook = "|".join((
        "APIServiceDown", "HighErrorRate", "SyntheticHighErrorRate", "APIErrorBudgetBurn",
        "DatabaseDown", "DatabaseConnectionPoolExhausted", "HighPaymentFailureRate",
        "SyntheticPaymentCheckFailing", "HighLatencyP99", "SyntheticHighLatencyP99",
        "HighCPUUsage", "HighMemoryUsage", "QueueBacklog", "SSLCertificateExpiringSoon",
    ))

    probes_row = Row("Probes", (
        P("Probe success", "probe_success of every probe on every prober: 1 when the last "
          "run succeeded.", "bool_yes_no",
          (q("min by (probe, kind, instance) (probe_success@)",
             "{{probe}} ({{kind}}) on {{instance}}"),),
          kind="stat", width=24, steps=UP),
        P("Failures by reason", "Failed runs per second by probe and reason.", "ops",
          (q("sum by (probe, reason) (rate(probe_failures_total@[$__rate_interval])) > 0",
             "{{probe}} {{reason}}"),)),
        P("Probe error ratio (5m) per prober", "Share of failed runs over 5 minutes per "
          "prober (recording rule instance_probe:probe_failures:ratio_rate5m).",
          "percentunit",
          (q("instance_probe:probe_failures:ratio_rate5m@", "{{probe}} on {{instance}}"),)),
        P("Probe run duration p99", "99th percentile of probe run durations.", "s",
          (q("histogram_quantile(0.99, sum by (probe, le) "
             "(rate(probe_run_duration_seconds_bucket@[$__rate_interval])))", "{{probe}}"),)),
        P("Seconds since last run", "Time since each probe last started a run; "
          f"FestivalsProbeStale fires above {stale:g} s.", "s",
          (q("time() - probe_last_run_timestamp_seconds@", "{{probe}} on {{instance}}"),),
          steps=above(stale)),
    ))
    exporter_row = Row("Exporter", (
        P("Replicas up", "Whether Prometheus scrapes each festivals-exporter replica (up); "
          "one down is a warning, all down critical.", "bool_yes_no",
          (q(f'up@{{job="{exporter}"}}', "{{instance}}"),), kind="stat", width=6, steps=UP),
        P("Config reload", "1 when the last config load or reload succeeded.", "bool_yes_no",
          (q("festivals_exporter_config_last_reload_successful@", "{{instance}}"),),
          kind="stat", width=6, steps=UP),
        P("Configured probes", "Probes in the running configuration.", "short",
          (q("festivals_exporter_probes@", "{{instance}}"),), kind="stat", width=6),
        P("Runs in flight", "Probe runs in progress.", "short",
          (q("festivals_exporter_probes_in_flight@", "{{instance}}"),), kind="stat", width=6),
        P("Scheduler lag p99", "How late scheduled runs start against their schedule (99th "
          "percentile).", "s",
          (q("histogram_quantile(0.99, sum by (instance, le) "
             "(rate(festivals_exporter_scheduler_lag_seconds_bucket@[$__rate_interval])))",
             "{{instance}}"),), width=24),
    ))
    overview = Board("overview", "Festivals / Overview",
                     "Every probe of festivals-exporter, the runbook alerts firing, and the "
                     "exporter's own health (meta alerts).", (exporter, api_job), (
        Row("Alerts", (
            P("Firing runbook alerts", "Alerts of the Festivals runbook currently firing, by "
              "name and severity.", "short",
              (q(f'sum by (alertname, severity) (ALERTS@{{alertstate="firing", '
                 f'alertname=~"{runbook}"}})', "{{alertname}} ({{severity}})"),), width=12),
            P("Firing meta alerts", "Alerts about the exporter and the inputs the runbook "
              "alerts need (FestivalsInputDown, FestivalsInputAbsent...), by input.", "short",
              (q('sum by (alertname, input) (ALERTS@{alertstate="firing", '
                 'alertname=~"Festivals.*"})', "{{alertname}} {{input}}"),), width=12),
        )),
        probes_row, exporter_row,
    ))

    api_board = Board("api", "Festivals / API",
                      "Runbook sections API Down, High Error Rate and High Latency: the API's "
                      f"own metrics (job {api_job}) and the synthetic http probes labelled "
                      f"service={s.api_service}.", (exporter, api_job), (
        Row("API metrics (exported by the Festivals API)", (
            P("Requests per second", "Requests served, by status code.", "reqps",
              (q("sum by (status) (rate(festivals_http_requests_total@[$__rate_interval]))",
                 "{{status}}"),)),
            P("5xx ratio", f"Share of requests answered 5xx; HighErrorRate fires above "
              f"{_pct(he.threshold)}.", "percentunit",
              (q(f"job:festivals_http_request_errors:ratio_rate{he.window}@", "{{job}}"),),
              steps=above(he.threshold)),
            P("p99 latency", f"99th percentile request latency; HighLatencyP99 fires above "
              f"{hl.threshold_seconds * 1000:g} ms.", "s",
              (q(f"job:festivals_http_request_duration_seconds:p99_rate{hl.window}@",
                 "{{job}}"),), steps=above(hl.threshold_seconds)),
            P("p99 latency by path", "99th percentile request latency per path.", "s",
              (q("histogram_quantile(0.99, sum by (le, path) "
                 "(rate(festivals_http_request_duration_seconds_bucket@[$__rate_interval])))",
                 "{{path}}"),), steps=above(hl.threshold_seconds)),
        )),
        Row("Synthetic checks", (
            P("API health check", f"probe_success of the http probes with "
              f"service={s.api_service} on each prober (APIServiceDown).", "bool_yes_no",
              (q(f"probe_success@{{{api}}}", "{{probe}} on {{instance}}"),),
              kind="stat", width=8, steps=UP),
            P("HTTP status", "Status code of the last answer (0: no answer).", "short",
              (q(f"probe_http_status_code@{{{api}}}", "{{probe}} on {{instance}}"),),
              kind="stat", width=8,
              steps=((None, RED), (200, GREEN), (300, YELLOW), (400, ORANGE), (500, RED))),
            P("Available API replicas", f"Available replicas of deployment "
              f"{s.api_deployment} (kubernetes probe).", "short",
              (q(f'kube_deployment_status_replicas_available@{{kind="kubernetes", '
                 f'deployment="{s.api_deployment}"}}', "{{namespace}}"),),
              kind="stat", width=8, steps=below(1)),
            P("Probe error ratio per prober", f"Share of failed API probe runs over "
              f"{se.short_window} and {se.long_window}; SyntheticHighErrorRate fires above "
              f"{_pct(se.threshold)} on a quorum of probers.", "percentunit",
              (q(f"instance_probe:probe_failures:ratio_rate{se.short_window}@{{{api}}}",
                 f"{{{{probe}}}} on {{{{instance}}}} {se.short_window}"),
               q(f"instance_probe:probe_failures:ratio_rate{se.long_window}@{{{api}}}",
                 f"{{{{probe}}}} on {{{{instance}}}} {se.long_window}")),
              steps=above(se.threshold)),
            P("Request phases", "Seconds per phase of the last probe request (resolve, "
              "connect, tls, processing, transfer).", "s",
              (q(f"sum by (probe, phase) (probe_http_duration_seconds@{{{api}}})",
                 "{{probe}} {{phase}}"),)),
            P("Probe p99 run duration", f"99th percentile run time of the API probes over "
              f"{sl.window}; SyntheticHighLatencyP99 fires above "
              f"{sl.threshold_seconds * 1000:g} ms.", "s",
              (q(f"instance_probe:probe_run_duration_seconds:p99_rate{sl.window}@{{{api}}}",
                 "{{probe}} on {{instance}}"),), width=24,
              steps=above(sl.threshold_seconds)),
        )),
    ))

    database = Board("database", "Festivals / Database",
                     "Runbook section Database Issues: PostgreSQL (postgres probe) and "
                     "PgBouncer pools.", (exporter,), (
        Row("PostgreSQL", (
            P("PostgreSQL up", "pg_up: the held connection answered SELECT 1 (DatabaseDown).",
              "bool_yes_no", (q("pg_up@", "{{probe}} on {{instance}}"),), kind="stat",
              width=8, steps=UP),
            P("New clients accepted", "pg_new_client_up: a new connection could be opened this "
              "run.", "bool_yes_no", (q("pg_new_client_up@", "{{probe}} on {{instance}}"),),
              kind="stat", width=8, steps=UP),
            P("Connection slots used", "Used share of the ordinary connection slots "
              f"(DatabaseConnectionPoolExhausted above {_pct(cp.slots_ratio)}).",
              "percentunit", (q("pg_connections_used_ratio@", "{{probe}} on {{instance}}"),),
              kind="stat", width=8, steps=above(cp.slots_ratio)),
            P("Connections by state", "Client backends by state (the exporter's own "
              "connection excluded).", "short",
              (q("sum by (probe, state) (pg_stat_activity_connections@)",
                 "{{probe}} {{state}}"),)),
            P("Idle sessions to kill", "Idle sessions over idle_threshold and sessions idle "
              "in transaction too long (the runbook's kill list).", "short",
              (q("pg_stat_activity_idle_over_threshold@", "{{probe}} idle"),
               q("pg_stat_activity_idle_in_transaction_over_threshold@",
                 "{{probe}} idle in transaction"))),
            P("Longest query and transaction", "Running time of the longest active query and "
              "age of the oldest transaction.", "s",
              (q("pg_stat_activity_max_query_duration_seconds@", "{{probe}} query"),
               q("pg_stat_activity_oldest_transaction_seconds@", "{{probe}} transaction"))),
            P("Statement time per second", "Execution seconds per second of all statements "
              "tracked by pg_stat_statements, by database.", "s",
              (q("sum by (probe, datname) "
                 "(rate(pg_stat_statements_seconds_total@[$__rate_interval]))",
                 "{{probe}} {{datname}}"),)),
            P("Slowest statements (mean)", "Mean execution time per call of the top K "
              "statements by query id.", "s",
              (q("topk(10, pg_stat_statements_top_mean_seconds@)", "{{datname}} {{queryid}}"),)),
            P("Ping and new-client connect time", "SELECT 1 round trip on the held "
              "connection and the time to open a new connection.", "s",
              (q("pg_ping_seconds@", "{{probe}} ping"),
               q("pg_new_client_connect_seconds@", "{{probe}} connect"))),
            P("Replication lag", "Seconds since the last replayed transaction on replicas.",
              "s", (q("pg_replication_lag_seconds@", "{{probe}}"),)),
        )),
        Row("PgBouncer", (
            P("PgBouncer up", "pgbouncer_up: the admin console answered (FestivalsInputDown "
              "when not).", "bool_yes_no", (q("pgbouncer_up@", "{{probe}} on {{instance}}"),),
              kind="stat", width=8, steps=UP),
            P("Waiting clients", "Clients waiting for a server connection, per pool.", "short",
              (q("pgbouncer_pools_client_waiting_connections@", "{{database}}/{{user}}"),),
              width=16),
            P("Oldest client wait", "Wait of the oldest waiting client "
              f"(DatabaseConnectionPoolExhausted above {cp.pgbouncer_maxwait_seconds:g} s).",
              "s", (q("pgbouncer_pools_client_maxwait_seconds@", "{{database}}/{{user}}"),),
              steps=above(cp.pgbouncer_maxwait_seconds)),
            P("Server connections", "Active and idle server connections per pool.", "short",
              (q("pgbouncer_pools_server_active_connections@", "{{database}}/{{user}} active"),
               q("pgbouncer_pools_server_idle_connections@", "{{database}}/{{user}} idle"))),
        )),
    ))

    # Redis counts the redis probe's own key reads as hits and misses; it reports them
    # apart (docs/probes/redis.md, "Cache hit ratio"), so the applications' ratio
    # subtracts them.
    app_hits = ("sum by (probe) (rate(redis_keyspace_hits_total@[$__rate_interval]) "
                "- rate(redis_probe_keyspace_hits_total@[$__rate_interval]))")
    app_misses = ("sum by (probe) (rate(redis_keyspace_misses_total@[$__rate_interval]) "
                  "- rate(redis_probe_keyspace_misses_total@[$__rate_interval]))")
    queues = Board("queues", "Festivals / Queues",
                   "Runbook section Queue Backlog and the Redis part of High Latency (redis "
                   "probe).", (exporter,), (
        Row("Queues", (
            P("Queue length", f"Jobs waiting per queue (0 when drained); QueueBacklog (length)"
              f" fires above {qb.length:g} for {qb.length_for}.", "short",
              (q("max by (probe, queue) (redis_queue_length@)", "{{queue}}"),),
              steps=above(qb.length)),
            P("Oldest job age", f"Age of the oldest waiting job per queue; QueueBacklog (age) "
              f"fires above {qb.age_seconds:g} s. Long queue with low age = moving; high age "
              "= stuck.", "s",
              (q("max by (probe, queue) (redis_queue_oldest_job_age_seconds@)", "{{queue}}"),),
              steps=above(qb.age_seconds)),
            P("Stream consumer groups", "Pending (delivered, not acknowledged) and lag (not "
              "delivered) entries.", "short",
              (q("redis_stream_group_messages_pending@", "{{stream}}/{{group}} pending"),
               q("redis_stream_group_lag@", "{{stream}}/{{group}} lag")), width=24),
        )),
        Row("Redis server", (
            P("Redis up", "redis_up: PING, INFO and the queue reads answered "
              "(FestivalsInputDown when not: QueueBacklog is blind).", "bool_yes_no",
              (q("redis_up@", "{{probe}} on {{instance}}"),), kind="stat", width=8, steps=UP),
            P("Blocked clients (idle workers)", "Clients blocked in BLPOP/BRPOP/XREAD: "
              "workers waiting for jobs.", "short",
              (q("redis_blocked_clients@", "{{probe}}"),), kind="stat", width=8),
            P("Memory used vs max", "used_memory and maxmemory (0 = no limit).", "bytes",
              (q("redis_memory_used_bytes@", "{{probe}} used"),
               q("redis_memory_max_bytes@", "{{probe}} max")), kind="stat", width=8),
            P("PING latency", "Median and slowest PING round trip per run.", "s",
              (q("redis_ping_latency_seconds@", "{{probe}} median"),
               q("redis_ping_latency_max_seconds@", "{{probe}} max"))),
            P("Cache hit ratio", "Keyspace hits / (hits + misses) of the applications: the "
              "runbook's cache hit rate, without the lookups of the probe's own reads "
              "(redis_probe_keyspace_*).", "percentunit",
              (q(f"{app_hits} / ({app_hits} + {app_misses})", "{{probe}}"),)),
            P("Evictions", "Keys evicted per second because of maxmemory.", "ops",
              (q("sum by (probe) (rate(redis_evicted_keys_total@[$__rate_interval]))",
                 "{{probe}}"),), width=24),
        )),
    ))

    payments = Board("payments", "Festivals / Payments and status pages",
                     "Runbook section Payment Failures: the API's payment attempts, Stripe's "
                     f"status page (statuspage probe, service={s.payments_service}), the "
                     "webhook endpoint check and other vendors.", (exporter, api_job), (
        Row("Payments", (
            P("Payment failure ratio", f"Share of payment attempts that did not succeed "
              f"(festivals_payment_attempts_total); HighPaymentFailureRate fires above "
              f"{_pct(hp.threshold)}.", "percentunit",
              (q(f"job:festivals_payment_attempts_failed:ratio_rate{hp.window}@", "{{job}}"),),
              steps=above(hp.threshold)),
            P("Payment attempts by outcome", "Attempts per second by outcome.", "ops",
              (q("sum by (outcome) (rate(festivals_payment_attempts_total@"
                 "[$__rate_interval]))", "{{outcome}}"),)),
            P("Webhook endpoint check", "probe_success of the http probe POSTing a test "
              "event to the Stripe webhook endpoint (SyntheticPaymentCheckFailing).",
              "bool_yes_no", (q(f"probe_success@{{{pay}}}", "{{probe}} on {{instance}}"),),
              kind="stat", width=12, steps=UP),
            P("Stripe overall status", "Overall status as severity: 0 ok, 1 maintenance, 2 "
              "degraded, 3 partial outage, 4 major outage.", "short",
              (q(f'statuspage_overall_status@{{service="{s.payments_service}"}}',
                 "{{probe}}"),), kind="stat", width=12, steps=above(hp.stripe_status_min)),
            P("Component status", "Component status as severity (HighPaymentFailureRate "
              f"fires at {hp.stripe_status_min} or more for Stripe's API and webhooks).",
              "short", (q("statuspage_component_status@", "{{probe}} {{component}}"),),
              steps=above(hp.stripe_status_min)),
            P("Status page answer age", "Seconds since each status page last answered; "
              f"FestivalsStatusPageStale fires above {sp_stale:g} s.", "s",
              (q("statuspage_answer_age_seconds@", "{{probe}}"),), steps=above(sp_stale)),
            P("Unresolved incidents", "Unresolved incidents by impact (Statuspage v2 pages).",
              "short", (q("sum by (probe, impact) (statuspage_incidents_unresolved@)",
                          "{{probe}} {{impact}}"),), width=24),
        )),
    ))

    tls = Board("tls", "Festivals / TLS certificates",
                "Runbook section SSL Certificate Renewal: tls probe sources, http/tcp endpoints "
                "and cert-manager Certificates.", (exporter,), (
        Row("Expiry", (
            P("Days left per source", "Days until the earliest certificate of each source "
              "expires (0 values, i.e. unknown, left out); SSLCertificateExpiringSoon fires "
              f"below {ssl.days:g} days.", "d",
              (q("(min by (probe, source) (tls_earliest_cert_expiry_timestamp_seconds@ > 0) "
                 "- time()) / 86400", "{{source}}"),), kind="stat", width=24,
              steps=below(ssl.days)),
            P("Endpoint certificates (http/tcp probes)", "Days until the leaf certificate "
              "served to http and tcp probes expires.", "d",
              (q('(min by (probe) (probe_ssl_earliest_cert_expiry@{kind=~"http|tcp"} > 0) '
                 "- time()) / 86400", "{{probe}}"),), steps=below(ssl.days)),
            P("cert-manager Certificates", "Days until each issued cert-manager Certificate "
              "expires.", "d",
              (q("(min by (namespace, name) "
                 '(certmanager_certificate_expiration_timestamp_seconds@{kind="kubernetes"} '
                 "> 0) - time()) / 86400", "{{namespace}}/{{name}}"),), steps=below(ssl.days)),
            P("Chain verification", "tls_verify_success: the chain verified (trust, dates, "
              "hostname).", "bool_yes_no", (q("tls_verify_success@", "{{source}}"),),
              kind="stat", width=12, steps=UP),
            P("Verification failures", "Failing verification reason per source (expired, "
              "untrusted_root...).", "short",
              (q("tls_verify_failed@ == 1", "{{source}} {{reason}}"),), kind="stat", width=12),
        )),
    ))

    k8s = 'kind="kubernetes"'
    cpu, mem = a.high_cpu_usage, a.high_memory_usage
    kubernetes = Board("kubernetes", "Festivals / Kubernetes resources",
                       "Runbook sections API Down (pods, rollouts) and Resource Exhaustion (CPU,"
                       " memory, OOMKilled, HPA) from the kubernetes probe.", (exporter,), (
        Row("Workloads", (
            P("Available replicas", "Available vs desired replicas per deployment.", "short",
              (q(f"kube_deployment_status_replicas_available@{{{k8s}}}",
                 "{{deployment}} available"),
               q(f"kube_deployment_spec_replicas@{{{k8s}}}", "{{deployment}} desired"))),
            P("Pods not ready", "Pods whose Ready condition is not true.", "short",
              (q(f'sum by (namespace) (kube_pod_status_ready@{{{k8s}, condition!="true"}})',
                 "{{namespace}}"),)),
            P("Waiting containers by reason", "Containers waiting, by reason "
              "(CrashLoopBackOff, ImagePullBackOff...).", "short",
              (q(f"sum by (reason) (kube_pod_container_status_waiting_reason@{{{k8s}}})",
                 "{{reason}}"),)),
            P("Container restarts", "Container restarts per second.", "ops",
              (q(f"sum by (pod, container) (rate(kube_pod_container_status_restarts_total@"
                 f"{{{k8s}}}[$__rate_interval]))", "{{pod}}/{{container}}"),)),
            P("Rollout in progress", "1 while a deployment's rollout is not done; with the "
              "revision, answers the runbook's 'recent deployment?'.", "short",
              (q("probe_kubernetes_deployment_rollout_in_progress@",
                 "{{deployment}} in progress"),
               q("probe_kubernetes_deployment_revision@", "{{deployment}} revision")),
              width=24),
        )),
        Row("Resources", (
            P("CPU use vs limit", f"CPU use / CPU limit per container; HighCPUUsage fires "
              f"above {_pct(cpu.threshold)} for {cpu.for_}.", "percentunit",
              (q("probe_kubernetes_container_cpu_limit_ratio@", "{{pod}}/{{container}}"),),
              steps=above(cpu.threshold)),
            P("Memory use vs limit", f"Working set / memory limit per container; "
              f"HighMemoryUsage fires above {_pct(mem.threshold)} for {mem.for_}.",
              "percentunit",
              (q("probe_kubernetes_container_memory_limit_ratio@", "{{pod}}/{{container}}"),),
              steps=above(mem.threshold)),
            P("OOMKilled containers", "Containers whose last termination was OOMKilled.",
              "short",
              (q(f'kube_pod_container_status_last_terminated_reason@{{{k8s}, '
                 f'reason="OOMKilled"}} == 1', "{{pod}}/{{container}}"),), kind="stat"),
            P("HPA replicas", "Current vs maximum replicas per HPA (at max: scaling cannot "
              "help).", "short",
              (q("kube_horizontalpodautoscaler_status_current_replicas@",
                 "{{horizontalpodautoscaler}} current"),
               q("kube_horizontalpodautoscaler_spec_max_replicas@",
                 "{{horizontalpodautoscaler}} max"))),
        )),
    ))
    return (overview, api_board, database, queues, payments, tls, kubernetes)


def render(board: Board, values: MixinValues) -> str:
    """The dashboard's JSON text exactly as committed (trailing newline included)."""
    return JSONEncoder(sort_keys=True, indent=2).encode(build(board, values).build()) + "\n"


def rendered(values: MixinValues) -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        f"{values.dashboards.uid(board.area)}.json": render(board, values)
        for board in boards(values)
    }
