"""In-memory record of probe runs: the only thing ``/metrics`` and the landing page read.

The scheduler writes here after every run; readers take consistent snapshots. Everything
lives in the event loop's thread, so no locks are needed.

History keeps what the pages show (status, reason, timings, detail lines, tables), never
the metric payloads: those are rendered into the exposition cache once, when the run is
recorded, and dropped. Listeners (the exposition cache in ``metrics.py``) hear about
every recorded scheduled run and every removed probe.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from exporter.config import Config, ProbeSpec
from probes.base import COMMON_REASONS, Metric, ProbeResult, Reason

# Probe run durations: from a fast loopback check up to the longest sensible timeout.
DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
# How late a probe starts against its schedule.
LAG_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
# Runs listed under "Recent results" on the landing page, across every probe.
RECENT_SIZE = 200

SCHEDULED, ON_DEMAND = "schedule", "on-demand"

_run_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One finished run of one probe. ``store.record`` returns it with the run's metrics;
    the copy kept in history has none."""

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

    __slots__ = ("buckets", "counts", "sum", "count")

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

    def cumulative_counts(self) -> list[int]:
        return list(itertools.accumulate(self.counts))


@dataclass
class ProbeRecord:
    """Counters, last scheduled result and recent history of one configured probe.

    Only scheduled runs count (``runs``, ``failures``, ``durations``, ``last``): they feed
    SLO ratios, and an engineer pressing "run now" ten times must not move them.
    """

    spec: ProbeSpec
    reasons: frozenset[str]
    history: deque[RunRecord]
    runs: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    durations: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))
    last: RunRecord | None = None
    # The metrics of the last scheduled run, until the exposition cache rendered them.
    last_metrics: tuple[Metric, ...] = ()
    # Whether history keeps this probe's metrics (a page reads numbers from past runs).
    keeps_metrics: bool | None = None

    def record(self, run: RunRecord) -> None:
        if run.trigger == SCHEDULED:
            self.runs += 1
            self.durations.observe(run.duration)
            if not run.result.success:
                reason = run.result.reason or Reason.INTERNAL
                self.failures[reason] = self.failures.get(reason, 0) + 1
            self.last = run
        self.history.appendleft(run)


def _slim(run: RunRecord, previous: RunRecord | None, keep_metrics: bool) -> RunRecord:
    """``run`` without its metrics (unless ``keep_metrics``); unchanged detail and tables
    share the previous run's objects, so twenty identical healthy runs hold one copy."""
    result = run.result
    detail, tables = result.detail, result.tables
    if previous is not None:
        if detail == previous.result.detail:
            detail = previous.result.detail
        if tables == previous.result.tables:
            tables = previous.result.tables
    metrics: tuple[Metric, ...] = ()
    if keep_metrics:
        metrics = result.metrics
        if previous is not None and previous.result.metrics:
            # Families equal to the previous run's are shared with it, so a kubernetes probe
            # over thousands of pods keeps one copy of its stable families (phases,
            # restarts, limits), not one per kept run.
            before = {metric.name: metric for metric in previous.result.metrics}
            metrics = tuple(
                before[m.name] if before.get(m.name) == m else m for m in metrics
            )
    slim = ProbeResult(result.success, result.reason, metrics, detail, tables)
    return replace(run, result=slim)


