"""CPU per HTTP probe: the daemon against Debian's blackbox_exporter, same target, same rate.

Both probe one local nginx (started here on a free loopback port). Our side is the real
daemon (``festivals-exporter run``) with N ``http`` probes at an interval; the peer is
``prometheus-blackbox-exporter`` driven through ``/probe`` by this process at the same
rate (N / interval per second), as Prometheus would scrape it. Each side's CPU is read
from ``/proc/PID/stat`` over a window in steady state, sides alternate, and the ratio of
the means is reported. Our ``/metrics`` is read only outside the CPU window (to count the
runs), so the figure is the probes' cost, not the scrapes'.

``BENCH_HTTP_ROUNDS`` (default 2, for the 500-probe scenario; the 10,000-probe one runs
once) and ``BENCH_HTTP_LARGE=0`` (skip it) bound the time: about three minutes without it,
five to ten with it, depending on how long the daemon takes to start.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROUNDS = int(os.environ.get("BENCH_HTTP_ROUNDS", "2"))
LARGE = os.environ.get("BENCH_HTTP_LARGE", "1") != "0"
TICK = os.sysconf("SC_CLK_TCK")
FAILURES: list[str] = []
COMMAND = ".venv/bin/python -m bench http"

# backlog: on a loaded 2-core machine nginx is sometimes off the CPU for a while, and 667
# connects a second overflow the default 511-entry accept queue (SYNs dropped, probes time
# out on either side).
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{ default_type application/json; return 200 '{{"status": "ok"}}'; }}
  }}
}}
"""

BLACKBOX_CONF = """
modules:
  http_2xx:
    prober: http
    timeout: {timeout}s
    http:
      preferred_ip_protocol: ip4
"""


@dataclass(frozen=True)
class Scenario:
    probes: int
    interval: float
    warmup: float
    window: float
    rounds: int = ROUNDS

    @property
    def rate(self) -> float:
        return self.probes / self.interval

    @property
    def label(self) -> str:
        return f"{self.probes:,} http probes at {self.interval:g} s"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError(f"{name} is not installed (make bench installs it)")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _get(url: str, timeout: float = 60) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _wait(url: str, deadline: float, want: int = 200) -> None:
    while time.monotonic() < deadline:
        try:
            if _get(url, timeout=5)[0] == want:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer {want} in time")


@contextmanager
def _process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


