from __future__ import annotations

import gzip
import time
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from exporter.config import parse_config
from exporter.metrics import crc32_combine, exposition
from exporter.results import ResultStore
from probes.base import Metric, ProbeResult, Sample, counter, gauge, info
from tests.promtool import assert_promtool_clean

pytestmark = pytest.mark.anyio


async def test_families_of_many_probes_merge_and_pass_promtool() -> None:
    first = ProbeResult.ok([
        gauge("fake_value", "A value.", 1.0, {"queue": "critical"}),
        counter("fake_events", "Events seen.", 3.0),
        info("fake_version", "Version.", {"version": "1.2"}),
        Metric("fake_nan", "Not a number yet.", "gauge", (Sample(float("nan")),)),
    ])
    second = ProbeResult.fail("refused", [gauge("fake_value", "A value.", 2.0)])
    text = await assert_promtool_clean("fake", [first, second])
    assert text.count("# TYPE fake_value gauge") == 1
    assert 'fake_value{env="test",kind="fake",probe="fake-1"} 2.0' in text
    assert 'fake_events_total{env="test",kind="fake",probe="fake-0"} 3.0' in text
    assert 'fake_version_info{env="test",kind="fake",probe="fake-0",version="1.2"} 1.0' in text
    failures = 'probe_failures_total{env="test",kind="fake",probe="fake-1",reason="refused"}'
    assert f"{failures} 1.0" in text


async def test_two_kinds_exposing_one_name_differently_never_duplicate_it() -> None:
    # An info family "x" is exposed as x_info: a gauge named x_info must not appear too.
    as_info = ProbeResult.ok([info("fake_tls_version", "Version.", {"version": "TLS 1.3"})])
    as_gauge = ProbeResult.ok([gauge("fake_tls_version_info", "Version.", 1.0)])
    text = await assert_promtool_clean("fake", [as_info, as_gauge])
    assert text.count("# TYPE fake_tls_version_info") == 1


# --- the exposition cache ---------------------------------------------------------------------




OM = "application/openmetrics-text; version=1.0.0"


def _store(probes: str, global_: str = "") -> ResultStore:
    store = ResultStore()
    exposition(store)
    for record in store.apply_config(parse_config(f"global: {{{global_}}}\nprobes:\n{probes}")):
        store.publish(record)
    return store


def _record(store: ResultStore, name: str, result: ProbeResult, duration: float = 0.01) -> None:
    store.record(store.probes[name].spec, time.time(), duration, result, "schedule")


def _text(store: ResultStore, accept: str = "", encoding: str = "") -> str:
    parts, headers = exposition(store).scrape(accept, encoding)
    body = b"".join(parts)
    if headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return body.decode()


TWO = (
    "  - {name: a, kind: fake, labels: {team: x}}\n"
    "  - {name: b, kind: fake}\n"
)


def test_a_recorded_result_replaces_only_its_probes_pieces() -> None:
    store = _store(TWO)
    assert 'probe_runs_total{kind="fake",probe="a",team="x"} 0.0' in _text(store)
    _record(store, "a", ProbeResult.ok([gauge("fake_value", "V.", 1.0)]))
    _record(store, "b", ProbeResult.ok([gauge("fake_value", "V.", 5.0)]))
    cache = exposition(store)
    first = _text(store)
    generation = cache.generation
    assert _text(store) == first and cache.generation == generation  # nothing changed
    _record(store, "a", ProbeResult.ok([gauge("fake_value", "V.", 2.0)]))
    text = _text(store)
    assert 'fake_value{kind="fake",probe="a",team="x"} 2.0' in text
    assert 'fake_value{kind="fake",probe="b"} 5.0' in text
    assert 'probe_runs_total{kind="fake",probe="a",team="x"} 2.0' in text
    assert text.count("# TYPE fake_value gauge") == 1
    # Every variant shows the same samples, from the same pieces.
    assert _text(store, encoding="gzip") == text
    om = _text(store, OM, "gzip")
    assert om == _text(store, OM) and om.endswith("# EOF\n")
    families = {f.name: f for f in text_string_to_metric_families(om)}  # type: ignore[no-untyped-call]
    assert {s.value for s in families["fake_value"].samples} == {2.0, 5.0}
    # A run without the family drops the probe's piece of it; the family goes with the last.
    _record(store, "a", ProbeResult.fail("refused"))
    text = _text(store)
    assert 'fake_value{kind="fake",probe="a"' not in text and 'probe="b"} 5.0' in text
    _record(store, "b", ProbeResult.fail("refused"))
    assert "fake_value" not in _text(store, OM, "gzip")


def test_reload_drops_removed_probes_and_renames_relabelled_ones() -> None:
    store = _store(TWO)
    _record(store, "a", ProbeResult.ok([gauge("fake_value", "V.", 1.0)]))
    _record(store, "b", ProbeResult.ok([gauge("fake_value", "V.", 5.0)]))
    before = _text(store, OM, "gzip")
    store.apply_config(parse_config(
        "probes:\n  - {name: a, kind: fake, labels: {team: y}}\n"
    ))
    for variant in (("", ""), ("", "gzip"), (OM, ""), (OM, "gzip")):
        text = _text(store, *variant)
        assert 'probe="b"' not in text  # removed
        assert 'team="x"' not in text  # new labels are a new identity: old series go
    assert before != _text(store, OM, "gzip")


