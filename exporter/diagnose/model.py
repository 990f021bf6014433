"""The outcome of a diagnosis, as plain immutable data for the CLI, JSON and pages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from exporter.config import ProbeSpec
from exporter.diagnose.sections import SectionDef
from probes.base import ProbeResult

Verdict = Literal["healthy", "degraded", "failing", "unknown"]
Level = Literal["ok", "degraded", "failing"]

VERDICT_ORDER: dict[str, int] = {"unknown": -1, "healthy": 0, "degraded": 1, "failing": 2}
EXIT_HEALTHY, EXIT_DEGRADED, EXIT_FAILING, EXIT_UNDIAGNOSED = 0, 1, 2, 3


@dataclass(frozen=True, slots=True)
class Run:
    """One kept run of a probe: when, how long, and what it returned."""

    started_at: float
    duration: float
    result: ProbeResult


@dataclass(frozen=True)
class Observation:
    """A configured probe and its runs, newest first (empty: it has not answered yet)."""

    spec: ProbeSpec
    runs: Sequence[Run]

    @property
    def last(self) -> Run | None:
        return self.runs[0] if self.runs else None


@dataclass(frozen=True, slots=True)
class Evidence:
    """One number against its threshold. ``key`` is stable across runs (for history)."""

    probe: str
    key: str
    text: str
    level: Level
    value: float | None = None
    threshold: float | None = None
    unit: str = ""
    alert: str = ""  # the alert whose condition this number is, when it has one


@dataclass(frozen=True, slots=True)
class Cause:
    """What the evidence points to, and the runbook's next step (for a human to run)."""

    text: str
    next_step: str
    probe: str = ""


@dataclass(frozen=True, slots=True)
class Missing:
    what: str
    why: str
    probe: str = ""


@dataclass(frozen=True)
class SectionDiagnosis:
    section: SectionDef
    verdict: Verdict
    evidence: tuple[Evidence, ...]
    causes: tuple[Cause, ...]
    missing: tuple[Missing, ...]
    probes: tuple[str, ...]
    firing: tuple[str, ...]  # alerts whose conditions hold on these inputs
    history: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # key -> oldest..newest

    @property
    def summary(self) -> str:
        if self.causes:
            return self.causes[0].text
        bad = [e for e in self.evidence if e.level != "ok"]
        if bad:
            return bad[0].text
        if self.verdict == "unknown":
            return "nothing to look at: " + (self.missing[0].why if self.missing else "no probe")
        return f"{len(self.evidence)} check(s) within thresholds"


def worst(verdicts: Sequence[str]) -> Verdict:
    known = [v for v in verdicts if v != "unknown"]
    if not known:
        return "unknown"
    top = max(known, key=lambda v: VERDICT_ORDER[v])
    return top  # type: ignore[return-value]


def exit_code(diagnoses: Sequence[SectionDiagnosis]) -> int:
    verdict = worst([d.verdict for d in diagnoses])
    return {"healthy": EXIT_HEALTHY, "degraded": EXIT_DEGRADED, "failing": EXIT_FAILING}.get(
        verdict, EXIT_UNDIAGNOSED)
