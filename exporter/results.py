"""In-memory record of probe runs: the only thing ``/metrics`` and the landing page read.

The scheduler writes here after every run; readers take consistent snapshots. Everything
lives in the event loop's thread, so no locks are needed.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections import deque
from dataclasses import dataclass, field, replace

from exporter.config import Config, ProbeSpec
from probes.base import COMMON_REASONS, ProbeResult, Reason

# Probe run durations: from a fast loopback check up to the longest sensible timeout.
DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
# How late a probe starts against its schedule.
LAG_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)

_run_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One finished run of one probe."""

    run_id: int
    probe: str
    started_at: float  # unix seconds
    duration: float  # seconds
    result: ProbeResult
    trigger: str  # "schedule" or "on-demand"


def redact_result(spec: ProbeSpec, result: ProbeResult) -> ProbeResult:
    """The result with the spec's secret values masked in its debug text and tables."""
    if not spec.secret_values and not spec.secret_files:
        return result
    return replace(
        result,
        detail=tuple(spec.redact(line) for line in result.detail),
        tables=tuple(
            (spec.redact(title), tuple(tuple(spec.redact(c) for c in row) for row in rows))
            for title, rows in result.tables
        ),
    )


class Histogram:
    """Cumulative bucket counts, as Prometheus histograms expose them."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # last slot is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


@dataclass
class ProbeRecord:
    """Counters, last result and recent history of one configured probe."""

    spec: ProbeSpec
    reasons: frozenset[str]
    history: deque[RunRecord]
    runs: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    durations: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    last: RunRecord | None = None

    def record(self, run: RunRecord) -> None:
        self.runs += 1
        self.durations.observe(run.duration)
        if not run.result.success:
            reason = run.result.reason or Reason.INTERNAL
            self.failures[reason] = self.failures.get(reason, 0) + 1
        self.last = run
        self.history.appendleft(run)


class ResultStore:
    """Latest results, counters and exporter self-state, for the metrics and web layers."""

    def __init__(self) -> None:
        self.probes: dict[str, ProbeRecord] = {}
        self.history_size = 20
        self.in_flight = 0
        self.lag = Histogram(LAG_BUCKETS)
        self.config_loaded_at: float | None = None
        self.last_reload_successful = True
        self.last_reload_success_at: float | None = None
        self.last_reload_error: list[str] = []
        self.shard: str | None = None  # "i/n" when sharded: a label on the self-metrics

    def apply_config(self, config: Config) -> None:
        """Track the probes of ``config``; counters survive for probes whose identity
        (name, kind and labels) did not change."""
        self.history_size = config.global_.history_size
        self.shard = config.global_.shard
        kept: dict[str, ProbeRecord] = {}
        for spec in config.probes:
            reasons = COMMON_REASONS | spec.kind_impl.reasons
            old = self.probes.get(spec.name)
            if old and (old.spec.kind, old.spec.labels) == (spec.kind, spec.labels):
                old.spec = spec
                old.reasons = reasons
                old.history = deque(old.history, maxlen=self.history_size)
                kept[spec.name] = old
            else:
                kept[spec.name] = ProbeRecord(
                    spec, reasons, deque(maxlen=self.history_size)
                )
        self.probes = kept
        now = time.time()
        self.config_loaded_at = self.config_loaded_at or now
        self.last_reload_successful = True
        self.last_reload_success_at = now
        self.last_reload_error = []

    def reload_failed(self, errors: list[str]) -> None:
        self.last_reload_successful = False
        self.last_reload_error = errors

    def record(
        self, spec: ProbeSpec, started_at: float, duration: float, result: ProbeResult,
        trigger: str,
    ) -> RunRecord:
        result = redact_result(spec, result)
        run = RunRecord(next(_run_ids), spec.name, started_at, duration, result, trigger)
        record = self.probes.get(spec.name)
        # A probe removed by a reload while it ran: its result has nowhere to go.
        if record is not None and record.spec == spec:
            record.record(run)
        return run

    def ready(self) -> bool:
        """Config loaded and every configured probe has finished at least one run."""
        return self.config_loaded_at is not None and all(
            record.last is not None for record in self.probes.values()
        )

    def recent(self, limit: int) -> list[RunRecord]:
        runs = [run for record in self.probes.values() for run in record.history]
        runs.sort(key=lambda run: run.run_id, reverse=True)
        return runs[:limit]
