"""An alert that fires means its section is not healthy, on the same inputs.

Real probes run against real local components; their results go two ways: into the
diagnosis, and, rendered as ``/metrics`` renders them and scraped once a minute for an hour
(every run like this one), into ``promtool test rules`` with the rule file the mixin
generated (``alerts/festivals.rules.yml``). Every runbook alert promtool sees firing names
its section (the ``section`` label): that section's verdict must not be healthy.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
import yaml

from exporter.config import load_config
from exporter.diagnose import Observation, diagnose, load_sections
from exporter.diagnose.runner import observe_now
from exporter.metrics import exposition
from exporter.results import ResultStore
from tests.diagnose.conftest import Api, write_config
from tests.diagnose.test_sections import cluster_state, stripe_doc
from tests.probes_kubernetes.fake_api import FakeKube
from tests.probes_redis.conftest import RedisServer
from tests.probes_statuspage.conftest import Route, StatusServer
from tests.probes_tls import certgen
from tests.probes_tls.conftest import ServerFactory

pytestmark = pytest.mark.anyio

RULES = Path(__file__).resolve().parents[2] / "alerts" / "festivals.rules.yml"
MINUTES = 70
EVAL = "65m"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")
_TIME_METRIC = re.compile(r"timestamp|_expiry$")
_COUNTER = re.compile(r"(_total|_bucket|_count|_sum)$")


def _series(exposition: str, now: float) -> list[dict[str, str]]:
    """Input series: counters grow by this run's value each minute, gauges stay, times are
    moved onto promtool's clock (which starts at 0)."""
    out = [{"series": 'up{job="festivals-exporter", instance="replica-a:9816"}',
            "values": f"1x{MINUTES}"}]
    for line in exposition.splitlines():
        m = _SAMPLE.match(line)
        if line.startswith("#") or m is None:
            continue
        name, labels, raw = m.group(1), (m.group(2) or "{}")[1:-1], float(m.group(3))
        if raw != raw:  # NaN (an unreadable value): no sample, as a comparison would drop it
            continue
        if _TIME_METRIC.search(name) and raw > 1e9:
            # When things happened moves with each run; when a certificate expires does not.
            step = "+60" if "last_run" in name or "updated" in name else ""
            at = raw - now + (0 if step else 65 * 60)
            values = f"{at:.0f}{step}x{MINUTES}"
        elif _COUNTER.search(name):
            values = f"0+{raw:g}x{MINUTES}"
        else:
            values = f"{raw:g}x{MINUTES}"
        extra = 'job="festivals-exporter", instance="replica-a:9816"'
        out.append({"series": f"{name}{{{labels + ', ' if labels else ''}{extra}}}",
                    "values": values})
    return out


