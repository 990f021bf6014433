"""The probe contract: what every probe kind module provides and returns.

A probe kind is one module in ``probes/`` exposing ``KIND: ProbeKind``. The module has a
pydantic config model (kind-specific keys only; ``name``, ``kind``, ``interval``, ``timeout``
and ``labels`` are handled by the daemon) and an async ``run`` function that returns an
immutable :class:`ProbeResult`. Probes never import ``prometheus_client`` nor the web layer:
they describe metrics as plain data and the metrics layer renders them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, NamedTuple, Protocol, TypeVar

import anyio.to_thread
from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr, model_validator


class Reason(StrEnum):
    """Why a probe run failed. Used as the ``reason`` label: a small, fixed set."""

    TIMEOUT = "timeout"  # scheduler deadline or client timeout
    REFUSED = "refused"  # connection refused
    DNS = "dns"  # name did not resolve
    UNREACHABLE = "unreachable"  # network/host unreachable, connection reset
    TLS = "tls"  # handshake or verification failure
    AUTH = "auth"  # wrong credentials / permission denied
    PROTOCOL = "protocol"  # peer spoke garbage or something unexpected
    HTTP_STATUS = "http_status"  # unexpected HTTP status code
    VALIDATION = "validation"  # response arrived but a configured check failed
    TOO_MANY_CLIENTS = "too_many_clients"  # server refused a new client: at capacity
    NOT_FOUND = "not_found"  # database/key/resource that must exist does not
    FORBIDDEN = "forbidden"  # authenticated but not allowed (RBAC, pg_monitor...)
    RATE_LIMITED = "rate_limited"  # 429 / throttled
    TOO_LARGE = "too_large"  # response above the documented read cap
    CONFIG = "config"  # the probe's own configuration cannot work (e.g. unreadable file)
    INTERNAL = "internal"  # a bug in the probe: it raised something unexpected


COMMON_REASONS: frozenset[str] = frozenset(
    {Reason.TIMEOUT, Reason.REFUSED, Reason.DNS, Reason.PROTOCOL, Reason.INTERNAL}
)

MetricType = Literal["gauge", "counter", "info"]
LabelPairs = tuple[tuple[str, str], ...]


class Sample(NamedTuple):
    """One sample of a metric family. ``labels`` are the sample's own labels, in order.

    A named tuple rather than a frozen dataclass: a large kubernetes run builds tens of
    thousands per second, and a tuple is created several times faster."""

    value: float
    labels: LabelPairs = ()


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric family a probe reports.

    ``name`` is the full metric name (e.g. ``probe_http_status_code``). Counters are named
    WITHOUT the ``_total`` suffix; the metrics layer adds it. Info metrics are named without
    ``_info``; the metrics layer adds it and the value is always 1.
    Probe-level labels (``probe``, ``kind`` and static labels) are added by the metrics
    layer and must not appear here.
    """

    name: str
    help: str
    type: MetricType
    samples: tuple[Sample, ...]
    unit: str = ""


def gauge(name: str, help: str, value: float, labels: Mapping[str, str] | None = None) -> Metric:
    """A gauge with one sample."""
    return Metric(name, help, "gauge", (Sample(float(value), _pairs(labels)),))


def gauges(
    name: str, help: str, samples: Iterable[tuple[Mapping[str, str], float]]
) -> Metric:
    """A gauge family with many labelled samples."""
    return Metric(
        name, help, "gauge", tuple(Sample(float(v), _pairs(lbl)) for lbl, v in samples)
    )


def counter(name: str, help: str, value: float, labels: Mapping[str, str] | None = None) -> Metric:
    """A counter (cumulative value read from the target, e.g. Redis evicted keys)."""
    return Metric(name, help, "counter", (Sample(float(value), _pairs(labels)),))


def info(name: str, help: str, labels: Mapping[str, str]) -> Metric:
    """An info series (value 1) carrying text as labels. Keep label values bounded."""
    return Metric(name, help, "info", (Sample(1.0, _pairs(labels)),))


