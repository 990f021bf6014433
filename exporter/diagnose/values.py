"""Section definitions from the mixin's values.

INTERIM: until ``exporter/mixin`` lands its values model, this module holds the values the
shipped rules in ``alerts/festivals.rules.yml`` use, in the shape the mixin's values take.
It is the only place diagnosis reads a threshold from; switching to the mixin replaces
``_values()`` and nothing else.
"""

from __future__ import annotations

from typing import Any

from exporter.diagnose.sections import AlertRef, ProbeSelector, SectionDef

_TITLES = {
    "api-down": "API Down",
    "high-error-rate": "High Error Rate",
    "database-issues": "Database Issues",
    "payment-failures": "Payment Failures",
    "high-latency": "High Latency",
    "resource-exhaustion": "Resource Exhaustion",
    "queue-backlog": "Queue Backlog",
    "ssl-certificate-renewal": "SSL Certificate Renewal",
}


def _values() -> dict[str, Any]:
    return {
        "runbook_base_url": "https://github.com/festivals/festivals/blob/main/docs/runbook.md",
        "diagnose_base_url": "http://festivals-exporter.monitoring.svc:9816/diagnose",
        "selectors": {"api_service": "festivals-api", "payments_service": "payments",
                      "postgres_service": "postgres", "redis_service": "redis"},
        "thresholds": {
            "probe_error_ratio": 0.05,
            "connections_used_ratio": 0.9,
            "pgbouncer_maxwait_seconds": 1.0,
            "payment_component_severity": 2,
            "probe_p99_seconds": 0.5,
            "cpu_limit_ratio": 0.9,
            "memory_limit_ratio": 0.9,
            "queue_oldest_job_age_seconds": 600,
            "queue_length": 1000,
            "cert_expiry_days": 14,
        },
        "patterns": {
            "payment_components": "(?i)api|webhooks",
            "failed_queues": "(?i).*failed.*",
        },
        "sections": {
            "api-down": {"alerts": {"APIServiceDown": "critical"},
                         "kinds": ["http@api", "kubernetes", "tcp"]},
            "high-error-rate": {"alerts": {"HighErrorRate": "critical"},
                                "kinds": ["http@api", "statuspage"]},
            "database-issues": {
                "alerts": {"DatabaseDown": "critical",
                           "DatabaseConnectionPoolExhausted": "critical"},
                "kinds": ["postgres", "pgbouncer", "tcp@postgres"]},
            "payment-failures": {"alerts": {"HighPaymentFailureRate": "critical"},
                                 "kinds": ["statuspage@payments", "http@payments"]},
            "high-latency": {"alerts": {"HighLatencyP99": "warning"},
                             "kinds": ["http@api", "postgres", "redis"]},
            "resource-exhaustion": {"alerts": {"HighCPUUsage": "warning",
                                               "HighMemoryUsage": "warning"},
                                    "kinds": ["kubernetes"]},
            "queue-backlog": {"alerts": {"QueueBacklog": "warning"},
                              "kinds": ["redis", "tcp@redis"]},
            "ssl-certificate-renewal": {"alerts": {"SSLCertificateExpiringSoon": "warning"},
                                        "kinds": ["tls", "http", "tcp", "kubernetes"]},
        },
    }


def _selector(entry: str, services: dict[str, str]) -> ProbeSelector:
    kind, _, service = entry.partition("@")
    if not service:
        return ProbeSelector(kind)
    return ProbeSelector(kind, {"service": services[f"{service}_service"]})


def sections_from_values(values: dict[str, Any] | None = None) -> tuple[SectionDef, ...]:
    v = values or _values()
    services = dict(v["selectors"])
    thresholds = {k: float(x) for k, x in v["thresholds"].items()}
    out = []
    for sid, title in _TITLES.items():
        sec = v["sections"][sid]
        out.append(SectionDef(
            id=sid,
            title=title,
            runbook_url=f"{v['runbook_base_url']}#{sid}",
            diagnose_url=f"{v['diagnose_base_url'].rstrip('/')}/{sid}",
            alerts=tuple(AlertRef(n, s) for n, s in sec["alerts"].items()),
            selectors=tuple(_selector(k, services) for k in sec["kinds"]),
            thresholds=thresholds,
            patterns=dict(v["patterns"]),
        ))
    return tuple(out)
