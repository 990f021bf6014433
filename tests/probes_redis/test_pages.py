"""Where the docs say the queues table is: on ``/probes/NAME``, not on the landing page."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pages import ready_pages
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
    landing, page = await ready_pages(path, "/", "/probes/cache")
    assert "festivals:queue:critical" in page and "oldest job age" in page
    assert "oldest job age" not in landing
