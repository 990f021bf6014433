"""Section definitions from the mixin's values (``exporter/mixin``): the same thresholds,
severities, selectors and URLs the generated alert rules use, so a firing alert and a
section's verdict cannot disagree."""

from __future__ import annotations

import re

from exporter.diagnose.sections import AlertRef, ProbeSelector, SectionDef
from exporter.mixin import MixinValues, load_values, sections


def _settings_name(alert: str) -> str:
    """``HighCPUUsage`` -> ``high_cpu_usage``, as the values name each alert's settings."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", alert).lower()


def _severity(values: MixinValues, alert: str) -> str:
    settings = getattr(values.alerts, _settings_name(alert), None)
    severity = getattr(settings, "severity", None) or getattr(settings, "fast_severity", None)
    return str(severity or "warning")


def sections_from_values(values: MixinValues | None = None) -> tuple[SectionDef, ...]:
    v = values or load_values()
    s = v.selectors
    out = []
    for anchor, section in sections(v).items():
        selectors = tuple(dict.fromkeys(
            ProbeSelector(i.kind, tuple(i.labels)) for i in section.inputs if i.kind))
        out.append(SectionDef(
            id=anchor,
            title=section.title,
            runbook_url=section.runbook_url,
            diagnose_url=section.diagnose_url,
            alerts=tuple(AlertRef(a, _severity(v, a)) for a in section.alerts),
            selectors=selectors,
            thresholds={k: float(x) for k, x in section.thresholds.items()
                        if isinstance(x, int | float)},
            patterns={"payment_components": s.stripe_components,
                      "failed_queues": s.queue_exclude, "api_deployment": s.api_deployment,
                      "api_service": s.api_service},
        ))
    return tuple(out)
