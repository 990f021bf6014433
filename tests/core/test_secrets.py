"""Secrets from secret-looking ${VAR}s never reach targets, pages, detail or CLI output."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

# Imported at collection, not inside the tests' first loop step (where parse_config would
# import them): the slow-step guard is for blocking calls, not for cold imports.
import anyio._backends._asyncio  # noqa: F401
import pytest

import probes.http  # noqa: F401
import probes.pgbouncer  # noqa: F401
import probes.redis  # noqa: F401
from exporter.config import parse_config
from exporter.results import ResultStore
from exporter.scheduler import execute
from probes.base import ProbeResult
from probes.postgres import PostgresConfig

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


def test_redaction_masks_secret_values_not_substrings_that_equal_them() -> None:
    config = parse_config(
        "probes:\n  - {name: db, kind: postgres, host: festivals-db.festivals.svc,"
        " dbname: app, password: '${PGPASSWORD}'}\n",
        environ={"PGPASSWORD": "festivals"},
    )
    spec = config.probes[0]
    assert spec.target() == "postgres://festivals-db.festivals.svc:5432/app"
    assert spec.redact("connect password=festivals host=festivals-db.festivals.svc") == (
        "connect password=<redacted> host=festivals-db.festivals.svc"
    )
    assert spec.redact("postgres://u:festivals@h/db") == "postgres://u:<redacted>@h/db"
    assert spec.redact("the password was festivals.") == "the password was <redacted>."


def test_a_long_secret_and_its_url_encoded_form_are_masked_anywhere() -> None:
    token = "Zq8/Xr2+Lm5=Kp9wTt3u"
    spec = parse_config(
        "probes:\n  - {name: api, kind: http, url: 'http://x.test/h?t=${API_TOKEN}'}\n",
        environ={"API_TOKEN": token},
    ).probes[0]
    assert token not in spec.redact(f"header={token}x and glued{token}")
    assert "Zq8%2FXr2%2BLm5%3DKp9wTt3u" not in spec.redact("?t=Zq8%2FXr2%2BLm5%3DKp9wTt3u")


@pytest.mark.anyio
async def test_values_read_from_secret_files_and_inline_secrets_are_masked(
    tmp_path: Path,
) -> None:
    (tmp_path / "pw").write_text("file-s3cret\n")
    config = parse_config(
        f"probes:\n  - {{name: a, kind: postgres, password_file: {tmp_path / 'pw'}}}\n"
        "  - {name: b, kind: redis, url: 'redis://127.0.0.1:6379', password: inline-pw}\n"
    )
    a, b = config.probes
    assert isinstance(a.settings, PostgresConfig)
    assert (await a.settings.read_conn_params())["password"] == "file-s3cret"
    assert a.redact("auth failed for file-s3cret") == "auth failed for <redacted>"
    assert b.redact("AUTH inline-pw") == "AUTH <redacted>"
    store = ResultStore()
    store.apply_config(config)
    run = store.record(a, time.time(), 0.1, ProbeResult.fail("auth", detail=(
        "password=file-s3cret rejected",)), "schedule")
    assert run.result.detail == ("password=<redacted> rejected",)
