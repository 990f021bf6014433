"""Alerting/recording rules: promtool checks and unit tests, conventions, Alertmanager."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._common import (
    ALERTMANAGER,
    DASHBOARD_DIR,
    EXPORTER_DOCS_URL,
    GRAFANA_BASE_URL,
    ROOT,
    RULE_TESTS,
    RULES,
    RUNBOOK_BASE_URL,
    alert_rules,
    documentation,
    documented_names,
    is_documented,
    load_rules,
    metric_names,
    recording_rules,
    run,
    tool,
)

# The runbook's alerts, their Quick Reference severity and section anchor.
RUNBOOK = {
    "APIServiceDown": ("critical", "api-down"),
    "HighErrorRate": ("critical", "high-error-rate"),
    "DatabaseDown": ("critical", "database-issues"),
    "DatabaseConnectionPoolExhausted": ("critical", "database-issues"),
    "HighPaymentFailureRate": ("critical", "payment-failures"),
    "HighLatencyP99": ("warning", "high-latency"),
    "HighCPUUsage": ("warning", "resource-exhaustion"),
    "HighMemoryUsage": ("warning", "resource-exhaustion"),
    "QueueBacklog": ("warning", "queue-backlog"),
    "SSLCertificateExpiringSoon": ("warning", "ssl-certificate-renewal"),
}
META = {
    "FestivalsExporterDown",
    "FestivalsExporterConfigReloadFailed",
    "FestivalsProbeStale",
    "FestivalsProbeFailing",
    "FestivalsProbeMetricsAbsent",
    "FestivalsStatusPageStale",
}


def test_promtool_check_rules() -> None:
    result = run(tool("promtool"), "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in result.stdout


def test_promtool_check_rules_rejects_a_broken_expression(tmp_path: Path) -> None:
    # The check above can fail: a broken copy of the file is refused.
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.read_text(encoding="utf-8").replace("pg_up{", "pg_up{{", 1))
    result = run(tool("promtool"), "check", "rules", broken)
    assert result.returncode != 0


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(test_file: Path) -> None:
    result = run(tool("promtool"), "test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _alert_cases() -> list[dict[str, Any]]:
    cases = []
    for path in RULE_TESTS:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert doc["rule_files"] == ["../festivals.rules.yml"], path
        for test in doc["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


def test_every_alert_rule_has_a_firing_and_a_silent_case() -> None:
    cases = _alert_cases()
    fired = {
        (case["alertname"], exp["exp_labels"]["severity"], exp["exp_labels"].get("signal"))
        for case in cases
        for exp in case["exp_alerts"]
    }
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    for rule in alert_rules():
        key = (rule["alert"], rule["labels"]["severity"], rule["labels"].get("signal"))
        assert key in fired, f"no promtool case where {key} fires"
        assert rule["alert"] in silent, f"no promtool case where {rule['alert']} stays silent"
    for case in cases:
        for exp in case["exp_alerts"]:
            # an expected alert checks every annotation, not just the labels
            assert set(exp["exp_annotations"]) == {
                "summary", "description", "runbook_url", "dashboard_url"
            }


def test_every_runbook_alert_exists_with_its_severity_and_section() -> None:
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert set(RUNBOOK) <= names
    assert names - set(RUNBOOK) - META == {"APIErrorBudgetBurn"}
    for rule in rules:
        if rule["alert"] in RUNBOOK:
            severity, anchor = RUNBOOK[rule["alert"]]
            assert rule["labels"]["severity"] == severity, rule["alert"]
            assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_BASE_URL}#{anchor}"


def test_runbook_anchors_match_the_runbook_headings() -> None:
    # The runbook lives in the Festivals repo; a copy sits beside this checkout here and in CI.
    runbook = Path(__file__).resolve().parents[3] / "shared" / "reference" / "festivals-runbook.md"
    if not runbook.exists():
        pytest.skip("runbook copy not present")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
        for line in runbook.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    }
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        if url.startswith(RUNBOOK_BASE_URL):
            assert url.split("#", 1)[1] in anchors, url


def test_alert_conventions() -> None:
    uids = {p.stem for p in DASHBOARD_DIR.glob("*.json")}
    for rule in alert_rules():
        name = rule["alert"]
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        ann = rule["annotations"]
        assert set(ann) == {"summary", "description", "runbook_url", "dashboard_url"}, name
        assert ann["summary"].endswith(".") and "{{" not in ann["summary"], name
        assert "{{" in ann["description"], name
        assert ann["runbook_url"].startswith((RUNBOOK_BASE_URL + "#", EXPORTER_DOCS_URL + "#"))
        assert ann["dashboard_url"].startswith(GRAFANA_BASE_URL + "/d/"), name
        assert ann["dashboard_url"].rsplit("/", 1)[1] in uids, ann["dashboard_url"]
        if rule["labels"].get("signal") != "oom_killed":  # an event, not a state
            assert "for" in rule, name


def test_recording_rule_names() -> None:
    records = [rule["record"] for rule in recording_rules()]
    assert len(records) == len(set(records))
    for name in records:
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", name), name
    assert "probe:probe_failures:ratio_rate5m" in records


def test_every_metric_in_the_rules_is_documented() -> None:
    docs = documented_names(documentation())
    recorded = {rule["record"] for rule in recording_rules()}
    missing = set()
    for rule in load_rules():
        for name in metric_names(rule["expr"]):
            if name not in recorded and not is_documented(name, docs):
                missing.add(name)
    assert not missing, f"metrics used in rules but documented nowhere: {sorted(missing)}"
    # every recording rule is documented too
    assert not {r for r in recorded if not is_documented(r, docs)}


def test_every_alert_is_documented() -> None:
    text = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    for name in {rule["alert"] for rule in alert_rules()}:
        assert re.search(rf"^#+ `?{name}`?\s*$", text, re.M), f"{name} not in docs/alerts.md"


def test_amtool_check_config() -> None:
    result = run(tool("amtool"), "check-config", ALERTMANAGER)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=APIServiceDown", "service=festivals-api"], "pager"),
        (["severity=warning", "alertname=QueueBacklog", "probe=festivals-redis"], "ticket"),
        (["severity=critical", "alertname=DatabaseDown"], "pager"),
        (["severity=warning", "alertname=SSLCertificateExpiringSoon"], "ticket"),
    ],
)
def test_amtool_routes(labels: list[str], receiver: str) -> None:
    amtool = tool("amtool")
    ok = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}",
             f"--verify.receivers={receiver}", *labels)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip() == receiver
    other = "ticket" if receiver == "pager" else "pager"
    wrong = run(amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}",
                f"--verify.receivers={other}", *labels)
    assert wrong.returncode != 0
