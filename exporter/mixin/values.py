"""The mixin's values: one typed, documented source for every rule, dashboard and doc table.

``load_values(path)`` merges a user file over the shipped ``defaults.yaml`` (mappings merge
key by key, lists and scalars replace) and validates the result; unknown keys are errors,
and every error names its place, as in the exporter's own config.

Other parts of the exporter read the values too: ``diagnose`` takes its sections,
thresholds and probe kinds from :func:`sections` and :func:`section_thresholds`, so an alert
that fires and a section's verdict never disagree; the Kubernetes manifests consume the
generated ``PrometheusRule`` and dashboard ConfigMaps. Keep these names stable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "SECTION_ANCHORS",
    "Input",
    "MixinValues",
    "Section",
    "ValuesError",
    "default_values",
    "duration_seconds",
    "inputs",
    "load_values",
    "sections",
    "section_thresholds",
]

# The operations runbook's section anchors, in the runbook's order.
SECTION_ANCHORS = (
    "api-down",
    "high-error-rate",
    "database-issues",
    "payment-failures",
    "high-latency",
    "resource-exhaustion",
    "queue-backlog",
    "ssl-certificate-renewal",
)

_DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def _check_duration(value: str) -> str:
    if not _DURATION.match(value) or duration_seconds(value) <= 0:
        raise ValueError(f"{value!r} is not a Prometheus duration such as 30s, 5m, 1h")
    return value


def duration_seconds(value: str) -> float:
    """Seconds of a Prometheus duration (``1h30m`` -> 5400.0)."""
    return float(sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", value)))


# A Prometheus duration kept as written ("5m"): rules and docs show it as the user wrote it.
Duration = Annotated[str, AfterValidator(_check_duration)]
Ratio = Annotated[float, Field(gt=0, le=1)]
Severity = Literal["critical", "warning", "info"]
_LABEL = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ------------------------------------------------------------------ selectors and URLs


class Selectors(_Model):
    """Which series the rules read. Every expression selects its job (and kind) explicitly."""

    exporter_job: str = Field(description="`job` label of the exporter's scrape job")
    api_job: str = Field(description="`job` label of the Festivals API's own /metrics")
    api_service: str = Field(description="`service` label of the http probes of the API health")
    payments_service: str = Field(
        description="`service` label of the Stripe webhook http probe and Stripe status probe"
    )
    api_deployment: str = Field(description="Kubernetes deployment of the API (kubernetes probe)")
    stripe_components: str = Field(
        description="regex of the Stripe status components that mean payments fail"
    )
    queue_exclude: str = Field(description="regex of queues that are not a backlog (failed jobs)")
    cluster_label: str = Field(
        pattern=r"^([a-zA-Z_][a-zA-Z0-9_]*)?$",
        description="label telling clusters apart, kept by every aggregation and made a "
        "dashboard variable; empty: one cluster",
    )
    replica_labels: tuple[Annotated[str, Field(pattern=_LABEL)], ...] = Field(
        min_length=1,
        description="labels that tell exporter replicas apart (aggregated away by fleet "
        "rules); they must not be labels of the probed things themselves",
    )


class Replicas(_Model):
    """How many probers must agree before a runbook alert fires."""

    quorum: Literal["majority", "any", "all"] = Field(
        description="`majority`: more than half of the replicas that are up; `any`: one; "
        "`all`: every replica that is up"
    )


class Urls(_Model):
    runbook: str = Field(description="the operations runbook; `#<section>` is appended")
    exporter_docs: str = Field(
        description="docs/alerts.md of this exporter: `runbook_url` of the meta alerts"
    )
    grafana: str = Field(description="Grafana base URL; `/d/<uid>` is appended")
    diagnose: str = Field(
        description="the exporter's diagnosis page; `/<section>` is appended (`diagnose_url`)"
    )


Area = Literal["overview", "api", "database", "queues", "payments", "tls", "kubernetes"]


class Dashboards(_Model):
    """Grafana dashboard uid per runbook area."""

    overview: str
    api: str
    database: str
    queues: str
    payments: str
    tls: str
    kubernetes: str
    refresh: str = Field(description="auto-refresh interval of every dashboard")

    def uid(self, area: Area) -> str:
        return str(getattr(self, area))


class Alertmanager(_Model):
    """The example Alertmanager config: receivers and notification timing."""

    pagerduty_routing_key: str = Field(description="PagerDuty Events v2 integration key")
    pagerduty_url: str = Field(description="Events API URL; empty: PagerDuty's own")
    ticket_webhook_url: str = Field(description="webhook of the ticketing system (warnings)")
    group_wait: Duration = Field(description="wait before the first notification of a group")
    critical_group_wait: Duration
    group_interval: Duration = Field(description="wait before notifying a group's changes")
    critical_repeat_interval: Duration = Field(description="re-page an unresolved incident")
    warning_repeat_interval: Duration = Field(description="re-send an open ticket")


# ------------------------------------------------------------------ alert settings


class _Alert(_Model):
    severity: Severity
    for_: Duration = Field(alias="for", description="how long the condition must hold")


class APIServiceDown(_Alert):
    pass


class HighErrorRate(_Alert):
    threshold: Ratio = Field(description="share of API requests answered 5xx")
    window: Duration
    min_request_rate: float = Field(
        ge=0, description="requests per second below which the ratio is not trusted"
    )


class SyntheticHighErrorRate(_Alert):
    threshold: Ratio = Field(description="share of failed API probe runs, long and short window")
    long_window: Duration
    short_window: Duration
    min_runs: float = Field(ge=0, description="runs in the long window below which no alert")


class APIErrorBudgetBurn(_Model):
    objective: Annotated[float, Field(gt=0, lt=1)] = Field(
        description="share of API requests that must not fail (SLO), e.g. 0.995"
    )
    fast_for: Duration
    slow_for: Duration
    fast_severity: Severity
    slow_severity: Severity
    min_request_rate: float = Field(ge=0)


class HighLatencyP99(_Alert):
    threshold_seconds: float = Field(gt=0, description="p99 request latency")
    window: Duration
    min_request_rate: float = Field(ge=0)


class SyntheticHighLatencyP99(_Alert):
    threshold_seconds: float = Field(gt=0, description="p99 run time of the API probes")
    window: Duration


class DatabaseDown(_Alert):
    pass


class DatabaseConnectionPoolExhausted(_Alert):
    slots_ratio: Ratio = Field(description="used share of PostgreSQL's ordinary slots")
    refused_for: Duration = Field(description="`for` of the too-many-clients signal")
    refused_window: Duration
    refused_min_ratio: Ratio = Field(
        description="share of runs refused for lack of slots over refused_window"
    )
    pgbouncer_maxwait_seconds: float = Field(gt=0, description="oldest PgBouncer client wait")
    pgbouncer_for: Duration


class HighPaymentFailureRate(_Alert):
    threshold: Ratio = Field(description="share of payment attempts that failed")
    window: Duration
    min_attempt_rate: float = Field(ge=0, description="attempts per second below which no alert")
    stripe_status_min: int = Field(
        ge=1, le=4, description="Stripe component severity (2 degraded ... 4 major outage)"
    )
    stripe_for: Duration


class SyntheticPaymentCheckFailing(_Alert):
    pass


class HighCPUUsage(_Alert):
    threshold: Ratio = Field(description="CPU use / CPU limit")


class HighMemoryUsage(_Alert):
    threshold: Ratio = Field(description="working set / memory limit")
    oom_window: Duration = Field(description="window in which OOMKill restarts are counted")
    oom_restarts: int = Field(
        ge=1, description="restarts in oom_window (the last one OOMKilled) that fire"
    )


class QueueBacklog(_Alert):
    age_seconds: float = Field(gt=0, description="age of the oldest waiting job")
    length: float = Field(gt=0, description="jobs waiting")
    length_for: Duration


class SSLCertificateExpiringSoon(_Alert):
    days: float = Field(gt=0, description="days before expiry")


class Meta(_Model):
    """Alerts about the exporter and the inputs the runbook alerts depend on."""

    exporter_down_for: Duration
    replica_down_for: Duration
    reload_failed_for: Duration
    probe_stale_after: Duration = Field(
        description="a probe that started no run for this long is stale (above its interval)"
    )
    probe_stale_for: Duration
    input_down_for: Duration
    input_absent_for: Duration
    statuspage_stale_after: Duration
    statuspage_stale_for: Duration


class Alerts(_Model):
    api_service_down: APIServiceDown
    high_error_rate: HighErrorRate
    synthetic_high_error_rate: SyntheticHighErrorRate
    api_error_budget_burn: APIErrorBudgetBurn
    high_latency_p99: HighLatencyP99
    synthetic_high_latency_p99: SyntheticHighLatencyP99
    database_down: DatabaseDown
    database_connection_pool_exhausted: DatabaseConnectionPoolExhausted
    high_payment_failure_rate: HighPaymentFailureRate
    synthetic_payment_check_failing: SyntheticPaymentCheckFailing
    high_cpu_usage: HighCPUUsage
    high_memory_usage: HighMemoryUsage
    queue_backlog: QueueBacklog
    ssl_certificate_expiring_soon: SSLCertificateExpiringSoon
    meta: Meta


class InputSettings(_Model):
    required: bool = Field(description="alert (FestivalsInputAbsent) when it is not there")


InputName = Literal[
    "api_probe",
    "api_metrics",
    "payments_probe",
    "payments_metrics",
    "stripe_status",
    "postgres",
    "pgbouncer",
    "redis",
    "tls",
    "kubernetes",
    "kubernetes_resources",
    "cert_manager",
]


class SectionValues(_Model):
    title: str = Field(description="the runbook heading")
    dashboard: Area
    alerts: tuple[str, ...] = Field(description="alert names that link to this section")
    inputs: tuple[InputName, ...] = Field(description="inputs the section's evidence comes from")
    thresholds: tuple[str, ...] = Field(
        description="dotted paths into `alerts` (e.g. `queue_backlog.length`)"
    )


class MixinValues(_Model):
    selectors: Selectors
    replicas: Replicas
    urls: Urls
    dashboards: Dashboards
    alertmanager: Alertmanager
    alerts: Alerts
    inputs: dict[InputName, InputSettings]
    sections: dict[str, SectionValues]

    def runbook_url(self, section: str) -> str:
        return f"{self.urls.runbook}#{section}"

    def diagnose_url(self, section: str) -> str:
        return f"{self.urls.diagnose.rstrip('/')}/{section}"

    def dashboard_url(self, area: Area) -> str:
        return f"{self.urls.grafana.rstrip('/')}/d/{self.dashboards.uid(area)}"


# ------------------------------------------------------------------ loading


class ValuesError(Exception):
    """A values file that cannot be used; ``errors`` name each bad field and why."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return override


