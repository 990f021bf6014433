"""Rendering the result store as Prometheus metrics, from a cache.

The only module that imports ``prometheus_client``. Nothing here does I/O or runs a probe.

With thousands of probes the exposition is tens of megabytes; rendering it per scrape holds
the GIL for seconds (a worker thread does not help). So a probe's part of the exposition
is rendered once, when its result is recorded: one *piece* (its sample lines) per metric
family, kept as text and as an independently decodable deflate segment (compressed with a
full flush, which resets the compressor's history). A scrape joins the pieces family by
family (families stay contiguous across probes) and the text, OpenMetrics and gzip
variants share them: sample lines are identical in both formats, only the HELP/TYPE
headers differ. A family is joined again only after one of its pieces changed, and a
piece whose text did not change is not compressed again. A result of more than
``OFFLOAD_SAMPLES`` samples (a kubernetes probe over thousands of pods) is rendered and
compressed in a worker thread before it is recorded, so the event loop only swaps it in.
"""

from __future__ import annotations

import bisect
import gzip
import platform
import struct
import time
import weakref
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import anyio
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString

from exporter import __version__
from exporter.config import ProbeSpec
from exporter.results import DURATION_BUCKETS, ProbeRecord, ResultStore, RunRecord
from probes.base import LabelPairs, Metric

_NAMESPACE = "festivals_exporter"
_SUFFIX = {"counter": "_total", "info": "_info"}
# Deflate settings for pieces: level 1 takes ~8 us for a histogram piece (1.8 kB to
# 230 bytes); higher levels cost half as much again for a few percent.
_GZ_LEVEL, _GZ_WBITS, _GZ_MEMLEVEL = 1, -15, 8
# gzip member header (no name, mtime 0, unknown OS) and the final empty deflate block.
_GZ_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_GZ_FINAL_BLOCK = b"\x03\x00"
# A one-line piece does not shrink when deflated alone (~10 us each): it goes stored.
_STORE_BELOW = 200
# How long joined text is kept after an uncompressed scrape (see _Family.refresh).
_KEEP_TEXT_SECONDS = 600.0
# Entries of a probe's label-string cache before it is cleared (bounds odd label churn).
_LABEL_CACHE_MAX = 512


# --- text helpers ---------------------------------------------------------------------------


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _label_text(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)


def _value(value: float) -> str:
    if value == 0.0:
        return "0.0"
    if value == 1.0:
        return "1.0"
    return floatToGoString(value)  # type: ignore[no-untyped-call,no-any-return]


def _count(value: int) -> str:
    # Go's formatting switches to an exponent at 1e6, as floatToGoString does.
    return f"{value}.0" if value < 1_000_000 else _value(float(value))


def _headers(name: str, help: str, typ: str, unit: str) -> tuple[bytes, bytes]:
    """HELP/TYPE lines in the text format and in OpenMetrics."""
    exposed = name + _SUFFIX.get(typ, "")
    text_help = help.replace("\\", r"\\").replace("\n", r"\n")
    text = f"# HELP {exposed} {text_help}\n# TYPE {exposed} {'gauge' if typ == 'info' else typ}\n"
    om = f"# HELP {name} {_escape(help)}\n# TYPE {name} {typ}\n"
    if unit and name.endswith("_" + unit):
        om += f"# UNIT {name} {unit}\n"
    return text.encode(), om.encode()


# --- crc32 of joined pieces -------------------------------------------------------------------

_CRC_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    """a * b modulo the CRC-32 polynomial (reflected bit order), as zlib computes it."""
    m, p = 1 << 31, 0
    while True:
        if a & m:
            p ^= b
            if a & (m - 1) == 0:
                return p
        m >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1


def _x2n_table() -> list[int]:
    table, p = [], 1 << 30  # x^1
    for _ in range(32):
        table.append(p)
        p = _multmodp(p, p)
    return table


