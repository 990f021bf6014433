"""Redis probe, server side: PING latency samples, INFO parsing, error-to-reason mapping.

Private helper of :mod:`probes.redis`; nothing here writes to the server.
"""

from __future__ import annotations

import math
import re
import socket
import ssl
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis import exceptions as rexc
from redis.asyncio import Redis

from probes.base import Metric, Reason, counter, gauge, info

# Kind-specific reasons (snake_case), listed in ``KIND.reasons``.
WRONG_TYPE = "wrong_type"  # a configured key holds a type the config does not expect
BAD_JOB = "bad_job"  # the oldest job is not JSON / has no usable enqueue timestamp
MAXMEMORY_UNSET = "maxmemory_unset"  # require_maxmemory and maxmemory is 0 or not reported
LOADING = "loading"  # the server is loading its dataset and refuses commands


def reason_for_redis_error(exc: BaseException) -> str:
    """Map a redis-py (or socket/ssl) error to a bounded reason, never a message."""
    if isinstance(exc, rexc.NoPermissionError):
        return Reason.FORBIDDEN
    if isinstance(exc, rexc.AuthenticationError | rexc.AuthenticationWrongNumberOfArgsError):
        return Reason.AUTH
    if isinstance(exc, rexc.BusyLoadingError):
        return LOADING
    if isinstance(exc, rexc.TimeoutError | TimeoutError | socket.timeout):
        return Reason.TIMEOUT
    if isinstance(exc, rexc.ConnectionError):
        if "max number of clients" in str(exc):
            return Reason.TOO_MANY_CLIENTS
        cause = _root_os_error(exc) or _os_error_in_message(str(exc))
        if cause is None:
            return Reason.UNREACHABLE
        return _reason_for_os_error(cause)
    if isinstance(exc, rexc.ResponseError | rexc.DataError | rexc.InvalidResponse):
        return Reason.PROTOCOL
    if isinstance(exc, OSError):
        return _reason_for_os_error(exc)
    return Reason.INTERNAL


def _root_os_error(exc: BaseException) -> OSError | None:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


# redis-py's connect error text; when the pool replaces a stale connection it raises this
# while handling its own "Connection has data", so the OSError is not in the chain.
_CONNECT_ERRNO_RE = re.compile(r"^Error (\d+) connecting to ")


def _os_error_in_message(message: str) -> OSError | None:
    m = _CONNECT_ERRNO_RE.match(message)
    # OSError(errno, text) is the errno's subclass: 111 -> ConnectionRefusedError
    return OSError(int(m.group(1)), message) if m else None


def _reason_for_os_error(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return Reason.TLS
    if isinstance(exc, socket.gaierror):
        return Reason.DNS
    if isinstance(exc, ConnectionRefusedError):
        return Reason.REFUSED
    if isinstance(exc, TimeoutError | socket.timeout):
        return Reason.TIMEOUT
    return Reason.UNREACHABLE


async def ping_samples(client: Redis, count: int) -> list[float]:
    """Round-trip times of ``count`` sequential PINGs, in seconds."""
    samples: list[float] = []
    for _ in range(count):
        start = time.perf_counter()
        await client.ping()
        samples.append(time.perf_counter() - start)
    return samples


def ping_metrics(samples: list[float]) -> tuple[Metric, ...]:
    median = statistics.median(samples) if samples else math.nan
    worst = max(samples) if samples else math.nan
    return (
        gauge(
            "redis_ping_latency_seconds",
            "Median round-trip time of this run's PING samples (redis-cli --latency).",
            median,
        ),
        gauge(
            "redis_ping_latency_max_seconds",
            "Slowest round-trip time of this run's PING samples.",
            worst,
        ),
    )


@dataclass(frozen=True, slots=True)
class ServerInfo:
    metrics: tuple[Metric, ...]
    detail: tuple[str, ...]
    maxmemory_known: bool


def _num(section: Mapping[str, Any], key: str) -> float:
    value = section.get(key)
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except (TypeError, ValueError):
        return math.nan


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def server_info(raw: Mapping[str, Any]) -> ServerInfo:
    """Metrics from a parsed ``INFO`` reply (redis-py's dict). Absent fields read NaN, the
    absent ``maxmemory`` reads 0 (no limit), like redis_exporter. Keyspace hits and misses
    are :mod:`probes.redis.lookups`' (read again after the probe's own reads)."""
    role = _text(raw.get("role", "unknown"))
    version = _text(raw.get("redis_version", "unknown"))
    mode = _text(raw.get("redis_mode", "unknown"))
    maxmemory_known = "maxmemory" in raw
    maxmemory = _num(raw, "maxmemory") if maxmemory_known else 0.0
    metrics: list[Metric] = [
        info(
            "redis_instance",
            "Server version, mode and replication role (from INFO).",
            {"redis_version": version, "redis_mode": mode, "role": role},
        ),
        gauge("redis_uptime_in_seconds", "Seconds since the server started.",
              _num(raw, "uptime_in_seconds")),
        gauge("redis_memory_used_bytes", "Memory allocated by Redis (used_memory).",
              _num(raw, "used_memory")),
        gauge("redis_memory_max_bytes",
              "The maxmemory setting; 0 means no limit (or not reported by the server).",
              maxmemory),
        gauge("redis_connected_clients", "Client connections, replicas excluded.",
              _num(raw, "connected_clients")),
        gauge("redis_blocked_clients",
              "Clients blocked in BLPOP/BRPOP/XREAD... (idle workers waiting for jobs).",
              _num(raw, "blocked_clients")),
        counter("redis_evicted_keys", "Keys evicted because of maxmemory.",
                _num(raw, "evicted_keys")),
        gauge("redis_instantaneous_ops_per_second", "Commands per second, as sampled by Redis.",
              _num(raw, "instantaneous_ops_per_sec")),
        gauge("redis_connected_slaves", "Connected replicas.", _num(raw, "connected_slaves")),
    ]
    detail = [
        f"INFO: redis {version} mode={mode} role={role} "
        f"used_memory={_num(raw, 'used_memory'):.0f}B "
        f"maxmemory={f'{maxmemory:.0f}B' if maxmemory_known else 'not reported'}"
        f" clients={_num(raw, 'connected_clients'):.0f}"
        f" blocked={_num(raw, 'blocked_clients'):.0f}"
    ]
    if role in ("slave", "replica"):
        link_up = _text(raw.get("master_link_status")) == "up"
        metrics.append(
            gauge("redis_master_link_up",
                  "1 when this replica's link to its master is up (replicas only).",
                  1.0 if link_up else 0.0)
        )
        detail.append(f"replication: master_link_status={_text(raw.get('master_link_status'))}")
    if not maxmemory_known:
        detail.append("maxmemory: not reported by INFO (managed service?); read as 0")
    elif maxmemory == 0:
        detail.append("maxmemory: 0 (no limit: Redis grows until the OS or container kills it)")
    return ServerInfo(tuple(metrics), tuple(detail), maxmemory_known and maxmemory > 0)
