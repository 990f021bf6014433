"""Chain verification for :mod:`probes.common.certs`: the verdict TLS clients give, its
cause in words, and the stricter Web PKI profile's finding beside it.

Everything here is synchronous CPU work on already-fetched certificates.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from probes.common.certs import (
    EXPIRED,
    HOSTNAME_MISMATCH,
    INCOMPLETE_CHAIN,
    INVALID_CHAIN,
    NOT_YET_VALID,
    UNTRUSTED_ROOT,
    _is_ca,
    _is_self_issued,
    common_name,
    hostname_matches,
    not_after,
    not_before,
    subject_alt_names,
)


def _server_auth_eku(
    policy: object, cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None
) -> None:
    """As TLS clients check a server's chain: an EKU, where present, must allow TLS server
    authentication (or any purpose)."""
    if eku is None:
        return
    if ExtendedKeyUsageOID.SERVER_AUTH not in eku and (
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku
    ):
        raise ValueError("extended key usage does not allow TLS server authentication")


def _any_eku(policy: object, cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
    return None


def _ca_basic_constraints(
    policy: object, cert: x509.Certificate, bc: x509.BasicConstraints
) -> None:
    # cryptography enforces "is a CA" only through the extension policy: without this a
    # plain leaf could sign other certificates.
    if not bc.ca:
        raise ValueError("basicConstraints does not mark it as a CA")


def _ca_key_usage(policy: object, cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    # OpenSSL, Go and browsers read a missing keyUsage as "any usage"; only a keyUsage that
    # is present and lacks keyCertSign stops a CA from issuing.
    if ku is not None and not ku.key_cert_sign:
        raise ValueError("keyUsage does not allow keyCertSign")


def _client_policy(
    roots: Sequence[x509.Certificate], when: dt.datetime, server: bool
) -> PolicyBuilder:
    """What TLS clients (OpenSSL, Go, browsers) require of a chain, and no more.

    cryptography's Web PKI defaults follow the CA/Browser Forum profile, which rejects
    chains those clients accept (a CA made by ``openssl req -x509`` has no keyUsage;
    private CAs' leaves carry a critical SAN beside a subject). Here a CA must be marked
    as one, may not exclude keyCertSign, and (for a server chain) may not exclude
    serverAuth; the leaf's extensions are not policed beyond the EKU, and the name is
    matched against the SANs by :func:`hostname_matches`. The Web PKI profile is checked
    separately (:func:`_strict_finding`) and reported as a finding, never as the verdict.
    """
    eku_rule = _server_auth_eku if server else _any_eku
    return (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(when)
        .extension_policies(
            ca_policy=ExtensionPolicy.permit_all()
            .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, _ca_basic_constraints)
            .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
            .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, eku_rule),
            ee_policy=ExtensionPolicy.permit_all().may_be_present(
                x509.ExtendedKeyUsage, Criticality.AGNOSTIC, eku_rule
            ),
        )
    )


_OID_NAMES = {
    "2.5.29.15": "keyUsage",
    "2.5.29.17": "subjectAltName",
    "2.5.29.19": "basicConstraints",
    "2.5.29.30": "nameConstraints",
    "2.5.29.35": "authorityKeyIdentifier",
    "2.5.29.14": "subjectKeyIdentifier",
    "2.5.29.37": "extendedKeyUsage",
    "1.3.6.1.5.5.7.1.1": "authorityInfoAccess",
}


def _why(exc: Exception) -> str:
    """cryptography's message, with extension names instead of OIDs and without the
    chain-builder's boilerplate."""
    text = str(exc).replace("validation failed: ", "").replace("candidates exhausted: ", "")
    text = re.sub(r" \(encountered processing <Certificate\(.*\)>\)", "", text)
    text = re.sub(r"Python extension validator failed: \w+: ", "", text)
    for oid, name in _OID_NAMES.items():
        text = text.replace(f"{oid}:", f"{name}:")
    return text.strip()[:300]


# cryptography's verifier applies these profile rules whatever the extension policy;
# OpenSSL (and so Python, curl and the http probe) does not: a root made by
# ``openssl x509 -req -signkey`` is a v1 certificate, for one. Such chains get a second,
# plain path check (:func:`_plain_chain_error`).
_PROFILE_ONLY_ERRORS = (
    "must be an X509v3 certificate",
    "Forbidden public key algorithm",
    "Forbidden signature algorithm",
    "serial",
    "must be UtcTime",
    "malformed DNS name constraint",  # ".example.com", as OpenSSL's docs write them
)
_WEAK_HASHES = ("md5", "sha1")


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _plain_ca_error(
    cert: x509.Certificate, anchor: bool, server: bool, leaf: x509.Certificate
) -> str:
    """OpenSSL's check that ``cert`` may issue (``X509_check_ca`` and the sslserver
    purpose): basicConstraints cA, or a v1 self-signed trust anchor; keyCertSign and
    serverAuth when those extensions are present; its name constraints."""
    exts = cert.extensions
    try:
        bc = exts.get_extension_for_class(x509.BasicConstraints).value
        if not bc.ca:
            return "basicConstraints does not mark it as a CA"
    except x509.ExtensionNotFound:
        if not (anchor and cert.version == x509.Version.v1 and _is_self_issued(cert)):
            return "no basicConstraints: not a CA"
    try:
        _ca_key_usage(None, cert, exts.get_extension_for_class(x509.KeyUsage).value)
    except x509.ExtensionNotFound:
        pass
    except ValueError as exc:
        return str(exc)
    if server:
        try:
            _server_auth_eku(
                None, cert, exts.get_extension_for_class(x509.ExtendedKeyUsage).value
            )
        except x509.ExtensionNotFound:
            pass
        except ValueError as exc:
            return str(exc)
    return _name_constraints_error(cert, leaf)


def _dns_within(name: str, base: str) -> bool:
    """OpenSSL's DNS subtree rule: ``.example.com`` covers the subdomains only,
    ``example.com`` the domain and its subdomains."""
    name, base = name.lower().rstrip("."), base.lower().rstrip(".")
    if base.startswith("."):
        return name.endswith(base)
    return not base or name == base or name.endswith("." + base)


def _ip_within(ip: Any, network: Any) -> bool:
    return bool(ip in network) if hasattr(network, "network_address") else bool(ip == network)


def _name_constraints_error(ca: x509.Certificate, leaf: x509.Certificate) -> str:
    try:
        nc = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return ""
    subtrees = [*(nc.permitted_subtrees or ()), *(nc.excluded_subtrees or ())]
    if any(not isinstance(g, x509.DNSName | x509.IPAddress) for g in subtrees):
        return "name constraints of a kind this check does not evaluate"
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    dns = san.get_values_for_type(x509.DNSName)
    ips = san.get_values_for_type(x509.IPAddress)
    checks: tuple[tuple[type[x509.GeneralName], list[Any], Callable[[Any, Any], bool]], ...] = (
        (x509.DNSName, dns, _dns_within),
        (x509.IPAddress, ips, _ip_within),
    )
    for kind, names, within in checks:
        permitted = [g.value for g in nc.permitted_subtrees or () if isinstance(g, kind)]
        excluded = [g.value for g in nc.excluded_subtrees or () if isinstance(g, kind)]
        for name in names:
            if permitted and not any(within(name, b) for b in permitted):
                return f"{name} is outside the name constraints of {common_name(ca.subject)!r}"
            if any(within(name, b) for b in excluded):
                return f"{name} is excluded by the name constraints of {common_name(ca.subject)!r}"
    return ""


def _plain_chain_error(
    certs: Sequence[x509.Certificate], when: dt.datetime, roots: Sequence[x509.Certificate],
    server: bool,
) -> str:
    """A plain RFC 5280 path check as OpenSSL does it, for the chains cryptography's own
    profile rules refuse: issuer by name and signature, dates, CA rules, EKU."""
    ts = when.timestamp()
    current, pool = certs[0], list(certs[1:])
    if server:
        try:
            _server_auth_eku(
                None, current,
                current.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value,
            )
        except x509.ExtensionNotFound:
            pass
        except ValueError as exc:
            return str(exc)
    for _depth in range(10):
        if not not_before(current) <= ts <= not_after(current):
            return "a certificate is outside its validity period"
        if current.signature_hash_algorithm is not None and (
            current.signature_hash_algorithm.name in _WEAK_HASHES
            and not any(r == current for r in roots)
        ):
            return f"signed with {current.signature_hash_algorithm.name}, which clients refuse"
        anchor_error = ""
        for root in roots:
            if root.subject == current.issuer and _signed_by(current, root):
                if current == root:
                    return ""
                error = _plain_ca_error(root, True, server, certs[0])
                if not error and not not_before(root) <= ts <= not_after(root):
                    error = "the trust anchor is outside its validity period"
                if not error:
                    return ""
                anchor_error = error
        if any(r == current for r in roots):
            return ""
        issuers = [c for c in pool if c.subject == current.issuer and _signed_by(current, c)]
        if not issuers:
            return anchor_error or "no issuer found for a certificate of the chain"
        error = _plain_ca_error(issuers[0], False, server, certs[0])
        if error:
            return error
        pool.remove(issuers[0])
        current = issuers[0]
    return "the chain is too long"


def _chain_error(
    certs: Sequence[x509.Certificate], when: dt.datetime, roots: Sequence[x509.Certificate],
    server: bool,
) -> str:
    """``""`` when the presented chain builds to ``roots`` at ``when`` under the client
    policy, else why not."""
    if not roots:
        return "no trust anchors"
    try:
        _client_policy(roots, when, server).build_client_verifier().verify(
            certs[0], list(certs[1:])
        )
    except (VerificationError, ValueError) as exc:
        why = _why(exc)
        if any(marker in why for marker in _PROFILE_ONLY_ERRORS):
            return _plain_chain_error(certs, when, roots, server)
        return why
    return ""


def _chain_ok(
    certs: Sequence[x509.Certificate],
    hostname: str | None,
    when: dt.datetime,
    roots: Sequence[x509.Certificate],
) -> bool:
    """Does the presented chain build to ``roots`` at ``when`` (hostname checked if given)?"""
    if hostname and not hostname_matches(certs[0], hostname):
        return False
    return not _chain_error(certs, when, roots, bool(hostname))


def _strict_finding(
    certs: Sequence[x509.Certificate],
    hostname: str | None,
    when: dt.datetime,
    roots: Sequence[x509.Certificate],
) -> str:
    """``""`` when a chain that clients accept also meets cryptography's Web PKI (CA/Browser
    Forum Baseline Requirements) profile, else what it finds."""
    builder = PolicyBuilder().store(Store(list(roots))).time(when)
    leaf, intermediates = certs[0], list(certs[1:])
    try:
        if hostname:
            subject: x509.DNSName | x509.IPAddress
            try:
                subject = x509.IPAddress(ipaddress.ip_address(hostname.strip("[]")))
            except ValueError:
                subject = x509.DNSName(hostname.rstrip("."))
            builder.build_server_verifier(subject).verify(leaf, intermediates)
        else:
            builder.extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=ExtensionPolicy.webpki_defaults_ee().may_be_present(
                    x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, _any_eku
                ),
            ).build_client_verifier().verify(leaf, intermediates)
    except (VerificationError, ValueError) as exc:
        hints = _strict_hints(certs, roots)
        return "; ".join(hints) if hints else _why(exc)
    return ""


