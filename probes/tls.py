"""The ``tls`` probe: certificate expiry and verification of endpoints, files and secrets.

Certificates are fetched WITHOUT verification (so an expired, self-signed or untrusted chain
still reports its dates) and verified separately with ``cryptography`` against the configured
CA bundle or the system trust store (see :mod:`probes.common.certs`).

Endpoints are handshaken with anyio's TLS streams under ``client_timeout``. Python 3.11's
``ssl`` module exposes only the leaf publicly; the whole presented chain is read with the
private ``SSLObject._sslobj.get_unverified_chain()`` (present since 3.10; public as
``SSLObject.get_unverified_chain()`` in 3.13). When neither exists we fall back to the leaf
alone and say so in ``detail``.
"""

from __future__ import annotations

import functools
import glob
import ipaddress
import ssl
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
from anyio.abc import ByteStream
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSAttribute, TLSStream
from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from probes.base import (
    COMMON_REASONS,
    KindConfig,
    Metric,
    NoState,
    ProbeKind,
    ProbeResult,
    Reason,
    Sample,
    merge_families,
    reason_for_exception,
)
from probes.common import certs as certs_mod

_POSTGRES_SSL_REQUEST = struct.pack("!II", 8, 80877103)
_MAX_FILE_BYTES = 1024 * 1024
_SMTP_LINE_MAX = 4096
_ENCODING_DER: int = getattr(getattr(ssl, "_ssl", None), "ENCODING_DER", 2)  # private constant


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError("must be host:port (IPv6 as [::1]:443)")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError("port must be between 1 and 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("write IPv6 addresses in brackets: [::1]:443")
    return host, port


class Endpoint(BaseModel):
    """A network endpoint; a plain ``"host:port"`` string is accepted too."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str
    server_name: str | None = None
    starttls: Literal["postgres", "smtp"] | None = None
    source: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"address": value} if isinstance(value, str) else value

    @field_validator("address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        _split_address(value)
        return value

    @property
    def host(self) -> str:
        return _split_address(self.address)[0]

    @property
    def port(self) -> int:
        return _split_address(self.address)[1]

    @property
    def sni(self) -> str | None:
        """The SNI name sent (``server_name`` or the host unless it is an IP address)."""
        name = self.server_name or self.host
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return name
        return None

    @property
    def verify_name(self) -> str:
        """The name checked against the certificate's SANs."""
        return self.server_name or self.host

    @property
    def label(self) -> str:
        return self.source or self.address


class KubernetesSecret(BaseModel):
    """A ``kubernetes.io/tls`` secret read through ``probes.common.kube_client``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)
    kubeconfig: Path | None = None
    context: str | None = None
    server_name: str | None = None

    @property
    def label(self) -> str:
        return f"secret/{self.namespace}/{self.name}"


class TlsConfig(KindConfig):
    endpoints: tuple[Endpoint, ...] = ()
    files: tuple[str, ...] = ()
    kubernetes_secret: KubernetesSecret | None = None
    ca_file: Path | None = None
    verify: bool = True
    max_files: int = Field(default=100, ge=1, le=10000)

    @model_validator(mode="after")
    def _some_source(self) -> TlsConfig:
        if not self.endpoints and not self.files and self.kubernetes_secret is None:
            raise ValueError("set at least one of endpoints, files, kubernetes_secret")
        labels = [e.label for e in self.endpoints]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"duplicate endpoint {dupes[0]}: give one a distinct source")
        return self


@dataclass
class _SourceResult:
    source: str
    reason: str = ""  # fetch failure reason; "" when the certificates were read
    verify_reason: str = ""
    metrics: list[Metric] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)


# --- Endpoints ----------------------------------------------------------------------------


def _unverified_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # Names are matched by probes.common.certs (SANs only); should this context ever
    # verify, it must not fall back to the CN either.
    ctx.hostname_checks_common_name = False
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def peer_chain_der(ssl_object: ssl.SSLObject) -> tuple[list[bytes], bool]:
    """The DER certificates the peer presented, leaf first, and whether it is the full chain
    (``False``: only the leaf was available)."""
    public = getattr(ssl_object, "get_unverified_chain", None)
    if public is not None:  # Python >= 3.13
        chain = public()
        return [c if isinstance(c, bytes) else c.public_bytes(_ENCODING_DER) for c in chain], True
    private = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if private is not None:  # Python 3.10-3.12, private API
        chain = private() or []
        return [c.public_bytes(_ENCODING_DER) for c in chain], True
    leaf = ssl_object.getpeercert(binary_form=True)
    return ([leaf] if leaf else []), False


def _smtp_start_ok(head: bytes) -> bool:
    """Could ``head`` begin an SMTP reply line (``250-``, ``220 ``)?"""
    return head[:3].isdigit() if len(head) >= 3 else head.isdigit() or not head


async def _smtp_line(reader: BufferedByteReceiveStream) -> bytes:
    """One reply line, checked as its bytes arrive: a peer that speaks something else
    and keeps the connection open is a protocol error at once, not a timeout."""
    data = b""
    while True:
        data += await reader.receive()
        head, newline, rest = data.partition(b"\n")
        if not _smtp_start_ok(head[:3]) or (len(head) > 3 and head[3:4] not in b" -\r"):
            raise _ProtocolError("not an SMTP reply")
        if newline:
            reader.feed_data(rest)
            return head
        if len(data) > _SMTP_LINE_MAX:
            raise _ProtocolError("SMTP reply line too long")


async def _smtp_reply(reader: BufferedByteReceiveStream) -> int:
    """Read one (possibly multi-line) SMTP reply; return its code."""
    while True:
        line = (await _smtp_line(reader)).rstrip(b"\r")
        if len(line) < 3:
            raise _ProtocolError("not an SMTP reply")
        if len(line) == 3 or line[3:4] != b"-":
            return int(line[:3])


class _ProtocolError(Exception):
    pass


class _StartTlsRefused(Exception):
    pass


async def _starttls(stream: ByteStream, kind: str) -> None:
    if kind == "postgres":
        await stream.send(_POSTGRES_SSL_REQUEST)
        answer = await stream.receive(1)
        if answer == b"N":
            raise _StartTlsRefused("PostgreSQL answered N to SSLRequest: TLS disabled")
        if answer != b"S":
            raise _ProtocolError("unexpected answer to PostgreSQL SSLRequest")
    elif kind == "smtp":
        reader = BufferedByteReceiveStream(stream)
        if await _smtp_reply(reader) != 220:
            raise _ProtocolError("SMTP greeting is not 220")
        await stream.send(b"EHLO festivals-exporter\r\n")
        if await _smtp_reply(reader) != 250:
            raise _ProtocolError("SMTP EHLO refused")
        await stream.send(b"STARTTLS\r\n")
        if await _smtp_reply(reader) != 220:
            raise _StartTlsRefused("SMTP server refused STARTTLS")
        if reader.buffer:
            raise _ProtocolError("SMTP server sent data before the TLS handshake")


def _connect_reason(exc: BaseException) -> str:
    """Map a connection error (anyio wraps several attempts in one OSError)."""
    cause = exc.__cause__
    inner: Sequence[BaseException] = ()
    if isinstance(cause, BaseExceptionGroup):
        inner = cause.exceptions
    elif cause is not None:
        inner = (cause,)
    if inner and all(isinstance(e, ConnectionRefusedError) for e in inner):
        return Reason.REFUSED
    return reason_for_exception(inner[0] if inner else exc)


async def _fetch_endpoint(
    endpoint: Endpoint, deadline: float
) -> tuple[list[bytes], bool, str, list[str]]:
    """``(DER chain, full chain?, TLS version, detail)`` within ``deadline`` seconds;
    raises on failure."""
    detail = [f"{endpoint.label}: connect {endpoint.address} sni={endpoint.sni or '-'}"]
    with anyio.fail_after(deadline):
        stream: ByteStream = await anyio.connect_tcp(endpoint.host, endpoint.port)
        try:
            if endpoint.starttls:
                detail.append(f"{endpoint.label}: STARTTLS ({endpoint.starttls})")
                await _starttls(stream, endpoint.starttls)
            tls = await TLSStream.wrap(
                stream,
                server_side=False,
                hostname=endpoint.sni,
                ssl_context=_unverified_context(),
                standard_compatible=False,
            )
            stream = tls
            ssl_object = tls.extra(TLSAttribute.ssl_object)
            chain, full = peer_chain_der(ssl_object)
            version = ssl_object.version() or "unknown"
        finally:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
    detail.append(f"{endpoint.label}: {version}, {len(chain)} certificate(s) presented")
    if not full:
        detail.append(f"{endpoint.label}: only the leaf is available on this Python")
    return chain, full, version, detail


async def _probe_endpoint(
    endpoint: Endpoint, config: TlsConfig, roots: Sequence[x509.Certificate], now: float
) -> _SourceResult:
    result = _SourceResult(endpoint.label)
    try:
        chain_der, _full, version, detail = await _fetch_endpoint(endpoint, config.client_timeout)
    except TimeoutError:
        result.reason = Reason.TIMEOUT
        result.detail.append(
            f"{endpoint.label}: no TLS handshake within {config.client_timeout:g}s"
        )
        return result
    except _StartTlsRefused as exc:
        result.reason = Reason.TLS
        result.detail.append(f"{endpoint.label}: {exc}")
        return result
    except (_ProtocolError, anyio.EndOfStream, anyio.BrokenResourceError,
            anyio.IncompleteRead, anyio.DelimiterNotFound) as exc:
        result.reason = Reason.PROTOCOL
        what = str(exc) or type(exc).__name__
        result.detail.append(f"{endpoint.label}: peer closed or spoke garbage ({what})")
        return result
    except ssl.SSLError as exc:
        result.reason = Reason.TLS
        result.detail.append(f"{endpoint.label}: TLS handshake failed: {exc.reason or exc}")
        return result
    except OSError as exc:
        result.reason = _connect_reason(exc)
        result.detail.append(f"{endpoint.label}: connection failed ({result.reason})")
        return result
    result.detail += detail
    try:
        chain = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError:
        result.reason = Reason.PROTOCOL
        result.detail.append(f"{endpoint.label}: peer sent an unparsable certificate")
        return result
    if not chain:
        result.reason = Reason.PROTOCOL
        result.detail.append(f"{endpoint.label}: peer presented no certificate")
        return result
    await _cert_metrics(result, chain, endpoint.verify_name, now, roots)
    result.metrics.append(
        Metric(
            "probe_ssl_earliest_cert_expiry",
            "Earliest not-after of the chain an endpoint presented (unix seconds).",
            "gauge",
            (Sample(min(certs_mod.not_after(c) for c in chain), (("source", endpoint.label),)),),
        )
    )
    result.metrics.append(
        Metric(
            "probe_tls_version",
            "TLS version negotiated with the endpoint, named as blackbox_exporter does.",
            "info",
            # blackbox_exporter (and the http probe) say "TLS 1.3"; Python says "TLSv1.3".
            (Sample(1.0, (("source", endpoint.label),
                          ("version", version.replace("TLSv", "TLS ")))),),
        )
    )
    return result


# --- Files and secrets --------------------------------------------------------------------


def _read_files(
    patterns: Sequence[str], limit: int
) -> tuple[list[tuple[str, bytes | str]], list[str]]:
    """``[(path, bytes or error text)]`` for every file matched, and the patterns that
    matched nothing. Blocking: runs in a thread."""
    found: list[tuple[str, bytes | str]] = []
    empty: list[str] = []
    seen: set[str] = set()
    for pattern in patterns:
        paths = sorted(p for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not paths:
            empty.append(pattern)
        for path in paths:
            if path in seen or len(seen) >= limit:
                continue
            seen.add(path)
            try:
                with open(path, "rb") as fh:
                    data = fh.read(_MAX_FILE_BYTES + 1)
            except OSError as exc:
                found.append((path, f"cannot read: {exc.strerror}"))
                continue
            if len(data) > _MAX_FILE_BYTES:
                found.append((path, "larger than 1 MiB"))
            else:
                found.append((path, data))
    return found, empty


async def _cert_metrics(
    result: _SourceResult,
    chain: Sequence[x509.Certificate],
    hostname: str | None,
    now: float,
    roots: Sequence[x509.Certificate],
) -> None:
    metrics, detail = await anyio.to_thread.run_sync(
        functools.partial(
            certs_mod.certificate_report, result.source, chain, hostname, now, roots=roots
        )
    )
    result.metrics += metrics
    result.detail += detail


async def _probe_files(
    config: TlsConfig, roots: Sequence[x509.Certificate], now: float
) -> list[_SourceResult]:
    found, empty = await anyio.to_thread.run_sync(
        _read_files, config.files, config.max_files, abandon_on_cancel=True
    )
    results = []
    for pattern in empty:
        results.append(
            _SourceResult(pattern, Reason.NOT_FOUND, detail=[f"{pattern}: no file matches"])
        )
    for path, data in found:
        result = _SourceResult(path)
        results.append(result)
        if isinstance(data, str):
            result.reason = Reason.CONFIG
            result.detail.append(f"{path}: {data}")
            continue
        try:
            chain = certs_mod.load_certificates(data)
        except ValueError as exc:
            result.reason = Reason.CONFIG
            result.detail.append(f"{path}: {exc}")
            continue
        result.detail.append(f"{path}: {len(chain)} certificate(s)")
        await _cert_metrics(result, chain, None, now, roots)
    if len(found) >= config.max_files:
        results[-1].detail.append(f"stopped at max_files={config.max_files}")
    return results


async def _probe_secret(
    secret: KubernetesSecret, config: TlsConfig, roots: Sequence[x509.Certificate], now: float
) -> _SourceResult:
    result = _SourceResult(secret.label)
    try:
        from probes.common import kube_client
    except ImportError:
        result.reason = Reason.CONFIG
        result.detail.append(f"{secret.label}: Kubernetes support is not available")
        return result
    access = kube_client.KubeAccess(kubeconfig=secret.kubeconfig, context=secret.context)
    try:
        data: dict[str, bytes] = await kube_client.read_tls_secret(
            access, secret.namespace, secret.name, config.client_timeout
        )
    except kube_client.KubeError as exc:
        reason = str(exc.reason)
        result.reason = reason if reason in KIND.reasons else Reason.PROTOCOL
        result.detail.append(f"{secret.label}: cannot read secret ({reason})")
        return result
    if "tls.crt" not in data:
        result.reason = Reason.NOT_FOUND
        result.detail.append(f"{secret.label}: secret has no tls.crt")
        return result
    try:
        chain = certs_mod.load_certificates(data["tls.crt"])
        extra_roots = certs_mod.load_certificates(data["ca.crt"]) if data.get("ca.crt") else []
    except ValueError as exc:
        result.reason = Reason.PROTOCOL
        result.detail.append(f"{secret.label}: {exc}")
        return result
    result.detail.append(
        f"{secret.label}: {len(chain)} certificate(s) in tls.crt, {len(extra_roots)} in ca.crt"
    )
    await _cert_metrics(result, chain, secret.server_name, now, [*roots, *extra_roots])
    return result


# --- run ----------------------------------------------------------------------------------


async def _load_roots(config: TlsConfig) -> tuple[tuple[x509.Certificate, ...], str]:
    """Trust anchors and an error text ("" when fine)."""
    path = config.ca_file or certs_mod.SYSTEM_CA_BUNDLE
    try:
        roots = await anyio.to_thread.run_sync(certs_mod.load_roots, path)
    except ValueError as exc:
        return (), str(exc)
    return roots, ""


async def run(config: TlsConfig, state: NoState) -> ProbeResult:
    now = time.time()
    roots, roots_error = await _load_roots(config)
    if roots_error and config.ca_file is not None:
        return ProbeResult.fail(Reason.CONFIG, detail=[roots_error])
    detail: list[str] = [roots_error] if roots_error else []
    ordered: list[_SourceResult | None] = [None] * len(config.endpoints)

    async def one(index: int, endpoint: Endpoint) -> None:
        ordered[index] = await _probe_endpoint(endpoint, config, roots, now)

    async with anyio.create_task_group() as tg:
        for index, endpoint in enumerate(config.endpoints):
            tg.start_soon(one, index, endpoint)
    results = [r for r in ordered if r is not None]
    if config.files:
        results += await _probe_files(config, roots, now)
    if config.kubernetes_secret is not None:
        results.append(await _probe_secret(config.kubernetes_secret, config, roots, now))

    up = Metric(
        "tls_source_up",
        "1 if the source's certificates were read, else 0.",
        "gauge",
        tuple(Sample(0.0 if r.reason else 1.0, (("source", r.source),)) for r in results),
    )
    metrics = merge_families([up], *(r.metrics for r in results))
    fetch_reason = ""
    verify_reason = ""
    for r in results:
        r.verify_reason = certs_mod.verify_reason(r.metrics)
        detail += r.detail  # a verification failure's cause is among them
        fetch_reason = fetch_reason or r.reason
        verify_reason = verify_reason or r.verify_reason
    if fetch_reason:
        return ProbeResult.fail(fetch_reason, metrics, detail)
    if verify_reason and config.verify:
        return ProbeResult.fail(verify_reason, metrics, detail)
    return ProbeResult.ok(metrics, detail)


def new_state(config: TlsConfig) -> NoState:
    return NoState()


def target(config: TlsConfig) -> str:
    parts = [e.label for e in config.endpoints] + list(config.files)
    if config.kubernetes_secret is not None:
        parts.append(config.kubernetes_secret.label)
    return ", ".join(parts)


KIND = ProbeKind(
    name="tls",
    config_model=TlsConfig,
    run=run,
    new_state=new_state,
    target=target,
    reasons=COMMON_REASONS
    | frozenset(
        {
            Reason.TLS,
            Reason.UNREACHABLE,
            Reason.CONFIG,
            Reason.NOT_FOUND,
            Reason.FORBIDDEN,
            Reason.AUTH,
        }
    )
    | frozenset(certs_mod.VERIFY_REASONS),
    sample_labels=frozenset({
        "ca", "issuer_cn", "key_bits", "key_type", "position", "reason", "self_signed", "serial",
        "source", "subject_cn", "version"
    }),
)
