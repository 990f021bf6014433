"""Pages of a real daemon (scheduler and web app) on a config file, once every probe ran."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx

from exporter import web
from exporter.config import load_config
from exporter.daemon import Daemon
from exporter.scheduler import Scheduler


def _daemon(path: Path) -> Daemon:
    """Config, daemon and the web layer's templates (it compiles those a page extends or
    includes on the page's first render: 0.06-0.15 s), built off the event loop so that
    the blocking guard judges the probes, not the test's set-up."""
    for name in web._templates.list_templates():
        web._templates.get_template(name)
    return Daemon(path, load_config(path), "127.0.0.1:0")


async def ready_pages(path: Path, *pages: str, timeout: float = 10.0) -> list[str]:
    """Start the probes of ``path``, wait for ``/-/ready``, return the bodies of ``pages``."""
    daemon = await anyio.to_thread.run_sync(_daemon, path)
    async with anyio.create_task_group() as tg:
        daemon.scheduler = Scheduler(daemon.store, tg)
        await daemon.scheduler.apply(daemon.config)
        try:
            transport = httpx.ASGITransport(app=web.create_app(daemon))
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                with anyio.fail_after(timeout):
                    while (await client.get("/-/ready")).status_code != 200:
                        await anyio.sleep(0.05)
                bodies = [(await client.get(page)).text for page in pages]
        finally:
            await daemon.scheduler.stop()
    return bodies