def _strict_hints(
    certs: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]
) -> list[str]:
    """The common Web PKI findings, naming the certificate (cryptography's message does
    not say which one)."""
    hints: list[str] = []
    chain = list(certs) + [
        r for r in roots if r.subject == certs[-1].issuer and r != certs[-1]
    ][:1]
    for position, cert in enumerate(chain):
        who = _describe(position, cert) if position < len(certs) else (
            f"root {common_name(cert.subject)!r}"
        )
        if cert.version != x509.Version.v3:
            hints.append(f"{who} is not an X.509 v3 certificate")
            continue
        exts = {e.oid.dotted_string: e for e in cert.extensions}
        if position == 0:
            san = exts.get("2.5.29.17")
            if san is not None and san.critical and len(cert.subject) > 0:
                hints.append(f"{who} has a critical subjectAltName beside a subject")
            if san is None:
                hints.append(f"{who} has no subjectAltName")
            if "2.5.29.35" not in exts and not _is_self_issued(cert):
                hints.append(f"{who} has no authorityKeyIdentifier")
            continue
        if "2.5.29.15" not in exts:
            hints.append(f"CA {who} has no keyUsage extension (keyCertSign is required)")
        bc = exts.get("2.5.29.19")
        if bc is not None and not bc.critical:
            hints.append(f"CA {who} has a non-critical basicConstraints")
    return hints


