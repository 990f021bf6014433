"""Render probe results the way ``/metrics`` does and lint them with ``promtool``."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence

from exporter.config import Config, GlobalConfig, ProbeSpec
from exporter.metrics import make_registry, render
from exporter.results import ResultStore
from probes.base import KindConfig, ProbeResult


def exposition(kind: str, results: Sequence[ProbeResult]) -> str:
    """The text exposition of ``results``, one probe named ``<kind>-<i>`` per result."""
    specs = tuple(
        ProbeSpec(f"{kind}-{i}", kind, 30.0, 10.0, (("env", "test"),), KindConfig())
        for i in range(len(results))
    )
    store = ResultStore()
    store.apply_config(Config(GlobalConfig(), specs))
    for spec, result in zip(specs, results, strict=True):
        store.record(spec, time.time(), 0.01, result, "schedule")
    body, _ = render(make_registry(store))
    return body.decode()


def assert_promtool_clean(kind: str, results: Sequence[ProbeResult]) -> str:
    """Fail unless ``promtool check metrics`` accepts the exposition; returns it."""
    text = exposition(kind, results)
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make test`"
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (
        check.stdout + check.stderr
    )
    return text
