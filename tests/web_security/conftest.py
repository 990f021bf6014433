"""A real exporter process with a web config, certificates, and clients for it."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import pytest
import yaml
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.probes_tls.certgen import Issued, make_ca, make_leaf

LAUNCHER = Path(__file__).parents[1] / "core" / "run_with_fake.py"
CONFIG = """
global: {start_spread: 0s}
probes:
  - {name: alpha, kind: fake, interval: 0.5s, timeout: 0.2s}
"""
PASSWORD = "s3cret-Pa55"
# bcrypt cost 8: the timing shape of a real cost without a slow suite.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(8)).decode()


@dataclass
class Pki:
    dir: Path
    ca: Issued
    client_ca: Issued

    def server(self, name: str, **kw: object) -> tuple[Path, Path]:
        leaf = make_leaf(self.ca, ("localhost", "127.0.0.1"), **kw)  # type: ignore[arg-type]
        cert, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        cert.write_bytes(leaf.pem)
        key.write_bytes(leaf.key_pem)
        return cert, key

    def client(self, name: str, ca: Issued | None = None) -> tuple[Path, Path]:
        leaf = make_leaf(ca or self.client_ca, ("client.test",),
                         eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
        cert, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        cert.write_bytes(leaf.pem)
        key.write_bytes(leaf.key_pem)
        return cert, key

    @property
    def ca_file(self) -> Path:
        path = self.dir / "ca.pem"
        path.write_bytes(self.ca.pem)
        return path

    @property
    def client_ca_file(self) -> Path:
        path = self.dir / "client-ca.pem"
        path.write_bytes(self.client_ca.pem)
        return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"), make_ca("Web Test CA"),
               make_ca("Web Client CA"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class WebExporter:
    def __init__(self, tmp: Path, web: dict[str, object] | None, *flags: str) -> None:
        self.dir = tmp
        (tmp / "config.yml").write_text(CONFIG)
        self.web_file = tmp / "web.yml"
        args = list(flags)
        if web is not None:
            self.write(web)
            args.append(f"--web.config.file={self.web_file}")
        self.port = free_port()
        self.stderr: str | None = None
        self.proc = subprocess.Popen(
            [sys.executable, str(LAUNCHER), "run", f"--config.file={tmp / 'config.yml'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.format=json", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def write(self, web: dict[str, object]) -> None:
        tmp = self.web_file.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(web))
        os.replace(tmp, self.web_file)

    def wait_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exporter exited: {self.proc.communicate()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the exporter never listened")

    def stop(self) -> str:
        """Stop (SIGTERM) and return everything the process wrote on stderr."""
        if self.stderr is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                _, self.stderr = self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                _, self.stderr = self.proc.communicate()
        return self.stderr

    def exit_code(self) -> int:
        self.proc.wait(15)
        self.stop()
        return self.proc.returncode


Starter = Callable[..., WebExporter]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Starter]:
    started: list[WebExporter] = []

    class Start(WebExporter):
        def __init__(self, web: dict[str, object] | None, *flags: str) -> None:
            super().__init__(tmp_path, web, *flags)
            started.append(self)

    yield Start
    for exporter in started:
        exporter.stop()


def tls_config(cert: Path, key: Path, **extra: object) -> dict[str, object]:
    return {"tls_server_config": {"cert_file": str(cert), "key_file": str(key), **extra}}


def client_context(ca: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx

