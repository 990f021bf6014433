"""Each runbook section healthy, degraded and failing on real local components, through
the real command: verdict, evidence, cause, next step and exit code."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from tests.diagnose.conftest import Api, diagnose, section, steps, texts, write_config
from tests.probes_kubernetes import objects as k8s
from tests.probes_kubernetes.fake_api import FakeKube
from tests.probes_postgres._cluster import SUPERUSER_PASSWORD, Cluster
from tests.probes_postgres.conftest import admin_sql
from tests.probes_redis.conftest import RedisServer
from tests.probes_statuspage.conftest import Route, StatusServer, fixture
from tests.probes_tls import certgen
from tests.probes_tls.conftest import ServerFactory

Cap = pytest.CaptureFixture[str]


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_probe(api: Api, path: str = "/health", name: str = "api-health",
              timeout: str = "2s") -> dict[str, Any]:
    return {"name": name, "kind": "http", "url": api.url + path, "timeout": timeout,
            "labels": {"service": "festivals-api"}, "json_checks": ['status == "ok"']}


def kube_probe(fake: FakeKube) -> dict[str, Any]:
    return {"name": "k8s", "kind": "kubernetes", "kubeconfig": str(fake.kubeconfig)}


def iso(seconds_ago: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - seconds_ago))


def cluster_state(fake: FakeKube, *, crashing: bool = False, memory: str = "200Mi",
                  hpa_current: int = 2) -> None:
    names = ["festivals-api-7d9f8c6b5-aaaaa", "festivals-api-7d9f8c6b5-bbbbb"]
    fake.set(k8s.NS, "pods", [
        k8s.pod(names[0]),
        k8s.pod(names[1], ready=not crashing, restarts=6 if crashing else 0,
                waiting="CrashLoopBackOff" if crashing else None,
                terminated=("Error", 1) if crashing else None),
    ])
    fake.set(k8s.NS, "deployments", [k8s.deployment(
        "festivals-api", replicas=2, available=1 if crashing else 2, revision=42,
        rollout_time=iso(10 * 60))])
    fake.set(k8s.NS, "horizontalpodautoscalers", [
        k8s.hpa("festivals-api-hpa", "festivals-api", max_r=4, current=hpa_current)])
    fake.set(k8s.NS, "pods.metrics.k8s.io", [k8s.pod_metrics(n, cpu="100m", memory=memory)
                                              for n in names])
    fake.set(k8s.NS, "certificates", [k8s.certificate(
        "festivals-tls", not_after=iso(-60 * 86400), renewal=iso(-30 * 86400))])


# --------------------------------------------------------------------------- api-down

def test_api_down_healthy(capsys: Cap, tmp_path: Path, api: Api, fake_kube: FakeKube) -> None:
    cluster_state(fake_kube)
    code, doc = diagnose(capsys, write_config(tmp_path, api_probe(api), kube_probe(fake_kube)),
                         "api-down")
    sec = section(doc, "api-down")
    assert (code, sec["verdict"]) == (0, "healthy")
    assert "api-health answered (HTTP 200)" in texts(sec)
    assert "deployment festivals-api: 2 of 2 replicas available" in texts(sec)
    assert sec["causes"] == [] and sec["missing"] == []


def test_api_down_degraded_after_rollout(capsys: Cap, tmp_path: Path, api: Api,
                                         fake_kube: FakeKube) -> None:
    cluster_state(fake_kube, crashing=True)
    code, doc = diagnose(capsys, write_config(tmp_path, api_probe(api), kube_probe(fake_kube)),
                         "api-down")
    sec = section(doc, "api-down")
    assert (code, sec["verdict"]) == (1, "degraded")
    assert "1 of 2 replicas available" in texts(sec)
    assert "CrashLoopBackOff: festivals-api-7d9f8c6b5-bbbbb" in texts(sec)
    cause = sec["causes"][0]["text"]
    assert "crash-looping since the rollout 10 min ago, revision 42" in cause
    assert steps(sec) == "kubectl rollout undo deployment/festivals-api -n festivals"


def test_api_down_failing_refused(capsys: Cap, tmp_path: Path) -> None:
    probe = {"name": "api-health", "kind": "http", "url": f"http://127.0.0.1:{dead_port()}/",
             "labels": {"service": "festivals-api"}}
    code, doc = diagnose(capsys, write_config(tmp_path, probe), "api-down")
    sec = section(doc, "api-down")
    assert (code, sec["verdict"]) == (2, "failing")
    assert sec["firing"] == ["APIServiceDown"]
    assert "api-health fails: refused" in texts(sec)
    assert "nothing accepts connections" in sec["causes"][0]["text"]
    # no kubernetes probe: said, so "failing" is not read as "looked at everything"
    assert "no kubernetes probe is configured" in texts(sec, "missing")


# ----------------------------------------------------------------- high-error-rate

@pytest.mark.parametrize(("path", "verdict", "code"), [
    ("/health", "healthy", 0), ("/fail", "failing", 2)])
def test_error_rate(capsys: Cap, tmp_path: Path, api: Api, path: str, verdict: str,
                    code: int) -> None:
    got, doc = diagnose(capsys, write_config(tmp_path, api_probe(api, path)),
                        "high-error-rate")
    sec = section(doc, "high-error-rate")
    assert (got, sec["verdict"]) == (code, verdict)
    if verdict == "failing":
        assert "failed 1 of 1 runs (100%, threshold 5.0%)" in texts(sec)
        assert "http_status" in sec["causes"][0]["text"]
        assert "kubectl logs -n festivals -l app=festivals-api" in steps(sec)


def test_error_rate_degraded_from_kept_runs(tmp_path: Path) -> None:
    """A share of failed runs above the threshold (not all): the alert's warning."""
    from exporter.config import load_config
    from exporter.diagnose import Observation, Run, diagnose_section, load_sections
    from probes.base import ProbeResult

    spec = load_config(write_config(tmp_path, {
        "name": "api-health", "kind": "http", "url": "http://127.0.0.1:1/",
        "labels": {"service": "festivals-api"}})).probes[0]
    runs = [Run(time.time() - i, 0.01, ProbeResult.fail("http_status") if i % 5 == 0
                else ProbeResult.ok()) for i in range(20)]
    sec = next(s for s in load_sections() if s.id == "high-error-rate")
    d = diagnose_section(sec, [Observation(spec, runs)], time.time())
    assert d.verdict == "degraded" and d.firing == ("SyntheticHighErrorRate",)
    assert "failed 4 of 20 runs (20%, threshold 5.0%)" in d.evidence[0].text