class ResultStore:
    """Latest results, counters and exporter self-state, for the metrics and web layers."""

    def __init__(self) -> None:
        self.probes: dict[str, ProbeRecord] = {}
        self.history_size = 20
        self.run_duration_histogram = True
        self.precreate_reasons = True
        self.in_flight = 0
        self.lag = Histogram(LAG_BUCKETS)
        self.config_loaded_at: float | None = None
        self.last_reload_successful = True
        self.last_reload_success_at: float | None = None
        self.last_reload_error: list[str] = []
        self.shard: str | None = None  # "i/n" when sharded: a label on the self-metrics
        self._waiting: set[str] = set()  # probes without a scheduled run yet
        self._recent: deque[tuple[ProbeRecord, RunRecord]] = deque(maxlen=RECENT_SIZE)
        # Called with a record and True after its scheduled run was recorded (its
        # ``last_metrics`` set) or False for a new probe's zero counters; with a name when
        # a probe is dropped; with nothing when every probe's series must be rendered
        # again (the series options changed).
        self.on_record: list[Callable[[ProbeRecord, bool], None]] = []
        self.on_remove: list[Callable[[str], None]] = []
        self.on_reset: list[Callable[[], None]] = []
        # Awaited with a probe and its scheduled run's metrics before that run is recorded:
        # the exposition cache renders large results there, off the event loop.
        self.preparers: list[Callable[[ProbeSpec, tuple[Metric, ...]], Awaitable[None]]] = []
        # Probes whose history keeps its metrics: those a page reads numbers of past runs
        # from (the diagnose sections). Others keep only what the pages show.
        self.keep_metrics: Callable[[ProbeSpec], bool] = lambda spec: False

    def apply_config(self, config: Config) -> list[ProbeRecord]:
        """Track the probes of ``config``; counters survive for probes whose identity
        (name, kind and labels) did not change. Returns the records that are new."""
        g = config.global_
        options = (g.run_duration_histogram, g.precreate_reasons)
        options_changed = options != (self.run_duration_histogram, self.precreate_reasons)
        self.run_duration_histogram, self.precreate_reasons = options
        resize = g.history_size != self.history_size
        self.history_size = g.history_size
        self.shard = config.global_.shard
        kept: dict[str, ProbeRecord] = {}
        added: list[ProbeRecord] = []
        for spec in config.probes:
            old = self.probes.get(spec.name)
            if old and (old.spec.kind, old.spec.labels) == (spec.kind, spec.labels):
                if old.spec is not spec:
                    old.spec = spec
                    old.reasons = COMMON_REASONS | spec.kind_impl.reasons
                    old.keeps_metrics = None
                if resize:
                    old.history = deque(old.history, maxlen=self.history_size)
                kept[spec.name] = old
            else:
                record = ProbeRecord(
                    spec, COMMON_REASONS | spec.kind_impl.reasons,
                    deque(maxlen=self.history_size),
                )
                kept[spec.name] = record
                added.append(record)
        removed = [
            name for name, record in self.probes.items() if kept.get(name) is not record
        ]
        self.probes = kept
        for name in removed:
            self._waiting.discard(name)
            for remove in self.on_remove:
                remove(name)
        self._waiting.update(record.spec.name for record in added)
        now = time.time()
        self.config_loaded_at = self.config_loaded_at or now
        self.last_reload_successful = True
        self.last_reload_success_at = now
        self.last_reload_error = []
        if options_changed:
            for reset in self.on_reset:
                reset()
        return added

    def publish(self, record: ProbeRecord) -> None:
        """Let the listeners render ``record`` (a new probe's zero counters)."""
        if self.probes.get(record.spec.name) is record:
            for listener in self.on_record:
                listener(record, False)

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
        if record is None or record.spec != spec:
            return run
        previous = record.history[0] if record.history else None
        if record.keeps_metrics is None:
            record.keeps_metrics = self.keep_metrics(spec)
        slim = _slim(run, previous, record.keeps_metrics)
        record.record(slim)
        self._recent.append((record, slim))
        if trigger == SCHEDULED:
            self._waiting.discard(spec.name)
            record.last_metrics = result.metrics
            for listener in self.on_record:
                listener(record, True)
            if self.on_record:  # else kept for a cache attached later (tests, the CLI)
                record.last_metrics = ()
        return run

    def ready(self) -> bool:
        """Config loaded and every configured probe has finished at least one run."""
        return self.config_loaded_at is not None and not self._waiting

    def recent(self, limit: int) -> list[RunRecord]:
        runs = [
            run for record, run in reversed(self._recent)
            if self.probes.get(run.probe) is record
        ]
        return runs[:limit]
