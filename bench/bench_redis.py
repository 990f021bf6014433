"""Benchmark: 1,000 queue keys read by one redis probe run vs. redis_exporter scrapes.

Starts its own redis-server and Debian's ``prometheus-redis-exporter`` (with
``-check-single-keys`` naming the same 1,000 keys) on free loopback ports, then times
``RUNS`` probe runs and ``RUNS`` scrapes of the exporter's /metrics in the same process.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import anyio
import httpx
from redis.asyncio import Redis

from bench.peers import free_port, wait_port
from bench.report import Row
from probes.redis import KIND
from probes.redis.queues import BATCH_KEYS

KEYS = 1000
RUNS = 20
EXPORTER = "/usr/bin/prometheus-redis-exporter"


async def _bench(redis_port: int, exporter_port: int, keys: list[str]) -> list[Row]:
    async with Redis(port=redis_port) as admin:
        async with admin.pipeline(transaction=False) as pipe:
            for i, key in enumerate(keys):
                pipe.rpush(key, *range(i % 7 + 1))
            await pipe.execute()
    config = KIND.config_model.model_validate(
        {"url": f"redis://127.0.0.1:{redis_port}", "ping_samples": 1,
         "queues": [{"key": k, "type": "list"} for k in keys]}
    )
    state = KIND.new_state(config)
    probe_times: list[float] = []
    try:
        for _ in range(RUNS + 1):
            start = time.perf_counter()
            result = await KIND.run(config, state)
            probe_times.append(time.perf_counter() - start)
            assert result.success, result.detail
        sizes = [m for m in result.metrics if m.name == "redis_key_size"][0].samples
        assert len(sizes) == KEYS
    finally:
        await state.aclose()
    scrape_times: list[float] = []
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(RUNS + 1):
            start = time.perf_counter()
            response = await http.get(f"http://127.0.0.1:{exporter_port}/metrics")
            scrape_times.append(time.perf_counter() - start)
            response.raise_for_status()
        found = response.text.count("\nredis_key_size{")
        assert found == KEYS, f"redis_exporter reported {found} key sizes"
    probe = statistics.median(probe_times[1:])  # the first run connects
    scrape = statistics.median(scrape_times[1:])
    print(f"keys: {KEYS}, runs: {RUNS} (median, first run excluded), "
          f"{-(-KEYS // BATCH_KEYS)} pipelined round trip(s) per probe run")
    return [Row(
        f"redis: one run over {KEYS:,} queue keys vs a -check-single-keys scrape",
        probe, "s", scrape, "redis_exporter", goal="<= 1.0x", met=probe <= scrape,
        command="make bench ARGS=redis",
    )]


def main() -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-redis-"))
    redis_port, exporter_port = free_port(), free_port()
    keys = [f"festivals:queue:bench:{i}" for i in range(KEYS)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        procs.append(redis)
        wait_port(redis_port, redis)
        exporter = subprocess.Popen(
            [EXPORTER, "-redis.addr", f"redis://127.0.0.1:{redis_port}",
             "-web.listen-address", f"127.0.0.1:{exporter_port}",
             "-check-single-keys", ",".join(f"db0={k}" for k in keys)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ},
        )
        procs.append(exporter)
        wait_port(exporter_port, exporter)
        return anyio.run(_bench, redis_port, exporter_port, keys)
    finally:
        for proc in reversed(procs):
            proc.kill()
            proc.wait(10)


if __name__ == "__main__":
    main()
