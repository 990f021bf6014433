"""The http probe against real loopback servers (plain, TLS, IPv6, silent, drip, 10 MB)."""

from __future__ import annotations

import socket
import time
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from cryptography import x509
from pydantic import ValidationError

from probes import load_kind
from probes.http import KIND, HttpConfig, HttpState
from probes.http import client as http_client
from tests.probes_http.names import UNRESOLVABLE
from tests.promtool import assert_promtool_clean
from tests.runs import run_once

from .conftest import Running
from .helpers import label_values, names, value

pytestmark = pytest.mark.anyio


def cfg(**kw: Any) -> HttpConfig:
    kw.setdefault("client_timeout", 3.0)
    return HttpConfig.model_validate(kw)


async def probe(**kw: Any) -> Any:
    return await run_once(KIND, cfg(**kw))


async def test_registered() -> None:
    assert load_kind("http") is KIND


async def test_healthy_200(http_server: Running) -> None:
    r = await probe(url=http_server.url("/ok"))
    assert r.success, r.detail
    assert value(r, "probe_http_status_code") == 200
    assert value(r, "probe_http_version") == 1.1
    assert value(r, "probe_http_content_length") == len(b"all good\nversion=1.2.3\n")
    assert value(r, "probe_http_uncompressed_body_length") == 23
    assert value(r, "probe_http_ssl") == 0
    assert value(r, "probe_ip_protocol") == 4
    assert value(r, "probe_http_redirects") == 0
    assert value(r, "probe_failed_due_to_regex") == 0
    assert value(r, "probe_http_duration_seconds", phase="connect") > 0
    assert value(r, "probe_http_duration_seconds", phase="processing") > 0
    assert value(r, "probe_http_duration_seconds", phase="tls") == 0
    assert set(label_values(r, "probe_http_duration_seconds", "phase")) == {
        "resolve", "connect", "tls", "processing", "transfer"
    }
    assert "probe_ssl_earliest_cert_expiry" not in names(r)
    assert any("<- 200" in line for line in r.detail)


async def test_name_is_resolved_and_host_header_kept(http_server: Running) -> None:
    r = await probe(url=f"http://localhost:{http_server.port}/host")
    assert r.success, r.detail
    assert value(r, "probe_dns_lookup_time_seconds") > 0
    assert any(f"body: localhost:{http_server.port}" in line for line in r.detail)


async def test_500_is_http_status(http_server: Running) -> None:
    r = await probe(url=http_server.url("/500"))
    assert not r.success
    assert r.reason == "http_status"
    assert value(r, "probe_http_status_code") == 500
    assert any("status 500 not in 2xx" in line for line in r.detail)


async def test_stripe_webhook_post_expecting_400(http_server: Running) -> None:
    r = await probe(
        url=http_server.url("/webhooks/stripe"),
        method="post",
        headers={"Content-Type": "application/json"},
        body='{"type": "test"}',
        valid_status_codes=[400],
        fail_if_body_not_matches_regexp=["signature"],
    )
    assert r.success, r.detail
    assert value(r, "probe_http_status_code") == 400
    # The same endpoint answering 200 would be a failure of this check.
    r = await probe(url=http_server.url("/ok"), method="POST", body="{}", valid_status_codes=[400])
    assert r.reason == "http_status"


async def test_redirect_followed(http_server: Running) -> None:
    r = await probe(url=http_server.url("/redirect"))
    assert r.success, r.detail
    assert value(r, "probe_http_redirects") == 1
    assert value(r, "probe_http_status_code") == 200


async def test_redirect_not_followed(http_server: Running) -> None:
    r = await probe(url=http_server.url("/redirect"), follow_redirects=False)
    assert r.reason == "http_status"
    assert value(r, "probe_http_status_code") == 302
    r = await probe(
        url=http_server.url("/redirect"), follow_redirects=False, valid_status_codes=[302]
    )
    assert r.success
    assert value(r, "probe_http_redirects") == 0


async def test_redirect_loop_is_bounded(http_server: Running) -> None:
    r = await probe(url=http_server.url("/redirect-loop"), max_redirects=3)
    assert r.reason == "http_status"
    assert value(r, "probe_http_redirects") == 3
    assert any("more than 3 redirects" in line for line in r.detail)


