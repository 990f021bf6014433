"""The exporter as a real process: signals, reloads, port conflicts, the page in Chromium."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from exporter import daemon as daemon_module
from exporter.config import parse_config

LAUNCHER = Path(__file__).with_name("run_with_fake.py")
CONFIG = """
global: {start_spread: 0s}
probes:
  - {name: alpha, kind: fake, interval: 0.5s, timeout: 0.2s}
  - {name: beta, kind: fake, mode: fail, interval: 0.5s, timeout: 0.2s}
  - {name: stuck, kind: fake, mode: hang, interval: 1s, timeout: 0.5s}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Exporter:
    def __init__(self, config: Path, log_flags: tuple[str, ...] = ("--log.format=json",)) -> None:
        self.config = config
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, str(LAUNCHER), "run", f"--config.file={config}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
             *log_flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def wait_until(self, path: str, predicate: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                body = httpx.get(self.url + path, timeout=1).text
                if predicate in body:
                    return body
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"exporter exited: {self.proc.communicate()}")
            time.sleep(0.05)
        raise AssertionError(f"{predicate!r} never appeared at {path}")

    def stop(self) -> tuple[int, float, str]:
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        return self.proc.returncode, time.monotonic() - began, err


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Exporter]:
    path = tmp_path / "config.yml"
    path.write_text(CONFIG)
    exporter = Exporter(path)
    yield exporter
    if exporter.proc.poll() is None:
        exporter.proc.kill()
        exporter.proc.communicate()


def test_sigterm_stops_gracefully_within_five_seconds(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text(CONFIG.replace("global: {", "global: {demo: true, "))
    exporter = Exporter(config)
    try:
        exporter.wait_until("/-/ready", "Ready")
        # Stop while a hung probe and a slow request are in flight: neither may delay the
        # exit past 5 s, nor make a normal stop log an error.
        slow = threading.Thread(
            target=lambda: httpx.get(exporter.url + "/demo/slow", timeout=10), daemon=True
        )
        slow.start()
        time.sleep(0.3)
        code, took, stderr = exporter.stop()
    finally:
        if exporter.proc.poll() is None:
            exporter.proc.kill()
    assert code == 0, stderr
    assert took < 5.0
    assert '"msg": "shutting down"' in stderr and '"msg": "stopped"' in stderr
    assert "Traceback" not in stderr and '"level": "error"' not in stderr, stderr


def test_sighup_with_bad_config_keeps_running_then_good_config_applies(
    exporter: Exporter,
) -> None:
    exporter.wait_until("/metrics", 'probe_success{kind="fake",probe="beta"} 0.0')
    exporter.config.write_text("probes: [\n")
    exporter.proc.send_signal(signal.SIGHUP)
    body = exporter.wait_until("/metrics", "festivals_exporter_config_last_reload_successful 0.0")
    assert 'probe="alpha"' in body
    exporter.config.write_text(
        "probes:\n  - {name: gamma, kind: fake, interval: 0.5s, timeout: 0.2s}\n"
    )
    exporter.proc.send_signal(signal.SIGHUP)
    body = exporter.wait_until("/metrics", 'probe_success{kind="fake",probe="gamma"} 1.0')
    assert 'probe="alpha"' not in body
    assert "festivals_exporter_config_last_reload_successful 1.0" in body
    code, _, stderr = exporter.stop()
    assert code == 0
    assert "YAML syntax error" in stderr


@pytest.mark.parametrize("bad", [
    pytest.param("probes:\n  - {name: a, kind: fake, explode: true}\n", id="a bug while loading"),
    pytest.param("probes: " + "[" * 500 + "]" * 500 + "\n", id="500 nested lists"),
    pytest.param("a: &a [" + ",".join(["*b"] * 3) + "]\n", id="alias to nothing"),
    pytest.param("probes:\n  - {name: a, kind: fake, "
                 + ", ".join(f"k{i}: 1" for i in range(20_000)) + "}\n",
                 id="20,000 unknown keys"),
])
def test_any_failure_while_reloading_keeps_the_old_config_and_the_process(
    exporter: Exporter, bad: str
) -> None:
    exporter.wait_until("/metrics", 'probe_success{kind="fake",probe="alpha"} 1.0')
    exporter.config.write_text(bad)
    exporter.proc.send_signal(signal.SIGHUP)
    body = exporter.wait_until("/metrics", "festivals_exporter_config_last_reload_successful 0.0")
    assert 'probe="alpha"' in body
    reload = httpx.post(exporter.url + "/-/reload", timeout=5)
    assert reload.status_code == 400
    assert len(reload.text.splitlines()) <= 102, reload.text[-500:]  # 100, then the count
    runs = _runs_of(exporter, "alpha")
    deadline = time.monotonic() + 10
    while _runs_of(exporter, "alpha") < runs + 2:  # the old config keeps running
        assert time.monotonic() < deadline and exporter.proc.poll() is None
        time.sleep(0.05)
    code, _, stderr = exporter.stop()
    assert code == 0
    assert '"msg": "config reload failed, keeping the running config"' in stderr
    assert "Traceback" not in stderr
    assert stderr.count("config reload failed") <= 2 * 101


def _runs_of(exporter: Exporter, name: str) -> int:
    body = httpx.get(exporter.url + "/metrics", timeout=5).text
    prefix = f'probe_runs_total{{kind="fake",probe="{name}"}} '
    line = next(line for line in body.splitlines() if line.startswith(prefix))
    return int(float(line.removeprefix(prefix)))


def test_log_level_and_format_changes_apply_on_reload(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(CONFIG)
    exporter = Exporter(path, log_flags=())
    try:
        exporter.wait_until("/metrics", 'probe_success{kind="fake",probe="alpha"} 1.0')
        path.write_text(CONFIG.replace("global: {", "global: {log_format: json, "
                                       "log_level: error, "))
        exporter.proc.send_signal(signal.SIGHUP)
        exporter.wait_until("/metrics", 'probe_success{kind="fake",probe="alpha"} 1.0')
        # The next reload logs at info: below the new level, so nothing may appear.
        path.write_text(CONFIG.replace("global: {", "global: {log_format: json, "
                                       "log_level: error, history_size: 5, "))
        exporter.proc.send_signal(signal.SIGHUP)
        path.write_text("probes: [\n")
        exporter.proc.send_signal(signal.SIGHUP)
        exporter.wait_until("/metrics", "festivals_exporter_config_last_reload_successful 0.0")
        code, _, stderr = exporter.stop()
    finally:
        if exporter.proc.poll() is None:
            exporter.proc.kill()
    assert code == 0
    lines = stderr.splitlines()
    assert any(line.startswith("ts=") and "msg=\"festivals-exporter started\"" in line
               for line in lines)
    after = lines[next(i for i, line in enumerate(lines) if "SIGHUP" in line) + 1:]
    assert after and all(line.startswith("{") for line in after), after
    assert not any('"level": "info"' in line for line in after), after
    assert any('"level": "error"' in line and "config reload failed" in line for line in after)


def test_port_in_use_is_a_clear_startup_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(CONFIG)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(LAUNCHER), "run", f"--config.file={path}",
             f"--web.listen-address=127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=30,
        )
    assert result.returncode == 1
    assert "cannot start" in result.stderr and "Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


# Headless, and kept on loopback: Chromium otherwise resolves and calls Google's update,
# account and component hosts at start-up, even with background networking disabled.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-pings",
    "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=direct://", "--proxy-bypass-list=*",
)


