"""Bytes that are not HTTP read ``protocol`` as soon as they arrive, held connection or not."""

from __future__ import annotations

import time

import pytest

from probes.http import KIND, HttpConfig
from tests.runs import run_once

from .conftest import Running

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "path", ["/garbage-hold", "/garbage-close", "/binary-hold", "/redis-hold", "/bad-header-hold"]
)
async def test_not_http_is_protocol_at_once(raw_server: Running, path: str) -> None:
    config = HttpConfig.model_validate({"url": raw_server.url(path), "client_timeout": 5.0})
    start = time.monotonic()
    r = await run_once(KIND, config, runs=3)
    # Three runs well within one client timeout: none waited for it.
    assert time.monotonic() - start < 2.5
    assert r.reason == "protocol", r.detail
    assert any("not valid HTTP" in line for line in r.detail)


async def test_unfinished_head_on_a_held_connection_is_timeout(raw_server: Running) -> None:
    config = HttpConfig.model_validate(
        {"url": raw_server.url("/partial-head-hold"), "client_timeout": 0.5}
    )
    r = await run_once(KIND, config, runs=2)
    assert r.reason == "timeout", r.detail