async def test_body_regex(http_server: Running) -> None:
    ok = await probe(
        url=http_server.url("/ok"),
        fail_if_body_not_matches_regexp=[r"^version=1\.2\.\d+$"],
        fail_if_body_matches_regexp=["error"],
    )
    assert ok.success, ok.detail
    assert value(ok, "probe_failed_due_to_regex") == 0
    bad = await probe(url=http_server.url("/ok"), fail_if_body_matches_regexp=["all good"])
    assert bad.reason == "validation"
    assert value(bad, "probe_failed_due_to_regex") == 1
    missing = await probe(url=http_server.url("/ok"), fail_if_body_not_matches_regexp=["^ready"])
    assert missing.reason == "validation"
    assert value(missing, "probe_failed_due_to_regex") == 1


async def test_json_checks(http_server: Running) -> None:
    ok = await probe(
        url=http_server.url("/json-ok"),
        json_checks=['status == "ok"', {"path": "checks.0.up", "equals": True}],
    )
    assert ok.success, ok.detail
    assert value(ok, "probe_failed_due_to_json_check") == 0
    down = await probe(url=http_server.url("/json-down"), json_checks=['status == "ok"'])
    assert down.reason == "validation"
    assert value(down, "probe_failed_due_to_json_check") == 1
    assert any('got "down"' in line for line in down.detail)
    also = await probe(
        url=http_server.url("/json-down"),
        json_checks=[{"path": "checks.0.name", "matches": "^d"}, {"path": "x", "exists": False}],
    )
    assert also.success, also.detail
    not_json = await probe(url=http_server.url("/ok"), json_checks=['status == "ok"'])
    assert not_json.reason == "validation"
    assert any("not JSON" in line for line in not_json.detail)


async def test_gzip_body_decoded(http_server: Running) -> None:
    r = await probe(url=http_server.url("/gzip"), fail_if_body_not_matches_regexp=["hello hello"])
    assert r.success, r.detail
    assert value(r, "probe_http_uncompressed_body_length") == 6000
    assert value(r, "probe_http_content_length") < 6000


async def test_silent_server_times_out(silent_server: Running) -> None:
    start = time.monotonic()
    r = await probe(url=silent_server.url("/"), client_timeout=0.5)
    elapsed = time.monotonic() - start
    assert r.reason == "timeout"
    assert elapsed < 2
    assert value(r, "probe_http_status_code") == 0


async def test_scheduler_deadline_cancels_cleanly(silent_server: Running) -> None:
    config = cfg(url=silent_server.url("/"), client_timeout=10)
    state = HttpState()
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.3):
            await KIND.run(config, state)
    assert time.monotonic() - start < 2
    # No connection left open after the cancelled run.
    assert http_client.open_connections == 0
    await state.aclose()


async def test_slow_drip(http_server: Running) -> None:
    slow = await probe(url=http_server.url("/drip/3"), client_timeout=0.8)
    assert slow.reason == "timeout"
    ok = await probe(url=http_server.url("/drip/0.5"), client_timeout=3)
    assert ok.success, ok.detail
    assert value(ok, "probe_http_duration_seconds", phase="transfer") >= 0.3


async def test_10mb_body_is_capped(http_server: Running) -> None:
    r = await probe(url=http_server.url("/big"))
    assert r.reason == "too_large"
    assert value(r, "probe_http_content_length") == 10 * 1024 * 1024
    assert value(r, "probe_http_uncompressed_body_length") == 0  # refused from the header
    chunked = await probe(url=http_server.url("/big-chunked"), max_body_bytes=100_000)
    assert chunked.reason == "too_large"
    assert value(chunked, "probe_http_content_length") == -1
    assert value(chunked, "probe_http_uncompressed_body_length") == 100_001
    raised = await probe(url=http_server.url("/big"), max_body_bytes=11 * 1024 * 1024)
    assert raised.success
    assert value(raised, "probe_http_uncompressed_body_length") == 10 * 1024 * 1024


async def test_head_of_a_big_resource_is_not_too_large(http_server: Running) -> None:
    # A HEAD answer carries the GET body's Content-Length but no body: nothing to cap.
    r = await probe(url=http_server.url("/big"), method="HEAD")
    assert r.success, r.detail
    assert value(r, "probe_http_content_length") == 10 * 1024 * 1024
    assert value(r, "probe_http_uncompressed_body_length") == 0


