"""Reading numbers out of probe results and saying them as a person would."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

from exporter.diagnose.model import Cause, Evidence, Level, Missing, Observation, Run
from exporter.diagnose.sections import SectionDef
from probes.base import ProbeResult

Labels = dict[str, str]


def samples(result: ProbeResult | None, name: str) -> Iterator[tuple[Labels, float]]:
    if result is None:
        return
    for metric in result.metrics:
        if metric.name == name:
            for sample in metric.samples:
                yield dict(sample.labels), sample.value


def value(result: ProbeResult | None, name: str, **labels: str) -> float | None:
    for got, v in samples(result, name):
        if all(got.get(k) == want for k, want in labels.items()):
            return v
    return None


def is_number(v: float | None) -> bool:
    return v is not None and not math.isnan(v)


def duration(seconds: float) -> str:
    """``3 h 12 min``, ``17 min``, ``45 s``, ``120 ms``."""
    s = abs(seconds)
    sign = "-" if seconds < 0 else ""
    if s < 1:
        return f"{sign}{s * 1000:.0f} ms"
    if s < 120:
        return f"{sign}{s:.0f} s"
    if s < 7200:
        return f"{sign}{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{sign}{int(s // 3600)} h {int(s % 3600 // 60)} min"
    return f"{sign}{s / 86400:.0f} days"


def percent(ratio: float) -> str:
    return f"{ratio * 100:.0f}%" if ratio >= 0.1 or ratio == 0 else f"{ratio * 100:.1f}%"


def count(n: float) -> str:
    return f"{int(n):,}"


def p99(values: Sequence[float]) -> float:
    """The 99th percentile by nearest rank (with few runs: the slowest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


class Findings:
    """Collects one section's evidence, causes and missing evidence."""

    def __init__(self, section: SectionDef, now: float) -> None:
        self.section = section
        self.now = now
        self.evidence: list[Evidence] = []
        self.causes: list[Cause] = []
        self.missing: list[Missing] = []

    def add(self, probe: str, key: str, text: str, level: Level = "ok", *,
            value: float | None = None, threshold: float | None = None, unit: str = "",
            alert: str = "") -> None:
        self.evidence.append(Evidence(probe, key, text, level, value, threshold, unit, alert))

    def breach(self, alert: str) -> Level:
        """The level a crossed threshold of ``alert`` gives: critical alerts fail."""
        return "failing" if self.section.severity(alert) == "critical" else "degraded"

    def cause(self, text: str, next_step: str, probe: str = "") -> None:
        if all(c.text != text for c in self.causes):
            self.causes.append(Cause(text, next_step, probe))

    def miss(self, what: str, why: str, probe: str = "") -> None:
        self.missing.append(Missing(what, why, probe))

    def answered(self, obs: Observation, what: str, up_metric: str = "") -> Run | None:
        """The last run if it produced the kind's figures; else note it as missing."""
        run = obs.last
        name = obs.spec.name
        if run is None:
            self.miss(what, f"probe {name} has not run yet", name)
            return None
        if up_metric and value(run.result, up_metric) != 1.0:
            self.miss(what, f"probe {name} did not answer ({run.result.reason or 'down'})", name)
            return None
        return run
