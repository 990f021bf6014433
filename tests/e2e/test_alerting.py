"""End to end: the generated rules in a real Prometheus, the generated Alertmanager config in
a real Alertmanager, two exporter replicas probing real PostgreSQL, Redis, HTTP and TLS
servers. Each scenario breaks one thing, asserts exactly which alerts fire (through
Prometheus's /api/v1/alerts) and which notifications arrive (summary and runbook link
included), repairs it and waits for the resolution.

The scenarios share one stack and run in order (xdist group ``e2e``); each leaves it healthy.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from exporter.mixin import load_values
from exporter.mixin.alertmanager import alertmanager_config, template_text
from exporter.mixin.render import to_yaml
from exporter.mixin.rules import rule_groups
from exporter.mixin.values import MixinValues
from tests.probes_postgres._cluster import (
    SUPERUSER_PASSWORD,
    Cluster,
    make_template,
    make_workdir,
)
from tests.probes_redis.conftest import RedisServer
from tests.probes_tls.certgen import DAY, Issued, make_ca, make_leaf, now
from tests.probes_tls.conftest import TlsServer

from .stack import (
    Alertmanager,
    ExporterReplica,
    FakeAPI,
    Prometheus,
    Receiver,
    free_port,
    wait_for,
)

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.timeout(300)]

VALUES = Path(__file__).with_name("values.yaml")
QUEUE = "festivals:queue:default"
RUNBOOK = "https://github.com/festivals/festivals/blob/main/docs/runbook.md"
EXPORTER_DOCS = "https://github.com/festivals/festivals-exporter/blob/main/docs/alerts.md"
SETTLE = 4.0  # seconds past every `for` of the test values: long enough for a wrong alert


@dataclass
class Stack:
    prometheus: Prometheus
    alertmanager: Alertmanager
    receiver: Receiver
    api: FakeAPI
    postgres: Cluster
    redis: RedisServer
    tls: TlsServer
    tls_files: Path
    ca: Issued
    replicas: tuple[ExporterReplica, ExporterReplica]

    def firing(self) -> set[tuple[str, ...]]:
        """(alertname, signal or input, the identifying label) of every firing alert."""
        out: set[tuple[str, ...]] = set()
        for alert in self.prometheus.alerts():
            labels = alert["labels"]
            key = labels.get("signal") or labels.get("input") or ""
            who = labels.get("probe") or labels.get("instance") or ""
            out.add((labels["alertname"], key, who))
        return out

    def set_cert(self, days: float) -> None:
        leaf = make_leaf(self.ca, ("localhost", "127.0.0.1"), not_after=now() + days * DAY)
        chain, key = self.tls_files / f"leaf-{days}.pem", self.tls_files / f"key-{days}.pem"
        chain.write_bytes(leaf.pem)
        key.write_bytes(leaf.key_pem)
        self.tls.ctx.load_cert_chain(chain, key)  # new handshakes get the new certificate


def _values(receiver: Receiver) -> MixinValues:
    values = load_values(VALUES)
    am = values.alertmanager.model_copy(update={
        "pagerduty_url": f"http://127.0.0.1:{receiver.port}/pager",
        "ticket_webhook_url": f"http://127.0.0.1:{receiver.port}/ticket",
    })
    return values.model_copy(update={"alertmanager": am})


def _exporter_config(stack_dir: Path, api_port: int, pg: Cluster, redis_port: int,
                     tls_port: int, ca_file: Path) -> str:
    return yaml.safe_dump({
        "global": {"start_spread": "0s", "default_interval": "1s", "default_timeout": "800ms"},
        "probes": [
            {"name": "api-health", "kind": "http", "labels": {"service": "festivals-api"},
             "url": f"http://127.0.0.1:{api_port}/health",
             "json_checks": ['status == "ok"']},
            {"name": "festivals-db", "kind": "postgres", "host": "127.0.0.1", "port": pg.port,
             "user": "postgres", "password": SUPERUSER_PASSWORD, "dbname": "postgres",
             "reconnect_backoff_max": "1s", "connect_timeout": "500ms"},
            {"name": "festivals-redis", "kind": "redis", "address": f"127.0.0.1:{redis_port}",
             "queues": [{"key": QUEUE, "type": "list"}]},
            {"name": "certs", "kind": "tls", "ca_file": str(ca_file),
             "endpoints": [{"address": f"127.0.0.1:{tls_port}", "server_name": "localhost",
                            "source": "api-cert"}]},
        ],
    })


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = tmp_path_factory.mktemp("e2e")
    pg_base = make_workdir("fe-e2e-pg-")
    started: list[Any] = []
    try:
        pg = Cluster(make_template(pg_base), max_connections=20)
        pg.start()
        started.append(pg)
        rds = RedisServer()
        rds.start()
        started.append(rds)
        ca = make_ca("festivals e2e root")
        (work / "ca.pem").write_bytes(ca.pem)
        tls = TlsServer(work, make_leaf(ca, ("localhost", "127.0.0.1")), (), "")
        api = FakeAPI()
        receiver = Receiver()
        values = _values(receiver)

        (work / "rules.yml").write_text(to_yaml({"groups": rule_groups(values)}))
        (work / "templates").mkdir()
        (work / "templates" / "festivals.tmpl").write_text(template_text())
        (work / "alertmanager.yml").write_text(to_yaml(alertmanager_config(values)))
        alertmanager = Alertmanager(work, work / "alertmanager.yml")
        alertmanager.start()
        started.append(alertmanager)

        ports = (free_port(), free_port())
        replicas = []
        for name, port, api_port in (("fe-a", ports[0], api.port),
                                     ("fe-b", ports[1], api.side_port)):
            config = work / f"{name}.yml"
            config.write_text(_exporter_config(work, api_port, pg, rds.port, tls.port,
                                               work / "ca.pem"))
            replica = ExporterReplica(name, work, config, port)
            replica.start()
            started.append(replica)
            replicas.append(replica)

        (work / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "900ms"},
            "rule_files": [str(work / "rules.yml")],
            "alerting": {"alertmanagers": [
                {"static_configs": [{"targets": [f"127.0.0.1:{alertmanager.port}"]}]}]},
            "scrape_configs": [{
                "job_name": "festivals-exporter",
                "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports]}],
            }],
        }))
        prometheus = Prometheus(work, work / "prometheus.yml")
        prometheus.start()
        started.append(prometheus)

        wait_for("Alertmanager ready", alertmanager.ready, 30)
        for replica in replicas:
            wait_for(f"{replica.name} ready", replica.ready, 30)
        wait_for("Prometheus ready", prometheus.ready, 30)
        result = Stack(prometheus, alertmanager, receiver, api, pg, rds, tls, work, ca,
                       (replicas[0], replicas[1]))
        yield result
    finally:
        for item in reversed(started):
            if isinstance(item, Cluster):
                item.destroy()
            elif isinstance(item, RedisServer):
                item.kill()
            else:
                item.stop()
        for name in ("tls", "api", "receiver"):
            obj = locals().get(name)
            if obj is not None:
                obj.close()
        shutil.rmtree(pg_base, ignore_errors=True)


def _healthy(stack: Stack) -> None:
    """Both replicas up, every probe green on both, nothing firing."""
    def all_green() -> bool:
        ok = stack.prometheus.query('probe_success{job="festivals-exporter"} == 1')
        return len(ok) == 8
    wait_for("every probe green on both replicas", all_green, 60)
    wait_for("no firing alert", lambda: not stack.firing() or None, 60)
    wait_for("no active alert in Alertmanager", lambda: not stack.alertmanager.active() or None,
             60)


def _notifications(stack: Stack) -> list[tuple[str, dict[str, Any]]]:
    return stack.receiver.take()


def _firing_notes(notes: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(p, b) for p, b in notes
            if (p == "/ticket" and b.get("status") == "firing")
            or (p == "/pager" and b.get("event_action") == "trigger")]


def _resolved_notes(notes: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(p, b) for p, b in notes
            if (p == "/ticket" and b.get("status") == "resolved")
            or (p == "/pager" and b.get("event_action") == "resolve")]


def _check_links(path: str, body: dict[str, Any], alertnames: set[str]) -> None:
    """Every notification has a summary and each alert's runbook link."""
    if path == "/pager":
        summary = body["payload"]["summary"]
        assert summary and summary.startswith("[FIRING:"), body
        details = body["payload"]["custom_details"]["alerts"]
        for name in alertnames:
            assert name in details, details
        assert "Runbook: http" in details
        assert body["links"][0]["href"].startswith(("https://", "http://")), body
    else:
        # the group also lists its recently resolved alerts: the firing ones are the news
        firing = [a for a in body["alerts"] if a["status"] == "firing"]
        assert {a["labels"]["alertname"] for a in firing} == alertnames, body
        for alert in firing:
            assert alert["annotations"]["summary"], alert
            assert alert["annotations"]["runbook_url"].startswith(
                (RUNBOOK + "#", EXPORTER_DOCS + "#")), alert
            assert alert["annotations"]["diagnose_url"], alert


