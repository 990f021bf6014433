"""The "run now" button: only with on-demand runs enabled, and it runs only the section's
configured probes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from exporter.config import load_config
from exporter.daemon import Daemon
from exporter.scheduler import Scheduler
from exporter.web import create_app
from exporter.websecurity import WebSecurity
from tests.diagnose.conftest import Api, write_config

pytestmark = pytest.mark.anyio


async def _client(tmp_path: Path, api: Api, lifecycle: bool) -> AsyncIterator[httpx.AsyncClient]:
    path = write_config(
        tmp_path,
        {"name": "api-health", "kind": "http", "url": api.url + "/health", "interval": "1h",
         "timeout": "2s", "labels": {"service": "festivals-api"}},
        {"name": "queues", "kind": "tcp", "host": "127.0.0.1", "port": 9, "interval": "1h",
         "timeout": "2s"})
    config = await anyio.to_thread.run_sync(load_config, path)
    daemon = Daemon(path, config, "127.0.0.1:0", web=WebSecurity(enable_lifecycle=lifecycle))
    async with anyio.create_task_group() as tg:
        daemon.scheduler = Scheduler(daemon.store, tg)
        await daemon.scheduler.apply(daemon.config)
        app = await anyio.to_thread.run_sync(create_app, daemon)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://exporter") as client:
            yield client
        await daemon.scheduler.stop()


@pytest.fixture
async def with_lifecycle(tmp_path: Path, api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(tmp_path, api, True):
        yield client


@pytest.fixture
async def without_lifecycle(tmp_path: Path, api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(tmp_path, api, False):
        yield client


async def test_run_now_runs_the_sections_probes(with_lifecycle: httpx.AsyncClient) -> None:
    page = (await with_lifecycle.get("/diagnose/api-down")).text
    assert 'action="/diagnose/api-down/run"' in page and "Run now" in page
    answer = await with_lifecycle.post("/diagnose/api-down/run")
    assert answer.status_code == 303 and answer.headers["location"] == "/diagnose/api-down"
    # the section's probe ran on demand; the probe of no section did not
    assert "on-demand" in (await with_lifecycle.get("/probes/api-health")).text
    assert "on-demand" not in (await with_lifecycle.get("/probes/queues")).text
    page = (await with_lifecycle.get("/diagnose/api-down")).text
    assert "api-health answered (HTTP 200)" in page


async def test_no_run_now_without_lifecycle(without_lifecycle: httpx.AsyncClient) -> None:
    page = (await without_lifecycle.get("/diagnose/api-down")).text
    assert "Run now" not in page
    assert (await without_lifecycle.post("/diagnose/api-down/run")).status_code == 403
    assert (await without_lifecycle.post("/diagnose/nope/run")).status_code == 404
