"""Config validation and secret handling (no server needed)."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError
from redis import exceptions as rexc

from exporter.config import parse_config
from probes.redis import KIND, RedisConfig
from probes.redis.server import reason_for_redis_error


def test_defaults_are_the_festivals_queues() -> None:
    config = RedisConfig()
    assert [q.key for q in config.queues] == [
        "festivals:queue:critical", "festivals:queue:default", "festivals:queue:low",
        "festivals:queue:failed",
    ]
    assert all(q.type == "list" for q in config.queues)
    assert KIND.target(config) == "redis://127.0.0.1:6379/0"
    assert config.max_keys == 1000 and config.max_scan_seconds == 1.0


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"url": "redis://:hunter2@localhost:6379"}, "credentials"),
        ({"url": "http://localhost"}, "scheme"),
        ({"url": "redis://localhost/abc"}, "database number"),
        ({"url": "redis://h:1", "address": "h:1"}, "either url or address"),
        ({"address": "nohostport"}, "host:port"),
        ({"url": "redis://h/2", "db": 3}, "db differs"),
        ({"ca_file": "/tmp/ca.pem"}, "rediss"),
        ({"password": "a", "password_file": "/tmp/p"}, "not both"),
        ({"queues": [{"key": "a", "pattern": "b*"}]}, "exactly one of key or pattern"),
        ({"queues": [{}]}, "exactly one of key or pattern"),
        ({"queues": [{"key": "a", "type": "list", "group": "g"}]}, "group applies"),
        ({"queues": [{"key": "a", "max_score": "tomorrow"}]}, "now-<duration>"),
        ({"queues": [{"key": "a"}, {"key": "a"}]}, "unique"),
        ({"bogus": 1}, "Extra inputs"),
    ],
)
def test_bad_config_is_rejected_with_a_clear_message(keys: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        RedisConfig.model_validate(keys)
    assert message in str(err.value)
    assert "hunter2" not in str(err.value) or "credentials" in message


def test_target_and_endpoint_forms() -> None:
    config = RedisConfig.model_validate(
        {"url": "rediss://cache.internal:6380/2", "username": "probe", "password": "s3cret",
         "ca_file": "/etc/ca.pem"}
    )
    assert config.tls and config.port == 6380 and config.database == 2
    assert KIND.target(config) == "rediss://probe@cache.internal:6380/2"
    assert "s3cret" not in KIND.target(config) and "s3cret" not in repr(config)
    config = RedisConfig.model_validate({"address": "[::1]:7000", "db": 1})
    assert KIND.target(config) == "redis://[::1]:7000/1"


def test_score_bounds_accept_now_and_durations() -> None:
    config = RedisConfig.model_validate(
        {"queues": [{"key": "z", "min_score": "now-5m", "max_score": "now", "score_unit": "ms"}]}
    )
    assert config.queues[0].min_score == "now-5m"


def test_info_without_maxmemory_and_replica_link() -> None:
    from probes.redis.server import server_info

    srv = server_info({"redis_version": "7.2.4", "role": "slave", "master_link_status": "down",
                       "used_memory": 1024})
    by_name = {m.name: m.samples[0].value for m in srv.metrics}
    assert by_name["redis_memory_max_bytes"] == 0 and not srv.maxmemory_known
    assert by_name["redis_master_link_up"] == 0
    assert by_name["redis_memory_used_bytes"] == 1024
    assert any("not reported" in line for line in srv.detail)
    srv = server_info({"role": "slave", "master_link_status": "up", "maxmemory": 10})
    assert {m.name: m.samples[0].value for m in srv.metrics}["redis_master_link_up"] == 1
    assert srv.maxmemory_known


def test_enqueue_timestamps_in_seconds_milliseconds_and_iso() -> None:
    from probes.redis.queues import parse_enqueued_at

    assert parse_enqueued_at(1_700_000_000) == 1_700_000_000
    assert parse_enqueued_at(1_700_000_000_500) == 1_700_000_000.5
    assert parse_enqueued_at("1700000000") == 1_700_000_000
    assert parse_enqueued_at("2023-11-14T22:13:20Z") == 1_700_000_000
    assert parse_enqueued_at("2023-11-14T22:13:20") == 1_700_000_000
    assert parse_enqueued_at("yesterday") is None
    assert parse_enqueued_at(True) is None and parse_enqueued_at(None) is None
    assert parse_enqueued_at(10**400) is None  # a JSON integer too large for a float
    assert parse_enqueued_at("1e400") is None and parse_enqueued_at(math.nan) is None


def test_one_stream_in_two_entries_gives_one_group_series() -> None:
    from probes.redis.queues import KeyResult, QueueConfig, QueueResult, queue_metrics

    results = []
    for name in ("events", "events-again"):
        qr = QueueResult(QueueConfig(key="s", name=name, group="g"))
        qr.keys.append(KeyResult(b"s", "stream", 3.0, 3.0, 0.0, 1.0, 2.0))
        results.append(qr)
    for metric in queue_metrics(0, results):
        labels = [sample.labels for sample in metric.samples]
        assert len(labels) == len(set(labels)), metric.name


def test_refused_connect_is_refused_even_without_the_os_error_in_its_chain() -> None:
    """The pool replacing a stale connection raises redis-py's connect error while handling
    its own "Connection has data": the chain holds no ConnectionRefusedError."""
    try:
        try:
            raise rexc.ConnectionError("Connection has data") from None
        except rexc.ConnectionError:
            raise rexc.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connect call "
                                       "failed ('127.0.0.1', 1).") from None
    except rexc.ConnectionError as exc:
        assert reason_for_redis_error(exc) == "refused"
    assert reason_for_redis_error(rexc.ConnectionError("Connection closed by server.")) == (
        "unreachable")


@pytest.mark.parametrize(("entry", "key", "expected"), [
    # every documented value of a queue entry as a user types it in YAML, unquoted
    *[(f"max_score: {v}", "max_score", e) for v, e in (
        ("0", "0"), ("1700000000", "1700000000"), ("1.5", "1.5"), ("-inf", "-inf"),
        ("+inf", "+inf"), (".inf", "inf"), ("now", "now"), ("now-5m", "now-5m"),
        ("now+1h", "now+1h"))],
    ("min_score: 0", "min_score", "0"),
    *[(f"type: {v}", "type", v) for v in ("auto", "list", "zset", "stream", "set", "hash")],
    ("score_unit: ms", "score_unit", "ms"),
    ("score_unit: s", "score_unit", "s"),
    ("oldest_at: head", "oldest_at", "head"),
    ("oldest_at: tail", "oldest_at", "tail"),
    ("score_is_timestamp: yes", "score_is_timestamp", True),
    ("name: 2024", "name", "2024"),
    ("group: 1", "group", "1"),
])
def test_documented_queue_values_work_as_typed_in_yaml(
    entry: str, key: str, expected: object
) -> None:
    text = ("probes:\n  - name: r\n    kind: redis\n    queues:\n"
            f"      - key: festivals:q\n        {entry}\n")
    (spec,) = parse_config(text, {}).probes
    assert isinstance(spec.settings, RedisConfig)
    assert getattr(spec.settings.queues[0], key) == expected


def test_documented_probe_values_work_as_typed_in_yaml() -> None:
    text = ("probes:\n  - name: r\n    kind: redis\n    db: 0\n    max_keys: 5000\n"
            "    max_scan_seconds: 500ms\n    require_maxmemory: on\n    username: 1001\n")
    (spec,) = parse_config(text, {}).probes
    assert isinstance(spec.settings, RedisConfig)
    assert spec.settings.username == "1001" and spec.settings.require_maxmemory is True
    assert spec.settings.max_scan_seconds == 0.5
