"""Each kind many times on one state (a held resource can fail on its sixth use), on the
asyncio loop the tests use and on uvloop, which the daemon picks where it is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from probes.http import KIND as HTTP
from probes.http import HttpConfig, HttpState
from probes.http import client as http_client
from probes.tcp import KIND as TCP
from probes.tcp import TcpConfig

from .conftest import Running
from .helpers import value

RUNS = 12


async def _many(kind: Any, config: Any, runs: int = RUNS) -> list[Any]:
    state = kind.new_state(config)
    try:
        return [await kind.run(config, state) for _ in range(runs)]
    finally:
        await state.aclose()


def _cases(http_server: Running, https_server: Running, ca_file: Path) -> list[dict[str, Any]]:
    return [
        {"url": http_server.url("/ok"), "want": None},
        {"url": http_server.url("/redirect"), "want": None},
        {"url": http_server.url("/json-ok"), "json_checks": ['status == "ok"'], "want": None},
        {"url": http_server.url("/500"), "want": "http_status"},
        {"url": http_server.url("/gzip"), "want": None},
        {"url": https_server.url("/ok", "https"), "ca_file": str(ca_file), "want": None},
        {"url": f"https://localhost:{https_server.port}/redirect", "ca_file": str(ca_file),
         "want": None},
    ]


async def _http_many(http_server: Running, https_server: Running, ca_file: Path) -> None:
    for case in _cases(http_server, https_server, ca_file):
        want = case.pop("want")
        config = HttpConfig.model_validate(case | {"client_timeout": 3.0})
        results = await _many(HTTP, config)
        assert [r.reason for r in results] == [want or ""] * RUNS, (case, results[-1].detail)
        assert http_client.open_connections == 0


@pytest.mark.anyio
async def test_http_many_runs_on_one_state(
    http_server: Running, https_server: Running, ca_file: Path
) -> None:
    await _http_many(http_server, https_server, ca_file)


def test_http_many_runs_on_uvloop(
    http_server: Running, https_server: Running, ca_file: Path
) -> None:
    pytest.importorskip("uvloop")
    anyio.run(_http_many, http_server, https_server, ca_file,
              backend_options={"use_uvloop": True})


@pytest.mark.anyio
async def test_tcp_many_runs_on_one_state(
    ping_server: Running, tls_ping_server: Running, ca_file: Path, closed_port: int
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"host": "127.0.0.1", "port": ping_server.port, "send": "PING\r\n", "expect": "PONG"},
         ""),
        ({"host": "localhost", "port": tls_ping_server.port, "tls": True,
          "ca_file": str(ca_file), "send": "PING\r\n", "expect": "PONG"}, ""),
        ({"host": "127.0.0.1", "port": closed_port}, "refused"),
    ]
    for data, want in cases:
        results = await _many(TCP, TcpConfig.model_validate(data | {"client_timeout": 3.0}))
        assert [r.reason for r in results] == [want] * RUNS, (data, results[-1].detail)
        if data.get("tls"):
            assert value(results[-1], "probe_tcp_tls_handshake_duration_seconds") > 0


@pytest.mark.anyio
async def test_probes_share_one_tls_context_per_setting(ca_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    await anyio.Path(other).write_bytes(await anyio.Path(ca_file).read_bytes())
    configs = [
        HttpConfig.model_validate({"url": "https://a.test/", "ca_file": str(ca_file)}),
        HttpConfig.model_validate({"url": "https://b.test/", "ca_file": str(ca_file)}),
        HttpConfig.model_validate({"url": "https://c.test/", "ca_file": str(other)}),
        HttpConfig.model_validate({"url": "https://d.test/", "tls_verify": False}),
    ]
    states = [HttpState() for _ in configs]
    contexts = [
        await s.ssl_context(c.tls_verify, c.ca_file) for s, c in zip(states, configs, strict=True)
    ]
    tcp_config = TcpConfig(host="x", port=1, tls=True, ca_file=ca_file)
    tcp_ctx = await TCP.new_state(tcp_config).ssl_context(tcp_config.tls_verify, ca_file)
    assert contexts[0] is contexts[1] is tcp_ctx
    assert contexts[2] is not contexts[0]
    assert contexts[3] is not contexts[0] and not contexts[3].check_hostname
    assert all(not c.hostname_checks_common_name for c in contexts)
    # Per-probe state is one reference: nothing per probe but the shared context.
    assert not hasattr(states[0], "__dict__")
    for s in states:
        await s.aclose()


@pytest.mark.anyio
async def test_one_address_metrics_equal_the_general_ones(
    http_server: Running, https_server: Running, ca_file: Path
) -> None:
    from probes import http as kind

    for url in (http_server.url("/ok"), https_server.url("/ok", "https")):
        config = HttpConfig.model_validate({"url": url, "ca_file": str(ca_file)})
        att = await kind._attempt(
            config, await HttpState().ssl_context(config.tls_verify, config.ca_file), "127.0.0.1",
            {}, 0.001,
            anyio.current_time() + 3,
        )
        assert att.status == 200, att.detail
        fast = kind._metrics(config, [att], 0.001)
        assert fast == list(kind._general_metrics(config, [att], 0.001))
        assert len(fast) == (13 if url.startswith("https") else 11)
