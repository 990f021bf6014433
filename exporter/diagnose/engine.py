"""Diagnosis: each section's checks applied to the observations of its probes.

Pure and synchronous: it reads results already in memory (the pages) or just produced
(the CLI) and never does I/O, so the pages can call it on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from exporter.diagnose import checks_app, checks_infra
from exporter.diagnose.model import Observation, SectionDiagnosis, worst
from exporter.diagnose.read import Findings
from exporter.diagnose.sections import SectionDef

Check = Callable[[Findings, list[Observation]], None]

CHECKS: dict[str, Check] = {
    "api-down": checks_app.api_down,
    "high-error-rate": checks_app.error_rate,
    "database-issues": checks_infra.database,
    "payment-failures": checks_app.payments,
    "high-latency": checks_app.latency,
    "resource-exhaustion": checks_infra.resources,
    "queue-backlog": checks_infra.queues,
    "ssl-certificate-renewal": checks_infra.certificates,
}

# Points of history per number on the pages (the kept runs bound it too).
HISTORY_POINTS = 20


def diagnose_section(
    section: SectionDef, observations: Sequence[Observation], now: float
) -> SectionDiagnosis:
    selected = [o for o in observations if section.selects(o.spec)]
    findings = Findings(section, now)
    CHECKS[section.id](findings, selected)
    levels = [e.level for e in findings.evidence]
    verdict = "unknown" if not levels else worst(
        ["healthy" if lv == "ok" else lv for lv in levels])
    firing = tuple(dict.fromkeys(e.alert for e in findings.evidence if e.alert
                                 and e.level != "ok"))
    return SectionDiagnosis(
        section=section,
        verdict=verdict,
        evidence=tuple(findings.evidence),
        causes=tuple(findings.causes),
        missing=tuple(findings.missing),
        probes=tuple(o.spec.name for o in selected),
        firing=firing,
    )


def diagnose(
    sections: Sequence[SectionDef], observations: Sequence[Observation], now: float,
    history: int = 0,
) -> list[SectionDiagnosis]:
    """Every section's diagnosis; with ``history`` > 0, also each number's values over
    that many earlier states (the same checks applied to older kept runs)."""
    out = [diagnose_section(s, observations, now) for s in sections]
    if history <= 0:
        return out
    depth = min(history, max((len(o.runs) for o in observations), default=0))
    series: list[dict[str, list[float]]] = [{} for _ in sections]
    for shift in range(depth - 1, -1, -1):
        past = [Observation(o.spec, o.runs[shift:]) for o in observations]
        starts = [o.runs[0].started_at for o in past if o.runs]
        at = now if shift == 0 else max(starts, default=now)
        for i, section in enumerate(sections):
            d = out[i] if shift == 0 else diagnose_section(section, past, at)
            for e in d.evidence:
                if e.value is not None:
                    series[i].setdefault(f"{e.probe}/{e.key}", []).append(float(e.value))
    return [
        SectionDiagnosis(d.section, d.verdict, d.evidence, d.causes, d.missing, d.probes,
                         d.firing, {k: tuple(v) for k, v in series[i].items()})
        for i, d in enumerate(out)
    ]