_X2N = _x2n_table()


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of A+B from the CRC-32s of A and B and the length of B (zlib's
    ``crc32_combine``, which Python's zlib module does not expose)."""
    p, k, n = 1 << 31, 3, len2
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return _multmodp(p, crc1) ^ crc2


# --- the cache ------------------------------------------------------------------------------


class _Family:
    """One metric family: its headers and every probe's piece, text and deflated."""

    __slots__ = (
        "name", "type", "core", "text_header", "om_header", "gz_text_header",
        "gz_om_header", "text", "gz", "dirty", "joined", "joined_gz", "crc", "length",
    )

    def __init__(self, name: str, help: str, typ: str, unit: str, core: bool) -> None:
        self.name, self.type, self.core = name, typ, core
        self.text_header, self.om_header = _headers(name, help, typ, unit)
        self.gz_text_header = _deflate_alone(self.text_header)
        self.gz_om_header = _deflate_alone(self.om_header)
        self.text: dict[str, bytes] = {}
        self.gz: dict[str, bytes] = {}
        self.dirty = False
        self.joined: bytes | None = None
        self.joined_gz = b""
        self.crc = self.length = 0

    def refresh(self, keep_text: bool) -> None:
        """Join the pieces again if one changed. The joined text (for the CRC of the gzip
        variant) is kept only while uncompressed scrapes come: Prometheus asks for gzip,
        and at 10,000 probes the text is some 50 MB."""
        if self.dirty or (keep_text and self.joined is None):
            joined = b"".join(self.text.values())
            self.crc, self.length = zlib.crc32(joined), len(joined)
            self.joined = joined if keep_text else None
            if self.dirty:
                self.joined_gz = b"".join(self.gz.values())
                self.dirty = False


def _stored_block(data: bytes) -> bytes:
    """``data`` as a deflate stored (uncompressed) block, at a byte boundary."""
    return b"\x00" + struct.pack("<HH", len(data), len(data) ^ 0xFFFF) + data


def _deflate_alone(data: bytes) -> bytes:
    compressor = zlib.compressobj(_GZ_LEVEL, zlib.DEFLATED, _GZ_WBITS, _GZ_MEMLEVEL)
    return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)


class _ProbeLabels:
    """A probe's label strings, built once: its own labels merged under each sample's."""

    __slots__ = (
        "labels", "base", "keys", "fragments", "plain", "by_sample", "buckets", "large",
        "failures",
    )

    def __init__(self, spec: ProbeSpec) -> None:
        self.labels = spec.labels
        self.base = {**dict(spec.labels), "probe": spec.name, "kind": spec.kind}
        pairs = sorted(self.base.items())
        self.keys = [k for k, _ in pairs]
        self.fragments = [f'{k}="{_escape(v)}"' for k, v in pairs]
        self.plain = "{" + ",".join(self.fragments) + "}"
        self.by_sample: dict[LabelPairs, str] = {}
        self.buckets: list[str] | None = None
        # Label strings of the last large result (see _render_large), keyed by label pairs.
        self.large: dict[LabelPairs, str] = {}
        # The failures piece and what it was rendered from: it changes only on a failure.
        # The family holds this very object, so it is not kept twice.
        self.failures: tuple[object, bytes] = ((), b"")

    def of(self, sample_labels: LabelPairs) -> str:
        if not sample_labels:
            return self.plain
        text = self.by_sample.get(sample_labels)
        if text is None:
            if len(self.by_sample) >= _LABEL_CACHE_MAX:
                self.by_sample.clear()
            text = self.compose(sample_labels)
            self.by_sample[sample_labels] = text
        return text

    def compose(self, sample_labels: LabelPairs) -> str:
        """The label string of a sample: its own labels merged under the probe's."""
        if not sample_labels:
            return self.plain
        if len(sample_labels) == 1 and sample_labels[0][0] not in self.base:
            # The common case (a reason, a phase, a bucket): one sorted insert.
            key, value = sample_labels[0]
            at = bisect.bisect(self.keys, key)
            fragments = self.fragments
            return "{" + ",".join(
                [*fragments[:at], f'{key}="{_escape(value)}"', *fragments[at:]]
            ) + "}"
        merged = {**dict(sample_labels), **self.base}
        return "{" + _label_text(sorted(merged.items())) + "}"

    def bucket_prefixes(self) -> list[str]:
        # Only the two halves around `le` are kept (14 whole prefixes a probe are ~20 MB
        # at 10,000 probes); joining them again costs a few microseconds a run.
        if self.buckets is None:
            head, _, tail = self.compose((("le", "\0"),)).partition('le="\0"')
            self.buckets = [f"probe_run_duration_seconds_bucket{head}le=", f"{tail} "]
        head, tail = self.buckets
        return [f'{head}"{le}"{tail}' for le in _BUCKET_BOUNDS]


