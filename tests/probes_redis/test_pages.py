"""Where the docs say the queues table is: on ``/probes/NAME``, not on the landing page."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from exporter import web
from exporter.config import load_config
from exporter.daemon import Daemon
from exporter.scheduler import Scheduler
from tests.probes_redis.conftest import RedisServer


def _daemon(path: Path) -> Daemon:
    """Config, daemon and the web layer's templates (it compiles those a page extends or
    includes on the page's first render: 0.06-0.15 s), built off the event loop so that
    the blocking guard judges the probes, not the test's set-up."""
    for name in web._templates.list_templates():
        web._templates.get_template(name)
    return Daemon(path, load_config(path), "127.0.0.1:0")


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
    daemon = await anyio.to_thread.run_sync(_daemon, path)
    async with anyio.create_task_group() as tg:
        daemon.scheduler = Scheduler(daemon.store, tg)
        await daemon.scheduler.apply(daemon.config)
        try:
            transport = httpx.ASGITransport(app=web.create_app(daemon))
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
