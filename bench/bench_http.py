"""CPU cost of the http probe, as a ratio to a plain httpx GET loop in the same run.

A tiny HTTP server runs in a child process (so its CPU is not counted); this process
times N probe runs (one state kept, as the daemon does) and N bare ``httpx`` GETs with a
fresh connection each, and prints CPU time per request for both and their ratio.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import anyio
import httpx

from probes.http import KIND, HttpConfig

SERVER = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""

N = int(os.environ.get("BENCH_HTTP_N", "300"))


async def _baseline(url: str, n: int) -> float:
    async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as client:
        await client.get(url)
        start = time.process_time()
        for _ in range(n):
            response = await client.get(url)
            assert response.status_code == 200
        return (time.process_time() - start) / n


async def _probe(url: str, n: int) -> float:
    config = HttpConfig.model_validate({"url": url, "json_checks": ['status == "ok"']})
    state = KIND.new_state(config)
    try:
        result = await KIND.run(config, state)
        assert result.success, result.detail
        start = time.process_time()
        for _ in range(n):
            result = await KIND.run(config, state)
            assert result.success, result.detail
        return (time.process_time() - start) / n
    finally:
        await state.aclose()


def main() -> None:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}/"
        base = anyio.run(_baseline, url, N)
        probe = anyio.run(_probe, url, N)
        base2 = anyio.run(_baseline, url, N)
        baseline = min(base, base2)
        print(f"http probe: {N} runs")
        print(f"  baseline httpx GET (new connection): {baseline * 1000:.3f} ms CPU / request")
        print(f"  http probe run:                      {probe * 1000:.3f} ms CPU / probe")
        print(f"  ratio probe / baseline:              {probe / baseline:.2f}x")
    finally:
        server.terminate()
        server.wait(5)


if __name__ == "__main__":
    main()