def _defaults_text() -> str:
    return resources.files("exporter.mixin").joinpath("defaults.yaml").read_text("utf-8")


def _validate(data: Any, where: str) -> MixinValues:
    try:
        values = MixinValues.model_validate(data)
    except ValidationError as exc:
        errors = [
            f"{where}: {'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ValuesError(errors) from None
    problems = _cross_check(values)
    if problems:
        raise ValuesError([f"{where}: {p}" for p in problems])
    return values


def _cross_check(values: MixinValues) -> list[str]:
    problems = []
    if set(values.sections) != set(SECTION_ANCHORS):
        problems.append(f"sections: must be exactly {', '.join(SECTION_ANCHORS)}")
    for anchor, section in values.sections.items():
        for path in section.thresholds:
            try:
                _resolve(values, path)
            except (AttributeError, TypeError):
                problems.append(f"sections.{anchor}.thresholds: {path!r} names no setting")
    return problems


def default_values() -> MixinValues:
    """The shipped defaults (``exporter/mixin/defaults.yaml``)."""
    return _validate(yaml.safe_load(_defaults_text()), "defaults.yaml")


def load_values(path: str | Path | None = None) -> MixinValues:
    """Defaults merged with the user's values file at ``path`` (None: the defaults alone).

    Raises :class:`ValuesError` naming each bad field.
    """
    base = yaml.safe_load(_defaults_text())
    if path is None:
        return _validate(base, "defaults.yaml")
    try:
        user = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValuesError([f"{path}: cannot read: {type(exc).__name__}"]) from None
    if user is None:
        user = {}
    if not isinstance(user, Mapping):
        raise ValuesError([f"{path}: must be a mapping"])
    return _validate(_merge(base, user), str(path))


# ------------------------------------------------------------------ inputs and sections


@dataclass(frozen=True)
class Input:
    """A series family the runbook alerts read, and what is blind without it.

    ``selector`` is complete PromQL matcher text (job and kind included); ``metric`` is the
    series whose absence means the input is missing; ``up_metric`` is the kind's ``*_up``
    gauge when it has one.
    """

    name: InputName
    title: str
    kind: str | None
    labels: tuple[tuple[str, str], ...]
    metric: str
    selector: str
    up_metric: str | None
    required: bool
    blind_alerts: tuple[str, ...]


def _sel(*matchers: str) -> str:
    return ", ".join(m for m in matchers if m)


def inputs(values: MixinValues) -> dict[InputName, Input]:
    """Every input by name, with its selector built from ``values.selectors``."""
    s = values.selectors
    job = f'job="{s.exporter_job}"'
    api_job = f'job="{s.api_job}"'
    table: list[tuple[InputName, str, str | None, tuple[tuple[str, str], ...], str, str | None,
                      tuple[str, ...], str]] = [
        ("api_probe", "API health probe", "http", (("service", s.api_service),),
         "probe_success", None,
         ("APIServiceDown", "SyntheticHighErrorRate", "SyntheticHighLatencyP99"), job),
        ("api_metrics", "the API's own request metrics", None, (),
         "festivals_http_requests_total", None,
         ("HighErrorRate", "HighLatencyP99", "APIErrorBudgetBurn"), api_job),
        ("payments_probe", "Stripe webhook endpoint probe", "http",
         (("service", s.payments_service),), "probe_success", None,
         ("SyntheticPaymentCheckFailing",), job),
        ("payments_metrics", "the API's payment attempt counter", None, (),
         "festivals_payment_attempts_total", None, ("HighPaymentFailureRate",), api_job),
        ("stripe_status", "Stripe status page probe", "statuspage",
         (("service", s.payments_service),), "statuspage_up", "statuspage_up",
         ("HighPaymentFailureRate",), job),
        ("postgres", "PostgreSQL probe", "postgres", (), "probe_success", "pg_up",
         ("DatabaseDown", "DatabaseConnectionPoolExhausted"), job),
        ("pgbouncer", "PgBouncer probe", "pgbouncer", (), "probe_success", "pgbouncer_up",
         ("DatabaseConnectionPoolExhausted",), job),
        ("redis", "Redis queue probe", "redis", (), "probe_success", "redis_up",
         ("QueueBacklog",), job),
        ("tls", "certificate probe", "tls", (), "tls_earliest_cert_expiry_timestamp_seconds",
         None, ("SSLCertificateExpiringSoon",), job),
        ("kubernetes", "Kubernetes probe", "kubernetes", (),
         "kube_deployment_spec_replicas", None,
         ("APIServiceDown", "HighMemoryUsage"), job),
        ("kubernetes_resources", "pod resource usage (metrics.k8s.io)", "kubernetes", (),
         "probe_kubernetes_container_memory_limit_ratio", None,
         ("HighCPUUsage", "HighMemoryUsage"), job),
        ("cert_manager", "cert-manager Certificates", "kubernetes", (),
         "certmanager_certificate_expiration_timestamp_seconds", None,
         ("SSLCertificateExpiringSoon",), job),
    ]
    out: dict[InputName, Input] = {}
    for name, title, kind, labels, metric, up, blind, job_matcher in table:
        settings = values.inputs.get(name, InputSettings(required=False))
        selector = _sel(
            job_matcher,
            f'kind="{kind}"' if kind else "",
            *(f'{k}="{v}"' for k, v in labels),
        )
        out[name] = Input(name, title, kind, labels, metric, selector, up,
                          settings.required, blind)
    return out


@dataclass(frozen=True)
class Section:
    """One runbook section: its alerts, inputs (and so probe kinds) and thresholds."""

    anchor: str
    title: str
    runbook_url: str
    diagnose_url: str
    dashboard_url: str
    alerts: tuple[str, ...]
    inputs: tuple[Input, ...]
    kinds: tuple[str, ...]
    thresholds: dict[str, float | int | str]


def _resolve(values: MixinValues, path: str) -> float | int | str:
    node: Any = values.alerts
    for part in path.split("."):
        node = getattr(node, "for_" if part == "for" else part)
    if isinstance(node, BaseModel) or node is None:
        raise TypeError(path)
    return node  # type: ignore[no-any-return]


def section_thresholds(values: MixinValues, anchor: str) -> dict[str, float | int | str]:
    """The thresholds of one section by dotted path (``queue_backlog.length`` -> 1000.0)."""
    return {path: _resolve(values, path) for path in values.sections[anchor].thresholds}


def sections(values: MixinValues) -> dict[str, Section]:
    """Every runbook section in the runbook's order."""
    table = inputs(values)
    out: dict[str, Section] = {}
    for anchor in SECTION_ANCHORS:
        sv = values.sections[anchor]
        ins = tuple(table[name] for name in sv.inputs)
        kinds = tuple(dict.fromkeys(i.kind for i in ins if i.kind))
        out[anchor] = Section(
            anchor=anchor,
            title=sv.title,
            runbook_url=values.runbook_url(anchor),
            diagnose_url=values.diagnose_url(anchor),
            dashboard_url=values.dashboard_url(sv.dashboard),
            alerts=sv.alerts,
            inputs=ins,
            kinds=kinds,
            thresholds=section_thresholds(values, anchor),
        )
    return out
