"""Grafana dashboards: linter conventions, variables in every query, alert thresholds as
panel steps, valid PromQL. (No drift from the generator: tests/mixin/test_generate.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from exporter.mixin import default_values

from ._common import (
    DASHBOARD_DIR,
    dashboard_panels,
    documentation,
    documented_names,
    is_documented,
    matchers,
    metric_names,
    recording_rules,
    run,
    selectors,
    tool,
)


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


def _parseable(expr: str) -> str:
    return expr.replace("$__rate_interval", "5m")


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
        assert dash["editable"] is False, name  # read-only: changes go through the mixin
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        assert list(variables) == ["datasource", "job", "instance"], name
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for var in ("job", "instance"):
            assert variables[var]["type"] == "query"
            assert variables[var]["datasource"]["uid"] == "${datasource}"
            assert variables[var]["includeAll"] and variables[var]["allValue"] == ".*"
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


def test_every_selector_uses_the_job_and_instance_variables(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for name, title, expr in _exprs(dashboards):
        for sel in selectors(_parseable(expr)):
            found = matchers(sel)
            where = f"{name} / {title}: {sel.name}"
            assert found.get("job") == ("MatchOp.Re", "$job"), where
            assert found.get("instance") == ("MatchOp.Re", "$instance"), where


def _steps(panel: dict[str, Any]) -> list[tuple[float | None, str]]:
    thresholds = panel["fieldConfig"]["defaults"].get("thresholds") or {}
    return [(s.get("value"), s["color"]) for s in thresholds.get("steps", [])]


def _panel(dashboards: dict[str, dict[str, Any]], board: str, title: str) -> dict[str, Any]:
    for panel in dashboard_panels(dashboards[f"festivals-{board}.json"]):
        if panel["title"] == title:
            return panel
    raise AssertionError(f"no panel {title!r} on {board}")


def test_alert_panels_have_the_alert_thresholds_as_steps(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    # Hand-written against the defaults: a panel turns red exactly where its alert fires.
    red_above = {
        ("api", "5xx ratio"): 0.01,
        ("api", "p99 latency"): 0.5,
        ("api", "Probe error ratio per prober"): 0.05,
        ("api", "Probe p99 run duration"): 0.5,
        ("database", "Connection slots used"): 0.9,
        ("database", "Oldest client wait"): 1,
        ("queues", "Queue length"): 1000,
        ("queues", "Oldest job age"): 600,
        ("payments", "Payment failure ratio"): 0.05,
        ("payments", "Component status"): 2,
        ("payments", "Status page answer age"): 900,
        ("kubernetes", "CPU use vs limit"): 0.9,
        ("kubernetes", "Memory use vs limit"): 0.9,
        ("overview", "Seconds since last run"): 900,
    }
    for (board, title), threshold in red_above.items():
        assert _steps(_panel(dashboards, board, title)) == [(None, "green"), (threshold, "red")]
    green_above = {
        ("tls", "Days left per source"): 14,
        ("tls", "Endpoint certificates (http/tcp probes)"): 14,
        ("database", "PostgreSQL up"): 1,
        ("queues", "Redis up"): 1,
        ("api", "API health check"): 1,
    }
    for (board, title), threshold in green_above.items():
        assert _steps(_panel(dashboards, board, title)) == [(None, "red"), (threshold, "green")]
    # HTTP 200 is green, not red; a 5xx is red
    status = dict((v, c) for v, c in _steps(_panel(dashboards, "api", "HTTP status")))
    assert status[200] == "green" and status[500] == "red"


def test_every_dashboard_expression_parses(dashboards: dict[str, dict[str, Any]]) -> None:
    exprs = _exprs(dashboards)
    assert len(exprs) > 50
    for name, title, expr in exprs:
        try:
            promql_parser.parse(_parseable(expr))
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
        {"record": f"dashboard:expr:n{i}", "expr": _parseable(expr)}
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
        used |= metric_names(_parseable(expr))
    assert {"probe_success", "pg_connections_used_ratio", "redis_queue_length"} <= used
    missing = sorted(n for n in used if n not in recorded and not is_documented(n, docs))
    assert not missing, f"metrics used in dashboards but documented nowhere: {missing}"


def test_a_cluster_label_adds_a_variable_to_every_query(tmp_path: Path) -> None:
    from exporter.mixin.dashboards import rendered
    from exporter.mixin.values import load_values

    values_file = tmp_path / "values.yaml"
    values_file.write_text("selectors: {cluster_label: cluster}\n")
    values = load_values(values_file)
    assert values != default_values()
    for text in rendered(values).values():
        dash = json.loads(text)
        assert [v["name"] for v in dash["templating"]["list"]] == [
            "datasource", "cluster", "job", "instance"]
        for panel in dashboard_panels(dash):
            for target in panel["targets"]:
                for sel in selectors(_parseable(target["expr"])):
                    assert matchers(sel).get("cluster") == ("MatchOp.Re", "$cluster")
