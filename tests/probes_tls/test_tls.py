from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from probes import tls
from probes.base import Metric, ProbeResult
from probes.common import certs
from tests.probes_tls.certgen import DAY, Issued, ec_key, make_ca, make_leaf, now, rsa_key
from tests.probes_tls.conftest import ServerFactory
from tests.promtool import assert_promtool_clean
from tests.runs import run_once

pytestmark = pytest.mark.anyio


def values(result: ProbeResult, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found: list[Metric] = [m for m in result.metrics if m.name == name]
    assert len(found) == 1, f"{name} appears {len(found)} times"
    return {s.labels: s.value for s in found[0].samples}


def by(result: ProbeResult, name: str, **labels: str) -> float:
    hits = [
        v for lbl, v in values(result, name).items()
        if all(dict(lbl).get(k) == want for k, want in labels.items())
    ]
    assert len(hits) == 1, (name, labels, values(result, name))
    return hits[0]


def write_ca(tmp_path: Path, *cas: Issued) -> Path:
    path = tmp_path / "ca.pem"
    path.write_bytes(b"".join(c.pem for c in cas))
    return path


async def probe(runs: int = 4, **config: Any) -> ProbeResult:
    cfg = tls.TlsConfig.model_validate({"client_timeout": 2.0, **config})
    return await run_once(tls.KIND, cfg, runs=runs)  # many runs on one state


@pytest.fixture(scope="module")
def pki() -> dict[str, Issued]:
    root = make_ca("Festivals Test Root", key=rsa_key())
    inter = make_ca("Festivals Test Intermediate", issuer=root)
    return {"root": root, "inter": inter}


async def test_valid_rsa_chain(tls_server: ServerFactory, pki: dict[str, Issued],
                               tmp_path: Path) -> None:
    leaf = make_leaf(pki["inter"], key=rsa_key())
    server = tls_server(leaf, pki["inter"])
    source = f"127.0.0.1:{server.port}"
    result = await probe(
        endpoints=[{"address": source, "server_name": "localhost"}],
        ca_file=str(write_ca(tmp_path, pki["root"])),
    )
    assert result.success, result.detail
    assert by(result, "tls_verify_success", source=source) == 1
    assert by(result, "tls_verify_strict_success", source=source) == 1, result.detail
    assert by(result, "tls_source_up", source=source) == 1
    assert by(result, "tls_cert_not_after_timestamp_seconds", source=source, position="0",
              subject_cn="localhost", issuer_cn="Festivals Test Intermediate") == leaf.not_after
    assert by(result, "tls_cert_not_after_timestamp_seconds", position="1",
              subject_cn="Festivals Test Intermediate") == pki["inter"].not_after
    assert by(result, "probe_ssl_earliest_cert_expiry", source=source) == leaf.not_after
    assert by(result, "tls_cert_subject_alt_names", position="0") == 2
    info = values(result, "tls_cert")
    leaf_info = [dict(k) for k in info if dict(k)["position"] == "0"][0]
    assert leaf_info["key_type"] == "rsa" and leaf_info["key_bits"] == "2048"
    assert leaf_info["serial"] == format(leaf.cert.serial_number, "x")
    assert "serial" not in dict(next(iter(values(result, "tls_cert_subject_alt_names"))))
    assert any(dict(k).get("version") == "TLS 1.3" for k in
               values(result, "probe_tls_version"))
    await assert_promtool_clean("tls", [result])


async def test_expiring_in_two_days_is_still_valid_ecdsa(
    tls_server: ServerFactory, pki: dict[str, Issued], tmp_path: Path
) -> None:
    leaf = make_leaf(pki["inter"], key=ec_key(1), not_after=now() + 2 * DAY)
    server = tls_server(leaf, pki["inter"])
    result = await probe(endpoints=[f"localhost:{server.port}"],
                         ca_file=str(write_ca(tmp_path, pki["root"])))
    assert result.success, result.detail
    expiry = by(result, "probe_ssl_earliest_cert_expiry")
    assert 2 * 86400 - 60 < expiry - time.time() <= 2 * 86400
    info = [dict(k) for k in values(result, "tls_cert") if dict(k)["position"] == "0"][0]
    assert info["key_type"] == "ecdsa" and info["key_bits"] == "256"


@pytest.mark.parametrize(
    "case, reason",
    [
        ("expired", "expired"),
        ("not_yet_valid", "not_yet_valid"),
        ("self_signed", "untrusted_root"),
        ("wrong_host", "hostname_mismatch"),
        ("missing_intermediate", "incomplete_chain"),
        ("other_root", "untrusted_root"),
    ],
)
async def test_broken_chains_still_report_expiry(
    tls_server: ServerFactory, pki: dict[str, Issued], tmp_path: Path, case: str, reason: str
) -> None:
    inter = pki["inter"]
    extra: tuple[Issued, ...] = (inter,)
    if case == "expired":
        leaf = make_leaf(inter, not_before=now() - 100 * DAY, not_after=now() - 3 * DAY)
    elif case == "not_yet_valid":
        leaf = make_leaf(inter, not_before=now() + 3 * DAY, not_after=now() + 90 * DAY)
    elif case == "self_signed":
        leaf, extra = make_leaf(None), ()
    elif case == "wrong_host":
        leaf = make_leaf(inter, ("api.festivals.app",))
    elif case == "missing_intermediate":
        leaf, extra = make_leaf(inter), ()
    else:
        other = make_ca("Other Root")
        other_inter = make_ca("Other Intermediate", issuer=other)
        leaf, extra = make_leaf(other_inter), (other_inter,)
    server = tls_server(leaf, *extra)
    result = await probe(endpoints=[f"localhost:{server.port}"],
                         ca_file=str(write_ca(tmp_path, pki["root"])))
    assert not result.success
    assert result.reason == reason, result.detail
    assert any(f"verification failed: {reason}: " in d for d in result.detail)
    assert by(result, "tls_verify_success") == 0
    assert by(result, "tls_verify_strict_success") == 0
    assert by(result, "tls_verify_failed", reason=reason) == 1
    assert sum(values(result, "tls_verify_failed").values()) == 1
    assert by(result, "probe_ssl_earliest_cert_expiry") == min(
        c.not_after for c in (leaf, *extra))
    assert by(result, "tls_cert_not_after_timestamp_seconds", position="0") == leaf.not_after
    # verify: false reports the same but does not fail the run
    relaxed = await probe(endpoints=[f"localhost:{server.port}"], verify=False,
                          ca_file=str(write_ca(tmp_path, pki["root"])))
    assert relaxed.success and by(relaxed, "tls_verify_failed", reason=reason) == 1


async def test_intermediate_expiring_before_leaf(
    tls_server: ServerFactory, pki: dict[str, Issued], tmp_path: Path
) -> None:
    short = make_ca("Short Intermediate", issuer=pki["root"], not_after=now() + 5 * DAY)
    leaf = make_leaf(short, not_after=now() + 60 * DAY)
    server = tls_server(leaf, short)
    source = f"127.0.0.1:{server.port}"
    result = await probe(endpoints=[{"address": source, "server_name": "localhost"}],
                         ca_file=str(write_ca(tmp_path, pki["root"])))
    assert result.success, result.detail
    assert by(result, "probe_ssl_earliest_cert_expiry") == short.not_after
    assert by(result, "tls_earliest_cert_expiry_timestamp_seconds") == short.not_after
    assert by(result, "tls_earliest_cert_position", source=source) == 1


async def test_silent_server_hits_the_deadline(
    tls_server: ServerFactory, pki: dict[str, Issued]
) -> None:
    server = tls_server(make_leaf(None), preamble="silent")
    started = time.monotonic()
    with anyio.fail_after(5):
        result = await probe(endpoints=[f"127.0.0.1:{server.port}"], client_timeout=0.5,
                             runs=1)
    assert 0.4 < time.monotonic() - started < 2
    assert result.reason == "timeout"
    assert by(result, "tls_source_up") == 0


async def test_refused_port() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await probe(endpoints=[f"127.0.0.1:{port}"])
    assert result.reason == "refused", result.detail
    assert by(result, "tls_source_up") == 0


@pytest.mark.parametrize("kind", ["postgres", "smtp"])
async def test_starttls(
    tls_server: ServerFactory, pki: dict[str, Issued], tmp_path: Path, kind: str
) -> None:
    leaf = make_leaf(pki["inter"])
    server = tls_server(leaf, pki["inter"], preamble=kind)
    result = await probe(
        endpoints=[{"address": f"127.0.0.1:{server.port}", "server_name": "localhost",
                    "starttls": kind}],
        ca_file=str(write_ca(tmp_path, pki["root"])),
    )
    assert result.success, result.detail
    # The server thread counts the handshake once it has read the client's Finished,
    # which can be just after the probe has returned.
    with anyio.fail_after(5):
        while server.handshakes < 4:
            await anyio.sleep(0.01)
    assert server.handshakes == 4  # one per run
    assert by(result, "probe_ssl_earliest_cert_expiry") == leaf.not_after


async def test_files_pem_der_bundle_and_errors(
    pki: dict[str, Issued], tmp_path: Path
) -> None:
    leaf = make_leaf(pki["inter"], not_after=now() + 10 * DAY)
    certdir = tmp_path / "certs"
    certdir.mkdir()
    (certdir / "leaf.der").write_bytes(leaf.der)
    (certdir / "fullchain.pem").write_bytes(leaf.pem + pki["inter"].pem)
    (certdir / "bundle.pem").write_bytes(leaf.key_pem + pki["root"].pem + pki["inter"].pem)
    ca = write_ca(tmp_path, pki["root"])
    result = await probe(files=[str(certdir / "*.pem"), str(certdir / "*.der")], ca_file=str(ca))
    assert result.reason == "incomplete_chain", result.detail  # leaf.der alone
    full = str(certdir / "fullchain.pem")
    assert by(result, "tls_verify_success", source=full) == 1
    assert by(result, "tls_earliest_cert_expiry_timestamp_seconds", source=full) == leaf.not_after
    der = str(certdir / "leaf.der")
    assert by(result, "tls_cert_not_after_timestamp_seconds", source=der) == leaf.not_after
    assert by(result, "tls_verify_failed", source=der, reason="incomplete_chain") == 1
    bundle = str(certdir / "bundle.pem")
    assert len([k for k in values(result, "tls_cert") if dict(k)["source"] == bundle]) == 2
    assert not any(m.name == "probe_ssl_earliest_cert_expiry" for m in result.metrics)

    (certdir / "garbage.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n")
    bad = await probe(files=[str(certdir / "*.pem"), str(tmp_path / "none" / "*.crt")],
                      ca_file=str(ca))
    assert bad.reason == "not_found"  # the empty glob is reported first
    assert by(bad, "tls_source_up", source=str(certdir / "garbage.pem")) == 0
    assert by(bad, "tls_source_up", source=str(tmp_path / "none" / "*.crt")) == 0
    assert by(bad, "tls_source_up", source=full) == 1


def test_load_certificates_and_metrics(pki: dict[str, Issued]) -> None:
    with pytest.raises(ValueError, match="neither"):
        certs.load_certificates(b"\x30\x03garbage")
    with pytest.raises(ValueError):
        certs.load_certificates(b"")
    loaded = certs.load_certificates(pki["inter"].pem + pki["root"].pem)
    assert [c.serial_number for c in loaded] == [
        pki["inter"].cert.serial_number, pki["root"].cert.serial_number]
    assert certs.load_certificates(pki["root"].der)[0] == pki["root"].cert
    metrics = certs.certificate_metrics(
        "secret/festivals/festivals-tls", loaded, None, time.time(), roots=[pki["root"].cert])
    names = {m.name for m in metrics}
    assert {"tls_cert_not_after_timestamp_seconds", "tls_verify_success"} <= names
    assert certs.verify_reason(metrics) == ""


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="at least one"):
        tls.TlsConfig.model_validate({})
    with pytest.raises(ValueError, match="host:port"):
        tls.TlsConfig.model_validate({"endpoints": ["example.com"]})
    with pytest.raises(ValueError, match="brackets"):
        tls.TlsConfig.model_validate({"endpoints": ["::1:443"]})
    cfg = tls.TlsConfig.model_validate(
        {"endpoints": ["[::1]:443"], "kubernetes_secret": {"namespace": "festivals",
                                                           "name": "festivals-tls"}})
    assert cfg.endpoints[0].host == "::1" and cfg.endpoints[0].sni is None
    assert tls.target(cfg) == "[::1]:443, secret/festivals/festivals-tls"


