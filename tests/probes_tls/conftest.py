"""A threaded TLS server on 127.0.0.1 serving a chosen chain (optionally after a STARTTLS
preamble), and a TCP server that accepts and never speaks."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.probes_tls.certgen import Issued


class TlsServer:
    def __init__(self, tmp: Path, leaf: Issued, extra: tuple[Issued, ...], preamble: str) -> None:
        chain = tmp / f"chain-{id(self)}.pem"
        key = tmp / f"key-{id(self)}.pem"
        chain.write_bytes(leaf.pem + b"".join(c.pem for c in extra))
        key.write_bytes(leaf.key_pem)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(chain, key)
        self.preamble = preamble
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.handshakes = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                self._handle(conn)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def _handle(self, conn: socket.socket) -> None:
        if self.preamble == "silent":
            self.stop.wait(10)
            return
        if self.preamble == "binary":  # another protocol's greeting, then it waits
            conn.sendall(b"\x00\x00\x00\x2a\xff\x01binary-greeting")
            self.stop.wait(10)
            return
        if self.preamble == "postgres":
            assert conn.recv(8) == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
            conn.sendall(b"S")
        elif self.preamble == "smtp":
            f = conn.makefile("rb")
            conn.sendall(b"220-mail.test ESMTP\r\n220 ready\r\n")
            f.readline()
            conn.sendall(b"250-mail.test\r\n250 STARTTLS\r\n")
            assert f.readline().strip() == b"STARTTLS"
            conn.sendall(b"220 go ahead\r\n")
        with self.ctx.wrap_socket(conn, server_side=True) as tls:
            self.handshakes += 1
            tls.recv(1)  # wait for the client to close

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


ServerFactory = Callable[..., TlsServer]


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[ServerFactory]:
    servers: list[TlsServer] = []

    def start(leaf: Issued, *extra: Issued, preamble: str = "") -> TlsServer:
        server = TlsServer(tmp_path, leaf, extra, preamble)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