# ----------------------------------------------------------------- database-issues

def pg_probe(cluster: Cluster, **extra: Any) -> dict[str, Any]:
    return {"name": "festivals-db", "kind": "postgres", "host": "127.0.0.1",
            "port": cluster.port, "user": "postgres", "password": SUPERUSER_PASSWORD,
            "timeout": "5s", **extra}


@pytest.mark.xdist_group("pg_shared")
def test_database_healthy(capsys: Cap, tmp_path: Path, pg_shared: Cluster) -> None:
    code, doc = diagnose(capsys, write_config(tmp_path, pg_probe(pg_shared)),
                         "database-issues")
    sec = section(doc, "database-issues")
    assert (code, sec["verdict"]) == (0, "healthy")
    assert "usable" in texts(sec) and "threshold 90%" in texts(sec)


@pytest.mark.xdist_group("pg_shared")
def test_database_degraded_idle_in_transaction(capsys: Cap, tmp_path: Path,
                                               pg_shared: Cluster) -> None:
    with psycopg.connect(pg_shared.admin_dsn()) as conn:
        conn.execute("SELECT 1")  # psycopg opens a transaction and leaves it idle
        time.sleep(1.2)
        config = write_config(tmp_path, pg_probe(pg_shared, idle_in_transaction_threshold="1s"))
        code, doc = diagnose(capsys, config, "database-issues")
    sec = section(doc, "database-issues")
    assert (code, sec["verdict"]) == (1, "degraded")
    assert "idle in transaction for more than" in texts(sec)
    assert "state LIKE 'idle in transaction%'" in steps(sec)


def test_database_failing_at_max_connections(capsys: Cap, tmp_path: Path,
                                             pg_small: Cluster) -> None:
    admin_sql(pg_small, "CREATE ROLE fe_monitor LOGIN PASSWORD 'mon-Pw-1'",
              "GRANT pg_monitor TO fe_monitor", "CREATE ROLE app LOGIN PASSWORD 'app-Pw-1'")
    held: list[psycopg.Connection[Any]] = []
    with pytest.raises(psycopg.OperationalError, match="slots are reserved"):
        for _ in range(10):  # an application fills the 5 ordinary slots
            held.append(psycopg.connect(host="127.0.0.1", port=pg_small.port, user="app",
                                        password="app-Pw-1", dbname="postgres"))
    try:
        probe = pg_probe(pg_small, user="fe_monitor", password="mon-Pw-1")
        code, doc = diagnose(capsys, write_config(tmp_path, probe), "database-issues")
    finally:
        for conn in held:
            conn.close()
    sec = section(doc, "database-issues")
    assert (code, sec["verdict"]) == (2, "failing")
    assert "does not answer (too_many_clients)" in texts(sec)
    assert sec["causes"][0]["text"] == "PostgreSQL refuses new clients: at max_connections"
    assert "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle'" in (
        steps(sec))