def merge_families(*groups: Iterable[Metric]) -> tuple[Metric, ...]:
    """Join same-named families (several addresses, sources or secrets report one family
    each) into one family, keeping first-seen order, as the exposition requires."""
    merged: dict[str, Metric] = {}
    for group in groups:
        for metric in group:
            seen = merged.get(metric.name)
            if seen is None:
                merged[metric.name] = metric
            else:
                merged[metric.name] = Metric(
                    seen.name, seen.help, seen.type, seen.samples + metric.samples, seen.unit
                )
    return tuple(merged.values())


def _pairs(labels: Mapping[str, str] | None) -> LabelPairs:
    return tuple((k, str(v)) for k, v in (labels or {}).items())


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The immutable outcome of one probe run.

    ``reason`` is empty on success, else one value of :class:`Reason` (or a kind-specific
    reason listed in ``ProbeKind.reasons``), never an exception message. ``detail`` holds
    human-readable debug lines for the probe's page ``/probes/NAME`` (what was sent, what
    came back, which check failed); secrets must never appear in it. ``tables`` are optional
    named tables for that page (e.g. PostgreSQL's longest-running queries): header row first.
    """

    success: bool
    reason: str = ""
    metrics: tuple[Metric, ...] = ()
    detail: tuple[str, ...] = ()
    tables: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = ()

    @staticmethod
    def ok(
        metrics: Iterable[Metric] = (),
        detail: Iterable[str] = (),
        tables: Iterable[tuple[str, tuple[tuple[str, ...], ...]]] = (),
    ) -> ProbeResult:
        return ProbeResult(True, "", tuple(metrics), tuple(detail), tuple(tables))

    @staticmethod
    def fail(
        reason: str,
        metrics: Iterable[Metric] = (),
        detail: Iterable[str] = (),
        tables: Iterable[tuple[str, tuple[tuple[str, ...], ...]]] = (),
    ) -> ProbeResult:
        return ProbeResult(False, str(reason), tuple(metrics), tuple(detail), tuple(tables))


class ProbeState(Protocol):
    """Per-probe memory kept between runs (a held connection, the last good answer...).

    Created once per configured probe; kept across reloads while the probe's config does
    not change; closed when the probe is removed or the daemon stops.
    """

    async def aclose(self) -> None: ...


class NoState:
    """State for probes that keep nothing between runs."""

    async def aclose(self) -> None:
        return None


ConfigT = TypeVar("ConfigT", bound="KindConfig")
StateT = TypeVar("StateT", bound=ProbeState)


@dataclass(frozen=True)
class ProbeKind(Generic[ConfigT, StateT]):
    """Everything the daemon needs to know about one kind of probe.

    ``run(config, state)`` must honour the client-side timeout it is given in
    ``config.client_timeout`` (set by the daemon from the probe's ``timeout``); the
    scheduler wraps every run in ``anyio.fail_after(timeout)`` as a hard deadline on top.
    It must not leak connections when cancelled. ``target(config)`` describes what is
    probed for humans, with secrets redacted. ``default_interval`` (seconds) replaces
    ``global.default_interval`` for probes of this kind that set no interval, for kinds
    that must poll politely (a vendor's status page). ``failure_metrics`` are reported
    when a run produced no metrics of its own (the hard deadline cut it off, or it
    raised): the kind's ``*_up 0``, so that "down" alerts fire rather than go quiet.
    ``sample_labels`` names every label the kind's own samples can carry (``namespace``,
    ``queue``...): a static label of the same name would collide with it on export, so
    the config rejects one.
    """

    name: str
    config_model: type[ConfigT]
    run: Callable[[ConfigT, StateT], Awaitable[ProbeResult]]
    new_state: Callable[[ConfigT], StateT]
    target: Callable[[ConfigT], str]
    reasons: frozenset[str] = field(default_factory=frozenset)
    default_interval: float | None = None
    failure_metrics: tuple[Metric, ...] = ()
    sample_labels: frozenset[str] = field(default_factory=frozenset)


# --- Config helpers shared by every kind --------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """``"15s"``, ``"500ms"``, ``"10m"``, ``"1h"``, ``"2d"`` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 15s, 500ms or 10m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        raise ValueError("must be a duration such as 15s, 500ms or 10m")
    if seconds < 0:
        raise ValueError("must not be negative")
    if not math.isfinite(seconds):  # .inf, .nan or 400 digits: no deadline would work
        raise ValueError("must be a finite duration")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds as a float; accepts ``15s``, ``500ms``, ``10m``, ``1h``, ``2d`` or a number."""


def format_duration(seconds: float) -> str:
    if seconds >= 1 and seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds * 1000:g}ms" if seconds < 1 else f"{seconds:g}s"


class KindConfig(BaseModel):
    """Base for every kind's config model: unknown keys are errors, values are frozen.

    ``client_timeout`` is not a config key: the daemon fills it from the probe's
    ``timeout`` (a little below it) so the client gives up before the hard deadline.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_timeout: float = 5.0

    @model_validator(mode="after")
    def _one_secret_source(self) -> KindConfig:
        """An inline secret (``password``) and its file twin (``password_file``) exclude
        each other."""
        for name in type(self).model_fields:
            inline = name.removesuffix("_file")
            if name.endswith("_file") and inline in type(self).model_fields:
                if getattr(self, inline) is not None and getattr(self, name) is not None:
                    raise ValueError(f"set either {inline} or {name}, not both")
        return self


# The value last read from each secret file, so that redaction can mask file secrets as
# it masks ${VAR} ones. Written from worker threads; a dict item assignment is atomic.
_FILE_SECRET_VALUES: dict[Path, str] = {}


def read_secret(inline: SecretStr | None, file: Path | None, what: str = "secret") -> str | None:
    """The value of an inline secret (already ``${ENV}``-expanded) or of a ``*_file`` key.

    Raises ``ValueError`` naming ``what`` (never the value) when the file is unreadable.
    This reads the file in the calling thread: from a probe's ``run``, use
    :func:`read_secret_async`.
    """
    if inline is not None:
        return inline.get_secret_value()
    if file is not None:
        try:
            value = file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"cannot read {what} file {file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{what} file {file} is not UTF-8 text") from None
        if value:
            _FILE_SECRET_VALUES[file] = value
        return value
    return None


async def read_secret_async(
    inline: SecretStr | None, file: Path | None, what: str = "secret"
) -> str | None:
    """:func:`read_secret` with the file read in a worker thread: a secret file can sit on
    a slow mount, and a probe's run must never block the event loop."""
    if file is None:
        return read_secret(inline, None, what)
    return await anyio.to_thread.run_sync(read_secret, inline, file, what)


def file_secret_values(files: Iterable[Path]) -> frozenset[str]:
    """The values last read from these secret files (for redaction)."""
    return frozenset(v for f in files if (v := _FILE_SECRET_VALUES.get(f)) is not None)


def parse_timestamp(value: Any) -> float | None:
    """An RFC 3339 time (``2026-11-27T13:20:51Z``, as Kubernetes and status pages write
    them) as unix seconds; ``None`` when absent or unparsable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def check_regexps(patterns: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the first pattern that does not compile."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


def reason_for_exception(exc: BaseException) -> Reason:
    """Map common network exceptions to a reason; unknown ones are ``internal``."""
    import socket
    import ssl

    if isinstance(exc, TimeoutError | socket.timeout):
        return Reason.TIMEOUT
    if isinstance(exc, socket.gaierror):
        return Reason.DNS
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return Reason.TLS
    if isinstance(exc, ConnectionRefusedError):
        return Reason.REFUSED
    if isinstance(exc, ConnectionError | OSError):
        return Reason.UNREACHABLE
    return Reason.INTERNAL
