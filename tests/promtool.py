"""Render probe results the way ``/metrics`` does and lint them with ``promtool`` and the
OpenMetrics parser."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence

import anyio
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from exporter.config import Config, GlobalConfig, ProbeSpec
from exporter.metrics import exposition as cached_exposition
from exporter.results import ResultStore
from probes.base import KindConfig, ProbeResult


def exposition(kind: str, results: Sequence[ProbeResult], accept: str = "") -> str:
    """The exposition of ``results`` (text format, or as ``accept`` negotiates), one probe
    named ``<kind>-<i>`` per result."""
    specs = tuple(
        ProbeSpec(f"{kind}-{i}", kind, 30.0, 10.0, (("env", "test"),), KindConfig())
        for i in range(len(results))
    )
    store = ResultStore()
    store.apply_config(Config(GlobalConfig(), specs))
    for spec, result in zip(specs, results, strict=True):
        store.record(spec, time.time(), 0.01, result, "schedule")
    parts, _ = cached_exposition(store).scrape(accept)
    return b"".join(parts).decode()


async def assert_promtool_clean(kind: str, results: Sequence[ProbeResult]) -> str:
    """Fail unless ``promtool check metrics`` accepts the exposition; returns it."""
    text = exposition(kind, results)
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make test`"
    with anyio.fail_after(30):
        check = await anyio.run_process(
            [promtool, "check", "metrics"], input=text.encode(), check=False
        )
    out = (check.stdout + check.stderr).decode()
    assert check.returncode == 0 and not out.strip(), out
    # Prometheus asks for OpenMetrics first: that rendering must parse too (promtool 2.42
    # lints only the text format). The parser raises on any violation.
    openmetrics = exposition(kind, results, "application/openmetrics-text; version=1.0.0")
    assert openmetrics.endswith("# EOF\n")
    families = list(text_string_to_metric_families(openmetrics))  # type: ignore[no-untyped-call]
    assert families
    return text
