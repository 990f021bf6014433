"""Alerting/recording rules: promtool checks and unit tests, conventions, Alertmanager."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._common import (
    ALERTMANAGER,
    DASHBOARD_DIR,
    DIAGNOSE_BASE_URL,
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
    matchers,
    metric_names,
    recording_rules,
    run,
    selectors,
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
# Signals named apart from the runbook's alerts (synthetic probes, SLO burn), with their
# section: they link to the same runbook section and are inhibited by the runbook alert.
COMPANIONS = {
    "SyntheticHighErrorRate": "high-error-rate",
    "APIErrorBudgetBurn": "high-error-rate",
    "SyntheticHighLatencyP99": "high-latency",
    "SyntheticPaymentCheckFailing": "payment-failures",
}
META = {
    "FestivalsExporterDown",
    "FestivalsExporterReplicaDown",
    "FestivalsExporterConfigReloadFailed",
    "FestivalsProbeStale",
    "FestivalsInputDown",
    "FestivalsInputAbsent",
    "FestivalsStatusPageStale",
}
# Metrics the exporter emits (every one carries job and kind); the rest come from the API
# (festivals_*), Prometheus (up) or recording rules.
EXPORTER_PREFIXES = (
    "probe_", "pg_", "pgbouncer_", "redis_", "tls_", "statuspage_", "kube_", "certmanager_",
)


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


def _key(name: str, labels: dict[str, str]) -> tuple[str, str, str | None, str | None]:
    return (name, labels["severity"], labels.get("signal"), labels.get("input"))


def test_every_alert_rule_has_a_firing_and_a_silent_case() -> None:
    cases = _alert_cases()
    fired = {
        _key(case["alertname"], exp["exp_labels"])
        for case in cases
        for exp in case["exp_alerts"]
    }
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    annotations = {_key(r["alert"], r["labels"]): set(r["annotations"]) for r in alert_rules()}
    for rule in alert_rules():
        key = _key(rule["alert"], rule["labels"])
        assert key in fired, f"no promtool case where {key} fires"
        assert rule["alert"] in silent, f"no promtool case where {rule['alert']} stays silent"
    for case in cases:
        for exp in case["exp_alerts"]:
            # an expected alert checks every annotation, not just the labels
            key = _key(case["alertname"], exp["exp_labels"])
            assert set(exp["exp_annotations"]) == annotations[key], key


def test_fleet_alerts_carry_no_instance() -> None:
    # A runbook alert fires once for the fleet of probers, never once per replica.
    for case in _alert_cases():
        if case["alertname"] in RUNBOOK or case["alertname"] in COMPANIONS:
            for exp in case["exp_alerts"]:
                assert "instance" not in exp["exp_labels"], case


def test_every_runbook_alert_exists_with_its_severity_and_section() -> None:
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert set(RUNBOOK) <= names
    assert names - set(RUNBOOK) - META == set(COMPANIONS)
    for rule in rules:
        name = rule["alert"]
        section = RUNBOOK[name][1] if name in RUNBOOK else COMPANIONS.get(name)
        if section is None:
            continue
        if name in RUNBOOK and rule["labels"].get("signal") not in {"slow_burn"}:
            assert rule["labels"]["severity"] == RUNBOOK[name][0], name
        assert rule["labels"]["section"] == section, name
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_BASE_URL}#{section}"
        assert rule["annotations"]["diagnose_url"] == f"{DIAGNOSE_BASE_URL}/{section}"


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
    docs_anchors = {
        line.lstrip("#").strip().strip("`").lower()
        for line in (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    }
    for rule in alert_rules():
        name = rule["alert"]
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), name
        labels = rule["labels"]
        assert labels["severity"] in {"critical", "warning"}, name
        assert labels["system"], name  # Alertmanager groups and inhibits on it
        ann = rule["annotations"]
        assert {"summary", "description", "runbook_url", "dashboard_url", "diagnose_url"} <= set(
            ann
        ), name
        assert set(ann) - {"summary", "description", "runbook_url", "dashboard_url",
                           "diagnose_url"} <= {"blind_alerts"}, name
        assert ann["summary"].endswith(".") and "{{" not in ann["summary"], name
        assert "{{" in ann["description"], name
        assert ann["runbook_url"].startswith((RUNBOOK_BASE_URL + "#", EXPORTER_DOCS_URL + "#"))
        if ann["runbook_url"].startswith(EXPORTER_DOCS_URL):
            assert ann["runbook_url"].split("#")[1] in docs_anchors, ann["runbook_url"]
        assert ann["dashboard_url"].startswith(GRAFANA_BASE_URL + "/d/"), name
        assert ann["dashboard_url"].rsplit("/", 1)[1] in uids, ann["dashboard_url"]
        assert ann["diagnose_url"].startswith(DIAGNOSE_BASE_URL), name
        if "blind_alerts" in ann:
            named = set(ann["blind_alerts"].split(", "))
            assert named <= set(RUNBOOK) | set(COMPANIONS), name
            assert ann["blind_alerts"] in ann["description"], name
        if labels.get("signal") != "oom_killed":  # a count of events, not a state
            assert "for" in rule, name


def test_every_selector_names_its_job_and_kind() -> None:
    recorded = {rule["record"] for rule in recording_rules()}
    for rule in load_rules():
        for sel in selectors(rule["expr"]):
            where = f"{rule.get('alert') or rule.get('record')}: {sel.name}"
            if sel.name in recorded:
                continue  # built from selectors that do
            found = matchers(sel)
            assert "job" in found, where
            if sel.name.startswith(EXPORTER_PREFIXES):
                assert "kind" in found or rule.get("record"), where


def test_joins_use_the_full_identity() -> None:
    # `on (...)` appears only to join the quorum (by job) or a presence count (on ());
    # every other join is default matching or ignores the one label that differs.
    for rule in alert_rules():
        for clause in re.findall(r"\bon \(([^)]*)\)", rule["expr"]):
            assert clause in {"job", ""}, (rule["alert"], clause)
        for clause in re.findall(r"\bignoring \(([^)]*)\)", rule["expr"]):
            assert clause == "reason", (rule["alert"], clause)


def test_no_alert_latches_on_one_event() -> None:
    for rule in alert_rules():
        assert not re.search(r"increase\([^)]*\)\s*>\s*0\b", rule["expr"]), rule["alert"]


def test_recording_rule_names() -> None:
    records = [rule["record"] for rule in recording_rules()]
    assert len(records) == len(set(records))
    for name in records:
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", name), name
    assert {"probe:probe_failures:ratio_rate5m", "instance_probe:probe_failures:ratio_rate5m",
            "job:festivals_exporter_quorum:count"} <= set(records)


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
    assert "1 templates" in result.stdout


def test_every_inhibition_names_what_must_be_equal() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8"))
    assert config["route"]["group_by"] == ["system"]
    rules = config["inhibit_rules"]
    assert rules
    for rule in rules:
        assert rule.get("equal"), rule
    by_source = {r["source_matchers"][0]: r for r in rules}
    pool = by_source['alertname="DatabaseDown"']
    # the PgBouncer signal of the pool alert is muted too: same system, not same probe
    assert pool["equal"] == ["system"]


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=APIServiceDown", "system=api"], "pager"),
        (["severity=warning", "alertname=QueueBacklog", "system=queues"], "ticket"),
        (["severity=critical", "alertname=DatabaseDown"], "pager"),
        (["severity=warning", "alertname=SSLCertificateExpiringSoon"], "ticket"),
        (["severity=warning", "alertname=FestivalsInputDown", "input=redis"], "ticket"),
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


def test_alert_names_in_alertmanager_exist() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    text = json.dumps(yaml.safe_load(ALERTMANAGER.read_text(encoding="utf-8")))
    for group in re.findall(r'alertname=~?\\"([^\\]+)\\"', text):
        for name in group.split("|"):
            assert name in names, name


TEMPLATES = ROOT / "alerts" / "templates" / "festivals.tmpl"


def _render(tmp_path: Path, text: str, alerts: list[dict[str, Any]]) -> str:
    data = tmp_path / "data.json"
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    data.write_text(json.dumps({
        "receiver": "pager", "status": status, "alerts": alerts,
        "groupLabels": {"system": "api"}, "commonLabels": {"system": "api"},
        # annotations that differ inside the group: Alertmanager leaves this empty
        "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
    }))
    result = run(tool("amtool"), "template", "render", f"--template.glob={TEMPLATES}",
                 f"--template.data={data}", f"--template.text={text}")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_templates_give_a_summary_and_every_alerts_links(tmp_path: Path) -> None:
    alerts = [
        {"status": "firing", "labels": {"alertname": name, "severity": "critical"},
         "annotations": {"summary": f"{name} summary.", "runbook_url": f"https://rb#{anchor}",
                         "dashboard_url": "https://g/d/festivals-api",
                         "diagnose_url": f"http://d/{anchor}"}}
        for name, anchor in (("APIServiceDown", "api-down"), ("HighErrorRate", "high-error-rate"))
    ]
    summary = _render(tmp_path, '{{ template "festivals.summary" . }}', alerts)
    assert summary.startswith("[FIRING:2] api: APIServiceDown: APIServiceDown summary.")
    details = _render(tmp_path, '{{ template "festivals.alerts" . }}', alerts)
    for anchor in ("api-down", "high-error-rate"):
        assert f"Runbook: https://rb#{anchor}" in details
        assert f"Diagnose: http://d/{anchor}" in details
    assert details.count("Dashboard: https://g/d/festivals-api") == 2
    # an alert without annotations still yields a summary
    bare = [{"status": "resolved", "labels": {"alertname": "X"}, "annotations": {}}]
    assert _render(tmp_path, '{{ template "festivals.summary" . }}', bare).strip() == (
        "[RESOLVED] api: X: no summary")
