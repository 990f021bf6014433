"""Memory and time of one kubernetes probe run: 50 pods (baseline) vs 5,000 pods.

The fake API server of the test suite runs in a child process, so the numbers are the
probe's alone: wall time of a run (median of 3), tracemalloc peak during a run (Python
allocations: pages of JSON, records, samples) and the process RSS growth across runs.
"""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
import time
import tracemalloc
from multiprocessing.connection import Connection
from pathlib import Path

import anyio

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


def main() -> None:
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
    for count, secs, peak, rss, samples, typed in rows:
        print(
            f"{count:>5} pods: run {secs:.3f}s  tracemalloc peak {peak:.1f} MiB"
            f"  RSS growth over 3 runs {rss:+.1f} MiB  {samples} samples"
            f"  | typed-model LIST of the pods alone: peak {typed:.1f} MiB"
        )
    (_, t0, m0, _, _, _), (_, t1, m1, _, _, _) = rows
    print(f"ratio 5000/50: time x{t1 / t0:.1f}, peak memory x{m1 / m0:.1f}")
    print(f"peak per pod: {(m1 - m0) * 1024 / 4950:.1f} KiB (one page of raw JSON: 500 pods)")


if __name__ == "__main__":
    main()
