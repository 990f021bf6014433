"""The exporter process behind a web config, spoken to by curl and Python's ssl."""

from __future__ import annotations

import shutil
import socket
import ssl
import statistics
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.probes_tls.certgen import DAY, now
from tests.web_security.conftest import (
    HASH,
    PASSWORD,
    Pki,
    Starter,
    client_context,
    tls_config,
)

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


def curl(*args: str) -> tuple[int, str]:
    """``(curl exit code, HTTP status)``."""
    assert CURL is not None
    done = subprocess.run([CURL, "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                           "--max-time", "10", *args], capture_output=True, text=True,
                          timeout=20, check=False)
    return done.returncode, done.stdout.strip()


def served_serial(port: int, ca: Path) -> int:
    from cryptography import x509

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with client_context(ca).wrap_socket(sock, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@needs_curl
def test_basic_auth_over_tls_guards_every_page(start: Starter, pki: Pki) -> None:
    cert, key = pki.server("server")
    web = {**tls_config(cert, key), "basic_auth_users": {"alice": HASH}}
    exporter = start(web)
    exporter.wait_listening()
    base = f"https://localhost:{exporter.port}"
    ca = ["--cacert", str(pki.ca_file)]
    alice = ["-u", f"alice:{PASSWORD}"]
    assert curl(*ca, *alice, f"{base}/metrics") == (0, "200")
    assert curl(*ca, "-u", "alice:wrong", f"{base}/metrics") == (0, "401")
    assert curl(*ca, "-u", f"mallory:{PASSWORD}", f"{base}/metrics") == (0, "401")
    for path in ("/metrics", "/", "/probes/alpha", "/probe?name=alpha"):
        assert curl(*ca, f"{base}{path}") == (0, "401"), path
    assert curl(*ca, *alice, f"{base}/") == (0, "200")
    assert curl(*ca, *alice, f"{base}/probes/alpha") == (0, "200")
    # on-demand runs and reloads are off without --web.enable-lifecycle
    assert curl(*ca, *alice, f"{base}/probe?name=alpha") == (0, "403")
    assert curl(*ca, *alice, "-X", "POST", f"{base}/-/reload") == (0, "403")
    # kubelet's probes carry no credentials
    assert curl(*ca, f"{base}/-/healthy") == (0, "200")
    assert curl(*ca, "-I", f"{base}/-/ready")[1] in ("200", "503")
    assert curl(*ca, f"{base}/-/ready")[1] in ("200", "503")
    # headers past 16 KiB are refused before any handler runs
    for version in ("--http1.1", "--http2"):
        code, status = curl(*ca, *alice, version, "-H", "X-Big: " + "a" * 20000,
                            f"{base}/metrics")
        assert status in ("400", "431"), (version, code, status)
    # plain HTTP on the TLS port gets no page
    assert curl(f"http://127.0.0.1:{exporter.port}/metrics")[1] != "200"


def test_wrong_password_and_unknown_user_take_as_long(
    start: Starter, pki: Pki
) -> None:
    cert, key = pki.server("server")
    exporter = start({**tls_config(cert, key), "basic_auth_users": {"alice": HASH}})
    exporter.wait_listening()
    url = f"https://localhost:{exporter.port}/metrics"

    def timed(user: str, password: str) -> float:
        began = time.perf_counter()
        status = httpx.get(url, auth=(user, password), verify=client_context(pki.ca_file),
                           timeout=10).status_code
        took = time.perf_counter() - began
        assert status == (200 if password == PASSWORD and user == "alice" else 401)
        return took

    timed("alice", PASSWORD)  # warm up (and cache the good credentials)
    wrong: list[float] = []
    unknown: list[float] = []
    for i in range(12):  # interleaved, so that load on the machine hits both alike
        wrong.append(timed("alice", f"wrong{i}"))
        unknown.append(timed(f"user{i}", PASSWORD))
    good = [timed("alice", PASSWORD) for _ in range(8)]
    ratio = statistics.median(unknown) / statistics.median(wrong)
    print(f"median wrong password {statistics.median(wrong) * 1000:.1f} ms, unknown user "
          f"{statistics.median(unknown) * 1000:.1f} ms (ratio {ratio:.2f}), cached good "
          f"{statistics.median(good) * 1000:.1f} ms")
    assert 0.5 < ratio < 2.0
    # both pay for a bcrypt check: an unknown user is not turned away at once
    assert min(unknown) > statistics.median(good)


def _try_tls(port: int, ca: Path, version: ssl.TLSVersion) -> str:
    ctx = client_context(ca)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # so the client really offers old versions
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = version
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
                return tls.version() or ""
    except ssl.SSLError as exc:
        return f"refused: {exc.reason}"


def _old_tls_server(cert: Path, key: Path) -> int:
    """A server that still speaks TLS 1.0/1.1: proves the client below really offers them."""
    import threading

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(10)

    def serve() -> None:
        with srv:
            for _ in range(2):
                conn, _ = srv.accept()
                try:
                    ctx.wrap_socket(conn, server_side=True).close()
                except (ssl.SSLError, OSError):
                    conn.close()

    threading.Thread(target=serve, daemon=True).start()
    port: int = srv.getsockname()[1]
    return port


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_0_and_1_1_are_refused(start: Starter, pki: Pki) -> None:
    cert, key = pki.server("server")
    old_port = _old_tls_server(cert, key)
    assert _try_tls(old_port, pki.ca_file, ssl.TLSVersion.TLSv1) == "TLSv1"
    assert _try_tls(old_port, pki.ca_file, ssl.TLSVersion.TLSv1_1) == "TLSv1.1"
    exporter = start(tls_config(cert, key))
    exporter.wait_listening()
    assert _try_tls(exporter.port, pki.ca_file, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    assert _try_tls(exporter.port, pki.ca_file, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        assert _try_tls(exporter.port, pki.ca_file, old).startswith("refused"), old
    if CURL is not None:
        code, _ = curl("--cacert", str(pki.ca_file), "--tlsv1.0", "--tls-max", "1.1",
                       "--ciphers", "DEFAULT@SECLEVEL=0",
                       f"https://localhost:{exporter.port}/-/healthy")
        assert code != 0


@needs_curl
def test_client_certificate_required(start: Starter, pki: Pki) -> None:
    cert, key = pki.server("server")
    exporter = start(tls_config(cert, key, client_auth_type="RequireAndVerifyClientCert",
                                client_ca_file=str(pki.client_ca_file)))
    exporter.wait_listening()
    url = f"https://localhost:{exporter.port}/metrics"
    ca = ["--cacert", str(pki.ca_file)]
    good = pki.client("good")
    assert curl(*ca, "--cert", str(good[0]), "--key", str(good[1]), url) == (0, "200")
    code, status = curl(*ca, url)  # no client certificate: the handshake fails
    assert code != 0 and status == "000"
    from tests.probes_tls.certgen import make_ca

    stranger = pki.client("stranger", make_ca("Stranger CA"))
    code, status = curl(*ca, "--cert", str(stranger[0]), "--key", str(stranger[1]), url)
    assert code != 0 and status == "000"
    with pytest.raises((ssl.SSLError, httpx.HTTPError)):
        httpx.get(url, verify=client_context(pki.ca_file), timeout=5)


def test_reload_swaps_certificates_and_refuses_an_expired_one(
    start: Starter, pki: Pki
) -> None:
    cert, key = pki.server("live")
    exporter = start(tls_config(cert, key), "--web.enable-lifecycle")
    exporter.wait_listening()
    first = served_serial(exporter.port, pki.ca_file)
    # cert-manager renews: the files are replaced in place, no signal
    new_cert, new_key = pki.server("renewed")
    key.write_bytes(new_key.read_bytes())
    cert.write_bytes(new_cert.read_bytes())
    renewed = served_serial_after_change(exporter.port, pki.ca_file, first)
    assert renewed != first
    # an expired certificate is refused on reload: the renewed one keeps serving
    old_cert, old_key = pki.server("expired", not_before=now() - 30 * DAY,
                                   not_after=now() - DAY)
    key.write_bytes(old_key.read_bytes())
    cert.write_bytes(old_cert.read_bytes())
    answer = httpx.post(f"https://localhost:{exporter.port}/-/reload",
                        verify=client_context(pki.ca_file), timeout=10)
    assert answer.status_code == 400
    assert "tls_server_config.cert_file" in answer.text and "expired" in answer.text
    time.sleep(2.5)  # let the file watcher see the change too
    assert served_serial(exporter.port, pki.ca_file) == renewed
    metrics = httpx.get(f"https://localhost:{exporter.port}/metrics",
                        verify=client_context(pki.ca_file), timeout=10).text
    assert "festivals_exporter_config_last_reload_successful 0.0" in metrics
    # a bad web config is refused with the field named, the running one stays
    exporter.write({**tls_config(cert, key), "tls_server_config": {
        "cert_file": str(new_cert), "key_file": str(new_key), "min_version": "TLS11"}})
    answer = httpx.post(f"https://localhost:{exporter.port}/-/reload",
                        verify=client_context(pki.ca_file), timeout=10)
    assert answer.status_code == 400 and "tls_server_config.min_version" in answer.text
    assert served_serial(exporter.port, pki.ca_file) == renewed
    stderr = exporter.stop()
    assert "web config reloaded" in stderr and "web config reload failed" in stderr


def served_serial_after_change(port: int, ca: Path, old: int) -> int:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        serial = served_serial(port, ca)
        if serial != old:
            return serial
        time.sleep(0.2)
    raise AssertionError("the renewed certificate was never served")


@pytest.mark.parametrize("web, words", [
    ({"tls_server_config": {"cert_file": "c", "key_file": "k", "min_version": "TLS10"}},
     "tls_server_config.min_version: TLS 1.0 and 1.1 are refused"),
    ({"basic_auth_users": {"alice": "plaintext"}}, "basic_auth_users: alice: not a bcrypt"),
    ({"tls_server_config": {"cert_file": "c", "key_file": "k", "typo": 1}},
     "tls_server_config.typo: unknown key"),
])
def test_bad_web_config_is_refused_at_start(
    start: Starter, web: dict[str, object], words: str
) -> None:
    exporter = start(web)
    assert exporter.exit_code() == 2
    stderr = exporter.stop()
    assert words in stderr and "plaintext" not in stderr


def test_expired_certificate_is_refused_at_start(start: Starter, pki: Pki) -> None:
    cert, key = pki.server("old", not_before=now() - 30 * DAY, not_after=now() - DAY)
    exporter = start(tls_config(cert, key))
    assert exporter.exit_code() == 2
    stderr = exporter.stop()
    assert "tls_server_config.cert_file" in stderr and "expired" in stderr


def test_slow_connection_flood_does_not_delay_metrics(
    start: Starter, pki: Pki
) -> None:
    cert, key = pki.server("server")
    exporter = start({**tls_config(cert, key), "basic_auth_users": {"alice": HASH}})
    exporter.wait_listening()
    url = f"https://localhost:{exporter.port}/metrics"
    ctx = client_context(pki.ca_file)

    def scrape() -> float:
        began = time.perf_counter()
        with httpx.Client(verify=ctx, timeout=10) as client:  # a new connection each time
            assert client.get(url, auth=("alice", PASSWORD)).status_code == 200
        return time.perf_counter() - began

    scrape()
    baseline = statistics.median(scrape() for _ in range(5))
    flood: list[socket.socket] = []
    try:
        for i in range(300):
            sock = socket.create_connection(("127.0.0.1", exporter.port), timeout=5)
            if i % 2:  # half finish the handshake, then dribble half a request
                sock = ctx.wrap_socket(sock, server_hostname="localhost")
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            flood.append(sock)  # the other half never even start TLS
        during = [scrape() for _ in range(5)]
        print(f"/metrics median {baseline * 1000:.1f} ms alone, "
              f"{statistics.median(during) * 1000:.1f} ms (max {max(during) * 1000:.1f}) "
              "beside 300 slow connections")
        assert max(during) < 1.0  # the budget: far below a 10 s scrape timeout
        # the slow ones are cut off: headers must be complete within 5 s of connecting
        slow = flood[1]
        slow.settimeout(10)
        began = time.monotonic()
        try:
            assert slow.recv(1024) == b""
        except (ssl.SSLError, OSError):
            pass
        assert time.monotonic() - began < 8
    finally:
        for sock in flood:
            sock.close()
