"""What a runbook section is made of, for diagnosis: its anchor, the alerts that link to
it, the probes that give it evidence, and the thresholds those alerts use.

The definitions come from one provider function (``load_sections``), so the thresholds a
diagnosis applies are the alerts' own: the mixin's values are the single source.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from exporter.config import ProbeSpec
from exporter.mixin.values import SECTION_ANCHORS

SECTION_IDS: tuple[str, ...] = SECTION_ANCHORS  # the runbook's anchors, in its order


@dataclass(frozen=True)
class ProbeSelector:
    """Probes of ``kind`` whose static labels include ``labels`` (as the alerts select
    them, e.g. ``service="festivals-api"``)."""

    kind: str
    labels: tuple[tuple[str, str], ...] = ()

    def matches(self, spec: ProbeSpec) -> bool:
        labels = dict(spec.labels)
        return spec.kind == self.kind and all(labels.get(k) == v for k, v in self.labels)


@dataclass(frozen=True)
class AlertRef:
    """One alert linking to the section and how bad its firing is for the verdict."""

    name: str
    severity: str  # "critical" makes the section failing, "warning" degraded


@dataclass(frozen=True)
class SectionDef:
    id: str  # the runbook anchor
    title: str
    runbook_url: str
    diagnose_url: str
    alerts: tuple[AlertRef, ...]
    selectors: tuple[ProbeSelector, ...]
    thresholds: Mapping[str, float]
    patterns: Mapping[str, str] = field(default_factory=dict)  # regexes the alerts match with

    def selects(self, spec: ProbeSpec) -> bool:
        return any(s.matches(spec) for s in self.selectors)

    def threshold(self, key: str) -> float:
        return self.thresholds[key]

    def severity(self, alert: str) -> str:
        for ref in self.alerts:
            if ref.name == alert:
                return ref.severity
        return "warning"


SectionProvider = Callable[[], tuple[SectionDef, ...]]


@functools.cache
def load_sections() -> tuple[SectionDef, ...]:
    """The sections, built from the mixin's shipped values (read once per process)."""
    from exporter.diagnose.values import sections_from_values

    return sections_from_values()
