"""The mixin's values: shipped defaults, merging a user file, errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.mixin import (
    SECTION_ANCHORS,
    ValuesError,
    default_values,
    duration_seconds,
    inputs,
    load_values,
    section_thresholds,
    sections,
)


def test_defaults_load_and_cover_every_runbook_section() -> None:
    values = default_values()
    assert tuple(sections(values)) == SECTION_ANCHORS
    assert values.alerts.high_error_rate.threshold == 0.01
    assert values.alerts.queue_backlog.length == 1000
    assert values.replicas.quorum == "majority"
    assert load_values() == values


def test_a_user_file_merges_over_the_defaults(tmp_path: Path) -> None:
    user = tmp_path / "values.yaml"
    user.write_text(
        "urls: {runbook: https://wiki.example/runbook}\n"
        "alerts:\n  queue_backlog: {length: 50, length_for: 1m}\n"
        "selectors: {cluster_label: cluster}\n"
    )
    values = load_values(user)
    assert values.alerts.queue_backlog.length == 50
    assert values.alerts.queue_backlog.length_for == "1m"
    assert values.alerts.queue_backlog.age_seconds == 600  # untouched sibling kept
    assert values.urls.grafana == "https://grafana.festivals.example"
    assert values.runbook_url("queue-backlog") == "https://wiki.example/runbook#queue-backlog"
    queue = sections(values)["queue-backlog"]
    assert queue.thresholds == {"queue_backlog.age_seconds": 600, "queue_backlog.length": 50}
    assert queue.kinds == ("redis",)
    assert queue.runbook_url == "https://wiki.example/runbook#queue-backlog"
    assert queue.diagnose_url.endswith("/diagnose/queue-backlog")
    assert section_thresholds(values, "api-down") == {"api_service_down.for": "2m"}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("alerts: {queue_backlog: {lenght: 5}}", "alerts.queue_backlog.lenght"),
        ("alerts: {high_error_rate: {threshold: 2}}", "alerts.high_error_rate.threshold"),
        ("alerts: {database_down: {for: soon}}", "alerts.database_down.for"),
        ("replicas: {quorum: most}", "replicas.quorum"),
        ("sections: {api-down: {thresholds: [nope.x]}}", "sections.api-down.thresholds"),
    ],
)
def test_a_bad_value_names_its_field(tmp_path: Path, text: str, where: str) -> None:
    user = tmp_path / "values.yaml"
    user.write_text(text + "\n")
    with pytest.raises(ValuesError) as info:
        load_values(user)
    assert any(where in error for error in info.value.errors), info.value.errors


def test_inputs_select_job_and_kind_explicitly() -> None:
    table = inputs(default_values())
    assert table["api_probe"].selector == (
        'job="festivals-exporter", kind="http", service="festivals-api"'
    )
    assert table["api_metrics"].selector == 'job="festivals-api"'
    assert table["redis"].up_metric == "redis_up"
    assert "QueueBacklog" in table["redis"].blind_alerts


def test_durations() -> None:
    assert duration_seconds("1h30m") == 5400
    assert duration_seconds("500ms") == 0.5


def test_the_docs_tables_are_generated_from_the_defaults() -> None:
    from exporter.mixin.docs import RENDERERS, render_blocks

    doc = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"
    text = doc.read_text(encoding="utf-8")
    assert "<!-- mixin:values -->" in text
    assert render_blocks(text, default_values(), RENDERERS) == text, "run make generate"
