"""The ``statuspage`` probe: Atlassian Statuspage v2 pages and Stripe's ``/current``.

Polls politely (conditional requests, a user agent naming the exporter, ``Retry-After``
respected) and keeps the last good answer in state, so one failed fetch does not read as an
outage of the vendor: the status metrics keep their last known values while
``statuspage_up`` drops to 0 and ``statuspage_answer_age_seconds`` grows.

Every status text maps to one severity scale (see :data:`SEVERITY`) so that alert rules
compare numbers, and an ``_info`` series carries the text for alert messages.
"""

from __future__ import annotations

import email.utils
import importlib.metadata
import json
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import anyio.to_thread
import certifi
import httpx
from pydantic import Field, field_validator

from probes.base import (
    COMMON_REASONS,
    Duration,
    KindConfig,
    Metric,
    ProbeKind,
    ProbeResult,
    Reason,
    Sample,
    check_regexps,
    gauge,
    info,
    parse_timestamp,
    reason_for_exception,
)
from probes.common import http_wire

MALFORMED_JSON = "malformed_json"
HTML_PAGE = "html_page"
UNEXPECTED_FORMAT = "unexpected_format"

SEVERITY: dict[str, int] = {
    # overall indicator (Statuspage v2) and Stripe's up/degraded/down
    "none": 0,
    "up": 0,
    "operational": 0,
    "maintenance": 1,
    "under_maintenance": 1,
    "minor": 2,
    "degraded": 2,
    "degraded_performance": 2,
    "major": 3,
    "partial_outage": 3,
    "critical": 4,
    "down": 4,
    "major_outage": 4,
}
"""Status text -> severity: 0 operational, 1 maintenance, 2 degraded, 3 partial outage,
4 outage. Unknown text is -1."""

IMPACTS = ("none", "minor", "major", "critical", "maintenance")
MAINTENANCE_STATUSES = ("scheduled", "in_progress", "verifying")
_MAX_TEXT = 100
_DEFAULT_RETRY_AFTER = 60.0
_MAX_RETRY_AFTER = 3600.0


def _user_agent() -> str:
    try:
        version = importlib.metadata.version("festivals-exporter")
    except importlib.metadata.PackageNotFoundError:
        version = "dev"
    return f"festivals-exporter/{version}"


USER_AGENT = _user_agent()


