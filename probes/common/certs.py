"""Certificate parsing, verification and metrics shared by the ``tls`` and ``kubernetes`` probes.

Everything here is synchronous CPU work on already-fetched bytes (no I/O), except
:func:`load_system_roots` which reads the system trust store once (call it from a thread).

Verification is our own, done with ``cryptography.x509.verification`` *after* the certificates
were fetched without verification, so an expired, self-signed or untrusted certificate still
reports its dates. The result is one reason among :data:`VERIFY_REASONS` (empty when valid),
with its cause and the stricter Web PKI profile's finding (:mod:`probes.common.chain_verify`).
"""

from __future__ import annotations

import functools
import ipaddress
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from probes.base import Metric, Sample

if TYPE_CHECKING:
    from probes.common.chain_verify import Verification

SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

EXPIRED = "expired"
NOT_YET_VALID = "not_yet_valid"
UNTRUSTED_ROOT = "untrusted_root"
INCOMPLETE_CHAIN = "incomplete_chain"
HOSTNAME_MISMATCH = "hostname_mismatch"
INVALID_CHAIN = "invalid_chain"

VERIFY_REASONS: tuple[str, ...] = (
    EXPIRED,
    NOT_YET_VALID,
    UNTRUSTED_ROOT,
    INCOMPLETE_CHAIN,
    HOSTNAME_MISMATCH,
    INVALID_CHAIN,
)
"""Verification failure reasons, in the order they are checked (the first one wins)."""