def test_series_switches_drop_the_histogram_and_pre_created_reasons() -> None:
    store = _store(TWO)
    assert "probe_run_duration_seconds_bucket" in _text(store)
    assert 'reason="timeout"' in _text(store)
    store.apply_config(parse_config(
        "global: {run_duration_histogram: false, precreate_reasons: false}\nprobes:\n" + TWO
    ))
    text = _text(store, encoding="gzip")
    assert "probe_run_duration_seconds" not in text and "probe_failures_total" not in text
    _record(store, "a", ProbeResult.fail("refused"))
    text = _text(store)
    assert 'probe_failures_total{kind="fake",probe="a",reason="refused",team="x"} 1.0' in text
    assert 'reason="timeout"' not in text
    assert 'probe_runs_total{kind="fake",probe="b"} 0.0' in text


def test_crc32_combine_matches_zlib() -> None:
    import zlib

    for a, b in ((b"", b"x"), (b"abc", b""), (b"hello ", b"world" * 1000), (b"\0" * 7, b"\1")):
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


async def test_escaped_label_values_and_large_counts_pass_promtool() -> None:
    result = ProbeResult.ok([
        gauge("fake_value", 'A "quoted"\\ help\nline.', 1234567.0, {"path": 'a"b\\c\nd'}),
        counter("fake_events", "Events.", 1e20),
    ])
    text = await assert_promtool_clean("fake", [result, result])
    assert 'path="a\\"b\\\\c\\nd"' in text and "1.234567e+06" in text


def _large_result(runs: int, pods: int = 1500) -> ProbeResult:
    """Above OFFLOAD_SAMPLES: two families of ``pods`` samples each, values per run."""
    phase = Metric("fake_pod_phase", "Phase.", "gauge", tuple(
        Sample(float((i + runs) % 2), (("namespace", "ns"), ("pod", f"p{i}"), ("phase", "Run")))
        for i in range(pods)
    ))
    restarts = Metric("fake_restarts", "Restarts.", "counter", tuple(
        Sample(float(runs), (("namespace", "ns"), ("pod", f"p{i}"))) for i in range(pods)
    ))
    return ProbeResult.ok([phase, restarts, gauge("fake_value", "V.", float(runs))])


def _probe_lines(text: str) -> str:
    """The exposition without the exporter's self-metrics (load times differ per store)."""
    return "".join(line for line in text.splitlines(True) if "festivals_exporter_" not in line)


async def test_a_large_result_is_rendered_off_the_loop_exactly_as_a_small_one() -> None:
    from exporter import metrics

    offloaded, inline = _store(TWO), _store(TWO)
    threads: list[str] = []
    real = metrics._render_large

    def spy(*args: Any) -> Any:
        import threading

        threads.append(threading.current_thread().name)
        return real(*args)

    metrics._render_large = spy  # type: ignore[assignment]
    try:
        for run in range(3):  # label strings come from the previous run's cache after the first
            result = _large_result(run)
            spec = offloaded.probes["a"].spec
            for prepare in offloaded.preparers:
                await prepare(spec, result.metrics)
            offloaded.record(spec, 1.0, 0.01, result, "schedule")
            inline.record(inline.probes["a"].spec, 1.0, 0.01, result, "schedule")
            for variant in (("", ""), ("", "gzip"), (OM, ""), (OM, "gzip")):
                assert _probe_lines(_text(offloaded, *variant)) == _probe_lines(
                    _text(inline, *variant)
                )
    finally:
        metrics._render_large = real
    assert len(threads) == 3 and "MainThread" not in threads
    text = _text(offloaded)
    assert 'fake_restarts_total{kind="fake",namespace="ns",pod="p7",probe="a",team="x"} 2.0' in text
    # A small result after a large one replaces it through the ordinary path.
    small = ProbeResult.ok([gauge("fake_value", "V.", 9.0)])
    for prepare in offloaded.preparers:
        await prepare(offloaded.probes["a"].spec, small.metrics)
    offloaded.record(offloaded.probes["a"].spec, 1.0, 0.01, small, "schedule")
    text = _text(offloaded, OM, "gzip")
    assert "fake_restarts" not in text and 'probe="a",team="x"} 9.0' in text


def test_gzip_only_scrapes_keep_no_joined_text_and_plain_ones_still_work() -> None:
    store = _store(TWO)
    _record(store, "a", ProbeResult.ok([gauge("fake_value", "V.", 1.0)]))
    gz = _text(store, OM, "gzip")
    cache = exposition(store)
    assert all(f.joined is None for f in cache._registry.families.values())
    assert _text(store, OM) == gz  # built when first asked for
    _record(store, "b", ProbeResult.ok([gauge("fake_value", "V.", 3.0)]))
    assert _text(store, OM, "gzip") == _text(store, OM)


def test_kept_runs_share_the_families_that_did_not_change() -> None:
    store = _store(TWO)
    store.keep_metrics = lambda spec: True  # as for a probe a diagnose page reads
    for run in range(5):
        result = _large_result(0)  # equal every run, new objects every run
        moving = gauge("fake_value", "V.", float(run))
        _record(store, "a", ProbeResult.ok([*result.metrics[:2], moving]))
    kept = [run.result.metrics for run in store.probes["a"].history]
    assert all(m[0] is kept[0][0] and m[1] is kept[0][1] for m in kept)  # one copy
    assert [m[2].samples[0].value for m in kept] == [4.0, 3.0, 2.0, 1.0, 0.0]  # not shared