def test_landing_page_renders_in_headless_chromium(exporter: Exporter) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is installed by `make test`"
    exporter.wait_until("/-/ready", "Ready")
    with tempfile.TemporaryDirectory() as profile:
        shot = Path(profile) / "page.png"
        browser = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        dom = subprocess.run(
            [*browser, "--dump-dom", exporter.url + "/"],
            capture_output=True, text=True, timeout=60,
        )
        subprocess.run(
            [*browser, f"--screenshot={shot}", "--window-size=1200,800", exporter.url + "/"],
            capture_output=True, text=True, timeout=60,
        )
        assert shot.exists() and shot.stat().st_size > 5_000
    page = dom.stdout
    assert "<h2>Probes</h2>" in page
    for name in ("alpha", "beta", "stuck"):
        assert f'<a href="/probes/{name}">{name}</a>' in page
    assert 'class="fail">FAIL</span>' in page and 'class="ok">OK</span>' in page


@pytest.mark.anyio
@pytest.mark.parametrize("error", [MemoryError, RecursionError, KeyError])
async def test_reload_survives_any_exception_from_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[BaseException]
) -> None:
    path = tmp_path / "config.yml"
    path.write_text(CONFIG)
    daemon = daemon_module.Daemon(path, parse_config(CONFIG), "127.0.0.1:0")

    def explode(*args: object, **kwargs: object) -> None:
        raise error("from inside the loader")

    monkeypatch.setattr(daemon_module, "load_config", explode)
    errors = await daemon.reload()
    assert errors == [f"{path}: config cannot be loaded: internal error {error.__name__}"]
    assert daemon.store.last_reload_successful is False
    assert [p.name for p in daemon.config.probes] == ["alpha", "beta", "stuck"]
