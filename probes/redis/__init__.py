"""The ``redis`` probe kind: up, PING latency, INFO figures, job-queue lengths and ages.

Backs the runbook's "Queue Backlog" and "High Latency" sections. Unlike redis_exporter, a
configured queue that is empty or missing reads 0 (never an absent series), pattern keys
are expanded with a SCAN bounded in keys and time, and the age of the oldest job is
reported so a stuck queue differs from a long but moving one. Read-only: see
``READ_COMMANDS`` (the exact ACL the probe needs, shown in ``docs/probes/redis.md``).
"""

from __future__ import annotations

import math
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator
from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, ConnectionPool, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from probes.base import (
    COMMON_REASONS,
    Duration,
    KindConfig,
    Metric,
    ProbeKind,
    ProbeResult,
    Reason,
    format_duration,
    gauge,
    read_secret_async,
)
from probes.redis.lookups import Lookups, hits_misses
from probes.redis.queues import (
    FESTIVALS_QUEUES,
    KeyResult,
    Limits,
    QueueConfig,
    QueueResult,
    queue_metrics,
    read_keys,
    scan_pattern,
)
from probes.redis.resp import StrictRESP2Parser
from probes.redis.server import (
    BAD_JOB,
    LOADING,
    MAXMEMORY_UNSET,
    WRONG_TYPE,
    ping_metrics,
    ping_samples,
    reason_for_redis_error,
    server_info,
)

# Every command the probe may send after AUTH. None of them writes (a test checks the
# server's own command flags); ``select`` is only sent when ``db`` is not 0.
READ_COMMANDS: tuple[str, ...] = (
    "ping", "info", "scan", "type", "llen", "lindex", "zcard", "zcount", "zrange", "xlen",
    "xrange", "xinfo|groups", "xpending", "scard", "hlen", "select",
)
ACL_SETUSER = (
    "ACL SETUSER festivals-probe on >CHANGE-ME ~festivals:* resetchannels -@all "
    + " ".join("+" + c for c in READ_COMMANDS)
)