_BUCKET_BOUNDS = [repr(b) for b in DURATION_BUCKETS] + ["+Inf"]

_CORE: tuple[tuple[str, str, str], ...] = (
    ("probe_success", "gauge", "1 if the probe's last run succeeded, else 0."),
    ("probe_duration_seconds", "gauge", "Duration of the probe's last run."),
    (
        "probe_last_run_timestamp_seconds", "gauge",
        "Unix time at which the probe's last run started.",
    ),
    ("probe_runs", "counter", "Probe runs finished, successful or not."),
    (
        "probe_failures", "counter",
        "Failed probe runs by reason. Every reason the kind can report is pre-created.",
    ),
    (
        "probe_run_duration_seconds", "histogram",
        "Distribution of probe run durations, for latency SLOs.",
    ),
)


class _Registry:
    """Families by the name they are exposed under, in exposition order, so that the
    series of many probes share one HELP/TYPE and two kinds can never expose one name
    twice (a scrape with a duplicated name fails as a whole)."""

    def __init__(self) -> None:
        self.families: dict[str, _Family] = {}
        self._om_names: dict[str, _Family] = {}
        self.core: dict[str, _Family] = {}
        for name, typ, help in _CORE:
            family = self.get(name, help, typ, "", core=True)
            assert family is not None
            self.core[name] = family

    def get(self, name: str, help: str, typ: str, unit: str, core: bool = False) -> _Family | None:
        exposed = name + _SUFFIX.get(typ, "")
        family = self.families.get(exposed) or self._om_names.get(name)
        if family is None:
            family = _Family(name, help, typ, unit, core)
            self.families[exposed] = family
            self._om_names[name] = family
        elif (family.name, family.type) != (name, typ):
            return None  # two kinds disagree on this name: keep the first, drop the rest
        return family


def _run_pieces(labels: _ProbeLabels, run: RunRecord) -> Iterator[tuple[str, str]]:
    """(family name, sample line) of the series describing one run."""
    plain = labels.plain
    yield "probe_success", f"probe_success{plain} {'1.0' if run.result.success else '0.0'}\n"
    yield "probe_duration_seconds", f"probe_duration_seconds{plain} {_value(run.duration)}\n"
    yield (
        "probe_last_run_timestamp_seconds",
        f"probe_last_run_timestamp_seconds{plain} {_value(run.started_at)}\n",
    )


def _core_pieces(
    record: ProbeRecord, labels: _ProbeLabels, histogram: bool, precreate: bool
) -> Iterator[tuple[str, str | bytes]]:
    """(family name, sample lines) of the core series."""
    plain = labels.plain
    if record.last is not None:
        yield from _run_pieces(labels, record.last)
    yield "probe_runs", f"probe_runs_total{plain} {_count(record.runs)}\n"
    key = (record.reasons if precreate else None, tuple(record.failures.items()))
    if labels.failures[0] != key:
        reasons = record.failures.keys() | record.reasons if precreate else record.failures
        labels.failures = key, "".join(
            f"probe_failures_total{labels.compose((('reason', reason),))} "
            f"{_count(record.failures.get(reason, 0))}\n"
            for reason in sorted(reasons)
        ).encode()
    if labels.failures[1]:
        yield "probe_failures", labels.failures[1]
    if histogram:
        durations = record.durations
        lines = [
            f"{prefix}{_count(count)}\n"
            for prefix, count in zip(
                labels.bucket_prefixes(), durations.cumulative_counts(), strict=True
            )
        ]
        lines.append(f"probe_run_duration_seconds_count{plain} {_count(durations.count)}\n")
        lines.append(f"probe_run_duration_seconds_sum{plain} {_value(durations.sum)}\n")
        yield "probe_run_duration_seconds", "".join(lines)


def _kind_lines(metric: Metric, label_text: Callable[[LabelPairs], str]) -> str:
    """The sample lines of ``metric``, each sample's label string from ``label_text``."""
    name = metric.name + _SUFFIX.get(metric.type, "")
    return "".join(
        f"{name}{label_text(sample.labels)} {_value(sample.value)}\n" for sample in metric.samples
    )


# A result with more samples than this (a kubernetes probe over thousands of pods) is
# rendered in a worker thread before it is recorded: tens of thousands of lines rendered on
# the event loop stall every scrape and every other probe for a third of a second.
OFFLOAD_SAMPLES = 2000


