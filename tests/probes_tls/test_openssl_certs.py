"""The probe's verdict agrees with OpenSSL's on certificates made with the openssl command
line as users make them; stricter Web PKI findings are reported beside the verdict."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import anyio
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from probes import tls
from probes.base import ProbeResult
from probes.common import certs
from tests.probes_tls.certgen import Issued
from tests.probes_tls.conftest import ServerFactory
from tests.probes_tls.openssl_cli import OpenSSL, needs_openssl
from tests.runs import run_once

pytestmark = needs_openssl

SAN = "subjectAltName=DNS:localhost,IP:127.0.0.1"
CA_EXT = "basicConstraints=critical,CA:TRUE"

# name -> (build, OpenSSL accepts?, our reason, words the cause or finding must contain)
CASES: dict[str, tuple[str, bool, str, str]] = {
    "debian_default_root": ("root", True, "", "no keyUsage"),
    "root_with_key_usage": ("root_ku", True, "", ""),
    "intermediate_without_key_usage": ("inter", True, "", "no keyUsage"),
    "v1_root_from_signkey": ("v1", True, "", "not an X.509 v3"),
    "intermediate_not_a_ca": ("inter_not_ca", False, "invalid_chain", "basicConstraints"),
    "root_without_keycertsign": ("root_no_kcs", False, "invalid_chain", "keyCertSign"),
    "leaf_client_auth_only": ("client_leaf", False, "invalid_chain", "server authentication"),
    "leaf_signed_with_sha1": ("sha1", False, "invalid_chain", "sha1"),
    "leaf_from_another_root": ("other_root", False, "untrusted_root", "not a trusted root"),
    "leading_dot_name_constraint": ("nc_dot", True, "", "no keyUsage"),
    "outside_the_name_constraint": ("nc_outside", False, "invalid_chain", "outside the name"),
    "path_length_exceeded": ("pathlen", False, "invalid_chain", "path length"),
    "unknown_critical_extension": ("unknown_critical", False, "invalid_chain", "critical"),
    "ed25519_chain": ("ed25519", True, "", "no keyUsage"),
    "intermediate_client_auth_only": ("inter_client", False, "invalid_chain",
                                      "server authentication"),
    "leaf_marked_as_ca": ("leaf_ca", True, "", "no keyUsage"),
}
HOSTS = {"nc_dot": "api.example.com", "nc_outside": "api.other.test"}


def build(o: OpenSSL, how: str) -> tuple[str, str, tuple[str, ...]]:
    """Make the certificates; ``(leaf, trusted root, presented intermediates)``."""
    host = HOSTS.get(how, "localhost")
    if how in ("nc_dot", "nc_outside"):  # written as OpenSSL's docs write them
        o.root("ca", "Ops CA", "nameConstraints=critical,permitted;DNS:.example.com")
        o.issue("leaf", host, "ca", f"subjectAltName=DNS:{host}")
        return "leaf", "ca", ()
    if how == "pathlen":
        o.root("ca", "Ops CA", "basicConstraints=critical,CA:TRUE,pathlen:0")
        o.issue("inter", "Ops Intermediate", "ca", CA_EXT)
        o.issue("leaf", "localhost", "inter", SAN)
        return "leaf", "ca", ("inter",)
    if how == "ed25519":
        o.ok("req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "30", "-subj", "/CN=Ops CA")
        o.issue("leaf", "localhost", "ca", SAN)
        return "leaf", "ca", ()
    if how == "inter_client":
        o.root("ca", "Ops CA")
        o.issue("inter", "Ops Intermediate", "ca", f"{CA_EXT};extendedKeyUsage=clientAuth")
        o.issue("leaf", "localhost", "inter", SAN)
        return "leaf", "ca", ("inter",)
    if how == "root_ku":
        o.root("ca", "Ops CA", "keyUsage=critical,keyCertSign,cRLSign")
    elif how == "root_no_kcs":
        o.root("ca", "Ops CA", "keyUsage=critical,digitalSignature")
    elif how == "v1":
        o.v1_root("ca", "Tutorial CA")
    else:
        o.root("ca", "Ops CA", rsa=how != "sha1")
    if how in ("inter", "inter_not_ca"):
        o.issue("inter", "Ops Intermediate", "ca", CA_EXT if how == "inter" else "")
        o.issue("leaf", "localhost", "inter", SAN)
        return "leaf", "ca", ("inter",)
    if how == "client_leaf":
        o.issue("leaf", "localhost", "ca", f"{SAN};extendedKeyUsage=clientAuth")
    elif how == "unknown_critical":
        o.issue("leaf", "localhost", "ca", f"{SAN};1.2.3.4=critical,ASN1:NULL")
    elif how == "leaf_ca":
        o.issue("leaf", "localhost", "ca", f"{SAN};basicConstraints=CA:TRUE")
    elif how == "sha1":
        o.issue("leaf", "localhost", "ca", SAN, "-sha1")
    elif how == "other_root":
        o.root("other", "Other CA")
        o.issue("leaf", "localhost", "other", SAN)
        return "leaf", "ca", ("other",)
    else:
        o.issue("leaf", "localhost", "ca", SAN)
    return "leaf", "ca", ()


def load(o: OpenSSL, *names: str) -> list[x509.Certificate]:
    return [c for n in names for c in certs.load_certificates(o.path(f"{n}.pem").read_bytes())]


@pytest.mark.parametrize("case", sorted(CASES))
def test_verdict_agrees_with_openssl_verify(tmp_path: Path, case: str) -> None:
    how, accepted, reason, words = CASES[case]
    o = OpenSSL(tmp_path)
    leaf, root, inters = build(o, how)
    assert o.verifies(leaf, root, *inters) is accepted  # the oracle, as a TLS client
    chain = load(o, leaf, *inters)
    outcome = certs.verify(chain, HOSTS.get(how, "localhost"), time.time(), load(o, root))
    assert outcome.reason == reason, outcome
    if reason:
        assert words.lower() in outcome.cause.lower(), outcome
        assert outcome.strict == "not checked"
    else:
        assert outcome.cause == ""
        if words:
            assert words.lower() in outcome.strict.lower(), outcome
        else:
            assert outcome.strict == "", outcome
    # files are checked without a name: the same verdict for these chains, but a
    # clientAuth-only leaf is fine when the purpose is unknown
    unnamed = certs.verify(chain, None, time.time(), load(o, root))
    purpose_only = how in ("client_leaf", "inter_client")
    assert unnamed.reason == ("" if purpose_only else reason), unnamed


def _issued(o: OpenSSL, name: str) -> Issued:
    cert = certs.load_certificates(o.path(f"{name}.pem").read_bytes())[0]
    key = serialization.load_pem_private_key(o.path(f"{name}.key").read_bytes(), None)
    return Issued(cert, key)  # type: ignore[arg-type]


def _python_client_accepts(port: int, ca: Path) -> bool:
    """What the http probe and any Python or curl client does: OpenSSL verifies."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.hostname_checks_common_name = False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            with ctx.wrap_socket(sock, server_hostname="localhost"):
                return True
    except ssl.SSLCertVerificationError:
        return False