def _firing(tmp: Path, exposition: str, now: float) -> set[tuple[str, str]]:
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": _series(exposition, now),
            "promql_expr_test": [{
                "expr": 'count by (alertname, section) (ALERTS{alertstate="firing"})',
                "eval_time": EVAL, "exp_samples": []}],
        }],
    }
    path = tmp / f"agreement-{time.monotonic_ns()}.yml"
    path.write_text(yaml.safe_dump(test), encoding="utf-8")
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make test`"
    done = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True,
                          timeout=60, check=False)
    out = (done.stdout + done.stderr).decode()
    if done.returncode == 0:
        return set()
    assert "got:" in out, out
    fired = set()
    for labels in re.findall(r"\{([^}]*)\}", out.split("got:", 1)[1]):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if "alertname" in pairs:
            fired.add((pairs["alertname"], pairs.get("section", "")))
    return fired


async def _check(tmp: Path, *probes: dict[str, Any]) -> tuple[set[str], dict[str, str]]:
    """Alerts firing on these probes' results, and each section's verdict on the same."""
    # Loading a config imports the kinds' client libraries: not on the event loop.
    config = await anyio.to_thread.run_sync(load_config, write_config(tmp, *probes))
    observations: list[Observation] = await observe_now(config.probes)
    store = ResultStore()
    store.apply_config(config)
    cache = exposition(store)  # what /metrics serves
    now = time.time()
    for obs in observations:
        run = obs.runs[0]
        store.record(obs.spec, run.started_at, run.duration, run.result, "schedule")
    parts, _ = cache.scrape("")
    body = b"".join(parts).decode()
    # Building the test (YAML of every series) and forking promtool: in a worker thread.
    fired = await anyio.to_thread.run_sync(_firing, tmp, body, now)
    sections = await anyio.to_thread.run_sync(load_sections)  # validates the mixin values
    diagnoses = await anyio.to_thread.run_sync(diagnose, sections, observations, now)
    verdicts = {d.section.id: str(d.verdict) for d in diagnoses}
    runbook = {s.id for s in sections}
    for alert, section in fired:
        if section in runbook:
            assert verdicts[section] not in ("healthy", "unknown"), (alert, section, verdicts)
    return {a for a, s in fired if s in runbook}, verdicts


def _api(api: Api, path: str, name: str = "api-health") -> dict[str, Any]:
    return {"name": name, "kind": "http", "url": api.url + path, "timeout": "2s",
            "labels": {"service": "festivals-api"}}


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_healthy_inputs_fire_no_runbook_alert(tmp_path: Path, api: Api) -> None:
    fired, verdicts = await _check(tmp_path, _api(api, "/health"))
    # (a first run slowed past 500 ms by a loaded machine may fire the latency warning:
    # _check has then seen high-latency not healthy too)
    assert fired <= {"SyntheticHighLatencyP99"}
    assert verdicts["api-down"] == "healthy" and verdicts["high-error-rate"] == "healthy"


async def test_api_alerts_and_their_sections(tmp_path: Path, api: Api) -> None:
    fired, verdicts = await _check(
        tmp_path,
        {"name": "api-down", "kind": "http", "url": f"http://127.0.0.1:{_dead_port()}/",
         "labels": {"service": "festivals-api"}},
        _api(api, "/slow", "api-slow"),
    )
    assert {"APIServiceDown", "SyntheticHighErrorRate", "SyntheticHighLatencyP99"} <= fired
    assert verdicts["api-down"] == "failing" and verdicts["high-latency"] != "healthy"


async def test_payments_database_and_queue_alerts(
    tmp_path: Path, api: Api, status_server: StatusServer, own_redis: RedisServer
) -> None:
    status_server.routes["/current"] = Route(body=stripe_doc(webhooks="degraded"))
    client = redis.Redis(port=own_redis.port)
    jobs = [json.dumps({"n": i}) for i in range(1500)]
    await anyio.to_thread.run_sync(lambda: client.lpush("festivals:queue:default", *jobs))
    fired, verdicts = await _check(
        tmp_path,
        {"name": "stripe-status", "kind": "statuspage", "url": status_server.url + "/current",
         "labels": {"service": "payments"}},
        {"name": "db", "kind": "postgres", "host": "127.0.0.1", "port": _dead_port(),
         "user": "postgres"},
        {"name": "queues", "kind": "redis", "url": own_redis.url},
    )
    assert {"HighPaymentFailureRate", "DatabaseDown", "QueueBacklog"} <= fired
    assert verdicts["payment-failures"] == "failing"
    assert verdicts["database-issues"] == "failing"
    assert verdicts["queue-backlog"] == "degraded"


async def test_certificate_and_resource_alerts(
    tmp_path: Path, tls_server: ServerFactory, fake_kube: FakeKube
) -> None:
    def issue() -> tuple[certgen.Issued, certgen.Issued]:
        ca = certgen.make_ca("Festivals Test CA")
        return ca, certgen.make_leaf(ca, ("api.festivals.app",),
                                     not_after=certgen.now() + dt.timedelta(days=6))

    ca, leaf = await anyio.to_thread.run_sync(issue)  # key generation: off the loop
    server = tls_server(leaf)
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.pem)
    cluster_state(fake_kube, memory="480Mi")
    fired, verdicts = await _check(
        tmp_path,
        {"name": "cert", "kind": "tls", "ca_file": str(ca_file),
         "endpoints": [{"address": f"127.0.0.1:{server.port}",
                        "server_name": "api.festivals.app"}]},
        {"name": "k8s", "kind": "kubernetes", "kubeconfig": str(fake_kube.kubeconfig)},
    )
    assert {"SSLCertificateExpiringSoon", "HighMemoryUsage"} <= fired
    assert verdicts["ssl-certificate-renewal"] == "degraded"
    assert verdicts["resource-exhaustion"] == "degraded"