async def test_gzip_bomb_never_expands_past_the_cap(
    http_server: Running, gzip_bomb_body: bytes
) -> None:
    # 128 MiB of zeros in ~130 KB of gzip: decoding a whole 64 KiB network read at once
    # would hold ~64 MiB; bounded decompression holds about max_body_bytes.
    assert len(gzip_bomb_body) > 64 * 1024
    tracemalloc.start()
    try:
        r = await probe(url=http_server.url("/gzip-bomb"), max_body_bytes=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.reason == "too_large", r.detail
    assert value(r, "probe_http_content_length") < 1_000_000  # not refused from the header
    assert value(r, "probe_http_uncompressed_body_length") == 1_000_001
    assert peak < 16 * 1024 * 1024, f"peak {peak} bytes while reading a capped body"


async def test_deflate_zlib_and_raw_decoded(http_server: Running) -> None:
    z = await probe(url=http_server.url("/deflate"), fail_if_body_not_matches_regexp=["^zlib"])
    assert z.success, z.detail
    assert value(z, "probe_http_uncompressed_body_length") == len(b"zlib deflate ") * 100
    raw = await probe(url=http_server.url("/deflate-raw"), fail_if_body_not_matches_regexp=["^raw"])
    assert raw.success, raw.detail
    assert value(raw, "probe_http_uncompressed_body_length") == len(b"raw deflate ") * 100


async def test_stacked_or_broken_encoding_is_protocol(http_server: Running) -> None:
    stacked = await probe(url=http_server.url("/gzip-gzip"))
    assert stacked.reason == "protocol"
    assert any("stacked content encodings" in line for line in stacked.detail)
    broken = await probe(url=http_server.url("/gzip-broken"))
    assert broken.reason == "protocol"


async def test_https_to_http_redirect_drops_tls_figures(
    https_server: Running, http_server: Running, ca_file: Path
) -> None:
    r = await probe(
        url=https_server.url("/to/" + http_server.url("/ok"), "https"), ca_file=str(ca_file)
    )
    assert r.success, r.detail
    assert value(r, "probe_http_redirects") == 1
    assert value(r, "probe_http_ssl") == 0
    # The final response came over plain HTTP: no certificate, no TLS version.
    assert "probe_ssl_earliest_cert_expiry" not in names(r)
    assert "probe_tls_version" not in names(r)


async def test_refused(closed_port: int) -> None:
    r = await probe(url=f"http://127.0.0.1:{closed_port}/")
    assert r.reason == "refused"
    assert value(r, "probe_http_status_code") == 0


async def test_unresolvable_name_fails_fast() -> None:
    start = time.monotonic()
    r = await probe(url=f"http://{UNRESOLVABLE}/")
    assert r.reason == "dns"
    assert time.monotonic() - start < 2
    assert value(r, "probe_http_status_code") == 0
    assert value(r, "probe_http_duration_seconds", phase="connect") == 0


async def test_tls_trusted_ca(https_server: Running, ca_file: Path, server_cert: Any) -> None:
    r = await probe(url=https_server.url("/ok", "https"), ca_file=str(ca_file))
    assert r.success, r.detail
    assert value(r, "probe_http_ssl") == 1
    assert value(r, "probe_http_duration_seconds", phase="tls") > 0
    leaf = x509.load_pem_x509_certificate(server_cert.cert_chain_pems[0].bytes())
    assert value(r, "probe_ssl_earliest_cert_expiry") == leaf.not_valid_after_utc.timestamp()
    assert label_values(r, "probe_tls_version", "version")[0].startswith("TLS 1.")
    await assert_promtool_clean("http", [r])


async def test_tls_by_name_uses_sni(https_server: Running, ca_file: Path) -> None:
    r = await probe(url=f"https://localhost:{https_server.port}/ok", ca_file=str(ca_file))
    assert r.success, r.detail


async def test_tls_untrusted_ca(untrusted_https_server: Running, ca_file: Path) -> None:
    r = await probe(url=untrusted_https_server.url("/ok", "https"), ca_file=str(ca_file))
    assert r.reason == "tls"
    assert any("certificate verification failed" in line for line in r.detail)
    assert value(r, "probe_http_ssl") == 0


async def test_tls_verify_off(untrusted_https_server: Running) -> None:
    r = await probe(url=untrusted_https_server.url("/ok", "https"), tls_verify=False)
    assert r.success, r.detail
    assert value(r, "probe_ssl_earliest_cert_expiry") > time.time()


async def test_missing_ca_file_is_config(https_server: Running, tmp_path: Path) -> None:
    r = await probe(url=https_server.url("/ok", "https"), ca_file=str(tmp_path / "nope.pem"))
    assert r.reason == "config"


async def test_ipv6(http6_server: Running) -> None:
    r = await probe(url=http6_server.url("/ok"))
    assert r.success, r.detail
    assert value(r, "probe_ip_protocol") == 6
    # ip4 is a preference: with no IPv4 address the probe falls back to IPv6 ...
    fallback = await probe(url=http6_server.url("/ok"), ip_protocol="ip4")
    assert fallback.success, fallback.detail
    assert value(fallback, "probe_ip_protocol") == 6
    # ... unless the fallback is off.
    wrong = await probe(url=http6_server.url("/ok"), ip_protocol="ip4", ip_protocol_fallback=False)
    assert wrong.reason == "dns"


async def test_all_addresses_localhost(http_server: Running) -> None:
    infos = await anyio.getaddrinfo("localhost", http_server.port, type=socket.SOCK_STREAM)
    expected = list(dict.fromkeys(str(i[4][0]) for i in infos))
    r = await probe(url=f"http://localhost:{http_server.port}/ok", all_addresses=True,
                    ip_protocol="ip4")
    assert r.success, r.detail
    assert label_values(r, "probe_http_address_success", "address") == [
        a for a in expected if ":" not in a
    ]
    assert value(r, "probe_http_status_code", address="127.0.0.1") == 200
    assert value(r, "probe_http_resolved_addresses") >= 1


async def test_all_addresses_dual_stack(http_server: Running) -> None:
    infos = await anyio.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    if len({i[0] for i in infos}) < 2:
        pytest.skip("localhost resolves to one address family only on this machine")
    # The server listens on 127.0.0.1 only: the ::1 address must fail and fail the probe.
    r = await probe(url=f"http://localhost:{http_server.port}/ok", all_addresses=True)
    assert not r.success
    assert value(r, "probe_http_address_success", address="127.0.0.1") == 1
    assert value(r, "probe_http_address_success", address="::1") == 0


async def test_basic_auth_and_bearer_are_sent_not_leaked(
    http_server: Running, tmp_path: Path
) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cr3t-token\n")
    r = await probe(url=http_server.url("/auth"), bearer_token_file=str(secret))
    assert r.success
    # /auth echoes the header into the body; our own lines never carry it.
    own = [line for line in r.detail if not line.startswith("body:")]
    assert not any("s3cr3t" in line for line in own)
    assert any("body: Bearer s3cr3t-token" in line for line in r.detail)
    r = await probe(url=http_server.url("/auth"), username="u", password="p4ss")
    assert any("body: Basic dTpwNHNz" in line for line in r.detail)


async def test_unreadable_secret_file_is_config(http_server: Running, tmp_path: Path) -> None:
    r = await probe(url=http_server.url("/ok"), password_file=str(tmp_path / "x"), username="u")
    assert r.reason == "config"


async def test_target_redacts_password() -> None:
    config = cfg(url="https://bob:hunter2@example.test/x?y=1")
    assert "hunter2" not in KIND.target(config)
    assert KIND.target(config).startswith("https://bob@example.test/x")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"url": "ftp://x/"}, "must be an http:// or https:// URL"),
        ({"url": "http:///path"}, "URL has no host"),
        ({"valid_status_codes": [99]}, "not an HTTP status code"),
        ({"fail_if_body_matches_regexp": ["("]}, "invalid regular expression"),
        ({"json_checks": ["status = ok"]}, "json check must look like"),
        ({"json_checks": ["status == ok"]}, "must be a JSON literal"),
        ({"json_checks": [{"path": "a"}]}, "exactly one of"),
        ({"password": "x"}, "password needs username"),
        ({"username": "u", "bearer_token": "t"}, "not both"),
        # URL credentials become basic auth that would silently replace the bearer token.
        ({"url": "http://u:p@example.test/", "bearer_token_file": "/x"}, "pick one"),
        ({"url": "http://u:p@example.test/", "headers": {"Authorization": "x"}}, "pick one"),
        ({"bearer_token": "t", "bearer_token_file": "/x"}, "not both"),
        ({"ip_protocol": "ipv4"}, "ip4"),
        ({"method": "GET /"}, "HTTP method"),
        ({"urll": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_config_errors(extra: dict[str, Any], message: str) -> None:
    data: dict[str, Any] = {"url": "http://example.test/"} | extra
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        HttpConfig.model_validate(data)


def test_ca_fixture_sanity(ca: trustme.CA) -> None:
    assert ca.cert_pem.bytes().startswith(b"-----BEGIN CERTIFICATE-----")
