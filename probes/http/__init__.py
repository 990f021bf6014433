"""The ``http`` probe kind: one HTTP(S) request (plus redirects) and checks on the answer.

The probe resolves the name itself (timed, filtered by ``ip_protocol``), then talks to one
address (or, with ``all_addresses``, to every resolved address concurrently) while keeping
the original ``Host`` header and TLS server name. Redirects are followed by the probe, so
each hop is resolved and timed the same way. Metrics keep blackbox_exporter's names.
"""

from __future__ import annotations

import codecs
import functools
import json
import re
import ssl
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import h11
import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from probes.base import (
    COMMON_REASONS,
    KindConfig,
    Metric,
    ProbeKind,
    ProbeResult,
    Reason,
    Sample,
    check_regexps,
    gauges,
    merge_families,
    read_secret,
)
from probes.common.net import (
    IpProtocol,
    ResolveError,
    SharedContextState,
    classify,
    ip_version,
    resolve,
    tls_metrics,
)
from probes.http.checks import JsonCheck
from probes.http.client import Exchange, NotHttp, Response

PHASES = ("resolve", "connect", "tls", "processing", "transfer")
_REDIRECTS = {301, 302, 303, 307, 308}
_METHOD_RE = re.compile(r"^[A-Z]+$")


class HttpConfig(KindConfig):
    """Keys of an ``http`` probe entry (see docs/probes/http.md)."""

    url: str
    method: str = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    bearer_token: SecretStr | None = None
    bearer_token_file: Path | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    valid_status_codes: list[int] = Field(default_factory=list)
    fail_if_body_matches_regexp: list[str] = Field(default_factory=list)
    fail_if_body_not_matches_regexp: list[str] = Field(default_factory=list)
    json_checks: list[JsonCheck] = Field(default_factory=list)
    follow_redirects: bool = True
    max_redirects: int = Field(default=10, ge=0, le=50)
    tls_verify: bool = True
    ca_file: Path | None = None
    ip_protocol: Literal["auto", "ip4", "ip6"] = "auto"
    ip_protocol_fallback: bool = True
    all_addresses: bool = False
    max_body_bytes: int = Field(default=1024 * 1024, ge=0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise ValueError(f"invalid URL: {exc}") from None
        if url.scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        if not url.host:
            raise ValueError("URL has no host")
        return value

    @field_validator("method")
    @classmethod
    def _check_method(cls, value: str) -> str:
        value = value.upper()
        if not _METHOD_RE.match(value):
            raise ValueError("must be an HTTP method such as GET or POST")
        return value

    @field_validator("valid_status_codes")
    @classmethod
    def _check_codes(cls, value: list[int]) -> list[int]:
        for code in value:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status code (100-599)")
        return value

    @field_validator("fail_if_body_matches_regexp", "fail_if_body_not_matches_regexp")
    @classmethod
    def _check_regexps(cls, value: list[str]) -> list[str]:
        check_regexps(value)
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() == "host":
                raise ValueError("the Host header is set from the URL")
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> HttpConfig:
        has_password = self.password is not None or self.password_file is not None
        if has_password and self.username is None:
            raise ValueError("password needs username")
        has_basic = self.username is not None
        if has_basic and (self.bearer_token is not None or self.bearer_token_file is not None):
            raise ValueError("set either basic auth (username) or bearer_token, not both")
        has_bearer = self.bearer_token is not None or self.bearer_token_file is not None
        url = httpx.URL(self.url)
        url_credentials = bool(url.username or url.password)
        # httpx turns URL credentials into basic auth that overrides any Authorization
        # header: a bearer token would be dropped without a word.
        if url_credentials and (has_basic or has_bearer):
            raise ValueError("credentials in the URL and in username/bearer_token: pick one")
        if any(k.lower() == "authorization" for k in self.headers) and (
            has_basic or has_bearer or url_credentials
        ):
            raise ValueError(
                "Authorization header and username/bearer_token/URL credentials: pick one"
            )
        return self


class HttpState(SharedContextState):
    """What an ``http`` probe keeps between runs: the shared TLS context, nothing else.

    There is no client or pool: every run opens its own connection and closes it when the
    answer is read, so it measures a fresh connect and handshake, as blackbox_exporter
    does.
    """

    __slots__ = ()


def new_state(config: HttpConfig) -> HttpState:
    return HttpState()


def redact_url(url: httpx.URL | str) -> str:
    """The URL without any userinfo password."""
    parsed = _parse(url) if isinstance(url, str) else url
    if b":" in parsed.userinfo:
        parsed = parsed.copy_with(userinfo=parsed.userinfo.split(b":", 1)[0])
    return str(parsed)


@functools.lru_cache(maxsize=16384)
def _parse(url: str) -> httpx.URL:
    # Parsing a URL costs more than the rest of a run's bookkeeping: once per probe URL.
    return httpx.URL(url)


@functools.lru_cache(maxsize=16384)
def _redacted(url: httpx.URL) -> str:
    return redact_url(url)


def target(config: HttpConfig) -> str:
    return redact_url(config.url)


# --- one attempt against one address ---------------------------------------------------


@dataclass
class _Attempt:
    address: str
    ip_version: int
    phases: dict[str, float]
    reason: str = ""
    detail: list[str] = field(default_factory=list)
    status: int = 0
    version: float = 0.0
    content_length: int = 0
    body_length: int = 0
    redirects: int = 0
    tls: bool = False
    regex_failed: bool = False
    json_failed: bool = False
    tls_metrics: list[Metric] = field(default_factory=list)


class _Fail(Exception):
    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


def _valid_status(config: HttpConfig, status: int) -> bool:
    if config.valid_status_codes:
        return status in config.valid_status_codes
    return 200 <= status <= 299


_USER_AGENT = "festivals-exporter"


def _request_headers(
    url: httpx.URL, headers: Mapping[str, str], body: bytes | None, method: str
) -> list[tuple[str, str]]:
    """Defaults as httpx sends them (``Accept``, ``Accept-Encoding``), replaced by the
    configured headers of the same name; URL userinfo becomes basic auth, as in httpx."""
    out: dict[str, tuple[str, str]] = {
        "host": ("Host", url.netloc.decode("ascii")),
        "user-agent": ("User-Agent", _USER_AGENT),
        "accept": ("Accept", "*/*"),
        "accept-encoding": ("Accept-Encoding", "gzip, deflate"),
        "connection": ("Connection", "close"),
    }
    if url.userinfo:
        basic = httpx.BasicAuth(url.username, url.password)
        out["authorization"] = ("Authorization", basic._auth_header)
    for name, value in headers.items():
        out[name.lower()] = (name, value)
    if body is not None or method in ("POST", "PUT", "PATCH"):
        out["content-length"] = ("Content-Length", str(len(body or b"")))
    return list(out.values())


async def _exchange(
    config: HttpConfig,
    ssl_context: ssl.SSLContext,
    address: str,
    auth: dict[str, str],
    att: _Attempt,
) -> None:
    url = _parse(config.url)
    method = config.method
    content: bytes | None = config.body.encode() if config.body is not None else None
    headers = dict(config.headers) | auth
    while True:
        scheme_tls = url.scheme == "https"
        port = url.port or (443 if scheme_tls else 80)
        att.detail.append(f"{method} {_redacted(url)} via {address}")
        exchange = Exchange()
        try:
            await exchange.connect(
                address, port, ssl_context if scheme_tls else None, url.host, att.phases
            )
            response = await exchange.request(
                method,
                url.raw_path,
                _request_headers(url, headers, content, method),
                content,
                att.phases,
            )
            att.status = response.status
            att.version = _version(response.http_version)
            att.tls = scheme_tls
            # The figures describe the final response's connection, as probe_http_ssl does:
            # an https -> http redirect must not keep the first hop's certificate.
            att.tls_metrics = tls_metrics(exchange.ssl_object) if scheme_tls else []
            location = response.header(b"location")
            if config.follow_redirects and response.status in _REDIRECTS and location:
                if att.redirects >= config.max_redirects:
                    raise _Fail(Reason.HTTP_STATUS, f"more than {config.max_redirects} redirects")
                try:
                    next_url = url.join(location)
                except httpx.InvalidURL:
                    raise _Fail(Reason.PROTOCOL, "redirect to an invalid URL") from None
                if next_url.scheme not in ("http", "https"):
                    raise _Fail(Reason.PROTOCOL, f"redirect to scheme {next_url.scheme}")
                att.detail.append(f"<- {response.status} redirect to {redact_url(next_url)}")
                att.redirects += 1
                if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                    method = "GET" if method != "HEAD" else "HEAD"
                    content = None
                    headers = {
                        k: v for k, v in headers.items() if k.lower() != "content-type"
                    }
                if (next_url.scheme, next_url.host, next_url.port) != (
                    url.scheme,
                    url.host,
                    url.port,
                ):
                    # Never send credentials to another origin.
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                if next_url.host != url.host:
                    hop = await resolve(
                        next_url.host, next_url.port or 443, config.ip_protocol,
                        config.ip_protocol_fallback,
                    )
                    att.phases["resolve"] += hop.seconds
                    address = hop.addresses[0]
                url = next_url
                continue
            await _read_and_check(config, method, exchange, response, att)
            return
        finally:
            exchange.close()


def _version(text: str) -> float:
    return {"HTTP/1.0": 1.0, "HTTP/1.1": 1.1, "HTTP/2": 2.0, "HTTP/3": 3.0}.get(text, 0.0)


async def _read_and_check(
    config: HttpConfig, method: str, exchange: Exchange, response: Response, att: _Attempt
) -> None:
    length_header = response.header(b"content-length")
    try:
        att.content_length = int(length_header) if length_header is not None else -1
    except ValueError:
        att.content_length = -1
    start = time.perf_counter()
    # A HEAD answer (and 1xx/204/304) has no body: its Content-Length describes what a GET
    # would return, so it must not trip the cap.
    has_body = method != "HEAD" and not (response.status < 200 or response.status in (204, 304))
    too_large = has_body and att.content_length > config.max_body_bytes
    body = bytearray()
    if not too_large:
        too_large = await _read_body(exchange, response, config.max_body_bytes, body)
    att.phases["transfer"] += time.perf_counter() - start
    att.body_length = len(body)
    att.detail.append(
        f"<- {response.status} {response.http_version}, {len(body)} bytes read"
        + (f" (cap {config.max_body_bytes})" if too_large else "")
    )
    if too_large:
        raise _Fail(Reason.TOO_LARGE, f"body larger than max_body_bytes={config.max_body_bytes}")
    text = body.decode(_charset(response.header(b"content-type")), errors="replace")
    if text:
        snippet = text[:200].replace("\r", "").replace("\n", "\\n")
        att.detail.append(f"body: {snippet}" + ("..." if len(text) > 200 else ""))
    if not _valid_status(config, response.status):
        expected = ", ".join(map(str, config.valid_status_codes)) or "2xx"
        raise _Fail(Reason.HTTP_STATUS, f"status {response.status} not in {expected}")
    for pattern in config.fail_if_body_matches_regexp:
        if re.search(pattern, text, re.MULTILINE):
            att.regex_failed = True
            raise _Fail(Reason.VALIDATION, f"body matches {pattern!r}")
    for pattern in config.fail_if_body_not_matches_regexp:
        if not re.search(pattern, text, re.MULTILINE):
            att.regex_failed = True
            raise _Fail(Reason.VALIDATION, f"body does not match {pattern!r}")
    if config.json_checks:
        try:
            document = json.loads(text)
        except ValueError:
            att.json_failed = True
            raise _Fail(Reason.VALIDATION, "body is not JSON") from None
        for check in config.json_checks:
            problem = check.evaluate(document)
            if problem is not None:
                att.json_failed = True
                raise _Fail(Reason.VALIDATION, f"json check failed: {problem}")
        att.detail.append(f"{len(config.json_checks)} json check(s) passed")


_CHARSET_RE = re.compile(r";\s*charset=[\"']?([\w.:-]+)", re.IGNORECASE)


@functools.lru_cache(maxsize=256)
def _charset(content_type: str | None) -> str:
    """The ``Content-Type`` charset when Python knows it, else UTF-8 (as httpx decodes)."""
    match = _CHARSET_RE.search(content_type or "")
    if match is None:
        return "utf-8"
    try:
        return codecs.lookup(match.group(1)).name
    except LookupError:
        return "utf-8"


def _decompressor(response: Response) -> Any:
    """A zlib decompressor for the response's ``Content-Encoding``, ``None`` for identity.

    Raises ``_Fail(protocol)`` for stacked encodings (``gzip, gzip``): each layer would
    multiply the expansion and they cannot be bounded one read at a time.
    """
    encodings = [
        value.lower()
        for value in response.header_list(b"content-encoding")
        if value.lower() in ("gzip", "x-gzip", "deflate")
    ]
    if len(encodings) > 1:
        raise _Fail(Reason.PROTOCOL, f"stacked content encodings: {', '.join(encodings)}")
    if not encodings:
        return None
    if encodings[0] == "deflate":
        return _Deflate()
    return zlib.decompressobj(zlib.MAX_WBITS | 16)


class _Deflate:
    """``deflate`` as servers send it: zlib-wrapped, or raw (as httpx accepts too)."""

    def __init__(self) -> None:
        self._inner: Any = zlib.decompressobj()
        self._started = False

    @property
    def unconsumed_tail(self) -> bytes:
        tail: bytes = self._inner.unconsumed_tail
        return tail

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._started:
            out: bytes = self._inner.decompress(data, max_length)
            return out
        self._started = True
        try:
            out = self._inner.decompress(data, max_length)
        except zlib.error:
            self._inner = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._inner.decompress(data, max_length)
        return out


async def _read_body(exchange: Exchange, response: Response, cap: int, body: bytearray) -> bool:
    """Read the (decompressed) body into ``body``, keeping at most ``cap + 1`` bytes.

    Decompression is bounded by what is still wanted (``max_length``), so a gzip bomb
    never expands beyond the cap in memory, not even within one network read.
    Returns ``True`` when the body is larger than ``cap``.
    """
    inflater = _decompressor(response)
    try:
        async for raw in exchange.body():
            data = raw
            while data:
                if inflater is None:
                    body += data[: cap + 1 - len(body)]
                    data = b""
                else:
                    body += inflater.decompress(data, cap + 1 - len(body))
                    data = inflater.unconsumed_tail
                if len(body) > cap:
                    return True
    except zlib.error:
        raise _Fail(Reason.PROTOCOL, "the body cannot be decompressed") from None
    return False


async def _attempt(
    config: HttpConfig,
    ssl_context: ssl.SSLContext,
    address: str,
    auth: dict[str, str],
    resolve_seconds: float,
    deadline: float,
) -> _Attempt:
    phases = dict.fromkeys(PHASES, 0.0)
    phases["resolve"] = resolve_seconds
    att = _Attempt(address=address, ip_version=ip_version(address), phases=phases)
    with anyio.move_on_after(max(0.0, deadline - anyio.current_time())) as scope:
        try:
            await _exchange(config, ssl_context, address, auth, att)
        except _Fail as exc:
            att.reason = exc.reason
            att.detail.append(exc.text)
        except NotHttp as exc:
            att.reason = Reason.PROTOCOL
            att.detail.append(f"the server's answer is not valid HTTP: {exc}")
        except h11.RemoteProtocolError:
            att.reason = Reason.PROTOCOL
            att.detail.append("the server's answer is not valid HTTP")
        except h11.LocalProtocolError:
            att.reason = Reason.PROTOCOL
            att.detail.append("the request cannot be sent as HTTP/1.1 (check headers)")
        except httpx.InvalidURL:
            att.reason = Reason.PROTOCOL
            att.detail.append("unsupported or invalid URL")
        except Exception as exc:  # noqa: BLE001 - mapped to a reason below
            reason, text = classify(exc)
            att.reason = reason
            att.detail.append(text)
    if scope.cancelled_caught:
        att.reason = Reason.TIMEOUT
        att.detail.append(f"no complete answer within {config.client_timeout:g}s")
    return att


# --- run ------------------------------------------------------------------------------------


async def _auth_headers(config: HttpConfig) -> dict[str, str]:
    def read() -> tuple[str | None, str | None]:
        token = read_secret(config.bearer_token, config.bearer_token_file, "bearer_token")
        password = read_secret(config.password, config.password_file, "password")
        return token, password

    if config.bearer_token_file is not None or config.password_file is not None:
        token, password = await anyio.to_thread.run_sync(read)
    else:
        token, password = read()
    if token is not None:
        return {"Authorization": f"Bearer {token}"}
    if config.username is not None:
        basic = httpx.BasicAuth(config.username, password or "")
        return {"Authorization": basic._auth_header}
    return {}


_PHASE_LABELS = tuple((("phase", p),) for p in PHASES)
_STATUS_HELP = "Response HTTP status code."
_DURATION_HELP = "Duration of HTTP request by phase, summed over all redirects."
_DNS_HELP = "Time taken to resolve the target name."


def _one_address_metrics(att: _Attempt, dns_seconds: float) -> list[Metric]:
    """``_metrics`` for the usual case (one address), built directly from constant label
    tuples: this runs once per probe run, and the results of 10,000 probes stay in memory."""
    phases = att.phases
    simple = (
        att.content_length,
        att.body_length,
        att.version,
        att.redirects,
        1 if att.tls else 0,
        1 if att.regex_failed else 0,
        1 if att.json_failed else 0,
        att.ip_version,
    )
    out = [
        Metric("probe_http_status_code", _STATUS_HELP, "gauge", (Sample(float(att.status)),)),
        Metric(
            "probe_http_duration_seconds",
            _DURATION_HELP,
            "gauge",
            tuple(Sample(phases[p], pairs) for p, pairs in zip(PHASES, _PHASE_LABELS, strict=True)),
        ),
    ]
    out.extend(
        Metric(name, help_text, "gauge", (Sample(float(v)),))
        for (name, help_text), v in zip(_SIMPLE, simple, strict=True)
    )
    out.extend(att.tls_metrics)
    out.append(
        Metric("probe_dns_lookup_time_seconds", _DNS_HELP, "gauge", (Sample(dns_seconds),))
    )
    return out


def _metrics(
    config: HttpConfig, attempts: list[_Attempt], dns_seconds: float
) -> list[Metric]:
    if len(attempts) == 1 and not config.all_addresses:
        return _one_address_metrics(attempts[0], dns_seconds)
    return _general_metrics(config, attempts, dns_seconds)


def _general_metrics(
    config: HttpConfig, attempts: list[_Attempt], dns_seconds: float
) -> list[Metric]:
    per_address = config.all_addresses

    def lbl(att: _Attempt, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        base = dict(extra or {})
        if per_address:
            base["address"] = att.address
        return base

    if not attempts:  # nothing contacted (dns failure): pre-created zeros, no address label
        out = [
            gauges("probe_http_status_code", "Response HTTP status code.", [({}, 0)]),
            gauges(
                "probe_http_duration_seconds",
                "Duration of HTTP request by phase, summed over all redirects.",
                [({"phase": p}, dns_seconds if p == "resolve" else 0.0) for p in PHASES],
            ),
        ]
        for name, help_text in _SIMPLE:
            out.append(gauges(name, help_text, [({}, 0)]))
    else:
        out = [
            gauges(
                "probe_http_status_code",
                "Response HTTP status code.",
                [(lbl(a), a.status) for a in attempts],
            ),
            gauges(
                "probe_http_duration_seconds",
                "Duration of HTTP request by phase, summed over all redirects.",
                [(lbl(a, {"phase": p}), a.phases[p]) for a in attempts for p in PHASES],
            ),
        ]
        values: dict[str, Callable[[_Attempt], float]] = {
            "probe_http_content_length": lambda a: a.content_length,
            "probe_http_uncompressed_body_length": lambda a: a.body_length,
            "probe_http_version": lambda a: a.version,
            "probe_http_redirects": lambda a: a.redirects,
            "probe_http_ssl": lambda a: 1 if a.tls else 0,
            "probe_failed_due_to_regex": lambda a: 1 if a.regex_failed else 0,
            "probe_failed_due_to_json_check": lambda a: 1 if a.json_failed else 0,
            "probe_ip_protocol": lambda a: a.ip_version,
        }
        for name, help_text in _SIMPLE:
            getter = values[name]
            out.append(gauges(name, help_text, [(lbl(a), getter(a)) for a in attempts]))
        if per_address:
            out.append(
                gauges(
                    "probe_http_address_success",
                    "1 if this resolved address passed every check (all_addresses mode).",
                    [({"address": a.address}, 0 if a.reason else 1) for a in attempts],
                )
            )
        for a in attempts:
            for metric in a.tls_metrics:
                if per_address:
                    samples = tuple(
                        type(s)(s.value, s.labels + (("address", a.address),))
                        for s in metric.samples
                    )
                    metric = Metric(metric.name, metric.help, metric.type, samples, metric.unit)
                out.append(metric)
        out = list(merge_families(out))
    out.append(
        gauges(
            "probe_dns_lookup_time_seconds",
            "Time taken to resolve the target name.",
            [({}, dns_seconds)],
        )
    )
    if per_address:
        out.append(
            gauges(
                "probe_http_resolved_addresses",
                "Number of addresses probed (all_addresses mode).",
                [({}, len(attempts))],
            )
        )
    return out


_SIMPLE = (
    ("probe_http_content_length", "Content-Length header of the response, -1 if absent."),
    (
        "probe_http_uncompressed_body_length",
        "Bytes of response body read after decompression (up to max_body_bytes + 1).",
    ),
    ("probe_http_version", "HTTP version of the response (1.0, 1.1, 2)."),
    ("probe_http_redirects", "Number of redirects followed."),
    ("probe_http_ssl", "1 if the final response came over TLS."),
    ("probe_failed_due_to_regex", "1 if a body regular-expression check failed."),
    ("probe_failed_due_to_json_check", "1 if a JSON-field check failed."),
    ("probe_ip_protocol", "IP version of the address probed (4 or 6), 0 if none."),
)


async def run(config: HttpConfig, state: HttpState) -> ProbeResult:
    url = _parse(config.url)
    deadline = anyio.current_time() + config.client_timeout
    try:
        auth = await _auth_headers(config)
    except ValueError as exc:
        return ProbeResult.fail(Reason.CONFIG, _metrics(config, [], 0.0), [str(exc)])
    try:
        ssl_context = await state.ssl_context(config.tls_verify, config.ca_file)
    except (OSError, ssl.SSLError) as exc:
        text = f"cannot load ca_file {config.ca_file}: {getattr(exc, 'strerror', None) or exc}"
        return ProbeResult.fail(Reason.CONFIG, _metrics(config, [], 0.0), [text])

    port = url.port or (443 if url.scheme == "https" else 80)
    with anyio.move_on_after(config.client_timeout) as scope:
        try:
            resolved = await resolve(
                url.host, port, config.ip_protocol, config.ip_protocol_fallback
            )
        except ResolveError as exc:
            return ProbeResult.fail(Reason.DNS, _metrics(config, [], 0.0), [str(exc)])
    if scope.cancelled_caught:
        return ProbeResult.fail(
            Reason.TIMEOUT, _metrics(config, [], 0.0), [f"resolving {url.host} timed out"]
        )

    addresses = resolved.addresses if config.all_addresses else resolved.addresses[:1]
    attempts: list[_Attempt] = [None] * len(addresses)  # type: ignore[list-item]

    async def one(i: int, address: str) -> None:
        attempts[i] = await _attempt(
            config, ssl_context, address, auth, resolved.seconds, deadline
        )

    if len(addresses) == 1:
        await one(0, addresses[0])
    else:
        async with anyio.create_task_group() as tg:
            for i, address in enumerate(addresses):
                tg.start_soon(one, i, address)

    detail: list[str] = []
    if config.all_addresses:
        detail.append(f"{url.host} resolved to {', '.join(addresses)}")
    for att in attempts:
        prefix = f"[{att.address}] " if config.all_addresses else ""
        detail.extend(prefix + line for line in att.detail)
    metrics = _metrics(config, attempts, resolved.seconds)
    failed = [a for a in attempts if a.reason]
    if failed:
        return ProbeResult.fail(failed[0].reason, metrics, detail)
    return ProbeResult.ok(metrics, detail)


KIND: ProbeKind[HttpConfig, HttpState] = ProbeKind(
    name="http",
    config_model=HttpConfig,
    run=run,
    new_state=new_state,
    target=target,
    reasons=COMMON_REASONS
    | {
        Reason.UNREACHABLE,
        Reason.TLS,
        Reason.HTTP_STATUS,
        Reason.VALIDATION,
        Reason.TOO_LARGE,
        Reason.CONFIG,
    },
    sample_labels=frozenset({"address", "phase", "version"}),
)

__all__ = ["KIND", "HttpConfig", "HttpState", "IpProtocol"]