@dataclass(frozen=True)
class _Prepared:
    """A large result's kind pieces, rendered off the loop: metric name -> (text, deflated)."""

    metrics: tuple[Metric, ...]
    pieces: dict[str, tuple[bytes, bytes]]


def _render_large(
    labels: _ProbeLabels, metrics: tuple[Metric, ...]
) -> dict[str, tuple[bytes, bytes]]:
    """Render and deflate ``metrics`` (worker thread). Label strings come from a cache of
    the previous large run's samples, rebuilt from this run's so it never outgrows it."""
    old = labels.large
    new: dict[LabelPairs, str] = {}

    def label_text(pairs: LabelPairs) -> str:
        text = new.get(pairs)
        if text is None:
            text = old.get(pairs)
            if text is None:
                text = labels.compose(pairs)
            new[pairs] = text
        return text

    texts: dict[str, str] = {}
    for metric in metrics:
        texts[metric.name] = texts.get(metric.name, "") + _kind_lines(metric, label_text)
    labels.large = new
    out: dict[str, tuple[bytes, bytes]] = {}
    for metric_name, text in texts.items():
        data = text.encode()
        out[metric_name] = (data, _deflate_alone(data))
    return out


class Exposition:
    """The cached exposition of one result store; see the module docstring."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store
        self._registry = _Registry()
        self._labels: dict[str, _ProbeLabels] = {}
        # Families holding a piece of each probe, to drop the pieces it no longer has.
        self._held: dict[str, tuple[_Family, ...]] = {}
        self._compressor = zlib.compressobj(_GZ_LEVEL, zlib.DEFLATED, _GZ_WBITS, _GZ_MEMLEVEL)
        self._family_of: dict[tuple[str, str], _Family | None] = {}
        self._text_until = 0.0  # keep joined text until then (an uncompressed scrape came)
        self.generation = 0  # bumped whenever a piece changes
        self._prepared: dict[str, _Prepared] = {}
        self._bodies: dict[tuple[bool, bool], tuple[int, list[bytes], int, int]] = {}
        store.on_record.append(self.update)
        store.preparers.append(self.prepare)
        store.on_remove.append(self.remove)
        store.on_reset.append(self._on_reset)
        for record in store.probes.values():
            self.update(record, kind=bool(record.last_metrics))
            record.last_metrics = ()

    # -- writing (called by the store when a result is recorded) --

    def _on_reset(self) -> None:
        for record in self.store.probes.values():
            self.update(record, kind=False)

    def _labels_of(self, spec: ProbeSpec) -> _ProbeLabels:
        labels = self._labels.get(spec.name)
        if labels is None or labels.labels is not spec.labels:
            labels = self._labels[spec.name] = _ProbeLabels(spec)
        return labels

    async def prepare(self, spec: ProbeSpec, metrics: tuple[Metric, ...]) -> None:
        """Before a scheduled result is recorded: render a large one in a worker thread
        (it holds the GIL too, but yields it every few milliseconds, so scrapes and other
        probes keep running), for :meth:`update` to swap in."""
        if sum(len(metric.samples) for metric in metrics) <= OFFLOAD_SAMPLES:
            return
        labels = self._labels_of(spec)
        pieces = await anyio.to_thread.run_sync(_render_large, labels, metrics)
        self._prepared[spec.name] = _Prepared(metrics, pieces)

    def update(self, record: ProbeRecord, kind: bool) -> None:
        """Render ``record``'s pieces: the core series, and with ``kind`` the kind's own
        metrics of its last run too (else the kind pieces it has stay as they are)."""
        name = record.spec.name
        labels = self._labels_of(record.spec)
        prepared = self._prepared.pop(name, None)
        if prepared is not None and prepared.metrics is not record.last_metrics:
            prepared = None
        store, registry = self.store, self._registry
        fresh: dict[_Family, str | bytes] = {}
        ready: dict[_Family, tuple[bytes, bytes]] = {}
        for family_name, text in _core_pieces(
            record, labels, store.run_duration_histogram, store.precreate_reasons
        ):
            fresh[registry.core[family_name]] = text
        if kind:
            family_of = self._family_of
            for metric in record.last_metrics:
                key = (metric.name, metric.type)
                if key in family_of:
                    family = family_of[key]
                else:
                    family = registry.get(metric.name, metric.help, metric.type, metric.unit)
                    family = family_of[key] = None if family is None or family.core else family
                if family is None:
                    continue
                if prepared is not None:
                    ready[family] = prepared.pieces[metric.name]
                    continue
                lines = _kind_lines(metric, labels.of)
                previous = fresh.get(family)
                if isinstance(previous, str):
                    lines = previous + lines
                fresh[family] = lines
        held = self._held.get(name, ())
        for family in held:
            if family not in fresh and family not in ready and (kind or family.core):
                self._drop(family, name)
        kept = tuple(
            f for f in held if f not in fresh and f not in ready and not (kind or f.core)
        )
        for family, text in fresh.items():
            self._put(family, name, text if isinstance(text, bytes) else text.encode())
        for family, (data, deflated) in ready.items():
            self._put(family, name, data, deflated)
        self._held[name] = kept + tuple(fresh) + tuple(ready)

    def _put(self, family: _Family, name: str, text: bytes, deflated: bytes | None = None) -> None:
        if family.text.get(name) == text:
            return
        if deflated is not None:
            family.gz[name] = deflated
        elif len(text) < _STORE_BELOW:
            family.gz[name] = _stored_block(text)
        else:
            compressor = self._compressor
            family.gz[name] = compressor.compress(text) + compressor.flush(zlib.Z_FULL_FLUSH)
        family.text[name] = text
        family.dirty = True
        self.generation += 1

    def _drop(self, family: _Family, name: str) -> None:
        if family.text.pop(name, None) is not None:
            family.gz.pop(name, None)
            family.dirty = True
            self.generation += 1

    def remove(self, name: str) -> None:
        """Forget a probe removed by a reload (or replaced by one with new labels)."""
        for family in self._held.pop(name, ()):
            self._drop(family, name)
        self._labels.pop(name, None)
        self._prepared.pop(name, None)

    # -- reading (a scrape) --

    def scrape(
        self, accept: str = "", accept_encoding: str = ""
    ) -> tuple[list[bytes], dict[str, str]]:
        """The exposition as a list of byte strings to send in order, and its headers:
        OpenMetrics when ``accept`` asks for it, else the text format; gzip when
        ``accept_encoding`` allows it."""
        _, content_type = choose_encoder(accept)
        om = content_type.startswith("application/openmetrics-text")
        compress = accepts_gzip(accept_encoding)
        headers = {"Content-Type": content_type}
        parts, crc, length = self._probe_part(om, compress)
        tail = _self_metrics(self.store, om) + (b"# EOF\n" if om else b"")
        if compress:
            headers["Content-Encoding"] = "gzip"
            crc = zlib.crc32(tail, crc)
            length += len(tail)
            tail = _deflate_alone(tail) + _GZ_FINAL_BLOCK + struct.pack(
                "<II", crc, length & 0xFFFFFFFF
            )
        return [*parts, tail], headers

    def _probe_part(self, om: bool, compress: bool) -> tuple[list[bytes], int, int]:
        key = (om, compress)
        cached = self._bodies.get(key)
        if cached is not None and cached[0] == self.generation:
            return cached[1], cached[2], cached[3]
        parts: list[bytes] = [_GZ_HEADER] if compress else []
        crc = length = 0
        now = time.monotonic()
        if not compress:
            self._text_until = now + _KEEP_TEXT_SECONDS
        keep_text = now < self._text_until
        for family in self._registry.families.values():
            if not family.text:
                continue
            family.refresh(keep_text)
            header = family.om_header if om else family.text_header
            if compress:
                parts.append(family.gz_om_header if om else family.gz_text_header)
                parts.append(family.joined_gz)
                crc = zlib.crc32(header, crc)
                crc = crc32_combine(crc, family.crc, family.length)
            else:
                assert family.joined is not None
                parts.append(header)
                parts.append(family.joined)
            length += len(header) + family.length
        parts = _coalesce(parts)
        self._bodies[key] = (self.generation, parts, crc, length)
        return parts, crc, length


def _coalesce(parts: list[bytes], small: int = 65536) -> list[bytes]:
    """Runs of small parts joined (fewer sends), large ones passed on uncopied."""
    out: list[bytes] = []
    run: list[bytes] = []
    for part in parts:
        if len(part) < small:
            run.append(part)
            continue
        if run:
            out.append(b"".join(run))
            run = []
        out.append(part)
    if run:
        out.append(b"".join(run))
    return out


def _self_metrics(store: ResultStore, om: bool) -> bytes:
    lines: list[bytes] = []

    def family(name: str, typ: str, help: str, samples: Iterable[tuple[str, str, float]]) -> None:
        text, openmetrics = _headers(name, help, typ, "")
        lines.append(openmetrics if om else text)
        lines.append("".join(
            f"{sample}{'{' + labels + '}' if labels else ''} {_value(value)}\n"
            for sample, labels, value in samples
        ).encode())

    ns = _NAMESPACE
    # A sharded process labels its own series too: a shard with no probes still shows.
    shard = f'shard="{_escape(store.shard)}"' if store.shard else ""
    build_labels = [("python_version", platform.python_version()), ("version", __version__)]
    if store.shard:
        build_labels.insert(1, ("shard", store.shard))
    family(f"{ns}_build", "info", "Version of the running exporter.", [(
        f"{ns}_build_info", _label_text(build_labels), 1.0,
    )])
    family(
        f"{ns}_config_last_reload_successful", "gauge",
        "1 if the last config load or reload succeeded, else 0 (the old config keeps running).",
        [(f"{ns}_config_last_reload_successful", shard,
          1.0 if store.last_reload_successful else 0.0)],
    )
    family(
        f"{ns}_config_last_reload_success_timestamp_seconds", "gauge",
        "Unix time of the last successful config load or reload.",
        [(f"{ns}_config_last_reload_success_timestamp_seconds", shard,
          store.last_reload_success_at or 0.0)],
    )
    family(f"{ns}_probes", "gauge", "Number of configured probes.",
           [(f"{ns}_probes", shard, float(len(store.probes)))])
    family(f"{ns}_probes_in_flight", "gauge", "Probe runs in progress.",
           [(f"{ns}_probes_in_flight", shard, float(store.in_flight))])
    lag = store.lag
    lag_name = f"{ns}_scheduler_lag_seconds"
    family(
        lag_name, "histogram", "How late scheduled probe runs started against their schedule.",
        [(f"{lag_name}_bucket", f'le="{le}"' + ("," + shard if shard else ""), float(n))
         for le, n in lag.cumulative()]
        + [(f"{lag_name}_count", shard, float(lag.count)), (f"{lag_name}_sum", shard, lag.sum)],
    )
    if store.shard:
        family(f"{ns}_shards", "gauge", "Number of shards the probes are split over.",
               [(f"{ns}_shards", shard, float(store.shard.partition("/")[2]))])
    return b"".join(lines)


_EXPOSITIONS: weakref.WeakKeyDictionary[ResultStore, Exposition] = weakref.WeakKeyDictionary()


def exposition(store: ResultStore) -> Exposition:
    """The exposition cache of ``store``, attached on first use."""
    found = _EXPOSITIONS.get(store)
    if found is None:
        found = _EXPOSITIONS[store] = Exposition(store)
    return found


def render_run(
    spec: ProbeSpec, run: RunRecord, accept: str = "", accept_encoding: str = ""
) -> tuple[bytes, dict[str, str]]:
    """The series of one run (an on-demand ``/probe``): its success, duration and start
    and the kind's metrics. Counters are not included: on-demand runs do not count."""
    _, content_type = choose_encoder(accept)
    om = content_type.startswith("application/openmetrics-text")
    labels = _ProbeLabels(spec)
    registry = _Registry()
    pieces: dict[_Family, str] = {}
    for family_name, text in _run_pieces(labels, run):
        pieces[registry.core[family_name]] = text
    for metric in run.result.metrics:
        family = registry.get(metric.name, metric.help, metric.type, metric.unit)
        if family is not None and not family.core:
            pieces[family] = pieces.get(family, "") + _kind_lines(metric, labels.of)
    out: list[bytes] = []
    for family, text in pieces.items():
        out.append(family.om_header if om else family.text_header)
        out.append(text.encode())
    if om:
        out.append(b"# EOF\n")
    body = b"".join(out)
    headers = {"Content-Type": content_type}
    if accepts_gzip(accept_encoding):
        body = gzip.compress(body, compresslevel=6, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return body, headers


def accepts_gzip(accept_encoding: str) -> bool:
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

