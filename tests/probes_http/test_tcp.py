"""The tcp probe against real loopback servers (plain, TLS, send/expect)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from probes import load_kind
from probes.tcp import KIND, TcpConfig
from tests.probes_http.names import UNRESOLVABLE
from tests.promtool import assert_promtool_clean
from tests.runs import run_once

from .conftest import Running
from .helpers import names, value

pytestmark = pytest.mark.anyio


async def probe(**kw: Any) -> Any:
    kw.setdefault("client_timeout", 3.0)
    return await run_once(KIND, TcpConfig.model_validate(kw))


async def test_registered() -> None:
    assert load_kind("tcp") is KIND


async def test_open_port(ping_server: Running) -> None:
    r = await probe(host="127.0.0.1", port=ping_server.port)
    assert r.success, r.detail
    assert value(r, "probe_tcp_connect_duration_seconds") > 0
    assert value(r, "probe_ip_protocol") == 4
    assert value(r, "probe_dns_lookup_time_seconds") == 0
    assert "probe_ssl_earliest_cert_expiry" not in names(r)
    await assert_promtool_clean("tcp", [r])


async def test_by_name(ping_server: Running) -> None:
    r = await probe(host="localhost", port=ping_server.port)
    assert r.success, r.detail
    assert value(r, "probe_dns_lookup_time_seconds") > 0


async def test_refused(closed_port: int) -> None:
    r = await probe(host="127.0.0.1", port=closed_port)
    assert r.reason == "refused"
    assert value(r, "probe_tcp_connect_duration_seconds") == 0


async def test_unresolvable() -> None:
    r = await probe(host=UNRESOLVABLE, port=5432)
    assert r.reason == "dns"


async def test_send_expect(ping_server: Running) -> None:
    ok = await probe(host="127.0.0.1", port=ping_server.port, send="PING\r\n", expect=r"^\+PONG")
    assert ok.success, ok.detail
    assert value(ok, "probe_failed_due_to_regex") == 0
    bad = await probe(host="127.0.0.1", port=ping_server.port, send="HELLO\r\n", expect=r"^\+PONG")
    # The server answers -ERR and keeps the connection: the client timeout ends the wait.
    assert bad.reason == "timeout"
    closed = await probe(host="127.0.0.1", port=ping_server.port, send="QUIT\r\n", expect="PONG")
    assert closed.reason == "validation"
    assert value(closed, "probe_failed_due_to_regex") == 1
    assert any("closed before" in line for line in closed.detail)


async def test_expect_read_cap(ping_server: Running) -> None:
    r = await probe(
        host="127.0.0.1", port=ping_server.port, send="HELLO\r\n", expect="PONG",
        max_read_bytes=5,
    )
    assert r.reason == "validation"
    assert any("-ERR" in line for line in r.detail)


async def test_tls_ok(tls_ping_server: Running, ca_file: Path, server_cert: Any) -> None:
    from cryptography import x509

    r = await probe(
        host="127.0.0.1", port=tls_ping_server.port, tls=True, ca_file=str(ca_file),
        tls_server_name="localhost", send="PING\r\n", expect="PONG",
    )
    assert r.success, r.detail
    leaf = x509.load_pem_x509_certificate(server_cert.cert_chain_pems[0].bytes())
    assert value(r, "probe_ssl_earliest_cert_expiry") == leaf.not_valid_after_utc.timestamp()
    assert value(r, "probe_tcp_tls_handshake_duration_seconds") > 0


async def test_tls_fail(tls_ping_server: Running, tmp_path: Path, other_ca: Any) -> None:
    other = tmp_path / "other.pem"
    other_ca.cert_pem.write_to_path(str(other))
    r = await probe(host="127.0.0.1", port=tls_ping_server.port, tls=True, ca_file=str(other))
    assert r.reason == "tls"
    plain = await probe(host="127.0.0.1", port=tls_ping_server.port, tls=True, tls_verify=False)
    assert plain.success, plain.detail


async def test_tls_against_plain_server(ping_server: Running) -> None:
    r = await probe(host="127.0.0.1", port=ping_server.port, tls=True, tls_verify=False)
    assert r.reason in ("tls", "unreachable")


async def test_silent_server_deadline(silent_server: Running) -> None:
    config = TcpConfig(host="127.0.0.1", port=silent_server.port, expect="x", client_timeout=10)
    state = KIND.new_state(config)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.3):
            await KIND.run(config, state)
    assert time.monotonic() - start < 2
    r = await probe(host="127.0.0.1", port=silent_server.port, expect="x", client_timeout=0.4)
    assert r.reason == "timeout"


def test_target() -> None:
    assert KIND.target(TcpConfig(host="postgres", port=5432)) == "postgres:5432"
    assert KIND.target(TcpConfig(host="[::1]", port=6379)) == "[::1]:6379"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"host": "x", "port": 0}, "greater than or equal to 1"),
        ({"host": "x", "port": 1, "expect": "("}, "invalid regular expression"),
        ({"host": "", "port": 1}, "at least 1 character"),
        ({"host": "x", "port": 1, "tls": "maybe"}, "valid boolean"),
    ],
)
def test_config_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TcpConfig.model_validate(data)


async def test_ipv6(http6_server: Running) -> None:
    r = await probe(host="::1", port=http6_server.port)
    assert r.success, r.detail
    assert value(r, "probe_ip_protocol") == 6
    fallback = await probe(host="::1", port=http6_server.port, ip_protocol="ip4")
    assert fallback.success and value(fallback, "probe_ip_protocol") == 6
    wrong = await probe(
        host="::1", port=http6_server.port, ip_protocol="ip4", ip_protocol_fallback=False
    )
    assert wrong.reason == "dns"


async def test_ip_preference_applies_to_names_with_fallback(ping_server: Running) -> None:
    infos = await anyio.getaddrinfo("localhost", ping_server.port, type=socket.SOCK_STREAM)
    localhost_has_v6 = any(":" in str(info[4][0]) for info in infos)
    preferred = await probe(host="localhost", port=ping_server.port, ip_protocol="ip6")
    strict = await probe(
        host="localhost", port=ping_server.port, ip_protocol="ip6", ip_protocol_fallback=False
    )
    if localhost_has_v6:  # ::1 is preferred; the server listens on 127.0.0.1 only
        assert value(preferred, "probe_ip_protocol") == 6 and preferred.reason == "refused"
        assert strict.reason == "refused"
    else:  # no IPv6 address: the preference falls back to IPv4, or fails when strict
        assert preferred.success, preferred.detail
        assert value(preferred, "probe_ip_protocol") == 4
        assert strict.reason == "dns"
