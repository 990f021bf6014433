"""Real loopback servers for the http/tcp probe tests (threads, so the event loop is free).

Every server binds port 0 on loopback; each xdist worker gets its own set per session.
"""

from __future__ import annotations

import functools
import gzip
import json
import socket
import socketserver
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme

BIG_BODY = b"x" * (10 * 1024 * 1024)


@functools.cache
def gzip_bomb(size: int = 128 * 1024 * 1024) -> bytes:
    """``size`` zero bytes, gzip-compressed (about 1000:1), built without holding them.

    128 MiB of zeros make about 130 KB: one 64 KiB network read inflates to about 64 MiB.
    Built by the ``gzip_bomb_body`` fixture, off the event loop."""
    packer = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(1024 * 1024)
    out = [packer.compress(block) for _ in range(size // len(block))]
    return b"".join(out) + packer.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return None

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str = "text/plain",
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path == "/webhooks/stripe":
            # Like Stripe's endpoint with an unsigned test event: 400 with a message.
            ok = json.loads(body).get("type") == "test"
            self._send(400 if ok else 500, b'{"error": "No signatures found"}', "application/json")
            return
        if self.path == "/echo":
            self._send(200, body, self.headers.get("Content-Type", "text/plain"))
            return
        self.do_GET()

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:  # noqa: C901 - a route table
        path = self.path
        if path.startswith("/to/"):
            # /to/<absolute URL>: a redirect anywhere (e.g. from https to plain http).
            self._send(302, b"", extra={"Location": path.removeprefix("/to/")})
            return
        if path == "/ok":
            self._send(200, b"all good\nversion=1.2.3\n")
        elif path == "/500":
            self._send(500, b"boom")
        elif path == "/redirect":
            self._send(302, b"", extra={"Location": "/ok"})
        elif path == "/redirect-loop":
            self._send(302, b"", extra={"Location": "/redirect-loop"})
        elif path == "/json-ok":
            self._send(200, b'{"status": "ok", "checks": [{"name": "db", "up": true}]}',
                       "application/json")
        elif path == "/json-down":
            self._send(200, b'{"status": "down", "checks": [{"name": "db", "up": false}]}',
                       "application/json")
        elif path == "/gzip":
            data = gzip.compress(b"hello " * 1000)
            self._send(200, data, extra={"Content-Encoding": "gzip"})
        elif path == "/gzip-bomb":
            self._send(200, gzip_bomb(), extra={"Content-Encoding": "gzip"})
        elif path == "/deflate-raw":
            packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
            data = packer.compress(b"raw deflate " * 100) + packer.flush()
            self._send(200, data, extra={"Content-Encoding": "deflate"})
        elif path == "/deflate":
            self._send(200, zlib.compress(b"zlib deflate " * 100),
                       extra={"Content-Encoding": "deflate"})
        elif path == "/gzip-gzip":
            data = gzip.compress(gzip.compress(b"twice " * 100))
            self._send(200, data, extra={"Content-Encoding": "gzip, gzip"})
        elif path == "/gzip-broken":
            self._send(200, b"\x1f\x8b\x08\x00garbage-not-gzip",
                       extra={"Content-Encoding": "gzip"})
        elif path == "/big":
            self._send(200, BIG_BODY)
        elif path == "/big-chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"y" * 65536
            try:
                for _ in range(160):  # 10 MiB
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
        elif path.startswith("/drip"):
            # /drip/<seconds>: 10 bytes spread over <seconds>.
            total = float(path.rsplit("/", 1)[1])
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()
            try:
                for _ in range(10):
                    self.wfile.write(b"d")
                    self.wfile.flush()
                    time.sleep(total / 10)
            except OSError:
                pass
        elif path == "/auth":
            self._send(200, (self.headers.get("Authorization") or "none").encode())
        elif path == "/host":
            self._send(200, (self.headers.get("Host") or "none").encode())
        else:
            self._send(404, b"not found")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    ssl_ctx: ssl.SSLContext | None = None

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(host): for ::1, which /etc/hosts may
        # not list, that is a reverse DNS query to the machine's nameserver, off loopback.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_ctx is not None:
            try:
                request = self.ssl_ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None


class Server6(Server):
    address_family = socket.AF_INET6


@dataclass
class Running:
    host: str
    port: int
    server: socketserver.BaseServer

    def url(self, path: str, scheme: str = "http") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{path}"


def _start(server: socketserver.BaseServer, host: str) -> Running:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]  # type: ignore[index]
    assert isinstance(port, int)
    return Running(host, port, server)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def other_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1", "::1", "app.test")


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def gzip_bomb_body() -> bytes:
    return gzip_bomb()


@pytest.fixture(scope="session")
def http_server() -> Iterator[Running]:
    srv = Server(("127.0.0.1", 0), Handler)
    yield _start(srv, "127.0.0.1")
    srv.shutdown()


def _tls_server(cert: trustme.LeafCert) -> Server:
    srv = Server(("127.0.0.1", 0), Handler)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    srv.ssl_ctx = ctx
    return srv


@pytest.fixture(scope="session")
def https_server(server_cert: trustme.LeafCert) -> Iterator[Running]:
    srv = _tls_server(server_cert)
    yield _start(srv, "127.0.0.1")
    srv.shutdown()


@pytest.fixture(scope="session")
def untrusted_https_server(other_ca: trustme.CA) -> Iterator[Running]:
    srv = _tls_server(other_ca.issue_cert("localhost", "127.0.0.1"))
    yield _start(srv, "127.0.0.1")
    srv.shutdown()


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def http6_server() -> Iterator[Running]:
    if not ipv6_available():
        pytest.skip("no IPv6 loopback on this machine")
    srv = Server6(("::1", 0), Handler)
    yield _start(srv, "::1")
    srv.shutdown()


class _Silent(socketserver.ThreadingTCPServer):
    """Accepts connections and never answers (holds them until shutdown)."""

    daemon_threads = True
    allow_reuse_address = True


class _SilentHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        stop: threading.Event = self.server.stop  # type: ignore[attr-defined]
        stop.wait(30)


@pytest.fixture(scope="session")
def silent_server() -> Iterator[Running]:
    srv = _Silent(("127.0.0.1", 0), _SilentHandler)
    srv.stop = threading.Event()  # type: ignore[attr-defined]
    yield _start(srv, "127.0.0.1")
    srv.stop.set()  # type: ignore[attr-defined]
    srv.shutdown()


class _PingHandler(socketserver.StreamRequestHandler):
    """A tiny Redis-like line server: PING -> +PONG, anything else -> -ERR."""

    def handle(self) -> None:
        ctx: ssl.SSLContext | None = self.server.ssl_ctx  # type: ignore[attr-defined]
        conn = self.request
        if ctx is not None:
            try:
                conn = ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                return
        reader = conn.makefile("rb")
        try:
            for line in reader:
                if line.strip() == b"PING":
                    conn.sendall(b"+PONG\r\n")
                elif line.strip() == b"QUIT":
                    conn.sendall(b"+OK\r\n")
                    return
                else:
                    conn.sendall(b"-ERR unknown command\r\n")
        except OSError:
            return


def _ping_server(ctx: ssl.SSLContext | None) -> _Silent:
    srv = _Silent(("127.0.0.1", 0), _PingHandler)
    srv.ssl_ctx = ctx  # type: ignore[attr-defined]
    return srv


@pytest.fixture(scope="session")
def ping_server() -> Iterator[Running]:
    srv = _ping_server(None)
    yield _start(srv, "127.0.0.1")
    srv.shutdown()


@pytest.fixture(scope="session")
def tls_ping_server(server_cert: trustme.LeafCert) -> Iterator[Running]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(ctx)
    srv = _ping_server(ctx)
    yield _start(srv, "127.0.0.1")
    srv.shutdown()


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# --- certificate chains of the issue-10 cases (built with cryptography, any dates) ------


@dataclass
class Chain:
    """A root to trust (``ca_file``) and a server presenting ``leaf`` + ``intermediate``."""

    ca_file: Path
    leaf_not_after: float
    intermediate_not_after: float
    server_ctx: ssl.SSLContext


def _server_ctx(tmp: Path, chain_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    (tmp / "chain.pem").write_bytes(chain_pem)
    (tmp / "key.pem").write_bytes(key_pem)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tmp / "chain.pem"), str(tmp / "key.pem"))
    return ctx