def test_database_nearly_exhausted_names_the_idle_pids_to_end(
        capsys: Cap, tmp_path: Path, pg_small: Cluster) -> None:
    """The runbook's step 1, with the pids it would end: those idle past the threshold."""
    admin_sql(pg_small, "CREATE ROLE fe_monitor LOGIN PASSWORD 'mon-Pw-1'",
              "GRANT pg_monitor TO fe_monitor", "CREATE ROLE app LOGIN PASSWORD 'app-Pw-1'")
    held = [psycopg.connect(host="127.0.0.1", port=pg_small.port, user="app",
                            password="app-Pw-1", dbname="postgres", autocommit=True)
            for _ in range(4)]  # 4 of the 5 ordinary slots; the probe takes the last
    try:
        time.sleep(0.5)
        probe = pg_probe(pg_small, user="fe_monitor", password="mon-Pw-1",
                         idle_threshold="300ms", check_new_client=False)
        code, doc = diagnose(capsys, write_config(tmp_path, probe), "database-issues")
        pids = sorted(conn.info.backend_pid for conn in held)
    finally:
        for conn in held:
            conn.close()
    sec = section(doc, "database-issues")
    assert (code, sec["verdict"]) == (2, "failing"), sec
    assert "4 idle for more than 300 ms, the oldest idle" in texts(sec)
    step = steps(sec)
    assert "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle'" in step
    listed = step.split("pid IN (", 1)[1].split(")", 1)[0]
    assert sorted(int(pid) for pid in listed.split(", ")) == pids


def test_the_idle_sessions_table_title_is_the_probes() -> None:
    from exporter.diagnose import checks_infra
    from probes.postgres import sql

    assert checks_infra.IDLE_SESSIONS_TITLE == sql.IDLE_SESSIONS_TITLE


def test_database_failing_refused(capsys: Cap, tmp_path: Path) -> None:
    probe = {"name": "festivals-db", "kind": "postgres", "host": "127.0.0.1",
             "port": dead_port(), "user": "postgres"}
    code, doc = diagnose(capsys, write_config(tmp_path, probe), "database-issues")
    sec = section(doc, "database-issues")
    assert (code, sec["verdict"]) == (2, "failing")
    assert sec["firing"] == ["DatabaseDown"]
    assert "does not answer (refused)" in texts(sec)
    assert "pg_isready" in steps(sec)
    assert "did not answer (refused)" in texts(sec, "missing")


# ---------------------------------------------------------------- payment-failures

def stripe_doc(**statuses: str) -> bytes:
    doc = json.loads(fixture("stripe_current_up.json"))
    doc["statuses"].update(statuses)
    if statuses:
        doc["largestatus"] = "degraded"
    return json.dumps(doc).encode()


@pytest.mark.parametrize(("statuses", "verdict", "code"), [
    ({}, "healthy", 0), ({"emails": "degraded"}, "degraded", 1),
    ({"webhooks": "degraded"}, "failing", 2)])
def test_payments(capsys: Cap, tmp_path: Path, api: Api, status_server: StatusServer,
                  statuses: dict[str, str], verdict: str, code: int) -> None:
    status_server.routes["/current"] = Route(body=stripe_doc(**statuses))
    config = write_config(
        tmp_path,
        {"name": "stripe-status", "kind": "statuspage", "url": status_server.url + "/current",
         "labels": {"service": "payments"}},
        {"name": "stripe-webhook", "kind": "http", "url": api.url + "/webhooks/stripe",
         "method": "POST", "valid_status_codes": [400], "labels": {"service": "payments"}},
    )
    got, doc = diagnose(capsys, config, "payment-failures")
    sec = section(doc, "payment-failures")
    assert (got, sec["verdict"]) == (code, verdict)
    assert "stripe-webhook answered (HTTP 400) as expected" in texts(sec)
    if statuses:
        (component,) = statuses
        assert f"component {component} at severity 2 (threshold 2)" in texts(sec)
        assert f"reports {component} degraded" in sec["causes"][0]["text"]
    assert sec["firing"] == (["HighPaymentFailureRate"] if verdict == "failing" else [])


# -------------------------------------------------------------------- high-latency

@pytest.mark.parametrize(("path", "timeout", "verdict", "code"), [
    ("/health", "2s", "healthy", 0), ("/slow", "2s", "degraded", 1),
    ("/slow", "0.3s", "failing", 2)])
def test_latency(capsys: Cap, tmp_path: Path, api: Api, path: str, timeout: str,
                 verdict: str, code: int) -> None:
    got, doc = diagnose(capsys, write_config(tmp_path, api_probe(api, path, timeout=timeout)),
                        "high-latency")
    sec = section(doc, "high-latency")
    assert (got, sec["verdict"]) == (code, verdict)
    assert "(threshold 500 ms)" in texts(sec)
    if verdict == "degraded":
        assert sec["firing"] == ["SyntheticHighLatencyP99"]
        assert "spends most time in processing" in sec["causes"][0]["text"]
    if verdict == "failing":
        assert "times out" in sec["causes"][0]["text"]


