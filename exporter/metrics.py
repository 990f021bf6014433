"""Rendering the result store as Prometheus metrics.

The only module that imports ``prometheus_client``. ``collect()`` reads memory only:
scrapes never run probes, so a hung dependency cannot slow ``/metrics``.
"""

from __future__ import annotations

import gzip
import platform
from collections.abc import Iterable, Iterator

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric as PromMetric
from prometheus_client.registry import Collector, CollectorRegistry

from exporter import __version__
from exporter.results import Histogram, ProbeRecord, ResultStore
from probes.base import Metric

_NAMESPACE = "festivals_exporter"


def _probe_labels(record: ProbeRecord) -> dict[str, str]:
    return {"probe": record.spec.name, "kind": record.spec.kind, **dict(record.spec.labels)}


def _histogram(
    family: PromMetric, name: str, labels: dict[str, str], histogram: Histogram
) -> None:
    for bound, count in histogram.cumulative():
        family.add_sample(f"{name}_bucket", {**labels, "le": bound}, count)
    family.add_sample(f"{name}_count", labels, histogram.count)
    family.add_sample(f"{name}_sum", labels, histogram.sum)


_SUFFIX = {"counter": "_total", "info": "_info"}


class _Families:
    """Metric families by the name they are exposed under, so that the series of many
    probes share one HELP/TYPE and two kinds can never expose one name twice (a scrape
    with a duplicated name fails as a whole)."""

    def __init__(self) -> None:
        self.by_name: dict[str, PromMetric] = {}

    def get(self, name: str, help: str, typ: str, unit: str = "") -> PromMetric | None:
        exposed = name + _SUFFIX.get(typ, "")
        family = self.by_name.get(exposed)
        if family is None:
            family = PromMetric(name, help, typ, unit)
            self.by_name[exposed] = family
        elif (family.name, family.type) != (name, typ):
            return None  # two kinds disagree on this name: keep the first, drop the rest
        return family


class ProbeCollector(Collector):
    """Per-probe series (core and kind-specific) and exporter self-metrics."""

    def __init__(self, store: ResultStore, only_probe: str | None = None) -> None:
        self.store = store
        self.only_probe = only_probe

    def collect(self) -> Iterator[PromMetric]:
        families = _Families()
        records = [
            r for r in self.store.probes.values()
            if self.only_probe is None or r.spec.name == self.only_probe
        ]
        for record in records:
            self._core(families, record)
            if record.last is not None:
                self._kind_metrics(families, record, record.last.result.metrics)
        if self.only_probe is None:
            self._self_metrics(families)
        yield from families.by_name.values()

    def _core(self, families: _Families, record: ProbeRecord) -> None:
        labels = _probe_labels(record)
        f = families.get
        last = record.last
        if last is not None:
            success = f("probe_success", "1 if the probe's last run succeeded, else 0.", "gauge")
            duration = f("probe_duration_seconds", "Duration of the probe's last run.", "gauge")
            when = f(
                "probe_last_run_timestamp_seconds",
                "Unix time at which the probe's last run started.", "gauge",
            )
            assert success and duration and when
            success.add_sample("probe_success", labels, 1.0 if last.result.success else 0.0)
            duration.add_sample("probe_duration_seconds", labels, last.duration)
            when.add_sample("probe_last_run_timestamp_seconds", labels, last.started_at)
        runs = f("probe_runs", "Probe runs finished, successful or not.", "counter")
        failures = f(
            "probe_failures",
            "Failed probe runs by reason. Every reason the kind can report is pre-created.",
            "counter",
        )
        hist = f(
            "probe_run_duration_seconds",
            "Distribution of probe run durations, for latency SLOs.", "histogram",
        )
        assert runs and failures and hist
        runs.add_sample("probe_runs_total", labels, record.runs)
        for reason in sorted(record.reasons | record.failures.keys()):
            failures.add_sample(
                "probe_failures_total", {**labels, "reason": reason},
                record.failures.get(reason, 0),
            )
        _histogram(hist, "probe_run_duration_seconds", labels, record.durations)

    def _kind_metrics(
        self, families: _Families, record: ProbeRecord, metrics: Iterable[Metric]
    ) -> None:
        base = _probe_labels(record)
        for metric in metrics:
            family = families.get(metric.name, metric.help, metric.type, metric.unit)
            if family is None:
                continue
            suffix = _SUFFIX.get(metric.type, "")
            for sample in metric.samples:
                labels = {**dict(sample.labels), **base}
                family.add_sample(metric.name + suffix, labels, sample.value)

    def _self_metrics(self, families: _Families) -> None:
        store = self.store
        f = families.get
        build = f(f"{_NAMESPACE}_build", "Version of the running exporter.", "info")
        reload_ok = f(
            f"{_NAMESPACE}_config_last_reload_successful",
            "1 if the last config load or reload succeeded, else 0 (the old config keeps running).",
            "gauge",
        )
        reload_at = f(
            f"{_NAMESPACE}_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load or reload.", "gauge",
        )
        configured = f(f"{_NAMESPACE}_probes", "Number of configured probes.", "gauge")
        in_flight = f(f"{_NAMESPACE}_probes_in_flight", "Probe runs in progress.", "gauge")
        lag = f(
            f"{_NAMESPACE}_scheduler_lag_seconds",
            "How late scheduled probe runs started against their schedule.", "histogram",
        )
        assert build and reload_ok and reload_at and configured and in_flight and lag
        # A sharded process labels its own series too: a shard with no probes still shows.
        base = {"shard": store.shard} if store.shard else {}
        build.add_sample(
            f"{_NAMESPACE}_build_info",
            {**base, "version": __version__, "python_version": platform.python_version()}, 1.0,
        )
        reload_ok.add_sample(
            f"{_NAMESPACE}_config_last_reload_successful", base,
            1.0 if store.last_reload_successful else 0.0,
        )
        reload_at.add_sample(
            f"{_NAMESPACE}_config_last_reload_success_timestamp_seconds", base,
            store.last_reload_success_at or 0.0,
        )
        configured.add_sample(f"{_NAMESPACE}_probes", base, len(store.probes))
        in_flight.add_sample(f"{_NAMESPACE}_probes_in_flight", base, store.in_flight)
        _histogram(lag, f"{_NAMESPACE}_scheduler_lag_seconds", base, store.lag)
        if store.shard:
            shards = f(f"{_NAMESPACE}_shards", "Number of shards the probes are split over.",
                       "gauge")
            assert shards
            shards.add_sample(f"{_NAMESPACE}_shards", base,
                              float(store.shard.partition("/")[2]))


def make_registry(store: ResultStore, only_probe: str | None = None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProbeCollector(store, only_probe))
    return registry


def render(
    registry: CollectorRegistry, accept: str = "", accept_encoding: str = ""
) -> tuple[bytes, dict[str, str]]:
    """Exposition bytes and headers, negotiated like prometheus_client's own server:
    OpenMetrics when asked for, text format otherwise; gzip when accepted."""
    encoder, content_type = choose_encoder(accept)
    body = encoder(registry)
    headers = {"Content-Type": content_type}
    if _accepts_gzip(accept_encoding):
        body = gzip.compress(body, compresslevel=6)
        headers["Content-Encoding"] = "gzip"
    return body, headers


def _accepts_gzip(accept_encoding: str) -> bool:
    """``gzip`` listed with a non-zero quality (``gzip;q=0`` means "not gzip")."""
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        if name.strip().lower() != "gzip":
            continue
        quality = params.strip().removeprefix("q=").strip() if "q=" in params else "1"
        try:
            return float(quality) > 0
        except ValueError:
            return False
    return False