_MAX_CN = 64


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Certificates of a PEM bundle (any number of ``CERTIFICATE`` blocks; other blocks such
    as private keys are ignored) or of a single DER certificate. ``ValueError`` on garbage."""
    if b"-----BEGIN" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise ValueError("no valid PEM certificate in the data") from None
        if not certs:
            raise ValueError("no PEM certificate in the data")
        return certs
    if not data.strip():
        raise ValueError("empty certificate data")
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ValueError("neither a PEM bundle nor a DER certificate") from None


@functools.lru_cache(maxsize=4)
def _load_roots_cached(path: str, mtime_ns: int) -> tuple[x509.Certificate, ...]:
    data = Path(path).read_bytes()
    with warnings.catch_warnings():
        # Some system roots have non-positive serials; cryptography warns, we do not care.
        warnings.simplefilter("ignore")
        return tuple(load_certificates(data))


def load_roots(path: Path = SYSTEM_CA_BUNDLE) -> tuple[x509.Certificate, ...]:
    """Trust anchors of a PEM bundle, cached until the file changes. Blocking: run in a
    thread. ``ValueError`` when the file is unreadable or holds no certificate."""
    try:
        mtime = path.stat().st_mtime_ns
        return _load_roots_cached(str(path), mtime)
    except OSError as exc:
        raise ValueError(f"cannot read CA bundle {path}: {exc.strerror}") from None


def not_after(cert: x509.Certificate) -> float:
    """Unix seconds after which the certificate is no longer valid."""
    return cert.not_valid_after_utc.timestamp()


def not_before(cert: x509.Certificate) -> float:
    """Unix seconds before which the certificate is not yet valid."""
    return cert.not_valid_before_utc.timestamp()


def common_name(name: x509.Name) -> str:
    """The first CN of a name (truncated to 64 characters), or ``""``."""
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return ""
    value = attrs[0].value
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text[:_MAX_CN]


def subject_alt_names(cert: x509.Certificate) -> list[str]:
    """DNS names and IP addresses of the SubjectAlternativeName extension."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except ValueError:  # malformed extension
        return []
    names: list[str] = list(ext.get_values_for_type(x509.DNSName))
    names += [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    return names


def key_description(cert: x509.Certificate) -> tuple[str, int]:
    """``(key type, key size in bits)``, e.g. ``("rsa", 2048)`` or ``("ecdsa", 256)``."""
    try:
        key = cert.public_key()
    except (ValueError, TypeError):
        return ("unknown", 0)
    if isinstance(key, rsa.RSAPublicKey):
        return ("rsa", key.key_size)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ("ecdsa", key.curve.key_size)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ("ed25519", 256)
    if isinstance(key, ed448.Ed448PublicKey):
        return ("ed448", 456)
    if isinstance(key, dsa.DSAPublicKey):
        return ("dsa", key.key_size)
    return ("unknown", 0)


def _is_self_issued(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def hostname_matches(cert: x509.Certificate, hostname: str) -> bool:
    """RFC 6125 matching of ``hostname`` against the certificate's SANs (no CN fallback).
    A wildcard only stands for the whole leftmost label (``*.example.com``)."""
    host = hostname.rstrip(".").lower()
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if ip is not None:
        return ip in ext.get_values_for_type(x509.IPAddress)
    for pattern in ext.get_values_for_type(x509.DNSName):
        pat = pattern.rstrip(".").lower()
        if pat == host:
            return True
        if pat.startswith("*.") and "." in host:
            first, rest = host.split(".", 1)
            if first and rest == pat[2:] and "*" not in rest:
                return True
    return False


def verify(
    certs: Sequence[x509.Certificate],
    hostname: str | None,
    now: float,
    roots: Sequence[x509.Certificate],
) -> Verification:
    """Verify a presented chain (leaf first) against ``roots`` as TLS clients do: the
    reason (``""`` when valid), its cause and the strict Web PKI finding. See
    :func:`probes.common.chain_verify.verify`."""
    from probes.common import chain_verify  # it builds on this module's helpers

    return chain_verify.verify(certs, hostname, now, roots)


def verify_chain(
    certs: Sequence[x509.Certificate],
    hostname: str | None,
    now: float,
    roots: Sequence[x509.Certificate],
) -> str:
    """The reason of :func:`verify`: ``""`` when valid, else the first failing reason of
    :data:`VERIFY_REASONS`."""
    return verify(certs, hostname, now, roots).reason


def certificate_labels(source: str, position: int, cert: x509.Certificate) -> dict[str, str]:
    """The bounded label set of one certificate's series."""
    return {
        "source": source,
        "position": str(position),
        "subject_cn": common_name(cert.subject),
        "issuer_cn": common_name(cert.issuer),
    }


def certificate_metrics(
    source: str,
    certs: Sequence[x509.Certificate],
    hostname: str | None,
    now: float,
    *,
    roots: Sequence[x509.Certificate] | None = None,
) -> tuple[Metric, ...]:
    """:func:`certificate_report` without the detail lines."""
    return certificate_report(source, certs, hostname, now, roots=roots)[0]


def certificate_report(
    source: str,
    certs: Sequence[x509.Certificate],
    hostname: str | None,
    now: float,
    *,
    roots: Sequence[x509.Certificate] | None = None,
) -> tuple[tuple[Metric, ...], tuple[str, ...]]:
    """The per-certificate and per-source metrics of one source (a chain, leaf first).

    ``roots`` are the trust anchors for verification; ``None`` reads the system trust
    store (cached; the first call reads a file, so call it from a thread when on the loop).
    Families: ``tls_cert_not_after_timestamp_seconds``,
    ``tls_cert_not_before_timestamp_seconds``, ``tls_cert_subject_alt_names``, ``tls_cert`` (info:
    serial, key...), ``tls_earliest_cert_expiry_timestamp_seconds``,
    ``tls_earliest_cert_position``, ``tls_verify_success``, ``tls_verify_failed{reason}``,
    ``tls_verify_strict_success``; and debug lines naming every failure's cause.
    """
    if roots is None:
        try:
            roots = load_roots()
        except ValueError:
            roots = ()
    per_after: list[Sample] = []
    per_before: list[Sample] = []
    per_sans: list[Sample] = []
    per_info: list[Sample] = []
    for position, cert in enumerate(certs):
        labels = certificate_labels(source, position, cert)
        pairs = tuple(labels.items())
        per_after.append(Sample(not_after(cert), pairs))
        per_before.append(Sample(not_before(cert), pairs))
        per_sans.append(Sample(float(len(subject_alt_names(cert))), pairs))
        key_type, key_bits = key_description(cert)
        info_labels = dict(labels)
        info_labels.update(
            serial=format(cert.serial_number, "x"),
            key_type=key_type,
            key_bits=str(key_bits),
            self_signed="true" if _is_self_issued(cert) else "false",
            ca="true" if _is_ca(cert) else "false",
        )
        per_info.append(Sample(1.0, tuple(info_labels.items())))
    outcome = verify(certs, hostname, now, roots)
    reason = outcome.reason
    detail: list[str] = []
    if reason:
        detail.append(f"{source}: verification failed: {reason}: {outcome.cause}")
    elif outcome.strict:
        detail.append(
            f"{source}: verified; finding of the strict Web PKI profile (not a failure):"
            f" {outcome.strict}"
        )
    src = (("source", source),)
    metrics = [
        Metric(
            "tls_cert_not_after_timestamp_seconds",
            "Unix time after which the certificate is no longer valid.",
            "gauge",
            tuple(per_after),
        ),
        Metric(
            "tls_cert_not_before_timestamp_seconds",
            "Unix time before which the certificate is not yet valid.",
            "gauge",
            tuple(per_before),
        ),
        Metric(
            "tls_cert_subject_alt_names",
            "Number of DNS and IP subject alternative names of the certificate.",
            "gauge",
            tuple(per_sans),
        ),
        Metric(
            "tls_cert",
            "Certificate details (serial in hex, key type and size); value is always 1.",
            "info",
            tuple(per_info),
        ),
    ]
    if certs:
        earliest = min(range(len(certs)), key=lambda i: not_after(certs[i]))
        metrics += [
            Metric(
                "tls_earliest_cert_expiry_timestamp_seconds",
                "Earliest not-after of the certificates of the source (unix seconds).",
                "gauge",
                (Sample(not_after(certs[earliest]), src),),
            ),
            Metric(
                "tls_earliest_cert_position",
                "Position in the chain (0 = leaf) of the certificate that expires first.",
                "gauge",
                (Sample(float(earliest), src),),
            ),
        ]
    metrics += verify_metrics(source, reason)
    metrics.append(
        Metric(
            "tls_verify_strict_success",
            "1 if the chain verified and also meets the Web PKI (CA/Browser Forum) profile; "
            "0 beside tls_verify_success 1 is a finding, not a failure.",
            "gauge",
            (Sample(0.0 if reason or outcome.strict else 1.0, src),),
        )
    )
    return tuple(metrics), tuple(detail)


def verify_metrics(source: str, reason: str) -> tuple[Metric, ...]:
    """``tls_verify_success{source}`` and ``tls_verify_failed{source,reason}`` (every reason
    pre-created at 0)."""
    return (
        Metric(
            "tls_verify_success",
            "1 if the chain verified (trust, dates, hostname), else 0.",
            "gauge",
            (Sample(0.0 if reason else 1.0, (("source", source),)),),
        ),
        Metric(
            "tls_verify_failed",
            "1 for the reason the chain failed verification, 0 for the others.",
            "gauge",
            tuple(
                Sample(1.0 if r == reason else 0.0, (("source", source), ("reason", r)))
                for r in VERIFY_REASONS
            ),
        ),
    )


def verify_reason(metrics: Iterable[Metric]) -> str:
    """The verification reason recorded in metrics from :func:`certificate_metrics`."""
    for metric in metrics:
        if metric.name == "tls_verify_failed":
            for sample in metric.samples:
                if sample.value == 1.0:
                    return dict(sample.labels)["reason"]
    return ""
