"""Redis probe, queue side: queue config entries, bounded SCAN, pipelined lengths and ages.

Private helper of :mod:`probes.redis`. Every command here is read-only: TYPE, LLEN, LINDEX,
ZCARD, ZCOUNT, ZRANGE, XLEN, XRANGE, XINFO GROUPS, XPENDING, SCARD, HLEN, SCAN.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from redis import exceptions as rexc
from redis.asyncio import Redis

from probes.base import Metric, Reason, gauges, parse_duration
from probes.redis.server import BAD_JOB, WRONG_TYPE

QueueType = Literal["auto", "list", "zset", "stream", "set", "hash"]
KeyType = Literal["list", "zset", "stream", "set", "hash"]
LEN_COMMAND: dict[str, str] = {
    "list": "LLEN", "zset": "ZCARD", "stream": "XLEN", "set": "SCARD", "hash": "HLEN",
}
_SCORE_RE = re.compile(r"^\s*now\s*(?:([+-])\s*(.+))?$")


def _check_score(value: str) -> str:
    text = value.strip().lower()
    if text in ("-inf", "+inf", "inf"):
        return text
    if m := _SCORE_RE.match(text):
        if m.group(2) is not None:
            parse_duration(m.group(2).strip())
        return text
    try:
        float(text)
    except ValueError:
        raise ValueError("must be a number, -inf, +inf, now, or now-<duration>") from None
    return text


class QueueConfig(BaseModel):
    """One entry of ``queues``: a key or a bounded pattern."""

    # ``max_score: 1700000000`` and ``key: 2024`` are typed as numbers; YAML reads them so
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    key: str | None = None
    pattern: str | None = None
    name: str | None = Field(default=None, min_length=1)
    type: QueueType = "auto"
    min_score: str | None = None
    max_score: str | None = None
    score_is_timestamp: bool = False
    score_unit: Literal["s", "ms"] = "s"
    group: str | None = Field(default=None, min_length=1)
    enqueued_at_field: str | None = Field(default=None, min_length=1)
    oldest_at: Literal["head", "tail"] = "tail"

    @field_validator("min_score", "max_score")
    @classmethod
    def _score(cls, value: str | None) -> str | None:
        return None if value is None else _check_score(value)

    @model_validator(mode="after")
    def _shape(self) -> QueueConfig:
        if (self.key is None) == (self.pattern is None):
            raise ValueError("set exactly one of key or pattern")
        if (self.key or self.pattern) == "":
            raise ValueError("key/pattern must not be empty")
        zset_only = self.min_score is not None or self.max_score is not None
        if (zset_only or self.score_is_timestamp) and self.type not in ("auto", "zset"):
            raise ValueError("min_score/max_score/score_is_timestamp apply to type zset only")
        if self.group is not None and self.type not in ("auto", "stream"):
            raise ValueError("group applies to type stream only")
        if self.enqueued_at_field is not None and self.type not in ("auto", "list"):
            raise ValueError("enqueued_at_field applies to type list only")
        return self

    @property
    def label(self) -> str:
        return self.name or self.key or self.pattern or ""

    @property
    def has_range(self) -> bool:
        return self.min_score is not None or self.max_score is not None

    @property
    def has_age(self) -> bool:
        return (
            self.enqueued_at_field is not None
            or self.score_is_timestamp
            or self.type == "stream"
            or self.group is not None
        )


FESTIVALS_QUEUES: tuple[QueueConfig, ...] = tuple(
    QueueConfig(key=f"festivals:queue:{q}", type="list")
    for q in ("critical", "default", "low", "failed")
)


def resolve_score(spec: str | None, default: str, unit: str, now: float) -> str:
    """A ZCOUNT/ZRANGE bound: ``now``/``now-5m`` become numbers in the score's unit."""
    text = spec if spec is not None else default
    if m := _SCORE_RE.match(text):
        offset = parse_duration(m.group(2).strip()) if m.group(2) else 0.0
        value = now + (offset if m.group(1) == "+" else -offset)
        return repr(value * (1000.0 if unit == "ms" else 1.0))
    return text


