"""Peers that do not speak HTTP, names only in the CN, and many runs on one state."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest

from probes import statuspage as sp
from probes.common import http_wire
from tests.probes_statuspage.conftest import Route, StatusServer, fixture
from tests.probes_tls.certgen import make_ca, make_leaf

pytestmark = pytest.mark.anyio

SUMMARY = "/api/v2/summary.json"


class RawServer:
    """Accepts, reads the request, sends ``answer``, then holds the connection open (or
    hangs up when ``hang_up``)."""

    def __init__(self, answer: bytes, hang_up: bool) -> None:
        self.answer, self.hang_up = answer, hang_up
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(65536)
                conn.sendall(self.answer)
                if not self.hang_up:
                    self.stop.wait(10)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def raw_server() -> Iterator[type[RawServer]]:
    servers: list[RawServer] = []

    class Factory(RawServer):
        def __init__(self, answer: bytes, hang_up: bool) -> None:
            super().__init__(answer, hang_up)
            servers.append(self)

    yield Factory
    for server in servers:
        server.close()


@pytest.mark.parametrize("hang_up", [False, True], ids=["held_open", "hung_up"])
@pytest.mark.parametrize("answer", [
    b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
    b"+OK redis\r\n",
    b"\x16\x03\x01\x00\x2a",
    b"HTTX/1.1 200 OK\r\n",
    b"HTTP/1.1 two hundred\r\n",
], ids=["ssh", "redis", "tls_record", "near_miss", "bad_status_line"])
async def test_non_http_bytes_are_protocol_as_soon_as_they_arrive(
    raw_server: type[RawServer], answer: bytes, hang_up: bool
) -> None:
    server = await anyio.to_thread.run_sync(raw_server, answer, hang_up)
    cfg = sp.StatuspageConfig.model_validate(
        {"client_timeout": 3.0, "url": f"http://127.0.0.1:{server.port}{SUMMARY}"})
    state = sp.new_state(cfg)
    try:
        for _ in range(3):  # and again on the same state
            started = time.monotonic()
            result = await sp.run(cfg, state)
            assert result.reason == "protocol", result.detail
            assert time.monotonic() - started < 1.0  # not the 3 s client timeout
    finally:
        await state.aclose()


async def test_a_slow_http_answer_is_still_a_timeout(raw_server: type[RawServer]) -> None:
    server = await anyio.to_thread.run_sync(
        raw_server, b"HTTP/1.1 200 OK\r\nContent-Type: appl", False)
    cfg = sp.StatuspageConfig.model_validate(
        {"client_timeout": 0.5, "url": f"http://127.0.0.1:{server.port}{SUMMARY}"})
    state = sp.new_state(cfg)
    try:
        result = await sp.run(cfg, state)
        assert result.reason == "timeout", result.detail
    finally:
        await state.aclose()


def test_the_guard_is_installed() -> None:
    import httpx

    assert http_wire.guard(httpx.AsyncHTTPTransport())
    assert http_wire.guard(httpx.AsyncHTTPTransport(proxy="http://127.0.0.1:3128"))


class TlsStatusServer:
    def __init__(self, tmp: Path, cn_only: bool) -> None:
        root = make_ca("Statuspage Test Root")
        leaf = make_leaf(root, () if cn_only else ("localhost",), cn="localhost")
        (tmp / "ca.pem").write_bytes(root.pem)
        (tmp / "chain.pem").write_bytes(leaf.pem)
        (tmp / "key.pem").write_bytes(leaf.key_pem)
        self.ca = str(tmp / "ca.pem")
        body = fixture("summary_operational.json")

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp / "chain.pem", tmp / "key.pem")
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://localhost:{self.httpd.server_address[1]}{SUMMARY}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("cn_only", [False, True], ids=["san", "cn_only"])
async def test_a_name_only_in_the_cn_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cn_only: bool
) -> None:
    # The default context of this Python does fall back to the CN: the check means something.
    default = await anyio.to_thread.run_sync(ssl.create_default_context)
    assert default.hostname_checks_common_name
    server = await anyio.to_thread.run_sync(TlsStatusServer, tmp_path, cn_only)
    monkeypatch.setattr(sp, "CA_BUNDLE", server.ca)
    cfg = sp.StatuspageConfig.model_validate({"client_timeout": 3.0, "url": server.url})
    state = sp.new_state(cfg)
    try:
        for _ in range(4):
            result = await sp.run(cfg, state)
            if cn_only:
                assert result.reason == "tls", result.detail
            else:
                assert result.success, result.detail
    finally:
        await state.aclose()
        await anyio.to_thread.run_sync(server.close)


async def test_many_runs_on_one_state(status_server: StatusServer) -> None:
    """A held keep-alive connection reused for every run, answers switching under it."""
    cfg = sp.StatuspageConfig.model_validate(
        {"client_timeout": 2.0, "url": status_server.url})
    state = sp.new_state(cfg)
    bodies = [fixture("summary_operational.json"), fixture("summary_outage.json")]
    try:
        for i in range(12):
            status_server.routes[SUMMARY] = Route(body=bodies[i % 2], etag=f'"v{i // 3}"')
            result = await sp.run(cfg, state)
            assert result.success, (i, result.detail)
    finally:
        await state.aclose()
