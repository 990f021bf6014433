"""Where the docs say the kinds' tables are: on ``/probes/NAME``, not on the landing page."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pages import ready_pages
from tests.probes_postgres._cluster import SUPERUSER_PASSWORD, Bouncer, Cluster

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
    landing, db, bouncer = await ready_pages(path, "/", "/probes/db", "/probes/bouncer")
    for title in ("Longest-running queries (state != &#39;idle&#39;)",
                  "Slowest statements (mean execution time)"):
        assert title in db and title not in landing
    assert "Pools" in bouncer and "Pools" not in landing
