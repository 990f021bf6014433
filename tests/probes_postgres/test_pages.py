"""Where the docs say the kinds' tables are: on ``/probes/NAME``, not on the landing page."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from exporter import web
from exporter.config import load_config
from exporter.daemon import Daemon
from exporter.scheduler import Scheduler
from tests.probes_postgres._cluster import SUPERUSER_PASSWORD, Bouncer, Cluster


def _daemon(path: Path) -> Daemon:
    """Config, daemon and the web layer's templates (it compiles those a page extends or
    includes on the page's first render: 0.06-0.15 s), built off the event loop so that
    the blocking guard judges the probes, not the test's set-up."""
    for name in web._templates.list_templates():
        web._templates.get_template(name)
    return Daemon(path, load_config(path), "127.0.0.1:0")


pytestmark = [pytest.mark.anyio, pytest.mark.xdist_group("pg_shared")]


async def test_tables_are_on_the_probe_page_only(
    pg_shared: Cluster, pgbouncer: Bouncer, tmp_path: Path
) -> None:
    path = tmp_path / "config.yml"
    path.write_text(
        "global: {start_spread: 0s}\nprobes:\n"
        f"  - {{name: db, kind: postgres, port: {pg_shared.port}, user: postgres,"
        f" password: {SUPERUSER_PASSWORD}, interval: 1m, timeout: 5s}}\n"
        f"  - {{name: bouncer, kind: pgbouncer, port: {pgbouncer.port}, user: postgres,"
        f" password: {pgbouncer.ADMIN_PASSWORD}, interval: 1m, timeout: 5s}}\n"
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
                db = (await client.get("/probes/db")).text
                bouncer = (await client.get("/probes/bouncer")).text
        finally:
            await daemon.scheduler.stop()
    for title in ("Longest-running queries (state != &#39;idle&#39;)",
                  "Slowest statements (mean execution time)"):
        assert title in db and title not in landing
    assert "Pools" in bouncer and "Pools" not in landing