_RUNS_RE = re.compile(rb"^probe_runs_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)
_FAILS_RE = re.compile(
    rb'^probe_failures_total\{[^}]*reason="([a-z_]+)"[^}]*\} ([0-9.e+]+)$', re.MULTILINE
)
REASONS: dict[str, float] = {}


def _runs(port: int) -> tuple[float, float]:
    """(runs, failed runs) so far, summed over every probe; ``REASONS`` by reason."""
    status, body = _get(f"http://127.0.0.1:{port}/metrics", timeout=120)
    assert status == 200, status
    runs = sum(float(v) for v in _RUNS_RE.findall(body))
    REASONS.clear()
    for reason, value in _FAILS_RE.findall(body):
        REASONS[reason.decode()] = REASONS.get(reason.decode(), 0.0) + float(value)
    return runs, sum(REASONS.values())


def _timeout(sc: Scenario) -> float:
    # The same on both sides; below the interval, as the daemon requires.
    return min(5.0, sc.interval * 0.9)


def _ours(tmp: Path, target: str, sc: Scenario) -> tuple[float, float, float]:
    """(CPU ms per probe run, RSS MB, share of failed runs) of the daemon running ``sc``."""
    config = tmp / f"ours-{sc.probes}.yml"
    timeout = _timeout(sc)
    lines = ["probes:"] + [
        f"  - {{name: h{i}, kind: http, url: '{target}?i={i}', interval: {sc.interval:g}s,"
        f" timeout: {timeout:g}s}}"
        for i in range(sc.probes)
    ]
    config.write_text("\n".join(lines) + "\n")
    port = _free_port()
    exe = Path(sys.executable).with_name("festivals-exporter")
    args = [str(exe), "run", f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warning"]
    with _process(args, tmp / "ours.log") as proc:
        # Ready once every probe has run: 10,000 first runs on a loaded machine take minutes.
        _wait(f"http://127.0.0.1:{port}/-/ready", time.monotonic() + 600)
        time.sleep(sc.warmup)
        t0 = time.monotonic()
        runs0, fails0 = _runs(port)
        c0, w0 = _cpu_seconds(proc.pid), time.monotonic()
        time.sleep(sc.window)
        c1, w1 = _cpu_seconds(proc.pid), time.monotonic()
        rss = _rss_mb(proc.pid)
        runs1, fails1 = _runs(port)
        t1 = time.monotonic()
    rate = (runs1 - runs0) / (t1 - t0)
    return (c1 - c0) / (rate * (w1 - w0)) * 1000, rss, (fails1 - fails0) / (runs1 - runs0)


async def _drive(url: str, rate: float, seconds: float) -> tuple[int, int]:
    """Send ``rate`` GETs per second to ``url`` for ``seconds``, spread evenly, on
    keep-alive connections; (answered, failed)."""
    import aiohttp

    done = failed = 0

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        nonlocal done, failed
        body = b""
        try:
            async with session.get(f"{url}%3Fi%3D{i % 10000}") as response:
                body = await response.read()
                ok = response.status == 200 and b"probe_success 1" in body
        except (aiohttp.ClientError, TimeoutError) as exc:
            body = repr(exc).encode()
            ok = False
        done += ok
        failed += not ok
        if not ok and failed <= 3:
            lines = body.decode(errors="replace").splitlines()
            FAILURES.append(" ".join(x for x in lines if not x.startswith("#")))

    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        sent = 0
        while (now := time.monotonic() - start) < seconds:
            due = int(now * rate)
            while sent < due:
                task = asyncio.create_task(one(session, sent))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(0.005)
        if tasks:
            await asyncio.wait(tasks)
    return done, failed


def _peer(tmp: Path, target: str, sc: Scenario) -> tuple[float, float, float]:
    """(CPU ms per probe, RSS MB, share of failed probes) of blackbox_exporter probing at
    ``sc``'s rate."""
    config = tmp / "blackbox.yml"
    config.write_text(BLACKBOX_CONF.format(timeout=_timeout(sc)))
    port = _free_port()
    args = [_binary("prometheus-blackbox-exporter"), f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    url = f"http://127.0.0.1:{port}/probe?module=http_2xx&target={target}"
    with _process(args, tmp / "blackbox.log") as proc:
        _wait(f"http://127.0.0.1:{port}/-/healthy", time.monotonic() + 30)
        asyncio.run(_drive(url, sc.rate, sc.warmup))
        c0 = _cpu_seconds(proc.pid)
        done, failed = asyncio.run(_drive(url, sc.rate, sc.window))
        c1 = _cpu_seconds(proc.pid)
        rss = _rss_mb(proc.pid)
    if failed > (done + failed) * 0.2:
        raise RuntimeError(f"blackbox failed {failed} of {done + failed} probes: {FAILURES}")
    return (c1 - c0) / (done + failed) * 1000, rss, failed / (done + failed)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _scenario(tmp: Path, target: str, sc: Scenario) -> list[dict[str, Any]]:
    ours: list[tuple[float, float, float]] = []
    peer: list[tuple[float, float, float]] = []
    for _ in range(sc.rounds):
        ours.append(_ours(tmp, target, sc))
        peer.append(_peer(tmp, target, sc))
        print(f"  {sc.label}: ours {ours[-1][0]:.3f} ms, blackbox {peer[-1][0]:.3f} ms "
              f"CPU per probe; RSS {ours[-1][1]:.0f} / {peer[-1][1]:.0f} MB; failed "
              f"{ours[-1][2]:.1%} / {peer[-1][2]:.1%}", flush=True)
        if ours[-1][2] > 0.01:
            print(f"  ours failed by reason since start: {REASONS}", flush=True)
    cpu_ours, cpu_peer = _mean([o[0] for o in ours]), _mean([p[0] for p in peer])
    rows: list[dict[str, Any]] = [
        {
            "scenario": f"CPU per HTTP probe, {sc.label}",
            "ours": cpu_ours,
            "peer": cpu_peer,
            "peer_name": "blackbox_exporter via /probe",
            "unit": "ms",
            "goal": "<= 1.0x",
            "met": cpu_ours <= cpu_peer,
            "command": COMMAND,
        }
    ]
    if sc.probes >= 10_000:
        rss_ours, rss_peer = max(o[1] for o in ours), max(p[1] for p in peer)
        rows.append(
            {
                "scenario": f"RSS with {sc.label}",
                "ours": rss_ours,
                "peer": rss_peer,
                "peer_name": "blackbox_exporter",
                "unit": "MB",
                "goal": "<= 250 MB",
                "met": rss_ours <= 250,
                "command": COMMAND,
            }
        )
    return rows


def main() -> list[dict[str, Any]]:
    scenarios = [Scenario(500, 1.0, warmup=4, window=15)]
    if LARGE:
        # One round: the daemon's start with 10,000 probes alone takes one to three minutes.
        scenarios.append(Scenario(10_000, 15.0, warmup=20, window=30, rounds=1))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-http-") as name:
        tmp = Path(name)
        port = _free_port()
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=port))
        with _process([_binary("nginx"), "-c", str(tmp / "nginx.conf")], tmp / "nginx.log"):
            target = f"http://127.0.0.1:{port}/health"
            _wait(target, time.monotonic() + 10)
            for sc in scenarios:
                rows.extend(_scenario(tmp, target, sc))
    for row in rows:
        print(f"  {row['scenario']}: ours {row['ours']:.3f} {row['unit']}, "
              f"peer {row['peer']:.3f}, ratio {row['ours'] / row['peer']:.2f}x")
    return rows


if __name__ == "__main__":
    main()