class StatuspageConfig(KindConfig):
    url: str
    format: Literal["auto", "statuspage_v2", "stripe"] = "auto"
    components: tuple[str, ...] = ()
    proxy_url: str | None = None
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    default_retry_after: Duration = _DEFAULT_RETRY_AFTER

    @field_validator("url", "proxy_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("components")
    @classmethod
    def _regexes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        check_regexps(value)
        return value

    def candidates(self) -> tuple[tuple[str, str], ...]:
        """``(url, expected format or "auto")`` to try in order (the next one after a 404)."""
        url = self.url
        if url.endswith(".json"):
            return ((url, self.format),)
        if url.endswith("/current"):
            return ((url, self.format),)
        v2 = (
            (f"{url}/api/v2/summary.json", "statuspage_v2"),
            (f"{url}/api/v2/status.json", "statuspage_v2"),
        )
        stripe = ((f"{url}/current", "stripe"),)
        if self.format == "statuspage_v2":
            return v2
        if self.format == "stripe":
            return stripe
        return v2 + stripe


@dataclass(frozen=True)
class Snapshot:
    """One parsed status document."""

    format: str  # statuspage_v2 | stripe
    document: str  # summary | status | current
    indicator: str
    description: str
    components: dict[str, str]  # name -> status text (filtered)
    incidents: dict[str, int] | None  # impact -> unresolved count (summary only)
    maintenances: dict[str, int] | None  # status -> count (summary only)
    updated: float | None


@dataclass
class StatuspageState:
    """The HTTP client, validators for conditional requests and the last good answer."""

    client: httpx.AsyncClient | None = None
    url: str | None = None  # the document URL that answered last
    etag: str | None = None
    last_modified: str | None = None
    snapshot: Snapshot | None = None
    confirmed_at: float = 0.0  # unix time the snapshot was last fetched or confirmed (304)
    retry_until: float = 0.0  # unix time before which we must not poll (429 Retry-After)
    last_status: int = 0  # HTTP status of the last answer, 0 when none

    async def aclose(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.aclose()


# --- Parsing ------------------------------------------------------------------------------


class _BadDocument(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _text(value: Any) -> str:
    return str(value)[:_MAX_TEXT] if value is not None else ""


def _keep(name: str, patterns: tuple[re.Pattern[str], ...]) -> bool:
    return not patterns or any(p.fullmatch(name) for p in patterns)


def _worst(current: str | None, new: str) -> str:
    if current is None:
        return new
    return new if SEVERITY.get(new, -1) > SEVERITY.get(current, -1) else current


def parse_document(
    body: bytes, expected: str, patterns: tuple[re.Pattern[str], ...]
) -> Snapshot:
    """Parse a status document; ``expected`` is ``auto`` or the format it must be."""
    stripped = body.lstrip()
    if stripped[:1] == b"<":
        raise _BadDocument(HTML_PAGE, "the answer is an HTML page, not JSON")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _BadDocument(MALFORMED_JSON, f"malformed JSON: {type(exc).__name__}") from None
    if not isinstance(doc, dict):
        raise _BadDocument(UNEXPECTED_FORMAT, "the JSON document is not an object")
    if isinstance(doc.get("largestatus"), str):
        fmt = "stripe"
    elif isinstance(doc.get("status"), dict) and "indicator" in doc["status"]:
        fmt = "statuspage_v2"
    else:
        raise _BadDocument(UNEXPECTED_FORMAT, "neither a Statuspage v2 nor a Stripe document")
    if expected not in ("auto", fmt):
        raise _BadDocument(UNEXPECTED_FORMAT, f"expected {expected}, the page speaks {fmt}")
    try:
        return _parse_stripe(doc, patterns) if fmt == "stripe" else _parse_v2(doc, patterns)
    except (AttributeError, TypeError, KeyError) as exc:
        raise _BadDocument(UNEXPECTED_FORMAT, f"unexpected {fmt} shape: {exc}") from None


def _parse_v2(doc: dict[str, Any], patterns: tuple[re.Pattern[str], ...]) -> Snapshot:
    status = doc["status"]
    page = doc.get("page") or {}
    components: dict[str, str] = {}
    for comp in doc.get("components") or ():
        name = _text(comp.get("name"))
        if name and _keep(name, patterns):
            components[name] = _worst(components.get(name), _text(comp.get("status")))
    summary = "components" in doc or "incidents" in doc
    incidents: dict[str, int] | None = None
    maintenances: dict[str, int] | None = None
    if summary:
        incidents = dict.fromkeys(IMPACTS, 0)
        for incident in doc.get("incidents") or ():
            if incident.get("status") in ("resolved", "postmortem"):
                continue
            impact = _text(incident.get("impact"))
            incidents[impact if impact in incidents else "none"] += 1
        maintenances = dict.fromkeys(MAINTENANCE_STATUSES, 0)
        for maint in doc.get("scheduled_maintenances") or ():
            state = _text(maint.get("status"))
            if state in maintenances:
                maintenances[state] += 1
    return Snapshot(
        format="statuspage_v2",
        document="summary" if summary else "status",
        indicator=_text(status.get("indicator")),
        description=_text(status.get("description")),
        components=components,
        incidents=incidents,
        maintenances=maintenances,
        updated=parse_timestamp(page.get("updated_at")),
    )


def _parse_stripe(doc: dict[str, Any], patterns: tuple[re.Pattern[str], ...]) -> Snapshot:
    statuses = doc.get("statuses") or {}
    components = {
        _text(name): _text(value)
        for name, value in statuses.items()
        if _keep(_text(name), patterns)
    }
    return Snapshot(
        format="stripe",
        document="current",
        indicator=_text(doc["largestatus"]),
        description=_text(doc.get("message")),
        components=components,
        incidents=None,
        maintenances=None,
        updated=parse_timestamp(doc.get("time")),
    )


# --- Metrics ------------------------------------------------------------------------------


def _severity(text: str) -> float:
    return float(SEVERITY.get(text, -1))


def snapshot_metrics(snap: Snapshot) -> list[Metric]:
    metrics = [
        gauge(
            "statuspage_overall_status",
            "Overall page status as severity: 0 ok, 1 maintenance, 2 degraded, 3 partial "
            "outage, 4 outage, -1 unknown.",
            _severity(snap.indicator),
        ),
        info(
            "statuspage_overall",
            "Overall page status text.",
            {"indicator": snap.indicator, "description": snap.description},
        ),
        info(
            "statuspage_format",
            "Format and document the page answered with.",
            {"format": snap.format, "document": snap.document},
        ),
        Metric(
            "statuspage_component_status",
            "Component status as severity (same scale as statuspage_overall_status).",
            "gauge",
            tuple(
                Sample(_severity(s), (("component", n),)) for n, s in snap.components.items()
            ),
        ),
        Metric(
            "statuspage_component",
            "Component status text.",
            "info",
            tuple(
                Sample(1.0, (("component", n), ("status", s)))
                for n, s in snap.components.items()
            ),
        ),
    ]
    if snap.incidents is not None:
        metrics.append(
            Metric(
                "statuspage_incidents_unresolved",
                "Unresolved incidents by impact.",
                "gauge",
                tuple(Sample(float(c), (("impact", i),)) for i, c in snap.incidents.items()),
            )
        )
    if snap.maintenances is not None:
        metrics.append(
            Metric(
                "statuspage_scheduled_maintenances",
                "Scheduled maintenances by status (scheduled, in_progress, verifying).",
                "gauge",
                tuple(Sample(float(c), (("status", s),)) for s, c in snap.maintenances.items()),
            )
        )
    if snap.updated is not None:
        metrics.append(
            gauge(
                "statuspage_page_updated_timestamp_seconds",
                "When the page says it was last updated (unix seconds).",
                snap.updated,
            )
        )
    return metrics


def _up(value: int) -> Metric:
    return gauge("statuspage_up", "1 if the last poll got a usable answer (or 304).", value)


def _state_metrics(state: StatuspageState, up: bool, now: float) -> list[Metric]:
    metrics = [
        _up(1 if up else 0),
        gauge(
            "statuspage_answer_age_seconds",
            "Seconds since the reported answer was fetched or confirmed; -1 if none yet.",
            now - state.confirmed_at if state.snapshot is not None else -1,
        ),
        gauge(
            "statuspage_retry_after_seconds",
            "Seconds left before polling again after a 429 Retry-After (0 when none).",
            max(0.0, state.retry_until - now),
        ),
        gauge(
            "statuspage_http_status_code",
            "HTTP status code of the last poll (0 when no answer).",
            state.last_status,
        ),
    ]
    if state.snapshot is not None:
        metrics += snapshot_metrics(state.snapshot)
    return metrics


# --- Fetching -----------------------------------------------------------------------------


@dataclass
class _Answer:
    status: int
    body: bytes
    headers: httpx.Headers


class _FetchError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


CA_BUNDLE: str = certifi.where()


def _ssl_context(cafile: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile or CA_BUNDLE)
    # Python still accepts a certificate whose only name is its CN; browsers, Go and the
    # tls probe do not.
    ctx.hostname_checks_common_name = False
    return ctx


def _client(config: StatuspageConfig) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(
        verify=_ssl_context(), proxy=config.proxy_url, trust_env=False
    )
    # Non-HTTP bytes read as ``protocol`` when they arrive, not as a timeout later.
    http_wire.guard(transport)
    return httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        transport=transport,
        timeout=httpx.Timeout(config.client_timeout),
        follow_redirects=True,
        trust_env=False,
    )


def _network_reason(exc: BaseException) -> str:
    """The most specific OSError in the exception chain (httpx -> httpcore -> anyio)."""
    seen: set[int] = set()
    errors: list[OSError] = []
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError):
            errors.append(current)
        stack += [current.__cause__, current.__context__]
    for error in errors:
        reason = reason_for_exception(error)
        if reason != Reason.UNREACHABLE:
            return reason
    return Reason.UNREACHABLE


async def _get(
    client: httpx.AsyncClient, url: str, headers: Mapping[str, str], limit: int
) -> _Answer:
    try:
        async with client.stream("GET", url, headers=headers) as response:
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                raise _FetchError(Reason.TOO_LARGE, f"Content-Length {length} > {limit} bytes")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise _FetchError(Reason.TOO_LARGE, f"body larger than {limit} bytes")
                chunks.append(chunk)
            return _Answer(response.status_code, b"".join(chunks), response.headers)
    except httpx.TimeoutException:
        raise _FetchError(Reason.TIMEOUT, "HTTP timeout") from None
    except httpx.ConnectError as exc:
        reason = _network_reason(exc)
        raise _FetchError(reason, f"cannot connect ({reason})") from None
    except (httpx.RemoteProtocolError, httpx.LocalProtocolError, httpx.DecodingError):
        raise _FetchError(Reason.PROTOCOL, "HTTP protocol error") from None
    except httpx.TooManyRedirects:
        # A redirect loop is a RequestError, not a TransportError: without this it escaped
        # run() and read as ``internal``.
        raise _FetchError(Reason.HTTP_STATUS, "too many redirects") from None
    except httpx.UnsupportedProtocol:
        raise _FetchError(Reason.PROTOCOL, "redirected to a non-HTTP URL") from None
    except httpx.TransportError as exc:
        reason = _network_reason(exc)
        raise _FetchError(reason, f"transport error ({reason})") from None


def _retry_after(value: str | None, default: float, now: float) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if value:
        value = value.strip()
        if value.isdigit():
            return min(float(value), _MAX_RETRY_AFTER)
        try:
            when = email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return default
        return min(max(0.0, when - now), _MAX_RETRY_AFTER)
    return default


async def _poll(
    config: StatuspageConfig, state: StatuspageState, detail: list[str]
) -> Snapshot | None:
    """Fetch and parse; ``None`` means 304 (the kept answer is still current)."""
    assert state.client is not None
    patterns = tuple(re.compile(p, re.IGNORECASE) for p in config.components)
    candidates = config.candidates()
    if state.url is not None:  # the URL that answered before goes first
        candidates = tuple(c for c in candidates if c[0] == state.url) + tuple(
            c for c in candidates if c[0] != state.url
        )
    for url, expected in candidates:
        headers: dict[str, str] = {}
        if url == state.url and state.snapshot is not None:
            if state.etag:
                headers["If-None-Match"] = state.etag
            if state.last_modified:
                headers["If-Modified-Since"] = state.last_modified
        detail.append(f"GET {url}" + (" (conditional)" if headers else ""))
        answer = await _get(state.client, url, headers, config.max_body_bytes)
        state.last_status = answer.status
        detail.append(f"HTTP {answer.status}, {len(answer.body)} bytes")
        if answer.status == 404:
            continue
        if answer.status == 304 and headers:
            return None
        if answer.status == 429:
            now = time.time()
            wait = _retry_after(answer.headers.get("retry-after"), config.default_retry_after, now)
            state.retry_until = now + wait
            raise _FetchError(Reason.RATE_LIMITED, f"429: not polling for {wait:g}s")
        body_is_html = answer.body.lstrip()[:1] == b"<" or "html" in answer.headers.get(
            "content-type", ""
        )
        if body_is_html and not 200 <= answer.status < 300:
            raise _FetchError(HTML_PAGE, f"HTML error page with HTTP {answer.status}")
        if not 200 <= answer.status < 300:
            raise _FetchError(Reason.HTTP_STATUS, f"unexpected HTTP {answer.status}")
        try:
            snapshot = parse_document(answer.body, expected, patterns)
        except _BadDocument as exc:
            raise _FetchError(exc.reason, str(exc)) from None
        state.url = url
        state.etag = answer.headers.get("etag")
        state.last_modified = answer.headers.get("last-modified")
        return snapshot
    state.url = None
    raise _FetchError(Reason.NOT_FOUND, "every status document URL answered 404")


async def run(config: StatuspageConfig, state: StatuspageState) -> ProbeResult:
    now = time.time()
    detail: list[str] = []
    if now < state.retry_until:
        detail.append(f"rate limited: next poll in {state.retry_until - now:.0f}s")
        return ProbeResult.fail(Reason.RATE_LIMITED, _state_metrics(state, False, now), detail)
    reason = ""
    state.last_status = 0
    if state.client is None:
        # Building the client loads a CA bundle into an SSLContext: blocking, in a thread.
        state.client = await anyio.to_thread.run_sync(_client, config)
    try:
        with anyio.fail_after(config.client_timeout):
            snapshot = await _poll(config, state, detail)
    except TimeoutError:
        reason = Reason.TIMEOUT
        detail.append(f"no answer within {config.client_timeout:g}s")
    except _FetchError as exc:
        reason = exc.reason
        detail.append(str(exc))
    now = time.time()
    if reason:
        if state.snapshot is not None:
            detail.append(f"keeping the answer from {now - state.confirmed_at:.0f}s ago")
        return ProbeResult.fail(reason, _state_metrics(state, False, now), detail)
    if snapshot is None:
        detail.append("304 Not Modified: the kept answer is current")
    else:
        state.snapshot = snapshot
        detail.append(
            f"{snapshot.format} {snapshot.document}: {snapshot.indicator} "
            f"({snapshot.description}), {len(snapshot.components)} component(s) kept"
        )
    state.confirmed_at = now
    return ProbeResult.ok(_state_metrics(state, True, now), detail)


def new_state(config: StatuspageConfig) -> StatuspageState:
    return StatuspageState()


def target(config: StatuspageConfig) -> str:
    return f"{config.url} ({config.format})"


KIND = ProbeKind(
    name="statuspage",
    config_model=StatuspageConfig,
    run=run,
    new_state=new_state,
    target=target,
    default_interval=60.0,  # poll a vendor's page politely
    failure_metrics=(_up(0),),
    reasons=COMMON_REASONS
    | frozenset(
        {
            Reason.UNREACHABLE,
            Reason.TLS,
            Reason.HTTP_STATUS,
            Reason.NOT_FOUND,
            Reason.RATE_LIMITED,
            Reason.TOO_LARGE,
            MALFORMED_JSON,
            HTML_PAGE,
            UNEXPECTED_FORMAT,
        }
    ),
    sample_labels=frozenset({
        "component", "description", "format", "impact", "indicator", "status"
    }),
)
