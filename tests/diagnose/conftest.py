"""Real local components for the diagnosis scenarios: the probe tests' servers (PostgreSQL,
Redis, the fake Kubernetes API, TLS and status-page servers) plus a small HTTP API."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from exporter.cli import main
from exporter.diagnose.render import schema
from tests.probes_kubernetes.conftest import fake_kube  # noqa: F401
from tests.probes_postgres.conftest import pg_shared, pg_small, pg_template  # noqa: F401
from tests.probes_redis.conftest import own_redis, shared_redis  # noqa: F401
from tests.probes_statuspage.conftest import status_server  # noqa: F401
from tests.probes_tls.conftest import tls_server  # noqa: F401

SLOW_SECONDS = 0.7


class Api:
    """The Festivals API as the runbook checks it: health, a failing and a slow endpoint,
    and the Stripe webhook that rejects unsigned POSTs."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return None

            def _send(self, status: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/slow":
                    time.sleep(SLOW_SECONDS)
                if self.path == "/fail":
                    self._send(503, {"status": "degraded"})
                else:
                    self._send(200, {"status": "ok"})

            def do_POST(self) -> None:
                self._send(400, {"error": "missing Stripe-Signature header"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def api() -> Iterator[Api]:
    server = Api()
    yield server
    server.close()


def write_config(tmp_path: Path, *probes: dict[str, Any]) -> Path:
    path = tmp_path / f"config-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump({"global": {"default_timeout": "3s"},
                                    "probes": list(probes)}), encoding="utf-8")
    return path


def diagnose(capsys: pytest.CaptureFixture[str], config: Path,
             *sections: str) -> tuple[int, dict[str, Any]]:
    """``festivals-exporter diagnose --output json``: exit code and the document, which
    must match the shipped schema."""
    capsys.readouterr()
    code = main(["diagnose", f"--config.file={config}", "--output=json", *sections])
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, schema())
    assert doc["exit_code"] == code
    return code, doc


def section(doc: dict[str, Any], sid: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in doc["sections"] if s["id"] == sid)
    return found


def texts(sec: dict[str, Any], field: str = "evidence") -> str:
    key = "what" if field == "missing" else "text"
    return "\n".join(item[key] + (f" {item.get('why', '')}" if field == "missing" else "")
                     for item in sec[field])


def steps(sec: dict[str, Any]) -> str:
    return "\n".join(c["next_step"] for c in sec["causes"])
