"""Prometheus recording and alerting rules built from the mixin values.

Three ideas hold the rules together:

- **Fleet alerts.** N exporter replicas probe the same targets. A runbook alert counts the
  probers that see the problem (``count without (<replica labels>)``) and fires only when
  that count reaches the quorum, computed from the replicas that are up; its value is that
  count, so the description says how many probers saw it. One replica's bad network is
  that replica's problem (FestivalsExporterReplicaDown), never a page.
- **Explicit identity.** Every selector names its job and kind; joins use default matching
  (the full label set) or ``ignoring`` the one label that differs.
- **No blind spots.** Each input a runbook alert reads has its own alert when it is down,
  stale or absent, and that alert names the runbook alerts it blinds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from exporter.mixin.values import Area, Input, MixinValues, duration_seconds, inputs

Rule = dict[str, Any]

# The `system` label every alert carries: what the alert is about. Alertmanager groups and
# inhibits on it (with the cluster label), so one problem of one system is one incident.
SYSTEM_OF_SECTION = {
    "api-down": "api",
    "high-error-rate": "api",
    "high-latency": "api",
    "database-issues": "database",
    "payment-failures": "payments",
    "resource-exhaustion": "workloads",
    "queue-backlog": "queues",
    "ssl-certificate-renewal": "certificates",
}
SECTION_OF_SYSTEM = {
    "api": "api-down",
    "database": "database-issues",
    "payments": "payment-failures",
    "workloads": "resource-exhaustion",
    "queues": "queue-backlog",
    "certificates": "ssl-certificate-renewal",
}
AREA_OF_SECTION: dict[str, Area] = {
    "api-down": "api",
    "high-error-rate": "api",
    "high-latency": "api",
    "database-issues": "database",
    "payment-failures": "payments",
    "resource-exhaustion": "kubernetes",
    "queue-backlog": "queues",
    "ssl-certificate-renewal": "tls",
}
# Which section an input's blindness belongs to (its diagnose page and dashboard).
SECTION_OF_INPUT = {
    "api_probe": "api-down",
    "api_metrics": "high-error-rate",
    "payments_probe": "payment-failures",
    "payments_metrics": "payment-failures",
    "stripe_status": "payment-failures",
    "postgres": "database-issues",
    "pgbouncer": "database-issues",
    "redis": "queue-backlog",
    "tls": "ssl-certificate-renewal",
    "kubernetes": "api-down",
    "kubernetes_resources": "resource-exhaustion",
    "cert_manager": "ssl-certificate-renewal",
}
# The gauge that says an input answered (1) or not (0); inputs whose failure already is a
# runbook alert (postgres: DatabaseDown, the API and webhook probes) have none here.
DOWN_METRIC = {
    "redis": "redis_up",
    "pgbouncer": "pgbouncer_up",
    "stripe_status": "statuspage_up",
    "tls": "tls_source_up",
    "kubernetes": "probe_success",
    "kubernetes_resources": "probe_kubernetes_metrics_api_available",
    "cert_manager": "probe_kubernetes_cert_manager_available",
}
BURN_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


class Builder:
    """PromQL fragments that depend on the values: selectors, aggregation labels, quorum."""

    def __init__(self, values: MixinValues) -> None:
        self.v = values
        s = values.selectors
        self.cluster = s.cluster_label
        self.replicas = ", ".join(s.replica_labels)
        self.job = f'job="{s.exporter_job}"'
        self.api_job = f'job="{s.api_job}"'
        self.inputs = inputs(values)

    # -- selectors
    def sel(self, *matchers: str) -> str:
        return "{" + ", ".join(m for m in (self.job, *matchers) if m) + "}"

    def api_probe(self) -> str:
        return self.sel('kind="http"', f'service="{self.v.selectors.api_service}"')

    def agg(self, op: str, inner: str, *labels: str) -> str:
        """``op by (labels, cluster) (inner)``, or ``op(inner)`` when nothing is kept."""
        keep = [*labels, self.cluster] if self.cluster else list(labels)
        return f"{op} by ({', '.join(keep)}) ({inner})" if keep else f"{op}({inner})"

    def by(self, *labels: str) -> str:
        """``by (...)`` keeping the cluster label when there is one."""
        keep = [*labels, self.cluster] if self.cluster else list(labels)
        return f"by ({', '.join(keep)})"

    def on(self, *labels: str) -> str:
        keep = [*labels, self.cluster] if self.cluster else list(labels)
        return f"on ({', '.join(keep)})"

    # -- quorum
    def replicas_up(self) -> str:
        return f"count {self.by('job')} (up{{{self.job}}} == 1)"

    def quorum(self) -> str:
        up = self.replicas_up()
        match self.v.replicas.quorum:
            case "majority":
                return f"(floor({up} / 2) + 1)"
            case "all":
                return f"({up})"
            case "any":
                return f"(clamp_max({up}, 1))"
        raise AssertionError(self.v.replicas.quorum)

    def fleet(self, condition: str) -> str:
        """Probers that see ``condition``, kept when they reach the quorum."""
        body = condition.strip().replace("\n", "\n  ")
        return (
            f"count without ({self.replicas}) (\n  {body}\n)\n"
            f">= {self.on('job')} group_left ()\n{self.quorum()}"
        )

    # -- annotation templates
    def probers(self) -> str:
        """'2 of 2 probers' (the alert's value is the count of probers that see it)."""
        if self.cluster:
            q = (
                f'printf "count(up{{{self.job}, {self.cluster}=%q}} == 1)" '
                f"$labels.{self.cluster} | query"
            )
        else:
            q = 'query "count(up{' + self.job.replace('"', '\\"') + '} == 1)"'
        return (
            "{{ $value }} of {{ with " + q + " }}{{ . | first | value }}{{ else }}?{{ end }}"
            " probers"
        )

    def figure(self, expr: str, labels: Iterable[str], fmt: str) -> str:
        """A template that queries the current value of ``expr`` for this alert's labels.

        ``expr`` holds one ``%s`` where the matchers go; the probers' values are reduced to
        their maximum."""
        keys = list(labels) + ([self.cluster] if self.cluster else [])
        matchers = ", ".join(f"{k}=%q" for k in keys)
        query = expr.replace("%s", ", ".join(m for m in (self.job, matchers) if m))
        query = query.replace('"', '\\"')
        args = " ".join(f"$labels.{k}" for k in keys)
        return (
            f'{{{{ with printf "{query}" {args} | query }}}}'
            f"{{{{ . | first | value | {fmt} }}}}{{{{ else }}}}unknown{{{{ end }}}}"
        )


def _num(value: float) -> str:
    """A number as PromQL and humans write it (0.9, 1000, 1.5)."""
    return f"{value:g}" if value != int(value) or abs(value) < 1e15 else str(int(value))


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def _dur(text: str) -> str:
    """'5m' -> '5 minutes' for prose."""
    seconds = duration_seconds(text)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return text


class RuleSet:
    def __init__(self, values: MixinValues) -> None:
        self.v = values
        self.b = Builder(values)

    # ------------------------------------------------------------------ helpers
    def _alert(
        self,
        name: str,
        expr: str,
        section: str | None,
        severity: str,
        for_: str | None,
        summary: str,
        description: str,
        *,
        signal: str | None = None,
        labels: dict[str, str] | None = None,
        area: Area | None = None,
        system: str | None = None,
        extra_annotations: dict[str, str] | None = None,
        diagnose_section: str | None = None,
    ) -> Rule:
        v = self.v
        rule_labels: dict[str, str] = {"severity": severity}
        if signal:
            rule_labels["signal"] = signal
        rule_labels["system"] = system or SYSTEM_OF_SECTION[section or "api-down"]
        if section:
            rule_labels["section"] = section
        rule_labels.update(labels or {})
        diag = section or diagnose_section
        dash_area: Area = area or (AREA_OF_SECTION[section] if section else "overview")
        annotations = {
            "summary": summary,
            "description": " ".join(description.split()),
            "runbook_url": v.runbook_url(section) if section else
            f"{v.urls.exporter_docs}#{name.lower()}",
            "dashboard_url": v.dashboard_url(dash_area),
            "diagnose_url": v.diagnose_url(diag) if diag else v.urls.diagnose,
        }
        annotations.update(extra_annotations or {})
        rule: Rule = {"alert": name, "expr": expr.strip() + "\n"}
        if for_:
            rule["for"] = for_
        rule["labels"] = rule_labels
        rule["annotations"] = annotations
        return rule

    # ------------------------------------------------------------------ recording
    def recording(self) -> list[dict[str, Any]]:
        b, v = self.b, self.v
        a = v.alerts
        probe_windows = sorted(
            {a.synthetic_high_error_rate.short_window, a.synthetic_high_error_rate.long_window},
            key=duration_seconds,
        )
        per_instance: list[Rule] = []
        for w in probe_windows:
            per_instance.append({
                "record": f"instance_probe:probe_failures:ratio_rate{w}",
                "expr": f"sum without (reason) (rate(probe_failures_total{b.sel()}[{w}]))\n"
                        f"/\nrate(probe_runs_total{b.sel()}[{w}])\n",
            })
        lw = a.synthetic_high_latency_p99.window
        per_instance.append({
            "record": f"instance_probe:probe_run_duration_seconds:p99_rate{lw}",
            "expr": f"histogram_quantile(0.99, rate(probe_run_duration_seconds_bucket"
                    f"{b.sel()}[{lw}]))\n",
        })
        fleet: list[Rule] = [
            {"record": "job:festivals_exporter_replicas_up:count", "expr": b.replicas_up() + "\n"},
            {"record": "job:festivals_exporter_quorum:count", "expr": b.quorum() + "\n"},
        ]
        for w in probe_windows:
            fleet.append({
                "record": f"probe:probe_failures:ratio_rate{w}",
                "expr": f"min without ({b.replicas}) "
                        f"(instance_probe:probe_failures:ratio_rate{w})\n",
            })
        fleet.append({
            "record": f"probe:probe_run_duration_seconds:p99_rate{lw}",
            "expr": f"min without ({b.replicas}) "
                    f"(instance_probe:probe_run_duration_seconds:p99_rate{lw})\n",
        })
        api: list[Rule] = []
        windows = sorted(
            {*BURN_WINDOWS, a.high_error_rate.window, a.high_latency_p99.window},
            key=duration_seconds,
        )
        req = f"festivals_http_requests_total{{{b.api_job}}}"
        err = f'festivals_http_requests_total{{{b.api_job}, status=~"5.."}}'
        for w in windows:
            api.append({
                "record": f"job:festivals_http_requests:rate{w}",
                "expr": f"sum {b.by('job')} (rate({req}[{w}]))\n",
            })
            api.append({
                "record": f"job:festivals_http_request_errors:ratio_rate{w}",
                "expr": f"sum {b.by('job')} (rate({err}[{w}]))\n/\n"
                        f"sum {b.by('job')} (rate({req}[{w}]))\n",
            })
        hw = a.high_latency_p99.window
        dur = f"festivals_http_request_duration_seconds_bucket{{{b.api_job}}}"
        api.append({
            "record": f"job:festivals_http_request_duration_seconds:p99_rate{hw}",
            "expr": f"histogram_quantile(0.99, sum {b.by('job', 'le')} (rate({dur}[{hw}])))\n",
        })
        api.append({
            "record": f"path:festivals_http_request_duration_seconds:p99_rate{hw}",
            "expr": f"histogram_quantile(0.99, sum {b.by('job', 'path', 'le')} "
                    f"(rate({dur}[{hw}])))\n",
        })
        pw = a.high_payment_failure_rate.window
        pay = f"festivals_payment_attempts_total{{{b.api_job}}}"
        bad = f'festivals_payment_attempts_total{{{b.api_job}, outcome!="succeeded"}}'
        api.append({
            "record": f"job:festivals_payment_attempts:rate{pw}",
            "expr": f"sum {b.by('job')} (rate({pay}[{pw}]))\n",
        })
        api.append({
            "record": f"job:festivals_payment_attempts_failed:ratio_rate{pw}",
            "expr": f"sum {b.by('job')} (rate({bad}[{pw}]))\n/\n"
                    f"sum {b.by('job')} (rate({pay}[{pw}]))\n",
        })
        return [
            {"name": "festivals-exporter.instance.recording", "rules": per_instance},
            {"name": "festivals-exporter.fleet.recording", "rules": fleet},
            {"name": "festivals-api.recording", "rules": api},
        ]

    # ------------------------------------------------------------------ runbook alerts
    def api_alerts(self) -> list[Rule]:
        b, v = self.b, self.v
        a = v.alerts
        api = b.api_probe()
        k8s = b.sel('kind="kubernetes"', f'deployment="{v.selectors.api_deployment}"')
        sd = a.api_service_down
        svc = {"service": v.selectors.api_service}
        rules = [
            self._alert(
                "APIServiceDown", b.fleet(f"probe_success{api} == 0"), "api-down",
                sd.severity, sd.for_,
                "The Festivals API does not answer its health check.",
                f"{b.probers()} see probe {{{{ $labels.probe }}}} fail every run for "
                f"{_dur(sd.for_)} (refused, timeout, 5xx or a failed body check); the "
                "reason is on the exporter page /probes/{{ $labels.probe }}.",
                signal="probe",
            ),
            self._alert(
                "APIServiceDown",
                b.fleet(
                    f"kube_deployment_status_replicas_available{k8s} == 0\n"
                    f"and\nkube_deployment_spec_replicas{k8s} > 0"
                ),
                "api-down", sd.severity, sd.for_,
                "The Festivals API deployment has no available pod.",
                f"{b.probers()} see deployment {{{{ $labels.namespace }}}}/"
                "{{ $labels.deployment }} with no available replica while some are desired "
                f"for {_dur(sd.for_)} (CrashLoopBackOff, Pending, failing readiness).",
                signal="kubernetes", labels=svc, area="kubernetes",
            ),
        ]
        he = a.high_error_rate
        rules.append(self._alert(
            "HighErrorRate",
            f"job:festivals_http_request_errors:ratio_rate{he.window}{{{b.api_job}}} "
            f"> {_num(he.threshold)}\n"
            f"and\njob:festivals_http_requests:rate{he.window}{{{b.api_job}}} "
            f">= {_num(he.min_request_rate)}",
            "high-error-rate", he.severity, he.for_,
            f"More than {_pct(he.threshold)} of Festivals API requests fail with a 5xx.",
            "{{ $value | humanizePercentage }} of the requests served by {{ $labels.job }} "
            f"answered 5xx over {_dur(he.window)} (threshold {_pct(he.threshold)}, at "
            f"least {_num(he.min_request_rate)} requests per second).",
            signal="api_metrics", labels=svc,
        ))
        se = a.synthetic_high_error_rate
        rules.append(self._alert(
            "SyntheticHighErrorRate",
            b.fleet(
                f"instance_probe:probe_failures:ratio_rate{se.long_window}{api} "
                f"> {_num(se.threshold)}\n"
                f"and\ninstance_probe:probe_failures:ratio_rate{se.short_window}{api} "
                f"> {_num(se.threshold)}\n"
                f"and\nincrease(probe_runs_total{api}[{se.long_window}]) >= {_num(se.min_runs)}"
            ),
            "high-error-rate", se.severity, se.for_,
            f"Synthetic requests to the Festivals API fail more than {_pct(se.threshold)} "
            "of the time.",
            f"{b.probers()} see more than {_pct(se.threshold)} of the runs of probe "
            f"{{{{ $labels.probe }}}} fail over {_dur(se.long_window)} and over "
            f"{_dur(se.short_window)}.",
        ))
        burn = a.api_error_budget_burn
        budget = 1 - burn.objective

        def over(factor: float, long: str, short: str) -> str:
            t = _num(round(factor * budget, 6))
            return (
                f"(\n  job:festivals_http_request_errors:ratio_rate{long}{{{b.api_job}}} > {t}\n"
                f"  and\n  job:festivals_http_request_errors:ratio_rate{short}{{{b.api_job}}}"
                f" > {t}\n)"
            )

        def traffic(window: str) -> str:
            return (
                f"job:festivals_http_requests:rate{window}{{{b.api_job}}} "
                f">= {_num(burn.min_request_rate)}"
            )

        slo = _pct(round(burn.objective, 6))
        rules.append(self._alert(
            "APIErrorBudgetBurn",
            f"(\n{over(14.4, '1h', '5m')}\nor\n{over(6, '6h', '30m')}\n)\n"
            f"and\n{traffic('5m')}",
            "high-error-rate", burn.fast_severity, burn.fast_for,
            "The Festivals API burns its error budget fast.",
            "{{ $labels.job }} answers {{ $value | humanizePercentage }} of its requests "
            f"with a 5xx: at this rate the monthly error budget of the {slo} SLO is gone "
            "within days.",
            signal="fast_burn", labels=svc,
        ))
        rules.append(self._alert(
            "APIErrorBudgetBurn",
            f"(\n{over(3, '1d', '2h')}\nor\n{over(1, '3d', '6h')}\n)\nand\n{traffic('1h')}",
            "high-error-rate", burn.slow_severity, burn.slow_for,
            "The Festivals API burns its error budget slowly.",
            "{{ $labels.job }} answers {{ $value | humanizePercentage }} of its requests "
            f"with a 5xx, above the error budget of the {slo} SLO over days.",
            signal="slow_burn", labels=svc,
        ))
        hl = a.high_latency_p99
        rules.append(self._alert(
            "HighLatencyP99",
            f"job:festivals_http_request_duration_seconds:p99_rate{hl.window}{{{b.api_job}}}"
            f" > {_num(hl.threshold_seconds)}\n"
            f"and\njob:festivals_http_requests:rate{hl.window}{{{b.api_job}}} "
            f">= {_num(hl.min_request_rate)}",
            "high-latency", hl.severity, hl.for_,
            f"The Festivals API p99 latency is above {_num(hl.threshold_seconds * 1000)}ms.",
            "p99 request latency of {{ $labels.job }} is {{ $value | humanizeDuration }} "
            f"over {_dur(hl.window)} (threshold {_num(hl.threshold_seconds * 1000)}ms).",
            signal="api_metrics", labels=svc,
        ))
        sl = a.synthetic_high_latency_p99
        rules.append(self._alert(
            "SyntheticHighLatencyP99",
            b.fleet(
                f"instance_probe:probe_run_duration_seconds:p99_rate{sl.window}{api} "
                f"> {_num(sl.threshold_seconds)}"
            ),
            "high-latency", sl.severity, sl.for_,
            "Synthetic requests to the Festivals API take more than "
            f"{_num(sl.threshold_seconds * 1000)}ms at p99.",
            f"{b.probers()} see the p99 run time of probe {{{{ $labels.probe }}}} (DNS, "
            f"connect, TLS and response) above {_num(sl.threshold_seconds * 1000)}ms over "
            f"{_dur(sl.window)}.",
        ))
        return rules

    def database_alerts(self) -> list[Rule]:
        b, a = self.b, self.v.alerts
        pg = b.sel('kind="postgres"')
        dd = a.database_down
        rules = [self._alert(
            "DatabaseDown",
            # The second arm: a run cut off by the hard deadline (a frozen server) reports
            # no pg_up at all, only the failed probe.
            b.fleet(f"pg_up{pg} == 0\nor\n(probe_success{pg} == 0 unless pg_up{pg})"),
            "database-issues", dd.severity, dd.for_,
            "PostgreSQL does not answer the exporter's connection.",
            f"{b.probers()} could not run SELECT 1 through probe {{{{ $labels.probe }}}} for "
            f"{_dur(dd.for_)} (refused, timeout, auth or too many clients: see "
            "/probes/{{ $labels.probe }}). DatabaseConnectionPoolExhausted is blind meanwhile.",
        )]
        cp = a.database_connection_pool_exhausted
        ratio = b.figure("max(pg_connections_used_ratio{%s})", ["probe"], "humanizePercentage")
        rules.append(self._alert(
            "DatabaseConnectionPoolExhausted",
            b.fleet(f"pg_connections_used_ratio{pg} > {_num(cp.slots_ratio)}"),
            "database-issues", cp.severity, cp.for_,
            "PostgreSQL connection slots are nearly exhausted.",
            f"{b.probers()} see more than {_pct(cp.slots_ratio)} of the ordinary connection "
            f"slots of {{{{ $labels.probe }}}} in use (now {ratio}); at 100% new clients "
            "are refused.",
            signal="postgres_slots",
        ))
        refused = b.sel('kind="postgres"', 'reason="too_many_clients"')
        rules.append(self._alert(
            "DatabaseConnectionPoolExhausted",
            b.fleet(
                f"sum without (reason) (rate(probe_failures_total{refused}[{cp.refused_window}]))"
                f"\n/\nrate(probe_runs_total{pg}[{cp.refused_window}]) "
                f">= {_num(cp.refused_min_ratio)}\nand\npg_up{pg} == 1"
            ),
            "database-issues", cp.severity, cp.refused_for,
            "PostgreSQL refuses new connections for lack of slots.",
            f"{b.probers()} see the server behind {{{{ $labels.probe }}}} answer on the "
            "held connection but refuse a new client with \"too many clients\" in at least "
            f"{_pct(cp.refused_min_ratio)} of the runs over {_dur(cp.refused_window)}.",
            signal="postgres_refused",
        ))
        pgb = b.sel('kind="pgbouncer"')
        rules.append(self._alert(
            "DatabaseConnectionPoolExhausted",
            b.fleet(
                f"max without (user) (pgbouncer_pools_client_maxwait_seconds{pgb}) "
                f"> {_num(cp.pgbouncer_maxwait_seconds)}"
            ),
            "database-issues", cp.severity, cp.pgbouncer_for,
            "Clients wait for a PgBouncer server connection.",
            f"{b.probers()} see the oldest client of PgBouncer pool {{{{ $labels.database }}}}"
            f" ({{{{ $labels.probe }}}}) wait more than {_num(cp.pgbouncer_maxwait_seconds)}s "
            "for a server connection.",
            signal="pgbouncer",
        ))
        return rules

    def payment_alerts(self) -> list[Rule]:
        b, v = self.b, self.v
        hp = v.alerts.high_payment_failure_rate
        svc = {"service": v.selectors.payments_service}
        stripe = b.sel(
            'kind="statuspage"', f'service="{v.selectors.payments_service}"',
            f'component=~"{v.selectors.stripe_components}"',
        )
        rules = [
            self._alert(
                "HighPaymentFailureRate",
                f"job:festivals_payment_attempts_failed:ratio_rate{hp.window}{{{b.api_job}}} "
                f"> {_num(hp.threshold)}\n"
                f"and\njob:festivals_payment_attempts:rate{hp.window}{{{b.api_job}}} "
                f">= {_num(hp.min_attempt_rate)}",
                "payment-failures", hp.severity, hp.for_,
                f"More than {_pct(hp.threshold)} of payment attempts fail.",
                "{{ $value | humanizePercentage }} of the payment attempts counted by "
                f"{{{{ $labels.job }}}} did not succeed over {_dur(hp.window)} (threshold "
                f"{_pct(hp.threshold)}; declines, Stripe errors and webhook failures).",
                signal="api_metrics", labels=svc,
            ),
            self._alert(
                "HighPaymentFailureRate",
                b.fleet(f"statuspage_component_status{stripe} >= {hp.stripe_status_min}"),
                "payment-failures", hp.severity, hp.stripe_for,
                "Stripe reports its API or webhooks degraded or down.",
                f"{b.probers()} read Stripe's status page (probe {{{{ $labels.probe }}}}) "
                f"with component {{{{ $labels.component }}}} at severity {hp.stripe_status_min}"
                " or worse (2 degraded, 3 partial outage, 4 major outage) for "
                f"{_dur(hp.stripe_for)}.",
                signal="stripe_status", labels=svc,
            ),
        ]
        sp = v.alerts.synthetic_payment_check_failing
        web = b.sel('kind="http"', f'service="{v.selectors.payments_service}"')
        rules.append(self._alert(
            "SyntheticPaymentCheckFailing",
            b.fleet(f"probe_success{web} == 0"),
            "payment-failures", sp.severity, sp.for_,
            "The Stripe webhook endpoint fails its synthetic check.",
            f"{b.probers()} see probe {{{{ $labels.probe }}}} fail for {_dur(sp.for_)}: the "
            "webhook endpoint does not answer an unsigned test event as expected (5xx, "
            "timeout, or a 200 meaning signature checks are off). Payments may not be "
            "confirmed.",
        ))
        return rules

    def platform_alerts(self) -> list[Rule]:
        b, v = self.b, self.v
        a = v.alerts
        k8s = b.sel('kind="kubernetes"')
        cpu, mem = a.high_cpu_usage, a.high_memory_usage
        who = "container {{ $labels.container }} of pod {{ $labels.namespace }}/{{ $labels.pod }}"
        keys = ["probe", "namespace", "pod", "container"]
        rules = [
            self._alert(
                "HighCPUUsage",
                b.fleet(f"probe_kubernetes_container_cpu_limit_ratio{k8s} > {_num(cpu.threshold)}"),
                "resource-exhaustion", cpu.severity, cpu.for_,
                f"A Festivals container uses more than {_pct(cpu.threshold)} of its CPU limit.",
                f"{b.probers()} see {who} use more than {_pct(cpu.threshold)} of its CPU limit "
                f"for {_dur(cpu.for_)} (now "
                + b.figure("max(probe_kubernetes_container_cpu_limit_ratio{%s})", keys,
                           "humanizePercentage") + ").",
            ),
            self._alert(
                "HighMemoryUsage",
                b.fleet(
                    f"probe_kubernetes_container_memory_limit_ratio{k8s} > {_num(mem.threshold)}"
                ),
                "resource-exhaustion", mem.severity, mem.for_,
                f"A Festivals container uses more than {_pct(mem.threshold)} of its memory "
                "limit.",
                f"{b.probers()} see {who} use more than {_pct(mem.threshold)} of its memory "
                f"limit (working set) for {_dur(mem.for_)} (now "
                + b.figure("max(probe_kubernetes_container_memory_limit_ratio{%s})", keys,
                           "humanizePercentage") + "); at 100% it is OOMKilled.",
                signal="usage",
            ),
            self._alert(
                "HighMemoryUsage",
                b.fleet(
                    f"increase(kube_pod_container_status_restarts_total{k8s}[{mem.oom_window}])"
                    f" >= {mem.oom_restarts}\nand ignoring (reason)\n"
                    "kube_pod_container_status_last_terminated_reason"
                    + b.sel('kind="kubernetes"', 'reason="OOMKilled"') + " == 1"
                ),
                "resource-exhaustion", mem.severity, None,
                "A Festivals container is OOMKilled again and again.",
                f"{b.probers()} see {who} restart at least {mem.oom_restarts} times in "
                f"{_dur(mem.oom_window)}, last after an OOMKill.",
                signal="oom_killed",
            ),
        ]
        qb = a.queue_backlog
        redis = b.sel('kind="redis"', f'queue!~"{v.selectors.queue_exclude}"')
        rules.append(self._alert(
            "QueueBacklog",
            b.fleet(f"redis_queue_oldest_job_age_seconds{redis} > {_num(qb.age_seconds)}"),
            "queue-backlog", qb.severity, qb.for_,
            f"Jobs wait in a Festivals queue for more than {_dur(f'{int(qb.age_seconds)}s')}.",
            f"{b.probers()} see the oldest job of queue {{{{ $labels.queue }}}} "
            "({{ $labels.probe }}) waiting "
            + b.figure("max(redis_queue_oldest_job_age_seconds{%s})", ["probe", "queue"],
                       "humanizeDuration")
            + ": workers are not taking jobs from it (stuck or far too slow).",
            signal="age",
        ))
        rules.append(self._alert(
            "QueueBacklog",
            b.fleet(f"redis_queue_length{redis} > {_num(qb.length)}"),
            "queue-backlog", qb.severity, qb.length_for,
            f"A Festivals queue holds more than {_num(qb.length)} jobs.",
            f"{b.probers()} see queue {{{{ $labels.queue }}}} ({{{{ $labels.probe }}}}) hold "
            f"more than {_num(qb.length)} jobs for {_dur(qb.length_for)} (now "
            + b.figure("max(redis_queue_length{%s})", ["probe", "queue"], "printf \"%.0f\"")
            + "). If its oldest-job age stays low the queue is long but moving: scale the "
            "workers.",
            signal="length",
        ))
        ssl = a.ssl_certificate_expiring_soon
        limit = f"{_num(ssl.days)} * 86400"
        days = f"{_num(ssl.days)} days"
        tls = b.sel('kind=~"tls|kubernetes"')
        ep = b.sel('kind=~"http|tcp"')
        cm = b.sel('kind="kubernetes"')
        left = "humanizeDuration"
        rules += [
            self._alert(
                "SSLCertificateExpiringSoon",
                b.fleet(f"(tls_earliest_cert_expiry_timestamp_seconds{tls} > 0) - time() "
                        f"< {limit}"),
                "ssl-certificate-renewal", ssl.severity, ssl.for_,
                f"A TLS certificate expires in less than {days}.",
                f"{b.probers()} see the earliest certificate of {{{{ $labels.source }}}} (probe "
                "{{ $labels.probe }}) expire in "
                + b.figure("max(tls_earliest_cert_expiry_timestamp_seconds{%s}) - time()",
                           ["probe", "source"], left)
                + " (negative: already expired).",
                signal="tls",
            ),
            self._alert(
                "SSLCertificateExpiringSoon",
                b.fleet(f"(probe_ssl_earliest_cert_expiry{ep} > 0) - time() < {limit}"),
                "ssl-certificate-renewal", ssl.severity, ssl.for_,
                f"A TLS certificate expires in less than {days}.",
                f"{b.probers()} see the certificate served to probe {{{{ $labels.probe }}}} "
                "expire in "
                + b.figure("max(probe_ssl_earliest_cert_expiry{%s}) - time()", ["probe"], left)
                + " (negative: already expired).",
                signal="endpoint",
            ),
            self._alert(
                "SSLCertificateExpiringSoon",
                b.fleet(f"(certmanager_certificate_expiration_timestamp_seconds{cm} > 0) "
                        f"- time() < {limit}"),
                "ssl-certificate-renewal", ssl.severity, ssl.for_,
                f"A cert-manager Certificate expires in less than {days}.",
                f"{b.probers()} see cert-manager Certificate {{{{ $labels.namespace }}}}/"
                "{{ $labels.name }} expire within "
                f"{days}: renewal (normally 30 days before) has not happened.",
                signal="cert_manager",
            ),
        ]
        return rules

    # ------------------------------------------------------------------ meta alerts
    def meta_alerts(self) -> list[Rule]:
        b, v = self.b, self.v
        m = v.alerts.meta
        up = f"up{{{b.job}}}"
        all_alerts = "every runbook alert of this exporter is blind"
        rules = [
            self._alert(
                "FestivalsExporterDown",
                f"count {b.by('job')} ({up})\nunless\ncount {b.by('job')} ({up} == 1)\n"
                f"or\nabsent({up})",
                None, "critical", m.exporter_down_for,
                "No festivals-exporter replica can be scraped.",
                "Prometheus has scraped no replica of job {{ $labels.job }} for "
                f"{_dur(m.exporter_down_for)} (or has no such target): {all_alerts}.",
                system="exporter", area="overview",
            ),
            self._alert(
                "FestivalsExporterReplicaDown",
                f"{up} == 0\nand {b.on('job')}\ncount {b.by('job')} ({up} == 1) > 0",
                None, "warning", m.replica_down_for,
                "A festivals-exporter replica cannot be scraped.",
                "Replica {{ $labels.instance }} has not been scraped for "
                f"{_dur(m.replica_down_for)}; the other replicas keep probing and the quorum "
                "follows the replicas that are up.",
                system="exporter", area="overview",
            ),
            self._alert(
                "FestivalsExporterConfigReloadFailed",
                f"festivals_exporter_config_last_reload_successful{{{b.job}}} == 0",
                None, "warning", m.reload_failed_for,
                "The festivals-exporter configuration could not be reloaded.",
                "The last reload of {{ $labels.instance }} failed "
                f"{_dur(m.reload_failed_for)} ago or more; the old config keeps running. The "
                "errors are on the landing page and in the logs.",
                system="exporter", area="overview",
            ),
        ]
        rules += self._stale_rules()
        rules += self._input_rules()
        sp = b.sel('kind="statuspage"')
        rules.append(self._alert(
            "FestivalsStatusPageStale",
            b.fleet(f"statuspage_answer_age_seconds{sp} > "
                    f"{_num(duration_seconds(m.statuspage_stale_after))}"),
            None, "warning", m.statuspage_stale_for,
            f"A vendor status page has not been read for {_dur(m.statuspage_stale_after)}.",
            f"{b.probers()} have had no usable answer from probe {{{{ $labels.probe }}}} for "
            f"more than {_dur(m.statuspage_stale_after)}; its status figures are the last "
            "known ones, so HighPaymentFailureRate (stripe_status) reads old news.",
            system="payments", area="payments", diagnose_section="payment-failures",
            extra_annotations={"blind_alerts": "HighPaymentFailureRate"},
        ))
        return rules

    def _stale_rules(self) -> list[Rule]:
        b, v = self.b, self.v
        m = v.alerts.meta
        after = _num(duration_seconds(m.probe_stale_after))
        api, pay = v.selectors.api_service, v.selectors.payments_service
        groups: list[tuple[str, str, str, tuple[str, ...]]] = [
            ("api_probe", f'kind="http", service="{api}"', "api",
             ("APIServiceDown", "SyntheticHighErrorRate", "SyntheticHighLatencyP99")),
            ("payments_probe", f'kind="http", service="{pay}"', "payments",
             ("SyntheticPaymentCheckFailing",)),
            ("stripe_status", 'kind="statuspage"', "payments", ("HighPaymentFailureRate",)),
            ("postgres", 'kind="postgres"', "database",
             ("DatabaseDown", "DatabaseConnectionPoolExhausted")),
            ("pgbouncer", 'kind="pgbouncer"', "database", ("DatabaseConnectionPoolExhausted",)),
            ("redis", 'kind="redis"', "queues", ("QueueBacklog",)),
            ("tls", 'kind="tls"', "certificates", ("SSLCertificateExpiringSoon",)),
            ("kubernetes", 'kind="kubernetes"', "workloads",
             ("APIServiceDown", "HighCPUUsage", "HighMemoryUsage", "SSLCertificateExpiringSoon")),
            ("endpoints", f'kind=~"http|tcp", service!~"{api}|{pay}"', "certificates",
             ("SSLCertificateExpiringSoon",)),
        ]
        rules = []
        for signal, matchers, system, blind in groups:
            blind_text = ", ".join(blind)
            rules.append(self._alert(
                "FestivalsProbeStale",
                f"time() - probe_last_run_timestamp_seconds{{{b.job}, {matchers}}} > {after}",
                None, "warning", m.probe_stale_for,
                f"A festivals-exporter probe has not run for {_dur(m.probe_stale_after)}.",
                "Probe {{ $labels.probe }} ({{ $labels.kind }}) on {{ $labels.instance }} last "
                "started a run {{ $value | humanizeDuration }} ago; its metrics are stale and "
                f"these alerts read old values: {blind_text}.",
                signal=signal, system=system, area="overview",
                diagnose_section=SECTION_OF_SYSTEM[system],
                extra_annotations={"blind_alerts": blind_text},
            ))
        return rules

    def _input_rules(self) -> list[Rule]:
        b, v = self.b, self.v
        m = v.alerts.meta
        rules = []
        for item in self.b.inputs.values():
            section = SECTION_OF_INPUT[item.name]
            blind = ", ".join(item.blind_alerts)
            down = DOWN_METRIC.get(item.name)
            if down:
                rules.append(self._input_down(item, down, section, blind))
            if item.required:
                present = f"{item.metric}{{{item.selector}}}"
                rules.append(self._alert(
                    "FestivalsInputAbsent",
                    b.agg("count", f"up{{{b.job}}} == 1", "job") + f"\nunless {b.on()}\n"
                    + b.agg("count", present),
                    None, "warning", m.input_absent_for,
                    f"An input of the runbook alerts is missing: {item.title}.",
                    "{{ $labels.job }} is up but Prometheus has no "
                    f"{present} series for "
                    f"{_dur(m.input_absent_for)}: the probe is not configured (or lacks its "
                    f"labels) or the target is not scraped, so these alerts cannot fire: "
                    f"{blind}.",
                    labels={"input": item.name}, system=SYSTEM_OF_SECTION[section],
                    area=AREA_OF_SECTION[section], diagnose_section=section,
                    extra_annotations={"blind_alerts": blind},
                ))
        return rules

    def _input_down(self, item: Input, metric: str, section: str, blind: str) -> Rule:
        b, m = self.b, self.v.alerts.meta
        sel = "{" + item.selector + "}"
        what = "{{ $labels.probe }}" + (
            " source {{ $labels.source }}" if item.name == "tls" else "")
        return self._alert(
            "FestivalsInputDown",
            b.fleet(f"{metric}{sel} == 0"),
            None, "warning", m.input_down_for,
            f"An input of the runbook alerts does not answer: {item.title}.",
            f"{b.probers()} get no answer from {what} ({metric} 0 for "
            f"{_dur(m.input_down_for)}), so these alerts are blind: {blind}.",
            labels={"input": item.name}, system=SYSTEM_OF_SECTION[section],
            area=AREA_OF_SECTION[section], diagnose_section=section,
            extra_annotations={"blind_alerts": blind},
        )

    # ------------------------------------------------------------------ the file
    def groups(self) -> list[dict[str, Any]]:
        return [
            *self.recording(),
            {"name": "festivals-runbook.alerts", "rules": [
                *self.api_alerts(), *self.database_alerts(), *self.payment_alerts(),
                *self.platform_alerts(),
            ]},
            {"name": "festivals-exporter.meta", "rules": self.meta_alerts()},
        ]


def rule_groups(values: MixinValues) -> list[dict[str, Any]]:
    """The ``groups`` of the Prometheus rule file (also ``PrometheusRule.spec.groups``)."""
    return RuleSet(values).groups()
