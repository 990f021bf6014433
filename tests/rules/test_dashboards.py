"""Grafana dashboards: no drift from the generator, linter conventions, valid PromQL."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import promql_parser
import pytest
import yaml

from ._common import (
    DASHBOARD_DIR,
    GENERATOR,
    dashboard_panels,
    documentation,
    documented_names,
    is_documented,
    metric_names,
    recording_rules,
    run,
    tool,
)


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_dashboards", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while executing
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted(DASHBOARD_DIR.glob("*.json"))
    }


def _exprs(dashboards: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (name, panel["title"], target["expr"])
        for name, dash in dashboards.items()
        for panel in dashboard_panels(dash)
        for target in panel["targets"]
    ]


def test_committed_json_matches_the_generator(generator: ModuleType) -> None:
    expected: dict[str, str] = generator.rendered()
    committed = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARD_DIR.glob("*.json")}
    assert set(committed) == set(expected), "run scripts/generate_dashboards.py"
    stale = sorted(name for name in expected if committed[name] != expected[name])
    assert not stale, f"out of date, run scripts/generate_dashboards.py: {stale}"


def test_check_mode_detects_drift(generator: ModuleType, tmp_path: Path) -> None:
    assert generator.main(["--out", str(tmp_path)]) == 0  # writes a fresh copy
    assert generator.main(["--check", "--out", str(tmp_path)]) == 0
    victim = tmp_path / "festivals-api.json"
    victim.write_text(victim.read_text(encoding="utf-8").replace("p99", "p95"))
    assert generator.main(["--check", "--out", str(tmp_path)]) == 1


def test_one_dashboard_per_runbook_area(dashboards: dict[str, dict[str, Any]]) -> None:
    assert set(dashboards) == {
        f"festivals-{area}.json"
        for area in ("overview", "api", "database", "queues", "payments", "tls", "kubernetes")
    }


def test_linter_conventions(dashboards: dict[str, dict[str, Any]]) -> None:
    uids = []
    for name, dash in dashboards.items():
        uids.append(dash["uid"])
        assert name == f"{dash['uid']}.json"
        assert dash["title"] and dash["description"]
        variables = dash["templating"]["list"]
        ds = [v for v in variables if v["type"] == "datasource"]
        assert [(v["name"], v["query"]) for v in ds] == [("datasource", "prometheus")], name
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)) and 0 not in ids, name
        panels = list(dashboard_panels(dash))
        assert panels, name
        for panel in panels:
            where = f"{name}: {panel.get('title')}"
            assert panel["title"], where
            assert panel.get("description"), where
            assert panel["fieldConfig"]["defaults"].get("unit"), where
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel["targets"], where
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", where
                expr = target["expr"]
                for match in re.finditer(r"\b(rate|irate|increase)\(", expr):
                    window = re.search(r"\[([^\]]+)\]", expr[match.end():])
                    assert window and window.group(1) == "$__rate_interval", (where, expr)
    assert len(uids) == len(set(uids))


def test_every_dashboard_expression_parses(dashboards: dict[str, dict[str, Any]]) -> None:
    exprs = _exprs(dashboards)
    assert len(exprs) > 50
    for name, title, expr in exprs:
        try:
            promql_parser.parse(expr.replace("$__rate_interval", "5m"))
        except ValueError as exc:
            pytest.fail(f"{name} / {title}: {exc}: {expr}")


def test_promql_parser_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(probe_runs_total[5m])")


def test_dashboard_expressions_pass_promtool(
    dashboards: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    # Second opinion from Prometheus' own parser: every query as a recording rule.
    rules = [
        {"record": f"dashboard:expr:n{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, (_, _, expr) in enumerate(_exprs(dashboards))
    ]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run(tool("promtool"), "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_in_the_dashboards_is_documented(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    docs = documented_names(documentation())
    recorded = {rule["record"] for rule in recording_rules()}
    used: set[str] = set()
    for _, _, expr in _exprs(dashboards):
        used |= metric_names(expr.replace("$__rate_interval", "5m"))
    assert {"probe_success", "pg_connections_used_ratio", "redis_queue_length"} <= used
    missing = sorted(n for n in used if n not in recorded and not is_documented(n, docs))
    assert not missing, f"metrics used in dashboards but documented nowhere: {missing}"
