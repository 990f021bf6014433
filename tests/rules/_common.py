"""Shared paths and helpers of the rules/dashboards tests."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "alerts" / "festivals.rules.yml"
RULE_TESTS = sorted((ROOT / "alerts" / "tests").glob("*.yml"))
ALERTMANAGER = ROOT / "alerts" / "alertmanager.example.yml"
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"

# The shipped defaults (exporter/mixin/defaults.yaml): the hand-written promtool tests in
# alerts/tests/ spell these out, so a change of default shows up there too.
RUNBOOK_BASE_URL = "https://github.com/festivals/festivals/blob/main/docs/runbook.md"
EXPORTER_DOCS_URL = "https://github.com/festivals/festivals-exporter/blob/main/docs/alerts.md"
GRAFANA_BASE_URL = "https://grafana.festivals.example"
DIAGNOSE_BASE_URL = "http://festivals-exporter.monitoring.svc:9816/diagnose"


def tool(name: str) -> str:
    """Path of a program the tests need; fail (never skip) when it is missing."""
    for candidate in (shutil.which(name), f"/usr/bin/{name}"):
        if candidate and Path(candidate).exists():
            return candidate
    raise AssertionError(f"{name} is not installed: `make test` installs it")


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def load_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in load_rules() if "alert" in rule]


def recording_rules() -> list[dict[str, Any]]:
    return [rule for rule in load_rules() if "record" in rule]


def selectors(expr: str) -> list[Any]:
    """Every vector selector of a PromQL expression (parsed, not grepped)."""
    found: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def matchers(selector: Any) -> dict[str, tuple[str, str]]:
    """label -> (operator, value) of a selector's matchers."""
    return {m.name: (str(m.op), m.value) for m in selector.matchers.matchers}


def metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (parsed, not grepped)."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def documentation() -> str:
    paths: Iterable[Path] = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return "\n".join(p.read_text(encoding="utf-8") for p in paths)


_SUFFIXES = ("_bucket", "_sum", "_count")


def documented_names(docs: str) -> set[str]:
    """Names in the first cell of a Markdown table row: where metrics are documented.

    A name merely mentioned in prose ("postgres_exporter calls it ...") does not count.
    """
    names: set[str] = set()
    for line in docs.splitlines():
        if line.startswith("|"):
            first = line.split("|")[1]
            names.update(re.findall(r"`([A-Za-z_:][A-Za-z0-9_:]*)`", first))
    return names


def is_documented(name: str, documented: set[str]) -> bool:
    candidates = [name] + [name[: -len(s)] for s in _SUFFIXES if name.endswith(s)]
    return any(c in documented for c in candidates)


def dashboard_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel
