"""The web config parser and the ASGI guard, in process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml

from exporter.webconfig import WebConfigError, load_web_config, parse_web_config
from exporter.websecurity import MAX_BODY_BYTES, MAX_CONCURRENT_REQUESTS, WebSecurity
from tests.probes_tls.certgen import ec_key
from tests.web_security.conftest import HASH, PASSWORD, Pki, tls_config

pytestmark = pytest.mark.anyio


def errors_of(data: Any, base: Path) -> list[str]:
    with pytest.raises(WebConfigError) as info:
        parse_web_config(data, base)
    return info.value.errors


def test_every_field_is_checked_and_named(tmp_path: Path, pki: Pki) -> None:
    cert, key = pki.server("u")
    assert errors_of({"tls_server_config": {"cert_file": str(cert), "key_file": str(key),
                                            "client_auth_type": "RequireAnyClientCert"}},
                     tmp_path)[0].startswith("tls_server_config.client_auth_type: ")
    assert errors_of({"tls_server_config": {**tls_config(cert, key)["tls_server_config"],  # type: ignore[dict-item]
                                            "client_auth_type": "RequireAndVerifyClientCert"}},
                     tmp_path) == ["tls_server_config.client_ca_file: required with "
                                   "RequireAndVerifyClientCert"]
    assert "unknown cipher suite TLS_NOPE" in errors_of(
        {"tls_server_config": {"cert_file": "c", "key_file": "k",
                               "cipher_suites": ["TLS_NOPE"]}}, tmp_path)[0]
    assert errors_of({"tls_server_config": {"cert_file": "c", "key_file": "k",
                                            "curve_preferences": ["X25519"]}}, tmp_path) == [
        "tls_server_config.curve_preferences: not supported (OpenSSL picks the curves)"]
    other_cert, _ = pki.server("other", key=ec_key(5))
    mismatch = errors_of(tls_config(other_cert, key), tmp_path)
    assert mismatch[0].startswith("tls_server_config.key_file: cannot load the key")
    missing = errors_of(tls_config(tmp_path / "nope.crt", key), tmp_path)
    assert missing[0].startswith("tls_server_config.cert_file: cannot read")


def test_relative_paths_follow_the_web_config_file(tmp_path: Path, pki: Pki) -> None:
    cert, key = pki.server("rel")
    (tmp_path / "web.yml").write_text(yaml.safe_dump(
        {"tls_server_config": {"cert_file": cert.name, "key_file": key.name,
                               "cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]}}))
    (tmp_path / cert.name).write_bytes(cert.read_bytes())
    (tmp_path / key.name).write_bytes(key.read_bytes())
    loaded = load_web_config(tmp_path / "web.yml")
    assert loaded.ssl_context is not None
    assert tmp_path / cert.name in loaded.watched


Scope = MutableMapping[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]


def slow_app(release: anyio.Event) -> App:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["path"] == "/-/ready":
            body = b"Not ready: waiting for the first run of 1 probe(s): secret-db\n"
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["path"] == "/slow":
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


async def test_limits_lifecycle_and_headers(tmp_path: Path) -> None:
    web_file = tmp_path / "web.yml"
    web_file.write_text(yaml.safe_dump({
        "basic_auth_users": {"alice": HASH},
        "http_server_config": {"headers": {"X-Frame-Options": "deny"}}}))
    security = WebSecurity(web_file)
    await anyio.to_thread.run_sync(security.load)
    release = anyio.Event()
    transport = httpx.ASGITransport(app=security.wrap(slow_app(release)))
    auth = ("alice", PASSWORD)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        ok = await client.get("/metrics", auth=auth)
        assert ok.status_code == 200 and ok.headers["x-frame-options"] == "deny"
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/-/healthy")).status_code == 200
        ready = await client.get("/-/ready")  # open, but names no probe
        assert ready.status_code == 503 and ready.text == "Not ready\n"
        assert (await client.post("/-/reload", auth=auth)).status_code == 403
        big = await client.post("/metrics", auth=auth, content=b"x" * (MAX_BODY_BYTES + 1))
        assert big.status_code == 413
        statuses: list[int] = []

        async def slow() -> None:
            statuses.append((await client.get("/slow", auth=auth)).status_code)

        async with anyio.create_task_group() as tg:
            for _ in range(MAX_CONCURRENT_REQUESTS):
                tg.start_soon(slow)
            with anyio.fail_after(10):
                while security._in_flight < MAX_CONCURRENT_REQUESTS:
                    await anyio.sleep(0.01)
            over = await client.get("/metrics", auth=auth)
            assert over.status_code == 503 and over.headers["retry-after"] == "1"
            release.set()
        assert statuses == [200] * MAX_CONCURRENT_REQUESTS
        assert (await client.get("/metrics", auth=auth)).status_code == 200


async def test_lifecycle_enabled_and_no_web_config() -> None:
    security = WebSecurity(None, enable_lifecycle=True)
    security.load()
    transport = httpx.ASGITransport(app=security.wrap(slow_app(anyio.Event())))
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        assert (await client.post("/-/reload")).status_code == 200
        assert "secret-db" in (await client.get("/-/ready")).text  # no auth: as before
        assert (await client.get("/metrics")).status_code == 200


def test_the_documented_example_is_valid(tmp_path: Path, pki: Pki) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "web-config.md").read_text()
    example = yaml.safe_load(doc.split("```yaml")[1].split("```")[0])
    cert, key = pki.server("documented")
    for name, path in (("tls.crt", cert), ("tls.key", key),
                       ("clients-ca.crt", pki.client_ca_file)):
        (tmp_path / name).write_bytes(path.read_bytes())
    loaded = parse_web_config(example, tmp_path)
    assert loaded.ssl_context is not None
    assert list(loaded.config.basic_auth_users) == ["prometheus"]