class RedisConfig(KindConfig):
    """Keys of a ``kind: redis`` probe entry."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    url: str | None = None
    address: str | None = None
    username: str | None = Field(default=None, min_length=1)
    password: SecretStr | None = None
    password_file: Path | None = None
    db: int | None = Field(default=None, ge=0, le=10_000)
    ca_file: Path | None = None
    queues: tuple[QueueConfig, ...] = FESTIVALS_QUEUES
    max_keys: int = Field(default=1000, ge=1, le=100_000)
    max_scan_seconds: Duration = 1.0
    scan_count: int = Field(default=1000, ge=1, le=100_000)
    max_job_bytes: int = Field(default=1_048_576, ge=16)
    ping_samples: int = Field(default=5, ge=1, le=100)
    require_maxmemory: bool = False

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise ValueError("not a valid redis:// or rediss:// URL") from None
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("scheme must be redis:// or rediss://")
        if not parts.hostname:
            raise ValueError("URL has no host")
        if "@" in parts.netloc:
            raise ValueError("put credentials in username and password/password_file, "
                             "not in the URL")
        if parts.query or parts.fragment:
            raise ValueError("URL query parameters are not supported; use the probe's keys")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError("URL path must be a database number, e.g. redis://host:6379/0")
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parts = urlsplit("redis://" + value)
            port = parts.port
        except ValueError:
            raise ValueError("must be host:port") from None
        if not parts.hostname or port is None or parts.path or "@" in parts.netloc:
            raise ValueError("must be host:port")
        return value

    @model_validator(mode="after")
    def _endpoint(self) -> RedisConfig:
        if self.url is not None and self.address is not None:
            raise ValueError("set either url or address, not both")
        path = urlsplit(self.url).path.strip("/") if self.url else ""
        if path and self.db is not None and int(path) != self.db:
            raise ValueError("db differs from the database number in url")
        if self.ca_file is not None and not self.tls:
            raise ValueError("ca_file needs a rediss:// url")
        labels = [q.label for q in self.queues]
        if len(set(labels)) != len(labels):
            raise ValueError("queue names must be unique (set name: on duplicates)")
        return self

    @property
    def _split(self) -> Any:
        if self.url is not None:
            return urlsplit(self.url)
        return urlsplit("redis://" + (self.address or "127.0.0.1:6379"))

    @property
    def host(self) -> str:
        return str(self._split.hostname)

    @property
    def port(self) -> int:
        return int(self._split.port or 6379)

    @property
    def tls(self) -> bool:
        return bool(self._split.scheme == "rediss")

    @property
    def database(self) -> int:
        if self.db is not None:
            return self.db
        path = str(self._split.path).strip("/")
        return int(path) if path else 0


def target(config: RedisConfig) -> str:
    host = f"[{config.host}]" if ":" in config.host else config.host
    user = f"{config.username}@" if config.username else ""
    scheme = "rediss" if config.tls else "redis"
    return f"{scheme}://{user}{host}:{config.port}/{config.database}"


class RedisState:
    """One redis.asyncio client (pool of at most 2 connections) kept between runs."""

    def __init__(self, config: RedisConfig) -> None:
        self.client: Redis | None = None
        self._password: str | None = None
        self.type_cache: dict[bytes, str] = {}
        self.lookups = Lookups()
        # the held connection answered a whole run: losing it later is not a reason
        self.proven = False

    async def client_for(self, config: RedisConfig, password: str | None) -> Redis:
        """The held client; rebuilt when the password (e.g. a rotated file) changed."""
        if self.client is not None and password == self._password:
            return self.client
        await self.aclose()
        kwargs: dict[str, Any] = {}
        connection_class: type[Connection] = Connection
        if config.tls:
            # Loading CA files is blocking file I/O: build the context in a thread.
            kwargs["tls_context"] = await anyio.to_thread.run_sync(_tls_context, config.ca_file)
            connection_class = _TLSConnection
        pool = ConnectionPool(
            connection_class=connection_class,
            max_connections=2,
            host=config.host,
            port=config.port,
            db=config.database,
            username=config.username,
            password=password,
            socket_timeout=config.client_timeout,
            socket_connect_timeout=config.client_timeout,
            retry=Retry(NoBackoff(), 0),
            protocol=2,
            parser_class=StrictRESP2Parser,
            driver_info=None,  # no CLIENT SETINFO: the ACL needs nothing beyond READ_COMMANDS
            **kwargs,
        )
        self.client = Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
        self._password = password
        return self.client

    async def reset(self) -> None:
        """Drop every connection (after an error or cancellation); the next run reconnects."""
        self.proven = False
        self.lookups.last = None  # the cut-off run's own lookups are not the others'
        if self.client is not None:
            await self.client.connection_pool.disconnect()

    async def aclose(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with anyio.move_on_after(2.0, shield=True):
                await client.aclose()
                await client.connection_pool.disconnect()


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verifying context: ``ca_file`` only, or the system CAs; host names are checked."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)


class _TLSConnection(SSLConnection):
    """An SSLConnection that uses a context built off the event loop."""

    def __init__(self, *, tls_context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ssl_context.context = tls_context


def new_state(config: RedisConfig) -> RedisState:
    return RedisState(config)


def _up(value: float) -> Metric:
    return gauge("redis_up", "1 when the server answered PING, INFO and the queue reads.", value)


async def run(config: RedisConfig, state: RedisState) -> ProbeResult:
    detail = [f"connect {target(config)} (timeout {format_duration(config.client_timeout)})"]
    try:
        password = await read_secret_async(config.password, config.password_file, "password")
    except ValueError as exc:
        return ProbeResult.fail(Reason.CONFIG, [_up(0)], [*detail, str(exc)])
    if config.ca_file is not None and not config.ca_file.is_file():
        return ProbeResult.fail(
            Reason.CONFIG, [_up(0)], [*detail, f"ca_file {config.ca_file} is not a readable file"]
        )
    done = False
    try:
        client = await state.client_for(config, password)
        lost: rexc.ConnectionError | None = None
        try:
            result = await _measure(config, state, client, detail)
        except rexc.ConnectionError as exc:
            if not state.proven or reason_for_redis_error(exc) != Reason.UNREACHABLE:
                raise
            lost = exc
        if lost is not None:  # retried outside the handler: the new error's own causes
            # The server closed the held connection since the last run (stopped,
            # restarted, CLIENT KILL, its timeout): a new connection says what the server's
            # state is now, so one cause reads as one reason from the first failed run.
            detail.append(f"held connection lost ({type(lost).__name__}): reconnecting")
            await state.reset()
            result = await _measure(config, state, client, detail)
        done = True
        state.proven = True
        return result
    except Exception as exc:  # mapped to a bounded reason; the message goes to detail only
        reason = reason_for_redis_error(exc)
        detail.append(f"failed: {type(exc).__name__}: {str(exc)[:200]}")
        return ProbeResult.fail(reason, [_up(0)], detail)
    finally:
        if not done:
            with anyio.move_on_after(1.0, shield=True):
                await state.reset()


async def _measure(
    config: RedisConfig, state: RedisState, client: Redis, detail: list[str]
) -> ProbeResult:
    samples = await ping_samples(client, config.ping_samples)
    detail.append(
        f"PING x{len(samples)}: median {sorted(samples)[len(samples) // 2] * 1000:.2f}ms "
        f"max {max(samples) * 1000:.2f}ms"
    )
    raw_info = await client.info()
    before = hits_misses(raw_info)
    srv = server_info(raw_info)
    detail.extend(srv.detail)
    limits = Limits(config.max_keys, config.max_scan_seconds, config.scan_count,
                    config.max_job_bytes)
    queues = [QueueResult(q) for q in config.queues]
    # One SCAN budget per run for all pattern entries, and at most half the client
    # timeout, so scanning never runs into the run's deadline.
    scan_deadline = time.monotonic() + min(config.max_scan_seconds, config.client_timeout / 2)
    todo: list[tuple[QueueConfig, bytes]] = []
    owner: list[int] = []
    strict: set[int] = set()
    for n, qr in enumerate(queues):
        q = qr.queue
        if q.key is not None:
            keys = [q.key.encode()]
            strict.add(len(todo))
        else:
            keys = await scan_pattern(client, q, limits, qr, scan_deadline)
            detail.append(
                f"SCAN {q.pattern!r}: {len(keys)} keys in {qr.scanned_calls} calls"
                + (" (cap hit: max_keys or max_scan_seconds)" if qr.scan_cap_hit else "")
            )
        todo.extend((q, k) for k in keys)
        owner.extend([n] * len(keys))
    cache = dict(state.type_cache)
    results = await read_keys(client, todo, cache, limits, strict=strict)
    state.type_cache = {k: cache[k] for _, k in todo if k in cache}
    for n, res in zip(owner, results, strict=True):
        queues[n].keys.append(res)
    after = hits_misses(await client.info(section="stats"))
    other_hits, other_misses, ratio = state.lookups.account(before, after)
    if before is not None and after is not None:
        detail.append(
            f"keyspace lookups during the probe's reads: {after[0] - before[0]:.0f} hits, "
            f"{after[1] - before[1]:.0f} misses (excluded); other clients since the last "
            f"run: {other_hits:.0f} hits, {other_misses:.0f} misses")
    reason = ""
    rows: list[tuple[str, ...]] = [("queue", "key", "type", "length", "oldest job age", "note")]
    for qr in queues:
        for r in qr.keys:
            if r.problem == "skip":
                qr.skipped += 1
                continue
            if r.problem and not reason:
                reason = r.problem
            if len(rows) <= 50:
                rows.append(_row(qr.queue, r))
        if qr.skipped:
            detail.append(f"{qr.queue.label}: ignored {qr.skipped} keys of a non-queue type")
    problems = [f"{q.queue.label} {_key(r)}: {r.problem}: {r.note}" for q in queues
                for r in q.keys if r.problem and r.problem != "skip"]
    detail.extend(problems[:20])
    if not reason and config.require_maxmemory and not srv.maxmemory_known:
        reason = MAXMEMORY_UNSET
        detail.append("require_maxmemory: maxmemory is 0 or not reported")
    metrics = (_up(1), *ping_metrics(samples), *srv.metrics,
               *state.lookups.metrics(after, ratio), *queue_metrics(config.database, queues))
    tables = [("queues", tuple(rows))]
    if reason:
        return ProbeResult.fail(reason, metrics, detail, tables)
    return ProbeResult.ok(metrics, detail, tables)


def _key(r: KeyResult) -> str:
    return r.key.decode("utf-8", "replace")


def _row(q: QueueConfig, r: KeyResult) -> tuple[str, ...]:
    age = "-" if r.age is None else ("?" if math.isnan(r.age) else f"{r.age:.1f}s")
    return (q.label, _key(r), r.type, f"{r.count:g}", age, r.note)


KIND: ProbeKind[RedisConfig, RedisState] = ProbeKind(
    name="redis",
    config_model=RedisConfig,
    run=run,
    new_state=new_state,
    target=target,
    reasons=frozenset(
        COMMON_REASONS
        | {
            Reason.UNREACHABLE, Reason.TLS, Reason.AUTH, Reason.FORBIDDEN,
            Reason.TOO_MANY_CLIENTS, Reason.TOO_LARGE, Reason.CONFIG,
            WRONG_TYPE, BAD_JOB, MAXMEMORY_UNSET, LOADING,
        }
    ),
    failure_metrics=(_up(0),),
    sample_labels=frozenset({
        "db", "group", "key", "queue", "redis_mode", "redis_version", "role", "stream"
    }),
)