async def test_scheduler_deadline_cancels_cleanly(tls_server: ServerFactory) -> None:
    server = tls_server(make_leaf(None), preamble="silent")
    cfg = tls.TlsConfig.model_validate(
        {"client_timeout": 5.0, "endpoints": [f"127.0.0.1:{server.port}"]})
    with pytest.raises(TimeoutError), anyio.fail_after(0.3):
        await tls.run(cfg, tls.new_state(cfg))


def test_private_ca_leaf_with_critical_san_verifies_like_openssl() -> None:
    """trustme (like many private CAs) marks the SAN critical next to a non-empty subject.
    OpenSSL and every client accept it; the Web PKI profile would not. The probe must
    agree with the clients, and still check the name."""
    import trustme

    ca = trustme.CA()
    chain = certs.load_certificates(ca.issue_cert("api.festivals.app").cert_chain_pems[0].bytes())
    roots = certs.load_certificates(ca.cert_pem.bytes())
    assert certs.verify_chain(chain, "api.festivals.app", time.time(), roots) == ""
    assert certs.verify_chain(chain, "other.festivals.app", time.time(), roots) == (
        "hostname_mismatch"
    )
    assert certs.verify_chain(chain, "api.festivals.app", time.time(), []) != ""
    # the Web PKI profile's objection is a finding beside the verdict, naming the leaf
    outcome = certs.verify(chain, "api.festivals.app", time.time(), roots)
    assert outcome.reason == "" and "critical subjectAltName" in outcome.strict
    metrics = certs.certificate_metrics("f", chain, "api.festivals.app", time.time(),
                                        roots=roots)
    strict = [m for m in metrics if m.name == "tls_verify_strict_success"]
    assert [s.value for m in strict for s in m.samples] == [0.0]


SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH


async def test_server_auth_only_intermediate_verifies(
    tls_server: ServerFactory, pki: dict[str, Issued], tmp_path: Path
) -> None:
    """Public intermediates carry an EKU, more and more often serverAuth alone (Chrome's
    dedicated TLS hierarchies). TLS clients accept such a chain; so must the probe."""
    inter = make_ca("Server-Only Intermediate", issuer=pki["root"], eku=(SERVER_AUTH,))
    leaf = make_leaf(inter)
    server = tls_server(leaf, inter)
    result = await probe(endpoints=[f"localhost:{server.port}"],
                         ca_file=str(write_ca(tmp_path, pki["root"])))
    assert result.success, result.detail
    assert by(result, "tls_verify_success") == 1


def test_extended_key_usage_rules(pki: dict[str, Issued]) -> None:
    roots = [pki["root"].cert]
    t = time.time()
    both = make_ca("Both EKU Intermediate", issuer=pki["root"], eku=(SERVER_AUTH, CLIENT_AUTH))
    server_only = make_ca("Server EKU Intermediate", issuer=pki["root"], eku=(SERVER_AUTH,))
    client_only = make_ca("Client EKU Intermediate", issuer=pki["root"], eku=(CLIENT_AUTH,))
    for inter in (both, server_only):
        chain = [make_leaf(inter).cert, inter.cert]
        assert certs.verify_chain(chain, "localhost", t, roots) == ""
        assert certs.verify_chain(chain, None, t, roots) == ""
    # a CA restricted to client certificates cannot vouch for a server, as clients say
    chain = [make_leaf(client_only).cert, client_only.cert]
    assert certs.verify_chain(chain, "localhost", t, roots) == "invalid_chain"
    assert certs.verify_chain(chain, None, t, roots) == ""  # a file: purpose unknown
    client_leaf = make_leaf(pki["inter"], eku=(CLIENT_AUTH,))
    chain = [client_leaf.cert, pki["inter"].cert]
    assert certs.verify_chain(chain, "localhost", t, roots) == "invalid_chain"
    assert certs.verify_chain(chain, None, t, roots) == ""


async def test_starttls_peer_speaking_another_protocol_is_protocol_at_once(
    tls_server: ServerFactory,
) -> None:
    server = tls_server(make_leaf(None), preamble="binary")
    started = time.monotonic()
    result = await probe(endpoints=[{"address": f"127.0.0.1:{server.port}",
                                     "starttls": "smtp"}], client_timeout=3.0, runs=1)
    assert result.reason == "protocol", result.detail
    assert time.monotonic() - started < 1.0  # as the bytes arrive, not at the timeout


def test_smtp_reply_lines_are_checked_as_they_arrive() -> None:
    assert tls._smtp_start_ok(b"") and tls._smtp_start_ok(b"2")
    assert tls._smtp_start_ok(b"25") and tls._smtp_start_ok(b"250")
    assert not tls._smtp_start_ok(b"+OK") and not tls._smtp_start_ok(b"\x00")
