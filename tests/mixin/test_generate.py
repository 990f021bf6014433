"""The generator: committed files match it, the CLI writes and checks, and one changed value
flows into the rules, the dashboards, the Kubernetes objects and the docs tables together."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from exporter.cli import main
from exporter.mixin import default_values
from exporter.mixin.generate import expected, outputs, stale
from exporter.mixin.rules import rule_groups

ROOT = Path(__file__).resolve().parents[2]


def test_committed_files_match_the_generator() -> None:
    assert stale(ROOT, default_values()) == [], "run `make generate` and commit the result"


def test_every_generated_file_is_listed() -> None:
    files = set(expected(ROOT, default_values()))
    assert {"alerts/festivals.rules.yml", "alerts/alertmanager.example.yml",
            "alerts/templates/festivals.tmpl", "docs/alerts.md",
            "deploy/kubernetes/base/mixin/prometheusrule.yaml",
            "deploy/kubernetes/base/mixin/dashboards.yaml",
            "grafana/dashboards/festivals-api.json"} <= files


def test_check_detects_drift_and_write_repairs_it(tmp_path: Path) -> None:
    assert main(["mixin", "--output", str(tmp_path)]) == 0
    assert main(["mixin", "--output", str(tmp_path), "--check"]) == 0
    victim = tmp_path / "grafana" / "dashboards" / "festivals-api.json"
    victim.write_text(victim.read_text(encoding="utf-8").replace("p99", "p95"))
    stray = tmp_path / "grafana" / "dashboards" / "old-board.json"
    stray.write_text("{}")
    assert main(["mixin", "--output", str(tmp_path), "--check"]) == 1
    assert main(["mixin", "--output", str(tmp_path)]) == 0
    assert not stray.exists()
    assert main(["mixin", "--output", str(tmp_path), "--check"]) == 0


def test_a_bad_values_file_is_a_usage_error(tmp_path: Path, capsys: object) -> None:
    bad = tmp_path / "values.yaml"
    bad.write_text("alerts: {queue_backlog: {length: -3}}\n")
    assert main(["mixin", "--values", str(bad), "--output", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_kubernetes_objects_carry_the_same_rules_and_dashboards() -> None:
    values = default_values()
    files = outputs(values)
    rule = yaml.safe_load(files["deploy/kubernetes/base/mixin/prometheusrule.yaml"])
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == rule_groups(values)
    assert rule["spec"]["groups"] == yaml.safe_load(files["alerts/festivals.rules.yml"])["groups"]
    maps = list(yaml.safe_load_all(files["deploy/kubernetes/base/mixin/dashboards.yaml"]))
    assert len(maps) == 7
    for cm in maps:
        assert cm["kind"] == "ConfigMap"
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        (name, text), = cm["data"].items()
        assert text == files[f"grafana/dashboards/{name}"]
    kustomization = yaml.safe_load(files["deploy/kubernetes/base/mixin/kustomization.yaml"])
    assert kustomization["resources"] == ["prometheusrule.yaml", "dashboards.yaml"]


def test_a_changed_threshold_and_url_flow_everywhere(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    shutil.copy(ROOT / "docs" / "alerts.md", tmp_path / "docs" / "alerts.md")
    values_file = tmp_path / "values.yaml"
    values_file.write_text(
        "urls: {runbook: 'https://wiki.example.org/oncall', grafana: 'https://g.example.org'}\n"
        "alerts: {queue_backlog: {length: 250}}\n"
    )
    out = tmp_path / "out"
    shutil.copytree(tmp_path / "docs", out / "docs")
    assert main(["mixin", "--values", str(values_file), "--output", str(out)]) == 0

    rules = yaml.safe_load((out / "alerts" / "festivals.rules.yml").read_text())
    backlog = [r for g in rules["groups"] for r in g["rules"]
               if r.get("alert") == "QueueBacklog" and r["labels"]["signal"] == "length"]
    assert len(backlog) == 1
    assert "> 250\n" in backlog[0]["expr"]
    assert backlog[0]["annotations"]["summary"] == "A Festivals queue holds more than 250 jobs."
    assert backlog[0]["annotations"]["runbook_url"] == "https://wiki.example.org/oncall#queue-backlog"
    assert backlog[0]["annotations"]["dashboard_url"] == "https://g.example.org/d/festivals-queues"

    board = json.loads((out / "grafana" / "dashboards" / "festivals-queues.json").read_text())
    length = next(p for row in board["panels"] for p in [row, *row.get("panels", [])]
                  if p.get("title") == "Queue length")
    steps = length["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 250]
    assert "above 250 " in length["description"]

    k8s = yaml.safe_load((out / "deploy/kubernetes/base/mixin/prometheusrule.yaml").read_text())
    assert k8s["spec"]["groups"] == rules["groups"]

    doc = (out / "docs" / "alerts.md").read_text()
    assert "| `alerts.queue_backlog.length` | `250.0` |" in doc
    assert "`queue_backlog.length` = 250.0" in doc
    assert "A Festivals queue holds more than 250 jobs." in doc
    assert "[Queue Backlog](https://wiki.example.org/oncall#queue-backlog)" in doc
    committed = (ROOT / "docs" / "alerts.md").read_text()
    assert "| `alerts.queue_backlog.length` | `1000.0` |" in committed