@dataclass(frozen=True)
class Verification:
    """The outcome of verifying one chain."""

    reason: str
    """``""`` when TLS clients accept the chain, else one of :data:`VERIFY_REASONS`."""
    cause: str
    """Why the chain failed, in words (``""`` when it verified)."""
    strict: str
    """``""`` when the chain also meets the Web PKI profile; else the finding (a chain that
    failed verification has ``"not checked"``)."""


def _describe(position: int, cert: x509.Certificate) -> str:
    role = "leaf" if position == 0 else f"certificate {position}"
    return f"{role} {common_name(cert.subject) or cert.subject.rfc4514_string()[:64]!r}"


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def verify(
    certs: Sequence[x509.Certificate],
    hostname: str | None,
    now: float,
    roots: Sequence[x509.Certificate],
) -> Verification:
    """Verify a presented chain (leaf first) against ``roots``, as TLS clients do.

    The chain is first verified as a whole at ``now``. When that fails the reason is found
    by separate checks: dates of the presented certificates (``expired``,
    ``not_yet_valid``), the leaf's SANs against ``hostname`` (``hostname_mismatch``), then
    the chain again at a moment when every presented certificate is valid: when it does not
    build and the top presented certificate's issuer is not trusted: ``untrusted_root`` if
    that certificate is self-signed or a CA (the chain reaches a root we do not trust),
    else ``incomplete_chain`` (the server did not send its intermediate); anything else (a
    policy violation, a bad signature) is ``invalid_chain``. Every failure has a cause.
    """
    if not certs:
        return Verification(INVALID_CHAIN, "no certificate", "not checked")
    now_dt = dt.datetime.fromtimestamp(now, dt.UTC)
    server = bool(hostname)
    error = _chain_error(certs, now_dt, roots, server)
    name_ok = not hostname or hostname_matches(certs[0], hostname)
    if not error and name_ok:
        return Verification("", "", _strict_finding(certs, hostname, now_dt, roots))
    for position, cert in enumerate(certs):
        if not_after(cert) < now:
            days = (now - not_after(cert)) / 86400
            return Verification(
                EXPIRED,
                f"{_describe(position, cert)} expired at {_iso(not_after(cert))}"
                f" ({days:.1f} days ago)",
                "not checked",
            )
    for position, cert in enumerate(certs):
        if not_before(cert) > now:
            return Verification(
                NOT_YET_VALID,
                f"{_describe(position, cert)} is not valid before {_iso(not_before(cert))}",
                "not checked",
            )
    if not name_ok:
        assert hostname is not None
        sans = subject_alt_names(certs[0])
        cause = f"{hostname!r} matches none of the leaf's subjectAltNames {sans[:10]}"
        if common_name(certs[0].subject).lower() == hostname.rstrip(".").lower():
            cause += "; only its CN matches, and clients no longer fall back to the CN"
        return Verification(HOSTNAME_MISMATCH, cause, "not checked")
    lo = max(not_before(c) for c in certs)
    hi = min(not_after(c) for c in certs)
    when = dt.datetime.fromtimestamp(min(max(now, lo), hi) if lo <= hi else now, dt.UTC)
    error = _chain_error(certs, when, roots, server) if error else error
    top = certs[-1]
    issuer = common_name(top.issuer) or top.issuer.rfc4514_string()[:64]
    top_desc = _describe(len(certs) - 1, top)
    if error and not any(r.subject == top.issuer for r in roots):
        if _is_self_issued(top):
            return Verification(
                UNTRUSTED_ROOT, f"{top_desc} is self-signed and not a trusted root",
                "not checked",
            )
        if _is_ca(top):
            return Verification(
                UNTRUSTED_ROOT, f"{top_desc} is issued by {issuer!r}, which is not trusted",
                "not checked",
            )
        return Verification(
            INCOMPLETE_CHAIN,
            f"{top_desc} is issued by {issuer!r}, which the peer did not send and is not"
            " trusted (a missing intermediate?)",
            "not checked",
        )
    return Verification(INVALID_CHAIN, error or "the chain does not build", "not checked")