@pytest.fixture(scope="session")
def short_intermediate_chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """The intermediate expires in 5 days, the leaf in 200 (as in issue 10)."""
    from tests.probes_tls import certgen

    tmp = tmp_path_factory.mktemp("chain")
    root = certgen.make_ca("http-test-root")
    inter = certgen.make_ca(
        "http-test-intermediate", issuer=root, not_after=certgen.now() + 5 * certgen.DAY
    )
    leaf = certgen.make_leaf(inter, ("localhost", "127.0.0.1"),
                             not_after=certgen.now() + 200 * certgen.DAY)
    (tmp / "root.pem").write_bytes(root.pem)
    return Chain(tmp / "root.pem", leaf.not_after, inter.not_after,
                 _server_ctx(tmp, leaf.pem + inter.pem, leaf.key_pem))


@pytest.fixture(scope="session")
def cn_only_chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """A leaf whose only name is ``CN=localhost`` (no subjectAltName), from a trusted root."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    from tests.probes_tls import certgen

    tmp = tmp_path_factory.mktemp("cn-only")
    root = certgen.make_ca("http-test-cn-root")
    key = certgen.ec_key(5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(certgen.now() - certgen.DAY)
        .not_valid_after(certgen.now() + 90 * certgen.DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(root.key, hashes.SHA256())
    )
    leaf = certgen.Issued(cert, key)
    (tmp / "root.pem").write_bytes(root.pem)
    return Chain(tmp / "root.pem", leaf.not_after, root.not_after,
                 _server_ctx(tmp, leaf.pem, leaf.key_pem))


def _https_with(ctx: ssl.SSLContext) -> Server:
    srv = Server(("127.0.0.1", 0), Handler)
    srv.ssl_ctx = ctx
    return srv


@pytest.fixture(scope="session")
def short_intermediate_https(short_intermediate_chain: Chain) -> Iterator[Running]:
    srv = _https_with(short_intermediate_chain.server_ctx)
    yield _start(srv, "127.0.0.1")
    srv.shutdown()


@pytest.fixture(scope="session")
def short_intermediate_tls_ping(short_intermediate_chain: Chain) -> Iterator[Running]:
    srv = _ping_server(short_intermediate_chain.server_ctx)
    yield _start(srv, "127.0.0.1")
    srv.shutdown()


@pytest.fixture(scope="session")
def cn_only_https(cn_only_chain: Chain) -> Iterator[Running]:
    srv = _https_with(cn_only_chain.server_ctx)
    yield _start(srv, "127.0.0.1")
    srv.shutdown()


@pytest.fixture(scope="session")
def cn_only_tls_ping(cn_only_chain: Chain) -> Iterator[Running]:
    srv = _ping_server(cn_only_chain.server_ctx)
    yield _start(srv, "127.0.0.1")
    srv.shutdown()


# --- a peer that answers bytes that are not HTTP (issue 10) ------------------------------

RAW_ANSWERS: dict[str, tuple[bytes, bool]] = {
    # path: (bytes sent after the request head, hang up afterwards?)
    "/garbage-hold": (b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", False),
    "/garbage-close": (b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", True),
    "/binary-hold": (b"\x00\x01\x02", False),
    "/redis-hold": (b"-ERR unknown command 'GET'\r\n", False),
    "/bad-header-hold": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nnot a header\r\n", False),
    # A valid but unfinished head on a held connection is a slow server, not garbage.
    "/partial-head-hold": (b"HTTP/1.1 200 OK\r\nContent-Len", False),
}


class _RawHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(10)
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            path = head.split(b" ", 2)[1].decode()
            answer, close = RAW_ANSWERS.get(path, (b"nonsense", True))
            conn.sendall(answer)
            if not close:
                stop: threading.Event = self.server.stop  # type: ignore[attr-defined]
                stop.wait(30)
        except OSError:
            return


@pytest.fixture(scope="session")
def raw_server() -> Iterator[Running]:
    srv = _Silent(("127.0.0.1", 0), _RawHandler)
    srv.stop = threading.Event()  # type: ignore[attr-defined]
    yield _start(srv, "127.0.0.1")
    srv.stop.set()  # type: ignore[attr-defined]
    srv.shutdown()
