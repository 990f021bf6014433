"""Every metric a rule or a dashboard panel reads is emitted by the exporter, as its real
/metrics shows it with every kind configured against real (or, for Kubernetes, real-shaped)
local components, or belongs to the documented contract of docs/alerts.md ("Metrics the
rules assume from outside this exporter"). A renamed metric cannot leave a blind alert."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
import yaml

from exporter.mixin import default_values
from exporter.mixin.dashboards import rendered
from exporter.mixin.rules import rule_groups
from tests.probes_kubernetes import objects as o
from tests.probes_kubernetes.fake_api import FakeKube
from tests.probes_kubernetes.test_kubernetes import healthy
from tests.probes_postgres._cluster import (
    SUPERUSER_PASSWORD,
    Bouncer,
    Cluster,
    make_template,
    make_workdir,
)
from tests.probes_redis.conftest import RedisServer
from tests.probes_statuspage.conftest import Route, StatusServer, fixture
from tests.probes_tls.certgen import make_ca, make_leaf
from tests.probes_tls.conftest import TlsServer
from tests.rules._common import ROOT, metric_names

from .stack import ExporterReplica, FakeAPI, free_port, wait_for

pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.timeout(180)]
_SUFFIXES = ("_bucket", "_sum", "_count")


def _used() -> set[str]:
    values = default_values()
    names: set[str] = set()
    for group in rule_groups(values):
        for rule in group["rules"]:
            names |= metric_names(rule["expr"])
    for text in rendered(values).values():
        for panel in json.loads(text)["panels"]:
            for target in panel.get("targets", []):
                names |= metric_names(target["expr"].replace("$__rate_interval", "5m"))
    return names


def _contract() -> set[str]:
    doc = (ROOT / "docs" / "alerts.md").read_text(encoding="utf-8")
    table = doc.split("## Metrics the rules assume from outside this exporter", 1)[1]
    table = table.split("\n## ", 1)[0]
    return {m for line in table.splitlines() if line.startswith("| `")
            for m in re.findall(r"^\| `([a-zA-Z_:]+)`", line)}


def _families(exposition: str) -> set[str]:
    return {line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE ")}


def _emitted(name: str, families: set[str]) -> bool:
    return name in families or any(
        name.endswith(s) and name[: -len(s)] in families for s in _SUFFIXES)


def test_the_contract_table_is_what_the_rules_assume() -> None:
    assert _contract() == {"festivals_http_requests_total",
                           "festivals_http_request_duration_seconds",
                           "festivals_payment_attempts_total", "up", "ALERTS"}


def test_every_metric_used_is_emitted_or_a_documented_contract(tmp_path: Path) -> None:
    recorded = {r["record"] for g in rule_groups(default_values()) for r in g["rules"]
                if "record" in r}
    pg_base = make_workdir("fe-contract-pg-")
    cleanup: list[Callable[[], object]] = []
    try:
        pg = Cluster(make_template(pg_base))
        pg.start()
        cleanup.append(pg.destroy)
        with psycopg.connect(pg.admin_dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
        bouncer = Bouncer(pg)
        cleanup.append(bouncer.destroy)
        rds = RedisServer()
        rds.start()
        cleanup.append(rds.kill)
        client = redis.Redis(port=rds.port)
        client.lpush("festivals:queue:default", json.dumps({"enqueued_at": time.time() - 5}))
        client.xadd("festivals:events", {"type": "ticket"})
        client.xgroup_create("festivals:events", "mailers", id="0")
        client.close()
        ca = make_ca("contract root")
        (tmp_path / "ca.pem").write_bytes(ca.pem)
        leaf = make_leaf(ca, ("localhost", "127.0.0.1"))
        (tmp_path / "leaf.pem").write_bytes(leaf.pem)
        tls = TlsServer(tmp_path, leaf, (), "")
        cleanup.append(tls.close)
        api = FakeAPI()
        cleanup.append(api.close)
        status = StatusServer()
        status.routes["/api/v2/summary.json"] = Route(body=fixture("summary_operational.json"))
        cleanup.append(status.close)
        kube = FakeKube()
        kube.start()
        cleanup.append(kube.stop)
        healthy(kube)
        kube.add(o.NS, "pods", o.pod("festivals-worker-oom", "festivals-worker",
                                     container="worker", terminated=("OOMKilled", 137),
                                     restarts=3))
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")

        config = tmp_path / "exporter.yml"
        config.write_text(yaml.safe_dump({
            "global": {"start_spread": "0s", "default_interval": "2s",
                       "default_timeout": "1500ms"},
            "probes": [
                {"name": "api-health", "kind": "http", "labels": {"service": "festivals-api"},
                 "url": f"http://127.0.0.1:{api.port}/health"},
                {"name": "api-tls", "kind": "tcp", "host": "127.0.0.1", "port": tls.port,
                 "tls": True, "tls_server_name": "localhost",
                 "ca_file": str(tmp_path / "ca.pem")},
                {"name": "festivals-db", "kind": "postgres", "host": "127.0.0.1",
                 "port": pg.port, "user": "postgres", "password": SUPERUSER_PASSWORD,
                 "dbname": "postgres"},
                {"name": "pgbouncer", "kind": "pgbouncer", "host": "127.0.0.1",
                 "port": bouncer.port, "user": "postgres", "password": Bouncer.ADMIN_PASSWORD},
                {"name": "festivals-redis", "kind": "redis", "address": f"127.0.0.1:{rds.port}",
                 "queues": [
                     {"key": "festivals:queue:default", "type": "list",
                      "enqueued_at_field": "enqueued_at"},
                     {"key": "festivals:events", "type": "stream", "group": "mailers"},
                 ]},
                {"name": "stripe-status", "kind": "statuspage", "interval": "2s",
                 "labels": {"service": "payments"}, "url": status.url},
                {"name": "certs", "kind": "tls", "ca_file": str(tmp_path / "ca.pem"),
                 "files": [str(tmp_path / "leaf.pem")],
                 "endpoints": [{"address": f"127.0.0.1:{tls.port}",
                                "server_name": "localhost"}]},
                {"name": "k8s", "kind": "kubernetes", "kubeconfig": str(kubeconfig),
                 "namespaces": [o.NS]},
            ],
        }))
        exporter = ExporterReplica("contract", tmp_path, config, free_port())
        exporter.start()
        cleanup.append(exporter.stop)
        wait_for("the exporter ready", exporter.ready, 60)
        url = f"http://127.0.0.1:{exporter.port}/metrics"
        families = wait_for(
            "every kind's up metric",
            lambda: (f := _families(httpx.get(url, timeout=5).text)) >= {
                "pg_up", "pgbouncer_up", "redis_up", "statuspage_up", "tls_source_up",
                "probe_kubernetes_metrics_api_available"} and f, 60)
    finally:
        for undo in reversed(cleanup):
            undo()
        shutil.rmtree(pg_base, ignore_errors=True)

    used = _used()
    contract = _contract()
    missing = sorted(
        n for n in used
        if n not in recorded and not _emitted(n, contract) and not _emitted(n, families)
    )
    assert not missing, f"used by rules or dashboards but never emitted: {missing}"
    # the check has teeth: a name the exporter does not emit is caught
    assert not _emitted("redis_queue_lenght", families)
    assert {"probe_success", "pg_connections_used_ratio", "redis_queue_oldest_job_age_seconds",
            "probe_kubernetes_container_cpu_limit_ratio"} <= used