def _scenario(
    stack: Stack,
    break_it: Any,
    repair: Any,
    expected: set[tuple[str, ...]],
    receiver: str,
) -> None:
    _healthy(stack)
    time.sleep(3)  # the resolved notifications of what came before (group_interval 2s)
    stack.receiver.clear()
    break_it()
    try:
        wait_for(f"{sorted(expected)} firing", lambda: stack.firing() == expected or None, 45)
        names = {e[0] for e in expected}
        wait_for("a notification", lambda: _firing_notes(_notifications(stack)), 30)
        time.sleep(SETTLE)  # a second (duplicate or extra) notification would come by now
        assert stack.firing() == expected, stack.firing()
        firing = _firing_notes(_notifications(stack))
        assert [p for p, _ in firing] == [f"/{receiver}"], firing
        _check_links(*firing[0], names)
    finally:
        repair()
    wait_for("every alert resolved", lambda: not stack.firing() or None, 60)
    wait_for("the resolved notification", lambda: _resolved_notes(_notifications(stack)), 30)
    time.sleep(1)
    notes = _notifications(stack)
    assert len(_firing_notes(notes)) == 1 and len(_resolved_notes(notes)) == 1, json.dumps(
        notes, indent=1)[:6000]
    assert [p for p, _ in _resolved_notes(notes)] == [f"/{receiver}"]


