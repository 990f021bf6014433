"""The web face, in process: handlers over a real scheduler and store."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from exporter.config import load_config
from exporter.daemon import Daemon
from exporter.metrics import exposition
from exporter.scheduler import Scheduler
from exporter.web import create_app

pytestmark = pytest.mark.anyio

CONFIG = """
global: {start_spread: 0s, labels: {env: test}}
probes:
  - {name: good, kind: fake, delay: 0.5, interval: 1s, timeout: 0.9s,
     labels: {team: "<b>core</b>"}}
  - {name: bad, kind: fake, mode: fail, interval: 1s, timeout: 0.5s}
"""


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    path = tmp_path / "config.yml"
    path.write_text(CONFIG)
    daemon = Daemon(path, load_config(path), "127.0.0.1:0")
    exposition(daemon.store)  # as the daemon does: the cache listens before probes run
    async with anyio.create_task_group() as tg:
        daemon.scheduler = Scheduler(daemon.store, tg)
        await daemon.scheduler.apply(daemon.config)
        yield daemon
        await daemon.scheduler.stop()


@pytest.fixture
async def client(daemon: Daemon) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(daemon))
    async with httpx.AsyncClient(transport=transport, base_url="http://exporter") as client:
        yield client


async def _until_ready(client: httpx.AsyncClient) -> None:
    with anyio.fail_after(5):
        while (await client.get("/-/ready")).status_code != 200:
            await anyio.sleep(0.02)


async def test_ready_only_after_every_probe_ran(client: httpx.AsyncClient) -> None:
    first = await client.get("/-/ready")
    assert first.status_code == 503 and "good" in first.text
    await _until_ready(client)
    assert (await client.get("/-/healthy")).status_code == 200


async def test_metrics_pass_promtool_and_hold_core_series(client: httpx.AsyncClient) -> None:
    await _until_ready(client)
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    body = response.text
    assert 'probe_success{env="test",kind="fake",probe="bad"} 0.0' in body
    assert 'probe_failures_total{env="test",kind="fake",probe="bad",reason="refused"}' in body
    assert 'probe_failures_total{env="test",kind="fake",probe="bad",reason="timeout"} 0.0' in body
    assert 'probe_run_duration_seconds_bucket{env="test",kind="fake",le="+Inf"' in body
    assert "festivals_exporter_config_last_reload_successful 1.0" in body
    assert "festivals_exporter_build_info{" in body
    assert "festivals_exporter_scheduler_lag_seconds_count" in body
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by `make test`"
    check = await anyio.run_process(
        [promtool, "check", "metrics"], input=response.content, check=False,
        stderr=subprocess.STDOUT,
    )
    assert check.returncode == 0, check.stdout.decode()


async def test_openmetrics_and_gzip_negotiation(client: httpx.AsyncClient) -> None:
    await _until_ready(client)
    response = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    parsed = text_string_to_metric_families(response.text)  # type: ignore[no-untyped-call]
    families = {f.name: f for f in parsed}
    assert families["probe_runs"].type == "counter"
    assert families["festivals_exporter_build"].type == "info"
    raw = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert "probe_success" in raw.text  # httpx decoded it: it was valid gzip
    refused = await client.get("/metrics", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in refused.headers


async def test_probe_endpoint_runs_only_configured_probes(client: httpx.AsyncClient) -> None:
    unknown = await client.get("/probe", params={"name": "nope"})
    assert unknown.status_code == 404
    ssrf = await client.get("/probe", params={"name": "good", "target": "http://10.0.0.1/"})
    assert ssrf.status_code == 400
    missing = await client.get("/probe")
    assert missing.status_code == 400
    ok = await client.get("/probe", params={"name": "good"})
    assert ok.status_code == 200
    assert 'fake_value{env="test",kind="fake",probe="good",team="<b>core</b>"} 1.0' in ok.text
    assert 'probe="bad"' not in ok.text


async def test_landing_pages_list_probes_and_escape_html(client: httpx.AsyncClient) -> None:
    await _until_ready(client)
    page = (await client.get("/")).text
    assert '<a href="/probes/good">good</a>' in page
    assert "fake://fail" in page and "refused" in page
    detail = (await client.get("/probes/bad")).text
    assert "refused on purpose" in detail
    good = (await client.get("/probes/good")).text
    assert "&lt;b&gt;core&lt;/b&gt;" in good and "<b>core</b>" not in good
    assert (await client.get("/probes/nope")).status_code == 404


async def test_reload_bad_config_keeps_old_one(
    client: httpx.AsyncClient, daemon: Daemon
) -> None:
    await _until_ready(client)
    daemon.config_path.write_text("probes:\n  - {name: x, kind: fake, timeout: 9s, interval: 1s}\n")
    failed = await client.post("/-/reload")
    assert failed.status_code == 400
    assert "probes[0].timeout: must be less than interval (1s)" in failed.text
    body = (await client.get("/metrics")).text
    assert "festivals_exporter_config_last_reload_successful 0.0" in body
    assert 'probe="good"' in body  # the old config still runs
    assert "reload failed" in (await client.get("/")).text

    daemon.config_path.write_text(
        "probes:\n  - {name: x, kind: fake, interval: 1s, timeout: 0.5s}\n"
    )
    ok = await client.post("/-/reload")
    assert ok.status_code == 200
    body = (await client.get("/metrics")).text
    assert "festivals_exporter_config_last_reload_successful 1.0" in body
    assert 'probe="good"' not in body and 'probe="x"' in body


async def test_on_demand_runs_are_marked_and_never_counted(
    client: httpx.AsyncClient, daemon: Daemon
) -> None:
    await _until_ready(client)
    record = daemon.store.probes["bad"]
    runs = record.runs
    answer = await client.get("/probe", params={"name": "bad"})
    assert answer.status_code == 200
    assert 'probe_success{env="test",kind="fake",probe="bad"} 0.0' in answer.text
    assert "probe_runs_total" not in answer.text  # counters are the scheduled runs'
    gz = await client.get(
        "/probe", params={"name": "bad"},
        headers={"Accept": "application/openmetrics-text; version=1.0.0",
                 "Accept-Encoding": "gzip"},
    )
    assert gz.headers["content-encoding"] == "gzip" and gz.text.endswith("# EOF\n")
    list(text_string_to_metric_families(gz.text))  # type: ignore[no-untyped-call]
    metrics = (await client.get("/metrics")).text
    scheduled = record.runs
    assert scheduled - runs <= 1  # at most a scheduled run happened meanwhile
    assert f'probe_runs_total{{env="test",kind="fake",probe="bad"}} {scheduled}.0' in metrics
    page = (await client.get("/probes/bad")).text
    assert "(on-demand)" in page
