"""Memory with every kind active: our one process against the three peers it replaces.

Local targets on free loopback ports: an HTTP server (also serving a Statuspage v2
document), an HTTPS server with a certificate from a private CA, a private PostgreSQL, a
redis-server with queues, and the test suite's fake Kubernetes API (50 pods). Ours runs an
``http``, ``tcp``, ``tls``, ``statuspage``, ``postgres``, ``redis`` and ``kubernetes``
probe every 2 s; the peers are Debian's blackbox_exporter (``/probe`` for the HTTP, TCP
and TLS targets every 2 s), postgres_exporter and redis_exporter (the same queue keys),
each scraped every 2 s. After the same time, ours' RSS is compared to the sum of theirs.
The peers have no statuspage or Kubernetes counterpart; those probes are ours' extra.
"""

from __future__ import annotations

import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
import psycopg
import trustme

from bench.peers import free_port, rss_mib, start, stop
from bench.report import Row
from tests.probes_kubernetes import objects as o
from tests.probes_kubernetes.fake_api import FakeKube
from tests.probes_postgres._cluster import Cluster, make_template, make_workdir

SECONDS = 30
QUEUES = [f"festivals:queue:{name}" for name in ("critical", "default", "low", "mail")]
STATUS = (Path(__file__).resolve().parent.parent
          / "tests" / "probes_statuspage" / "fixtures" / "summary_operational.json")

TARGETS = r"""
import ssl, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
status = open(sys.argv[1], "rb").read()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        body = status if self.path.endswith(".json") else b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
plain = ThreadingHTTPServer(("127.0.0.1", 0), H)
tls = ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2])
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
threading.Thread(target=tls.serve_forever, daemon=True).start()
print(plain.server_address[1], tls.server_address[1], flush=True)
plain.serve_forever()
"""


def _kube(conn: Connection) -> None:
    fake = FakeKube()
    fake.start()
    fake.set(o.NS, "pods", o.many_pods(50))
    conn.send(fake.port)
    conn.recv()
    fake.stop()


def _config(work: Path, port: int, http_port: int, tls_port: int, pg_port: int,
            redis_port: int, kubeconfig: Path) -> str:
    queues = "".join(f"      - {{key: '{q}', type: list}}\n" for q in QUEUES)
    return f"""global:
  listen_address: 127.0.0.1:{port}
  default_interval: 2s
  default_timeout: 1500ms
  start_spread: 0s
probes:
  - {{name: api, kind: http, url: 'http://127.0.0.1:{http_port}/'}}
  - {{name: port, kind: tcp, host: 127.0.0.1, port: {http_port}}}
  - name: cert
    kind: tls
    ca_file: {work / 'ca.pem'}
    endpoints: ['127.0.0.1:{tls_port}']
  - {{name: vendor, kind: statuspage, interval: 2s, url: 'http://127.0.0.1:{http_port}/api/v2/summary.json'}}
  - {{name: db, kind: postgres, host: 127.0.0.1, port: {pg_port}, user: postgres}}
  - name: queues
    kind: redis
    url: redis://127.0.0.1:{redis_port}
    queues:
{queues}  - {{name: k8s, kind: kubernetes, kubeconfig: {kubeconfig}}}
"""


def _blackbox_config(work: Path) -> Path:
    path = work / "blackbox.yml"
    path.write_text(
        "modules:\n"
        "  http_2xx: {prober: http, timeout: 1500ms}\n"
        "  tcp_connect: {prober: tcp, timeout: 1500ms}\n"
        f"  tls: {{prober: tcp, timeout: 1500ms, tcp: {{tls: true, tls_config: "
        f"{{ca_file: {work / 'ca.pem'}}}}}}}\n"
    )
    return path


def main() -> list[Row]:
    work = Path(tempfile.mkdtemp(prefix="bench-rss-"))
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(work / "server.pem"))
    base = make_workdir("fe-rssbench-")
    cluster = Cluster(make_template(base), max_connections=50)
    cluster.start()
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    kube = ctx.Process(target=_kube, args=(child,), daemon=True)
    kube.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with psycopg.connect(cluster.admin_dsn(), autocommit=True) as conn:
            conn.execute(b"CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        targets = subprocess.Popen(
            [sys.executable, "-c", TARGETS, str(STATUS), str(work / "server.pem")],
            stdout=subprocess.PIPE, text=True,
        )
        assert targets.stdout is not None
        http_port, tls_port = (int(p) for p in targets.stdout.readline().split())
        redis_port = free_port()
        procs.append(start(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(work)], redis_port))
        kubeconfig = FakeKube(port=parent.recv()).write_kubeconfig(work / "kubeconfig")

        ours_port = free_port()
        (work / "config.yml").write_text(_config(
            work, ours_port, http_port, tls_port, cluster.port, redis_port, kubeconfig))
        exe = str(Path(sys.executable).parent / "festivals-exporter")
        ours = start([exe, "run", f"--config.file={work / 'config.yml'}"], ours_port)
        procs.append(ours)
        bb, pg, rd = free_port(), free_port(), free_port()
        dsn = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres?sslmode=disable"
        peers = [
            start(["/usr/bin/prometheus-blackbox-exporter",
                   f"--config.file={_blackbox_config(work)}",
                   f"--web.listen-address=127.0.0.1:{bb}"], bb),
            start(["/usr/bin/prometheus-postgres-exporter",
                   f"--web.listen-address=127.0.0.1:{pg}"], pg, env={"DATA_SOURCE_NAME": dsn}),
            start(["/usr/bin/prometheus-redis-exporter", "-redis.addr",
                   f"redis://127.0.0.1:{redis_port}", "-web.listen-address",
                   f"127.0.0.1:{rd}", "-check-single-keys",
                   ",".join(f"db0={q}" for q in QUEUES)], rd),
        ]
        procs += peers
        scrapes = [
            f"http://127.0.0.1:{ours_port}/metrics",
            f"http://127.0.0.1:{bb}/probe?module=http_2xx&target=http://127.0.0.1:{http_port}/",
            f"http://127.0.0.1:{bb}/probe?module=tcp_connect&target=127.0.0.1:{http_port}",
            f"http://127.0.0.1:{bb}/probe?module=tls&target=127.0.0.1:{tls_port}",
            f"http://127.0.0.1:{pg}/metrics",
            f"http://127.0.0.1:{rd}/metrics",
        ]
        with httpx.Client(timeout=10) as http:
            for _ in range(SECONDS // 2):
                started = time.monotonic()
                for url in scrapes:
                    http.get(url).raise_for_status()
                time.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
            ready = http.get(f"http://127.0.0.1:{ours_port}/-/ready")
        assert ready.status_code == 200, ready.text
        ours_rss = rss_mib(ours.pid)
        peers_rss = sum(rss_mib(p.pid) for p in peers)
        targets.terminate()
    finally:
        stop(procs)
        parent.send("stop")
        kube.join(10)
        cluster.destroy()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return [Row(
        "RSS with every kind active (7 probes) vs the sum of blackbox, postgres and redis"
        " exporters on the same targets", ours_rss, "MiB", peers_rss,
        "sum of 3 peers", command="make bench ARGS=rss",
    )]