def test_redis_stops_its_input_alert_names_the_blind_alert(stack: Stack) -> None:
    def stop() -> None:
        stack.redis.kill()

    def start() -> None:
        stack.redis.start()

    _scenario(stack, stop, start, {("FestivalsInputDown", "redis", "festivals-redis")}, "ticket")


def test_a_queue_filled_past_the_threshold(stack: Stack) -> None:
    client = redis.Redis(port=stack.redis.port)

    def fill() -> None:
        client.lpush(QUEUE, *[json.dumps({"id": i}) for i in range(8)])

    def drain() -> None:
        client.delete(QUEUE)

    try:
        _scenario(stack, fill, drain, {("QueueBacklog", "length", "festivals-redis")}, "ticket")
    finally:
        client.close()


def test_postgresql_stops(stack: Stack) -> None:
    _scenario(stack, stack.postgres.stop, stack.postgres.start,
              {("DatabaseDown", "", "festivals-db")}, "pager")


def test_the_api_endpoint_fails(stack: Stack) -> None:
    def fail() -> None:
        stack.api.failing = True

    def heal() -> None:
        stack.api.failing = False

    _scenario(stack, fail, heal, {("APIServiceDown", "probe", "api-health")}, "pager")


def test_a_certificate_expiring_in_two_days(stack: Stack) -> None:
    _scenario(stack, lambda: stack.set_cert(2), lambda: stack.set_cert(90),
              {("SSLCertificateExpiringSoon", "tls", "certs")}, "ticket")


def test_one_replicas_path_to_the_api_breaks_nothing_pages(stack: Stack) -> None:
    _healthy(stack)
    stack.receiver.clear()
    stack.api.cut_side_path()
    try:
        # the break is real: fe-b sees the API down ...
        fe_b = f"127.0.0.1:{stack.replicas[1].port}"
        wait_for("fe-b failing the API probe", lambda: stack.prometheus.query(
            f'probe_success{{probe="api-health", instance="{fe_b}"}} == 0'), 30)
        seen = stack.prometheus.query('probe_success{probe="api-health"} == 0')
        assert len(seen) == 1
        # ... for longer than APIServiceDown's `for`, and still nothing fires or notifies
        time.sleep(2 + SETTLE)
        assert stack.firing() == set()
        # not even pending (the synthetic ratio may still remember the outage of an earlier
        # scenario; that is not this break)
        pending = {a["labels"]["alertname"] for a in stack.prometheus.alerts("pending")}
        assert "APIServiceDown" not in pending
        assert _notifications(stack) == []
    finally:
        stack.api.restore_side_path()
    _healthy(stack)


def test_one_replica_down_is_a_warning_only(stack: Stack) -> None:
    fe_b = stack.replicas[1]
    instance = f"127.0.0.1:{fe_b.port}"
    _scenario(stack, fe_b.stop, fe_b.start,
              {("FestivalsExporterReplicaDown", "", instance)}, "ticket")


def test_the_expiring_certificate_was_two_days_out() -> None:
    # guards the scenario above: the helper really issues a 2-day certificate
    leaf = make_leaf(make_ca("x"), not_after=now() + 2 * DAY)
    left = leaf.cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=1, hours=23) < left <= dt.timedelta(days=2)