def _value(result: ProbeResult, name: str) -> float:
    [metric] = [m for m in result.metrics if m.name == name]
    [sample] = metric.samples
    return sample.value


@pytest.mark.anyio
async def test_debian_default_ca_endpoint_verifies_with_a_finding(
    tmp_path: Path, tls_server: ServerFactory
) -> None:
    """The issue's case: a CA from ``openssl req -x509`` signs a leaf OpenSSL accepts."""
    o = OpenSSL(tmp_path)
    await anyio.to_thread.run_sync(build, o, "root")
    server = tls_server(_issued(o, "leaf"))
    assert await anyio.to_thread.run_sync(_python_client_accepts, server.port, o.path("ca.pem"))
    cfg = tls.TlsConfig.model_validate({
        "client_timeout": 2.0, "ca_file": str(o.path("ca.pem")),
        "endpoints": [f"localhost:{server.port}"]})
    result = await run_once(tls.KIND, cfg, runs=8)
    assert result.success, result.detail
    assert _value(result, "tls_verify_success") == 1
    assert _value(result, "tls_verify_strict_success") == 0
    [finding] = [d for d in result.detail if "strict" in d]
    assert "'Ops CA' has no keyUsage" in finding and "not a failure" in finding


@pytest.mark.anyio
async def test_cn_only_leaf_is_a_mismatch_with_its_cause(
    tmp_path: Path, tls_server: ServerFactory
) -> None:
    o = OpenSSL(tmp_path)

    def make() -> None:
        o.root("ca", "Ops CA")
        o.issue("leaf", "localhost", "ca")  # no subjectAltName: only the CN names the host

    await anyio.to_thread.run_sync(make)
    server = tls_server(_issued(o, "leaf"))
    assert not await anyio.to_thread.run_sync(
        _python_client_accepts, server.port, o.path("ca.pem"))
    cfg = tls.TlsConfig.model_validate({
        "client_timeout": 2.0, "ca_file": str(o.path("ca.pem")),
        "endpoints": [f"localhost:{server.port}"]})
    result = await run_once(tls.KIND, cfg, runs=5)
    assert result.reason == "hostname_mismatch"
    [cause] = [d for d in result.detail if "verification failed" in d]
    assert "only its CN matches" in cause


@pytest.mark.parametrize("case", ["intermediate_not_a_ca", "root_without_keycertsign"])
@pytest.mark.anyio
async def test_every_failure_names_its_cause(
    tmp_path: Path, tls_server: ServerFactory, case: str
) -> None:
    how, _, reason, words = CASES[case]
    o = OpenSSL(tmp_path)
    leaf, _root, inters = await anyio.to_thread.run_sync(build, o, how)
    server = tls_server(_issued(o, leaf), *(_issued(o, i) for i in inters))
    cfg = tls.TlsConfig.model_validate({
        "client_timeout": 2.0, "ca_file": str(o.path("ca.pem")),
        "endpoints": [f"localhost:{server.port}"]})
    result = await run_once(tls.KIND, cfg, runs=3)
    assert result.reason == reason
    [cause] = [d for d in result.detail if "verification failed" in d]
    assert words in cause, cause