def parse_enqueued_at(value: Any) -> float | None:
    """Unix seconds from a job's enqueue field: seconds or milliseconds, or ISO 8601."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(value.strip())
            except ValueError:
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.timestamp()
    if isinstance(value, int | float):
        try:
            seconds = float(value)  # a JSON integer may be too large for a float
        except OverflowError:
            return None
        if math.isfinite(seconds):
            return seconds / 1000.0 if seconds > 1e11 else seconds
    return None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _stream_ms(entry_id: Any) -> float:
    return float(_text(entry_id).split("-", 1)[0]) / 1000.0


@dataclass(slots=True)
class KeyResult:
    key: bytes
    type: str = "none"  # TYPE reply: none, list, zset, stream, set, hash, string...
    size: float = 0.0
    count: float = 0.0  # size, or the number of members in the score range
    age: float | None = None  # oldest job age in seconds (None: not measured)
    pending: float = math.nan
    lag: float = math.nan
    problem: str = ""  # a reason when this key could not be read as configured
    note: str = ""


@dataclass(slots=True)
class QueueResult:
    queue: QueueConfig
    keys: list[KeyResult] = field(default_factory=list)
    scan_cap_hit: bool = False
    scanned_calls: int = 0
    skipped: int = 0  # pattern keys of a non-queue type


@dataclass(frozen=True, slots=True)
class Limits:
    max_keys: int
    max_scan_seconds: float
    scan_count: int
    max_job_bytes: int


async def scan_pattern(
    client: Redis, q: QueueConfig, limits: Limits, out: QueueResult, deadline: float
) -> list[bytes]:
    """SCAN MATCH ``q.pattern`` until done, ``max_keys`` keys found or ``deadline`` (the
    run's scan budget, shared by every pattern entry; one SCAN call is always made).

    ``out.scan_cap_hit`` is set whenever matching keys may have been left out.
    """
    assert q.pattern is not None
    found: dict[bytes, None] = {}
    cursor: int = 0
    args: list[Any] = ["MATCH", q.pattern, "COUNT", limits.scan_count]
    if q.type != "auto":
        args += ["TYPE", q.type]
    while True:
        reply = await client.execute_command("SCAN", cursor, *args)  # type: ignore[no-untyped-call]
        out.scanned_calls += 1
        cursor = int(reply[0])
        for k in reply[1]:
            key = k if isinstance(k, bytes) else str(k).encode()
            if key in found:
                continue
            if len(found) >= limits.max_keys:
                out.scan_cap_hit = True  # a matching key is left out
                break
            found[key] = None
        if out.scan_cap_hit or cursor == 0:
            break
        if len(found) >= limits.max_keys or time.monotonic() >= deadline:
            out.scan_cap_hit = True  # the keyspace was not walked to its end
            break
    return list(found)


def _commands(q: QueueConfig, key: bytes, ktype: str, now: float) -> list[tuple[Any, ...]]:
    cmds: list[tuple[Any, ...]] = [("TYPE", key), (LEN_COMMAND[ktype], key)]
    if ktype == "list" and q.enqueued_at_field:
        cmds.append(("LINDEX", key, 0 if q.oldest_at == "head" else -1))
    elif ktype == "zset":
        lo = resolve_score(q.min_score, "-inf", q.score_unit, now)
        hi = resolve_score(q.max_score, "+inf", q.score_unit, now)
        if q.has_range:
            cmds.append(("ZCOUNT", key, lo, hi))
        if q.score_is_timestamp:
            cmds.append(("ZRANGE", key, lo, hi, "BYSCORE", "LIMIT", 0, 1, "WITHSCORES"))
    elif ktype == "stream":
        if q.group:
            cmds.append(("XINFO", "GROUPS", key))
            cmds.append(("XPENDING", key, q.group))
        elif q.has_age:
            cmds.append(("XRANGE", key, "-", "+", "COUNT", 1))
    return cmds


# Keys per pipelined round trip: every configured key in one round trip; only a pattern
# matching more keys than this takes several, so that one event-loop step (redis-py parses
# a pipeline's replies in one) stays short.
BATCH_KEYS = 1000


async def read_keys(
    client: Redis,
    todo: Sequence[tuple[QueueConfig, bytes]],
    type_cache: dict[bytes, str],
    limits: Limits,
    *,
    strict: set[int],
) -> list[KeyResult]:
    """Lengths (and ages) of ``todo`` keys: one pipelined round trip per ``BATCH_KEYS`` keys,
    plus one more for keys whose type was guessed wrong and for stream groups whose oldest
    job is undelivered. ``strict`` holds indexes of explicitly configured keys (a bad type
    fails them)."""
    now = time.time()
    out: list[KeyResult] = []
    for start in range(0, len(todo), BATCH_KEYS):
        batch = todo[start : start + BATCH_KEYS]
        local = {i - start for i in strict if start <= i < start + BATCH_KEYS}
        out += await _read_batch(client, batch, type_cache, limits, local, now)
    return out


async def _read_batch(
    client: Redis,
    todo: Sequence[tuple[QueueConfig, bytes]],
    type_cache: dict[bytes, str],
    limits: Limits,
    strict: set[int],
    now: float,
) -> list[KeyResult]:
    results = [KeyResult(key) for _, key in todo]
    guess = [q.type if q.type != "auto" else type_cache.get(k, "list") for q, k in todo]
    pending_idx = list(range(len(todo)))
    for _attempt in range(2):
        batches: list[tuple[int, str, int]] = []
        async with client.pipeline(transaction=False) as pipe:
            for i in pending_idx:
                q, key = todo[i]
                cmds = _commands(q, key, guess[i], now)
                batches.append((i, guess[i], len(cmds)))
                for cmd in cmds:
                    pipe.execute_command(*cmd)
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, rexc.NoPermissionError):
                raise reply
        retry: list[int] = []
        pos = 0
        for i, assumed, n in batches:
            part = replies[pos : pos + n]
            pos += n
            if isinstance(part[0], Exception):
                raise part[0]
            actual = _text(part[0])
            res = results[i]
            res.type = actual
            q = todo[i][0]
            if actual == "none":
                _missing(res, q)
                continue
            if actual in LEN_COMMAND:
                type_cache[todo[i][1]] = actual
            if actual != assumed:
                if q.type == "auto" and actual in LEN_COMMAND and _attempt == 0:
                    guess[i] = actual
                    retry.append(i)
                elif i in strict:
                    res.problem = WRONG_TYPE
                    res.size = res.count = math.nan
                    res.note = f"expected {q.type if q.type != 'auto' else assumed}, is {actual}"
                else:
                    res.problem = "skip"
                continue
            _fill(res, q, actual, part[1:], now, limits)
        pending_idx = retry
        if not retry:
            break
    await _undelivered_ages(client, todo, results, now)
    return results


def _missing(res: KeyResult, q: QueueConfig) -> None:
    res.size = res.count = 0.0
    res.age = 0.0 if q.has_age else None
    if q.group:
        res.pending, res.lag = 0.0, 0.0
    res.note = "missing (empty)"


def _fill(
    res: KeyResult, q: QueueConfig, ktype: str, rest: Sequence[Any], now: float, limits: Limits
) -> None:
    for reply in rest:
        if isinstance(reply, Exception) and not _is_nogroup(reply):
            raise reply
    res.size = res.count = float(rest[0])
    if ktype == "list" and q.enqueued_at_field:
        _list_age(res, q, rest[1], now, limits)
    elif ktype == "zset":
        idx = 1
        if q.has_range:
            res.count = float(rest[idx])
            idx += 1
        if q.score_is_timestamp:
            pair = rest[idx]
            if not pair:
                res.age = 0.0
            else:
                score = float(pair[1]) / (1000.0 if q.score_unit == "ms" else 1.0)
                res.age = max(0.0, now - score)
    elif ktype == "stream":
        if q.group:
            _stream_group(res, q, rest[1], rest[2], now)
        elif q.has_age:
            entries = rest[1]
            res.age = max(0.0, now - _stream_ms(entries[0][0])) if entries else 0.0
    elif q.has_age:
        res.age = None


def _is_nogroup(exc: Exception) -> bool:
    return isinstance(exc, rexc.ResponseError) and "NOGROUP" in str(exc)


def _list_age(res: KeyResult, q: QueueConfig, raw: Any, now: float, limits: Limits) -> None:
    if raw is None:
        res.age = 0.0
        return
    data = raw if isinstance(raw, bytes) else str(raw).encode()
    if len(data) > limits.max_job_bytes:
        res.problem, res.age = Reason.TOO_LARGE, math.nan
        res.note = f"oldest job is {len(data)} bytes, above max_job_bytes={limits.max_job_bytes}"
        return
    try:
        job: Any = json.loads(data)
    except ValueError:
        res.problem, res.age, res.note = BAD_JOB, math.nan, "oldest job is not JSON"
        return
    assert q.enqueued_at_field is not None
    value: Any = job
    for part in q.enqueued_at_field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    stamp = parse_enqueued_at(value)
    if stamp is None:
        res.problem, res.age = BAD_JOB, math.nan
        res.note = f"oldest job has no usable {q.enqueued_at_field!r} timestamp"
        return
    res.age = max(0.0, now - stamp)


def _stream_group(res: KeyResult, q: QueueConfig, groups: Any, summary: Any, now: float) -> None:
    found: dict[str, Any] | None = None
    if isinstance(groups, list):
        for g in groups:
            pairs = zip(g[::2], g[1::2], strict=False)
            flat = list(g.items()) if isinstance(g, dict) else list(pairs)
            d = {_text(k): v for k, v in flat}
            if _text(d.get("name")) == q.group:
                found = d
    if found is None:
        res.pending, res.lag = 0.0, res.size
        res.note = f"consumer group {q.group!r} does not exist: every entry counts as lag"
        res.age = None  # filled by _undelivered_ages from the first entry
        res.type = "stream:nogroup"
        return
    res.pending = float(found.get("pending") or 0)
    lag = found.get("lag")
    res.lag = float(lag) if lag is not None else math.nan
    res.count = res.lag + res.pending if lag is not None else res.size
    if isinstance(summary, dict):  # redis-py's XPENDING callback
        summary = [summary.get("pending"), summary.get("min")]
    if isinstance(summary, list | tuple) and summary and int(summary[0] or 0) > 0:
        res.age = max(0.0, now - _stream_ms(summary[1]))
    elif lag is not None and float(lag) == 0:
        res.age = 0.0
    else:
        res.age = None
        res.note = "last-delivered-id=" + _text(found.get("last-delivered-id"))


async def _undelivered_ages(
    client: Redis, todo: Sequence[tuple[QueueConfig, bytes]], results: list[KeyResult], now: float
) -> None:
    """Second round trip, streams with a group only: age of the first undelivered entry."""
    want: list[tuple[int, str]] = []
    for i, res in enumerate(results):
        if res.age is None and todo[i][0].group and not res.problem and res.type.startswith(
            "stream"
        ):
            if res.type == "stream:nogroup":
                want.append((i, "-"))
            elif res.note.startswith("last-delivered-id="):
                want.append((i, "(" + res.note.removeprefix("last-delivered-id=")))
    if not want:
        return
    async with client.pipeline(transaction=False) as pipe:
        for i, start in want:
            pipe.execute_command("XRANGE", todo[i][1], start, "+", "COUNT", 1)
        replies = await pipe.execute(raise_on_error=False)
    for (i, _), reply in zip(want, replies, strict=True):
        if isinstance(reply, Exception):
            raise reply
        results[i].age = max(0.0, now - _stream_ms(reply[0][0])) if reply else 0.0
        if results[i].type == "stream:nogroup":
            results[i].type = "stream"
        else:
            results[i].note = ""


def queue_metrics(db: int, queues: Sequence[QueueResult]) -> tuple[Metric, ...]:
    """Metric families for every configured queue; present even when a queue is empty."""
    length, age, nkeys, cap = [], [], [], []
    key_size, pending, lag = [], [], []
    seen_keys: set[bytes] = set()
    seen_groups: set[tuple[bytes, str]] = set()
    for qr in queues:
        q = qr.queue
        label = {"queue": q.label}
        good = [r for r in qr.keys if r.problem != "skip"]
        bad = any(r.problem == WRONG_TYPE for r in good)
        length.append((label, math.nan if bad else sum(r.count for r in good)))
        if q.has_age:
            ages = [r.age for r in good if r.age is not None]
            age.append((label, max(ages) if ages else 0.0))
        if q.pattern is not None:
            nkeys.append((label, float(sum(1 for r in good if r.type != "none"))))
            cap.append((label, 1.0 if qr.scan_cap_hit else 0.0))
        for r in good:
            name = _text(r.key)
            if r.key not in seen_keys:
                seen_keys.add(r.key)
                key_size.append(({"db": f"db{db}", "key": name}, r.size))
            if q.group and (r.key, q.group) not in seen_groups:
                seen_groups.add((r.key, q.group))  # one stream may sit in two entries
                glabels = {"db": f"db{db}", "stream": name, "group": q.group}
                pending.append((glabels, r.pending))
                lag.append((glabels, r.lag))
    out = [
        gauges("redis_queue_length",
               "Jobs waiting in a configured queue (score range applied; 0 when the key is "
               "missing; summed over keys for a pattern).", length),
        gauges("redis_key_size",
               "Length of a key by type: LLEN, ZCARD, XLEN, SCARD or HLEN (0 when missing).",
               key_size),
    ]
    if age:
        out.append(gauges("redis_queue_oldest_job_age_seconds",
                          "Age of the oldest waiting job (0 when the queue is empty).", age))
    if nkeys:
        out.append(gauges("redis_queue_keys", "Queue keys a pattern matched this run.", nkeys))
        out.append(gauges("redis_queue_scan_cap_hit",
                          "1 when SCAN for a pattern stopped at max_keys or max_scan_seconds.",
                          cap))
    if pending:
        out.append(gauges("redis_stream_group_messages_pending",
                          "Entries delivered to the consumer group but not acknowledged.",
                          pending))
        out.append(gauges("redis_stream_group_lag",
                          "Entries not yet delivered to the consumer group.", lag))
    return tuple(out)
