"""Secrets from secret-looking ${VAR}s never reach targets, pages, detail or CLI output."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio._backends._asyncio  # noqa: F401  (imported once, before the loop is timed)
import pytest

from exporter.config import parse_config
from exporter.results import ResultStore
from exporter.scheduler import execute

TOKEN = "tok-8f3a9c2e51d7"
CONFIG = """
probes:
  - name: api
    kind: http
    timeout: 2s
    url: 'http://127.0.0.1:{port}/health?key=${{API_KEY}}&region=${{REGION}}'
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.anyio
async def test_env_secret_in_a_url_is_redacted_from_target_and_detail() -> None:
    config = parse_config(
        CONFIG.format(port=_closed_port()), environ={"API_KEY": TOKEN, "REGION": "eu-west"}
    )
    spec = config.probes[0]
    assert spec.settings.model_dump()["url"].endswith(f"key={TOKEN}&region=eu-west")
    assert TOKEN not in spec.target() and "key=<redacted>&region=eu-west" in spec.target()

    result = await execute(spec, spec.kind_impl.new_state(spec.settings))
    assert any(TOKEN in line for line in result.detail)  # the probe itself knows the URL
    store = ResultStore()
    store.apply_config(config)
    run = store.record(spec, time.time(), 0.1, result, "schedule")
    assert not result.success and run.result.reason == "refused"
    assert run.result.detail and not any(TOKEN in line for line in run.result.detail)


def test_check_config_and_probe_commands_never_print_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text(CONFIG.format(port=_closed_port()))
    env = {**os.environ, "API_KEY": TOKEN, "REGION": "eu-west"}
    for args in (["check-config", str(path)], ["probe", "--all", f"--config.file={path}"]):
        out = subprocess.run(
            [sys.executable, "-m", "exporter.cli", *args],
            capture_output=True, text=True, timeout=60, env=env,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert "api" in out.stdout, out.stderr
        assert TOKEN not in out.stdout + out.stderr


def _fifo_fed_later(path: Path, value: str, after: float) -> threading.Thread:
    """A secret file whose read blocks until a writer comes: a slow mount, made certain."""
    os.mkfifo(path)

    def feed() -> None:
        time.sleep(after)
        with path.open("w") as fifo:
            fifo.write(value)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return thread


@pytest.mark.anyio
@pytest.mark.parametrize("kind, extra", [
    ("postgres", "dbname: festivals"),
    ("pgbouncer", "dbname: pgbouncer"),
    ("redis", "url: redis://127.0.0.1:{port}/0"),
])
async def test_secret_files_are_read_off_the_event_loop(
    tmp_path: Path, kind: str, extra: str
) -> None:
    # The read blocks 0.4 s: on the loop, the suite's slow-step guard fails this test.
    port = _closed_port()
    host = "" if kind == "redis" else f"host: 127.0.0.1\n    port: {port}\n    "
    config = parse_config(f"""
probes:
  - name: p
    kind: {kind}
    timeout: 3s
    {host}{extra.format(port=port)}
    password_file: {tmp_path / "pw"}
""")
    spec = config.probes[0]
    target_before = spec.target()  # the file does not exist yet: the target must not care
    feeder = _fifo_fed_later(tmp_path / "pw", "s3cret-from-a-file", after=0.4)
    state = spec.kind_impl.new_state(spec.settings)
    try:
        result = await execute(spec, state)
    finally:
        await state.aclose()
    feeder.join(timeout=5)
    assert result.reason in {"refused", "unreachable"}, result
    assert spec.target() == target_before


def test_a_missing_dsn_file_never_changes_the_target(tmp_path: Path) -> None:
    dsn = tmp_path / "dsn"
    text = f"probes: [{{name: p, kind: postgres, dsn_file: {dsn}}}]"
    spec = parse_config(text).probes[0]
    missing = spec.target()
    dsn.write_text("host=db.festivals.svc port=6543 dbname=app password=pw")
    assert spec.target() == missing and "pw" not in missing