# ------------------------------------------------------------- resource-exhaustion

@pytest.mark.parametrize(("memory", "hpa", "verdict", "code"), [
    ("200Mi", 2, "healthy", 0), ("480Mi", 4, "degraded", 1), ("530Mi", 2, "failing", 2)])
def test_resources(capsys: Cap, tmp_path: Path, fake_kube: FakeKube, memory: str, hpa: int,
                   verdict: str, code: int) -> None:
    cluster_state(fake_kube, memory=memory, hpa_current=hpa)
    got, doc = diagnose(capsys, write_config(tmp_path, kube_probe(fake_kube)),
                        "resource-exhaustion")
    sec = section(doc, "resource-exhaustion")
    assert (got, sec["verdict"]) == (code, verdict)
    ratio = {"200Mi": "39%", "480Mi": "94%", "530Mi": "104%"}[memory]
    assert f"memory {ratio} of its limit (threshold 90%)" in texts(sec)
    if verdict == "degraded":
        assert "HPA festivals-api-hpa: 4 of at most 4 replicas (at its maximum)" in texts(sec)
        assert "HighMemoryUsage" in sec["firing"]
        assert "kubectl get hpa -n festivals" in steps(sec)


# ------------------------------------------------------------------- queue-backlog

@pytest.mark.xdist_group("redis_own")
def test_queues(capsys: Cap, tmp_path: Path, own_redis: RedisServer) -> None:
    config = write_config(tmp_path, {"name": "queues", "kind": "redis", "url": own_redis.url})
    code, doc = diagnose(capsys, config, "queue-backlog")
    sec = section(doc, "queue-backlog")
    assert (code, sec["verdict"]) == (0, "healthy")
    assert "festivals:queue:critical: 0 jobs" in texts(sec)

    client = redis.Redis(port=own_redis.port)
    client.lpush("festivals:queue:critical", *[json.dumps({"id": i}) for i in range(1204)])
    code, doc = diagnose(capsys, config, "queue-backlog")
    sec = section(doc, "queue-backlog")
    assert (code, sec["verdict"]) == (1, "degraded")
    assert "festivals:queue:critical: 1,204 jobs" in texts(sec)
    assert "kubectl scale deployment/festivals-worker --replicas=10" in steps(sec)

    own_redis.kill()
    code, doc = diagnose(capsys, config, "queue-backlog")
    sec = section(doc, "queue-backlog")
    assert (code, sec["verdict"]) == (2, "failing")
    assert "Redis does not answer (refused)" in texts(sec)
    assert "did not answer (refused)" in texts(sec, "missing")


# --------------------------------------------------------- ssl-certificate-renewal

@pytest.mark.parametrize(("days", "verdict", "code"), [
    (60, "healthy", 0), (6, "degraded", 1), (-1, "failing", 2)])
def test_certificates(capsys: Cap, tmp_path: Path, tls_server: ServerFactory, days: int,
                      verdict: str, code: int) -> None:
    ca = certgen.make_ca("Festivals Test CA")
    leaf = certgen.make_leaf(ca, ("api.festivals.app",), not_after=certgen.now()
                             + dt.timedelta(days=days, hours=1))
    server = tls_server(leaf)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.pem)
    config = write_config(tmp_path, {
        "name": "ingress-cert", "kind": "tls", "ca_file": str(ca_file),
        "endpoints": [{"address": f"127.0.0.1:{server.port}", "server_name": "api.festivals.app",
                       "source": "api.festivals.app"}]})
    got, doc = diagnose(capsys, config, "ssl-certificate-renewal")
    sec = section(doc, "ssl-certificate-renewal")
    assert (got, sec["verdict"]) == (code, verdict)
    if days == 6:
        assert "api.festivals.app certificate expires in 6 days, chain valid" in texts(sec)
        assert sec["firing"] == ["SSLCertificateExpiringSoon"]
        assert "kubectl get certificates -n festivals" in steps(sec)
    if days < 0:
        assert "expired" in texts(sec)


def test_unknown_section_and_bad_config(capsys: Cap, tmp_path: Path) -> None:
    from exporter.cli import main

    assert main(["diagnose", "--config.file=/nonexistent.yaml"]) == 3
    config = write_config(tmp_path)
    assert main(["diagnose", f"--config.file={config}", "no-such-section"]) == 3
    # nothing configured at all: every section unknown, could not diagnose
    code, doc = diagnose(capsys, config)
    assert code == 3 and {s["verdict"] for s in doc["sections"]} == {"unknown"}
