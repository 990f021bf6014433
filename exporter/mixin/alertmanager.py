"""The example Alertmanager config and its notification templates, from the values.

Routing: ``severity="critical"`` pages (PagerDuty), the rest opens tickets (a webhook).
Grouping and inhibitions work on ``system`` (what an alert is about) and the cluster label,
so one problem of one system is one incident, and a source alert only ever mutes targets
of the same system in the same cluster.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from exporter.mixin.values import MixinValues

TEMPLATE_FILE = "festivals.tmpl"

# (source alert, targets it makes redundant): the cause mutes its consequences.
INHIBITIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("APIServiceDown", ("HighErrorRate", "SyntheticHighErrorRate", "APIErrorBudgetBurn",
                        "HighLatencyP99", "SyntheticHighLatencyP99")),
    ("HighErrorRate", ("SyntheticHighErrorRate", "APIErrorBudgetBurn")),
    ("HighLatencyP99", ("SyntheticHighLatencyP99",)),
    ("HighPaymentFailureRate", ("SyntheticPaymentCheckFailing",)),
    ("DatabaseDown", ("DatabaseConnectionPoolExhausted",)),
)
EXPORTER_META = (
    "FestivalsExporterReplicaDown", "FestivalsExporterConfigReloadFailed",
    "FestivalsProbeStale", "FestivalsInputDown", "FestivalsInputAbsent",
    "FestivalsStatusPageStale",
)


def template_text() -> str:
    return resources.files("exporter.mixin").joinpath("templates", TEMPLATE_FILE).read_text(
        "utf-8"
    )


def _regex(names: tuple[str, ...]) -> str:
    return "|".join(names)


def alertmanager_config(values: MixinValues, template_dir: str = "templates") -> dict[str, Any]:
    am = values.alertmanager
    cluster = [values.selectors.cluster_label] if values.selectors.cluster_label else []
    same_system = [*cluster, "system"]
    pagerduty: dict[str, Any] = {
        "routing_key": am.pagerduty_routing_key,
        "severity": "critical",
        "description": '{{ template "festivals.summary" . }}',
        "details": {
            "alerts": '{{ template "festivals.alerts" . }}',
            "firing": "{{ .Alerts.Firing | len }}",
            "system": "{{ .GroupLabels.system }}",
        },
        "links": [
            {"href": '{{ template "festivals.runbook" . }}', "text": "Runbook"},
            {"href": '{{ template "festivals.dashboard" . }}', "text": "Dashboard"},
        ],
    }
    if am.pagerduty_url:
        pagerduty["url"] = am.pagerduty_url
    inhibit: list[dict[str, Any]] = [
        {
            "source_matchers": [f'alertname="{source}"'],
            "target_matchers": [f'alertname=~"{_regex(targets)}"'],
            "equal": same_system,
        }
        for source, targets in INHIBITIONS
    ]
    inhibit.append({
        # No replica is scraped: the meta alerts about inputs and probes add nothing.
        "source_matchers": ['alertname="FestivalsExporterDown"'],
        "target_matchers": [f'alertname=~"{_regex(EXPORTER_META)}"'],
        "equal": [*cluster, "job"] if cluster else ["job"],
    })
    inhibit.append({
        # The critical signal of an alert mutes its warning twin (fast vs slow burn).
        "source_matchers": ['severity="critical"'],
        "target_matchers": ['severity="warning"'],
        "equal": ["alertname", *same_system],
    })
    return {
        "global": {"resolve_timeout": "5m"},
        "templates": [f"{template_dir}/{TEMPLATE_FILE}"],
        "route": {
            "receiver": "ticket",
            "group_by": same_system,
            "group_wait": am.group_wait,
            "group_interval": am.group_interval,
            "repeat_interval": am.warning_repeat_interval,
            "routes": [
                {
                    "receiver": "pager",
                    "matchers": ['severity="critical"'],
                    "group_wait": am.critical_group_wait,
                    "repeat_interval": am.critical_repeat_interval,
                },
                {"receiver": "ticket", "matchers": ['severity=~"warning|info"']},
            ],
        },
        "inhibit_rules": inhibit,
        "receivers": [
            {"name": "pager", "pagerduty_configs": [pagerduty]},
            {"name": "ticket", "webhook_configs": [
                {"url": am.ticket_webhook_url, "send_resolved": True},
            ]},
        ],
    }
