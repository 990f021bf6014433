"""The pieces of the end-to-end test: a real Prometheus and Alertmanager (Debian's), a
webhook receiver, a stand-in Festivals API, and exporter replicas, all on loopback ports."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                        else None)
        if found:
            return found
    raise AssertionError(f"{names[0]} is not installed: `make test` installs it")


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.25) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")


class Process:
    """A child process whose output goes to a log file (read when it fails)."""

    def __init__(self, name: str, args: list[str], log: Path) -> None:
        self.name, self.args, self.log = name, args, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"{self.name} is not running:\n{self.tail()}")


# ----------------------------------------------------------------- the stand-in API


class FakeAPI:
    """The Festivals API's health endpoint: ``ok`` or ``failing`` (503), reachable on a
    main port and on a second one (a replica's own network path, which can be cut)."""

    def __init__(self) -> None:
        self.failing = False
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path != "/health":
                    self.send_error(404)
                    return
                status = 503 if api.failing else 200
                body = json.dumps({"status": "down" if api.failing else "ok"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.handler = Handler
        self.main = self._serve(0)
        self.port = self.main.server_address[1]
        self.side_port = free_port()
        self.side: ThreadingHTTPServer | None = self._serve(self.side_port)

    def _serve(self, port: int) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", port), self.handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def cut_side_path(self) -> None:
        if self.side is not None:
            self.side.shutdown()
            self.side.server_close()
            self.side = None

    def restore_side_path(self) -> None:
        if self.side is None:
            self.side = self._serve(self.side_port)

    def close(self) -> None:
        self.cut_side_path()
        self.main.shutdown()
        self.main.server_close()


# ----------------------------------------------------------------- the receiver


class Receiver:
    """Records every notification Alertmanager posts: ``/pager`` gets PagerDuty Events v2
    bodies, ``/ticket`` webhook bodies."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[tuple[str, dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver.lock:
                    receiver.received.append((self.path, body))
                reply = b'{"status": "success"}'
                self.send_response(202 if self.path == "/pager" else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return list(self.received)

    def clear(self) -> None:
        with self.lock:
            self.received.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ----------------------------------------------------------------- Prometheus, Alertmanager


class Prometheus(Process):
    def __init__(self, workdir: Path, config: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__("prometheus", [
            binary("prometheus"), f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--rules.alert.resend-delay=1s",
        ], workdir / "prometheus.log")

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200

    def query(self, expr: str) -> list[dict[str, Any]]:
        reply = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        reply.raise_for_status()
        result: list[dict[str, Any]] = reply.json()["data"]["result"]
        return result

    def alerts(self, state: str = "firing") -> list[dict[str, Any]]:
        reply = httpx.get(f"{self.url}/api/v1/alerts", timeout=5)
        reply.raise_for_status()
        return [a for a in reply.json()["data"]["alerts"] if a["state"] == state]


class Alertmanager(Process):
    def __init__(self, workdir: Path, config: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__("alertmanager", [
            binary("prometheus-alertmanager", "alertmanager"), f"--config.file={config}",
            f"--storage.path={workdir / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",  # no gossip: one instance, nothing beyond loopback
        ], workdir / "alertmanager.log")

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200

    def active(self) -> list[dict[str, Any]]:
        reply = httpx.get(f"{self.url}/api/v2/alerts", timeout=5)
        reply.raise_for_status()
        return [a for a in reply.json() if a["status"]["state"] == "active"]


class ExporterReplica(Process):
    def __init__(self, name: str, workdir: Path, config: Path, port: int) -> None:
        self.port = port
        exe = Path(sys.executable).with_name("festivals-exporter")
        super().__init__(name, [
            str(exe), "run", f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warning",
        ], workdir / f"{name}.log")

    def ready(self) -> bool:
        return httpx.get(f"http://127.0.0.1:{self.port}/-/ready", timeout=2).status_code == 200
