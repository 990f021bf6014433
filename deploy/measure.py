"""Measure the exporter's memory and CPU, to set the Deployment's requests and limits.

    .venv/bin/python deploy/measure.py [--seconds 60] [--probes 400]

Runs the exporter twice on loopback: on the demo config (``exporter/demo.yaml``) and on a
larger generated one (http, tcp and redis probes against local targets plus a kubernetes
probe, which loads the kubernetes client library, the largest import). A scrape of
/metrics every 5 s stands in for Prometheus. Prints peak and mean RSS and mean CPU (cores)
over the window after start-up. Needs Redis on 127.0.0.1:6379 for the redis probes.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def large_config(port: int, count: int) -> str:
    lines = ["global: {demo: true, default_interval: 15s, default_timeout: 5s}", "probes:"]
    base = f"http://127.0.0.1:{port}/demo"
    for i in range(count):
        kind = i % 8
        if kind < 5:
            path = "failing" if kind == 4 else "healthy"
            lines.append(f"  - {{name: http-{i}, kind: http, url: '{base}/{path}'}}")
        elif kind < 7:
            lines.append(f"  - {{name: tcp-{i}, kind: tcp, host: 127.0.0.1, port: {port}}}")
        else:
            lines.append(f"  - {{name: redis-{i}, kind: redis, address: '127.0.0.1:6379'}}")
    lines.append(f"  - {{name: k8s, kind: kubernetes, kubeconfig: {KUBECONFIG}}}")
    return "\n".join(lines) + "\n"


KUBECONFIG = Path(tempfile.gettempdir()) / "festivals-measure-kubeconfig"
KUBECONFIG_TEXT = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _rss_kib(pid: int) -> tuple[int, int]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])


def measure(config: Path, port: int, seconds: float) -> dict[str, float]:
    exe = Path(sys.executable).with_name("festivals-exporter")
    proc = subprocess.Popen(
        [str(exe), "run", f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/-/healthy", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        time.sleep(5)  # first runs spread over start_spread
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        samples: list[int] = []
        scrapes: list[float] = []
        while time.monotonic() - t0 < seconds:
            began = time.monotonic()
            httpx.get(url + "/metrics", timeout=30)
            scrapes.append(time.monotonic() - began)
            samples.append(_rss_kib(proc.pid)[0])
            time.sleep(5)
        cpu = (_cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
        body = httpx.get(url + "/metrics", timeout=30).text
        return {
            "rss_mean_mib": sum(samples) / len(samples) / 1024,
            "rss_peak_mib": _rss_kib(proc.pid)[1] / 1024,
            "cpu_cores": cpu,
            "scrape_max_s": max(scrapes),
            "series": float(sum(1 for line in body.splitlines() if not line.startswith("#"))),
        }
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--probes", type=int, default=400)
    args = parser.parse_args()
    KUBECONFIG.write_text(KUBECONFIG_TEXT)
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        demo = Path(tmp) / "demo.yml"
        demo.write_text((ROOT / "exporter" / "demo.yaml").read_text().replace("9816", str(port)))
        large = Path(tmp) / "large.yml"
        port2 = _free_port()
        large.write_text(large_config(port2, args.probes))
        for name, path, p in (("demo", demo, port), (f"{args.probes} probes", large, port2)):
            result = measure(path, p, args.seconds)
            print(f"{name}: " + ", ".join(f"{k}={v:.3f}" for k, v in result.items()))


if __name__ == "__main__":
    main()
