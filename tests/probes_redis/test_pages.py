"""Where the docs say the queues table is: on ``/probes/NAME``, not on the landing page."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from exporter.config import load_config
from exporter.daemon import Daemon
from exporter.scheduler import Scheduler
from exporter.web import create_app
from tests.probes_redis.conftest import RedisServer

pytestmark = pytest.mark.anyio


async def test_queues_table_is_on_the_probe_page_only(
    shared_redis: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "config.yml"
    path.write_text(
        "global: {start_spread: 0s}\nprobes:\n"
        f"  - {{name: cache, kind: redis, url: '{shared_redis.url}', interval: 1m,"
        " timeout: 5s}\n"
    )
    daemon = Daemon(path, load_config(path), "127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        daemon.scheduler = Scheduler(daemon.store, tg)
        await daemon.scheduler.apply(daemon.config)
        try:
            transport = httpx.ASGITransport(app=create_app(daemon))
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                with anyio.fail_after(10):
                    while (await client.get("/-/ready")).status_code != 200:
                        await anyio.sleep(0.05)
                landing = (await client.get("/")).text
                page = (await client.get("/probes/cache")).text
        finally:
            await daemon.scheduler.stop()
    assert "festivals:queue:critical" in page and "oldest job age" in page
    assert "oldest job age" not in landing
