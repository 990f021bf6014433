"""The kubernetes probe at scale.

1. One run, 50 pods (baseline) vs 5,000 pods: wall time (median of 3), tracemalloc peak
   (pages of JSON, records, samples) and RSS growth across runs, against the client's
   usual typed-model LIST.
2. The daemon with one probe over 2,000 pods every second while ``/metrics`` is scraped
   every second: scrape latency p99 and runs that hit their deadline.

The fake API server of the test suite runs in a child process, so the numbers are the
exporter's alone.
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import tempfile
import time
import tracemalloc
from multiprocessing.connection import Connection
from pathlib import Path

import anyio
import httpx

from bench.peers import cpu_seconds, free_port, rss_mib, start, stop
from bench.report import Row
from probes.kubernetes import KIND, KubernetesConfig
from tests.probes_kubernetes import objects as o
from tests.probes_kubernetes.fake_api import FakeKube


def _serve(count: int, conn: Connection) -> None:
    fake = FakeKube()
    fake.start()
    fake.set(o.NS, "pods", o.many_pods(count))
    fake.set(
        o.NS,
        "pods.metrics.k8s.io",
        [o.pod_metrics(f"festivals-api-7d9f8c6b5-{i:05d}") for i in range(count)],
    )
    conn.send(fake.port)
    conn.recv()  # until the parent is done
    fake.stop()


def _typed_peak(api: object) -> float:
    """For comparison: the same pods LIST the usual way (typed models, whole list at once)."""
    from kubernetes import client

    tracemalloc.start()
    pods = client.CoreV1Api(api).list_namespaced_pod(o.NS, _request_timeout=60)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del pods
    return peak / 2**20


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _measure(port: int) -> tuple[float, float, float, int, float]:
    kubeconfig = FakeKube(port=port).write_kubeconfig(Path(tempfile.mkdtemp()) / "kubeconfig")
    config = KubernetesConfig(kubeconfig=kubeconfig, client_timeout=60.0)
    state = KIND.new_state(config)
    try:
        await KIND.run(config, state)  # warm-up: client construction
        rss_before = _rss_kib()
        times = []
        for _ in range(3):
            started = time.perf_counter()
            result = await KIND.run(config, state)
            times.append(time.perf_counter() - started)
            assert result.success, result.detail
        rss_growth = (_rss_kib() - rss_before) / 1024
        tracemalloc.start()
        result = await KIND.run(config, state)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        samples = sum(len(m.samples) for m in result.metrics)
        api = await state.client.api()
        typed = await anyio.to_thread.run_sync(_typed_peak, api)
        return statistics.median(times), peak / 2**20, rss_growth, samples, typed
    finally:
        await state.aclose()


def _per_run() -> list[Row]:
    ctx = multiprocessing.get_context("fork")
    rows = []
    for count in (50, 5000):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(count, child), daemon=True)
        proc.start()
        port = parent.recv()
        try:
            rows.append((count, *anyio.run(_measure, port)))
        finally:
            parent.send("stop")
            proc.join(10)
    out = []
    for count, secs, peak, rss, samples, typed in rows:
        print(
            f"{count:>5} pods: run {secs:.3f}s  tracemalloc peak {peak:.1f} MiB"
            f"  RSS growth over 3 runs {rss:+.1f} MiB  {samples} samples"
            f"  | typed-model LIST of the pods alone: peak {typed:.1f} MiB"
        )
        out.append(Row(
            f"kubernetes: peak Python memory of one run over {count:,} pods vs the client's"
            " typed LIST of the pods alone", peak, "MiB", typed, "kubernetes client models",
            command="make bench ARGS=kubernetes",
        ))
        out.append(Row(f"kubernetes: wall time of one run over {count:,} pods", secs, "s",
                       command="make bench ARGS=kubernetes"))
    return out


SCRAPE_SECONDS = 30
PODS = 2000


def _daemon_config(kubeconfig: Path, port: int) -> str:
    return (
        f"global:\n  listen_address: 127.0.0.1:{port}\n  start_spread: 0s\n"
        "probes:\n  - name: k8s\n    kind: kubernetes\n    interval: 1s\n    timeout: 950ms\n"
        f"    kubeconfig: {kubeconfig}\n"
    )


def _failures(text: str, reason: str) -> float:
    for line in text.splitlines():
        if line.startswith("probe_failures_total{") and f'reason="{reason}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _runs(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("probe_runs_total{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _scraped(kube_port: int) -> list[Row]:
    work = Path(tempfile.mkdtemp(prefix="bench-k8s-"))
    kubeconfig = FakeKube(port=kube_port).write_kubeconfig(work / "kubeconfig")
    port = free_port()
    (work / "config.yml").write_text(_daemon_config(kubeconfig, port))
    exe = str(Path(sys.executable).parent / "festivals-exporter")
    daemon = start([exe, "run", f"--config.file={work / 'config.yml'}"], port)
    latencies: list[float] = []
    try:
        with httpx.Client(timeout=10) as http:
            deadline = time.monotonic() + 60
            while _runs(http.get(f"http://127.0.0.1:{port}/metrics").text) < 1:
                assert time.monotonic() < deadline, "the kubernetes probe never ran"
                time.sleep(0.2)
            before = http.get(f"http://127.0.0.1:{port}/metrics").text
            cpu0 = cpu_seconds(daemon.pid)
            for _ in range(SCRAPE_SECONDS):
                started = time.perf_counter()
                response = http.get(f"http://127.0.0.1:{port}/metrics")
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()
                time.sleep(max(0.0, 1.0 - (time.perf_counter() - started)))
            cpu = (cpu_seconds(daemon.pid) - cpu0) / SCRAPE_SECONDS
            after = response.text
            rss = rss_mib(daemon.pid)
    finally:
        stop([daemon])
    runs = _runs(after) - _runs(before)
    late = _failures(after, "timeout") - _failures(before, "timeout")
    p99 = sorted(latencies)[max(0, int(len(latencies) * 0.99) - 1)]
    series = sum(1 for line in after.splitlines() if line and not line.startswith("#"))
    command = "make bench ARGS=kubernetes"
    print(f"{PODS} pods every 1 s, {series:,} series, /metrics every 1 s for {SCRAPE_SECONDS} s:"
          f" p99 {p99 * 1000:.0f} ms, {runs:.0f} runs, {late:.0f} past the deadline,"
          f" CPU {cpu:.2f} cores, RSS {rss:.0f} MiB")
    return [
        Row(f"kubernetes: /metrics p99 with a {PODS:,}-pod probe every 1 s, scraped every 1 s",
            p99 * 1000, "ms", goal="<= 100 ms", met=p99 <= 0.1, command=command),
        Row("kubernetes: runs past their deadline during those scrapes", late, "",
            goal="0", met=late == 0, command=command),
        Row("kubernetes: exporter CPU with that probe and scrapes", cpu, "cores",
            command=command),
    ]


def main() -> list[Row]:
    rows = _per_run()
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(PODS, child), daemon=True)
    proc.start()
    try:
        rows += _scraped(parent.recv())
    finally:
        parent.send("stop")
        proc.join(10)
    return rows


if __name__ == "__main__":
    main()
