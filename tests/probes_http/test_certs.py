"""Issue 10's certificate cases for http and tcp: no CN fallback, the whole chain's expiry."""

from __future__ import annotations

from typing import Any

import pytest

from probes.http import KIND as HTTP
from probes.http import HttpConfig
from probes.tcp import KIND as TCP
from probes.tcp import TcpConfig
from tests.runs import run_once

from .conftest import Chain, Running
from .helpers import value

pytestmark = pytest.mark.anyio


async def http(runs: int = 1, **kw: Any) -> Any:
    kw.setdefault("client_timeout", 3.0)
    return await run_once(HTTP, HttpConfig.model_validate(kw), runs=runs)


async def tcp(runs: int = 1, **kw: Any) -> Any:
    kw.setdefault("client_timeout", 3.0)
    return await run_once(TCP, TcpConfig.model_validate(kw), runs=runs)


async def test_http_rejects_a_cn_only_certificate(
    cn_only_https: Running, cn_only_chain: Chain
) -> None:
    # Chrome, Go and the tls probe call this a hostname mismatch; so must http.
    r = await http(url=f"https://localhost:{cn_only_https.port}/ok",
                   ca_file=str(cn_only_chain.ca_file), runs=3)
    assert r.reason == "tls", r.detail
    assert any("certificate verification failed" in line for line in r.detail)


async def test_tcp_rejects_a_cn_only_certificate(
    cn_only_tls_ping: Running, cn_only_chain: Chain
) -> None:
    r = await tcp(host="localhost", port=cn_only_tls_ping.port, tls=True,
                  ca_file=str(cn_only_chain.ca_file), runs=3)
    assert r.reason == "tls", r.detail


async def test_cn_only_certificate_passes_with_verify_off(cn_only_https: Running) -> None:
    r = await http(url=f"https://localhost:{cn_only_https.port}/ok", tls_verify=False)
    assert r.success, r.detail


async def test_http_earliest_expiry_covers_the_chain(
    short_intermediate_https: Running, short_intermediate_chain: Chain
) -> None:
    chain = short_intermediate_chain
    assert chain.intermediate_not_after < chain.leaf_not_after
    r = await http(url=f"https://localhost:{short_intermediate_https.port}/ok",
                   ca_file=str(chain.ca_file), runs=3)
    assert r.success, r.detail
    assert value(r, "probe_ssl_earliest_cert_expiry") == chain.intermediate_not_after


async def test_tcp_earliest_expiry_covers_the_chain(
    short_intermediate_tls_ping: Running, short_intermediate_chain: Chain
) -> None:
    chain = short_intermediate_chain
    r = await tcp(host="localhost", port=short_intermediate_tls_ping.port, tls=True,
                  ca_file=str(chain.ca_file), send="PING\r\n", expect="PONG", runs=3)
    assert r.success, r.detail
    assert value(r, "probe_ssl_earliest_cert_expiry") == chain.intermediate_not_after
