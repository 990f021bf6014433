"""Network helpers shared by the ``http`` and ``tcp`` probe kinds (private).

Name resolution with an IP-family filter and timing, TLS contexts, peer-certificate
figures and the mapping of library exceptions to :class:`probes.base.Reason` values.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import socket
import ssl
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
from cryptography import x509

from probes.base import Metric, Reason, gauge, info

IpProtocol = Literal["auto", "ip4", "ip6"]

# Hard bound on how many addresses one probe run looks at (all_addresses mode).
MAX_ADDRESSES = 16


@dataclass(frozen=True, slots=True)
class Resolved:
    """Addresses a name resolved to (already filtered by IP family, resolver order)."""

    addresses: tuple[str, ...]
    seconds: float


class ResolveError(Exception):
    """The name did not resolve to a usable address (reason ``dns``)."""


# Cached: parsing an address with ipaddress costs microseconds, every run asks again about
# the same few hosts and addresses.
@functools.lru_cache(maxsize=16384)
def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=16384)
def ip_version(address: str) -> int:
    return ipaddress.ip_address(address).version


async def resolve(
    host: str, port: int, ip_protocol: IpProtocol, fallback: bool = True
) -> Resolved:
    """Resolve ``host`` (an IP literal resolves to itself) keeping resolver order.

    ``ip4``/``ip6`` keep only addresses of that family, as blackbox_exporter's
    ``preferred_ip_protocol`` does; when the name has none, ``fallback`` takes the other
    family's instead (blackbox's ``ip_protocol_fallback``). ``auto`` keeps both.
    Raises ``ResolveError``.
    """
    wanted = {"ip4": 4, "ip6": 6}.get(ip_protocol)
    if is_ip_literal(host):
        if wanted is not None and ip_version(host) != wanted and not fallback:
            raise ResolveError(f"{host} is not an IPv{wanted} address")
        return Resolved((host,), 0.0)
    start = time.perf_counter()
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolveError(f"cannot resolve {host}: {_gai_text(exc)}") from None
    seconds = time.perf_counter() - start
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in seen:
            seen.append(address)
    if wanted is not None:
        preferred = [a for a in seen if ip_version(a) == wanted]
        seen = preferred if preferred or not fallback else seen
    if not seen:
        raise ResolveError(f"{host} has no {ip_protocol} address")
    return Resolved(tuple(seen[:MAX_ADDRESSES]), seconds)


def _gai_text(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror) and len(exc.args) > 1:
        return str(exc.args[1])
    return type(exc).__name__


def make_ssl_context(verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    """A client TLS context. Blocking (reads CA files): call it in a worker thread.

    The CN fallback is off: a certificate whose only name is its subject CN is a hostname
    mismatch, as Chrome, Go and the ``tls`` probe say (Python's default still accepts it).
    """
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif ca_file is not None:
        ctx = ssl.create_default_context(cafile=str(ca_file))
    else:
        import certifi

        ctx = ssl.create_default_context(cafile=certifi.where())
    ctx.hostname_checks_common_name = False
    return ctx


# One context per distinct TLS setting, shared by every probe that uses it: building one
# from certifi costs tens of milliseconds of CPU and most of a megabyte. Weak values: when
# the last probe holding a context is gone (a reload changed them all), a changed CA file
# is read again by the next one.
_CONTEXTS: weakref.WeakValueDictionary[tuple[bool, str], ssl.SSLContext] = (
    weakref.WeakValueDictionary()
)
_CONTEXTS_LOCK: anyio.Lock | None = None


async def shared_ssl_context(verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    """The shared client context for this setting, built once in a worker thread.

    Raises ``OSError``/``ssl.SSLError`` when ``ca_file`` cannot be loaded (reason ``config``).
    """
    global _CONTEXTS_LOCK
    key = (verify, str(ca_file) if ca_file is not None and verify else "")
    ctx = _CONTEXTS.get(key)
    if ctx is not None:
        return ctx
    if _CONTEXTS_LOCK is None:
        _CONTEXTS_LOCK = anyio.Lock()
    # One build per setting even when 10,000 probes start at once.
    async with _CONTEXTS_LOCK:
        ctx = _CONTEXTS.get(key)
        if ctx is None:
            ctx = await anyio.to_thread.run_sync(make_ssl_context, verify, ca_file)
            _CONTEXTS[key] = ctx
    return ctx


class SharedContextState:
    """Per-probe state of a kind whose every run opens a fresh connection: only a reference
    to the TLS context shared by every probe with the same TLS setting, kept between runs
    (loading a CA file is slow), so 10,000 probes hold 10,000 small objects."""

    __slots__ = ("_ssl_context",)

    def __init__(self) -> None:
        self._ssl_context: ssl.SSLContext | None = None

    async def ssl_context(self, verify: bool, ca_file: Path | None) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = await shared_ssl_context(verify, ca_file)
        return self._ssl_context

    async def aclose(self) -> None:
        self._ssl_context = None


@functools.lru_cache(maxsize=4096)
def _der_not_after(der: bytes) -> float | None:
    # Cached: the same few certificates come back on every run of every probe.
    try:
        return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
    except ValueError:
        return None


def presented_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    """DER certificates the peer presented, leaf first, also when not verified.

    ``get_unverified_chain`` is public from Python 3.13 and private (``_sslobj``) before;
    where neither exists, the leaf alone.
    """
    public = getattr(ssl_object, "get_unverified_chain", None)
    if public is None:
        public = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if public is not None:
        chain = public() or []
        out = [c if isinstance(c, bytes) else c.public_bytes(_DER) for c in chain]
        if out:
            return out
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


_DER = 2  # _ssl.ENCODING_DER, what the private chain objects' public_bytes() takes


def earliest_expiry(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> float | None:
    """Unix seconds of the earliest notAfter among the presented certificates, as
    blackbox_exporter's ``probe_ssl_earliest_cert_expiry`` (not the leaf alone)."""
    if ssl_object is None:
        return None
    dates = [d for der in presented_chain(ssl_object) if (d := _der_not_after(der)) is not None]
    return min(dates) if dates else None


def tls_metrics(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> list[Metric]:
    """``probe_ssl_earliest_cert_expiry`` and ``probe_tls_version_info`` when known."""
    out: list[Metric] = []
    if ssl_object is None:
        return out
    expiry = earliest_expiry(ssl_object)
    if expiry is not None:
        out.append(
            gauge(
                "probe_ssl_earliest_cert_expiry",
                "Earliest expiry of the certificates the peer presented, unix seconds.",
                expiry,
            )
        )
    version = ssl_object.version()
    if version:
        out.append(
            info("probe_tls_version", "TLS version negotiated.", {"version": _tls_name(version)})
        )
    return out


def _tls_name(version: str) -> str:
    # blackbox_exporter reports e.g. "TLS 1.3"; Python says "TLSv1.3".
    return version.replace("TLSv", "TLS ")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes/contexts and exception-group members, depth first."""
    stack = [exc]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(reversed(current.exceptions))
        nxt = current.__cause__ or current.__context__
        if nxt is not None:
            stack.append(nxt)


_UNREACHABLE_ERRNOS = {
    errno.ENETUNREACH,
    errno.EHOSTUNREACH,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.EADDRNOTAVAIL,
    errno.ENETDOWN,
    errno.EHOSTDOWN,
}


def classify(exc: BaseException) -> tuple[Reason, str]:
    """Map a (possibly wrapped) network error to a reason and a short, secret-free text."""
    for item in _chain(exc):
        if isinstance(item, ResolveError):
            return Reason.DNS, str(item)
        if isinstance(item, ssl.SSLCertVerificationError):
            return Reason.TLS, f"certificate verification failed: {item.verify_message}"
        if isinstance(item, ssl.SSLError | ssl.CertificateError):
            return Reason.TLS, f"TLS error: {getattr(item, 'reason', None) or type(item).__name__}"
        if isinstance(item, socket.gaierror):
            return Reason.DNS, f"cannot resolve: {_gai_text(item)}"
        if isinstance(item, ConnectionRefusedError):
            return Reason.REFUSED, "connection refused"
        if isinstance(item, TimeoutError | socket.timeout):
            return Reason.TIMEOUT, "timed out"
        if isinstance(item, OSError) and item.errno in _UNREACHABLE_ERRNOS:
            return Reason.UNREACHABLE, f"network error: {item.strerror}"
        if isinstance(item, anyio.EndOfStream | anyio.BrokenResourceError):
            return Reason.UNREACHABLE, "connection closed by peer"
    for item in _chain(exc):
        if isinstance(item, OSError):
            return Reason.UNREACHABLE, f"network error: {item.strerror or type(item).__name__}"
    return Reason.INTERNAL, f"unexpected error: {type(exc).__name__}"


def host_port(host: str, port: int) -> str:
    """``host:port`` with IPv6 literals bracketed."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"
