"""The Dockerfile passes the lint, and its install steps work in a clean environment.

No container engine runs here, so the image is checked in two halves: the file against
hadolint's rules (tests/deploy/dockerfile.py), and the build stage's own RUN steps replayed
into a fresh virtual environment, whose console script then runs the way the image runs
it: an unprivileged uid, a read-only install and working directory, only /tmp writable.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from exporter.config import DEFAULT_LISTEN_ADDRESS
from tests.deploy import dockerfile

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
NOBODY = 65534
# The venv's interpreter must be one an unprivileged uid can run (not one under /root).
# Filled by the Makefile (`pip download`) before the tests run: nothing here reaches an index.
WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
_BASE_PYTHON = shutil.which("python3.11", path="/usr/local/bin:/usr/bin") or sys.executable


def test_the_dockerfile_passes_the_lint() -> None:
    assert dockerfile.lint(TEXT) == []


@pytest.mark.parametrize(
    ("snippet", "code"),
    [
        ("FROM python:latest\nUSER 1000\n", "DL3007"),
        ("FROM python\nUSER 1000\n", "DL3006"),
        ("FROM python:3.11-slim\nUSER 1000\n", "DL3007"),
        ("FROM python:3.11.9-slim\n", "DL3002"),
        ("FROM python:3.11.9-slim\nUSER root\n", "DL3002"),
        ("FROM python:3.11.9-slim\nADD https://example.invalid/x.tgz /x\nUSER 1\n", "DL3020"),
        ("FROM python:3.11.9-slim\nRUN apt-get update && apt-get install -y --no-install-recommends"
         " curl=7.88\nUSER 1\n", "DL3009"),
        ("FROM python:3.11.9-slim\nRUN apt-get install -y curl=7 && rm -rf /var/lib/apt/lists/*"
         "\nUSER 1\n", "DL3015"),
        ("FROM python:3.11.9-slim\nRUN apt-get install -y --no-install-recommends curl"
         " && rm -rf /var/lib/apt/lists/*\nUSER 1\n", "DL3008"),
        ("FROM python:3.11.9-slim\nRUN pip install x\nUSER 1\n", "DL3042"),
        ("FROM python:3.11.9-slim\nRUN cd /x && ls\nUSER 1\n", "DL3003"),
        ("FROM python:3.11.9-slim\nUSER 1\nCMD festivals-exporter run\n", "DL3025"),
        ("FROM python:3.11.9-slim\nRUN curl -s x | sh\nUSER 1\n", "DL4006"),
        ("FROM python:3.11.9-slim\nCOPY --from=builder /a /a\nUSER 1\n", "DL3022"),
        ("FROM python:3.11.9-slim\nRUN apt-get install --no-install-recommends gcc=12"
         " && rm -rf /var/lib/apt/lists/*\nUSER 1\n", "FE001"),
        ("FROM python:3.11.9-slim\nUSER 1\n", "FE003"),
        ("FROM python:3.11.9-slim\nUSER 1\n", "FE004"),
        ("FROM python:3.11.9-slim\nUSER 1\n", "FE005"),
    ],
)
def test_the_lint_catches_each_rule(snippet: str, code: str) -> None:
    assert any(f.startswith(code) for f in dockerfile.lint(snippet)), dockerfile.lint(snippet)


def test_the_image_runs_the_console_script_as_the_exporter_expects() -> None:
    args, stages = dockerfile.parse(TEXT)
    final = stages[-1]
    by_keyword = {i.keyword: i.args for i in final.instructions}
    (script,) = PYPROJECT["project"]["scripts"]
    assert dockerfile._exec_form(by_keyword["ENTRYPOINT"]) == [script]
    assert by_keyword["EXPOSE"] == DEFAULT_LISTEN_ADDRESS.rpartition(":")[2]
    assert "/-/healthy" in by_keyword["HEALTHCHECK"] + by_keyword["ENV"]
    assert 'org.opencontainers.image.version="${VERSION}"' in by_keyword["LABEL"]
    version_arg = next(i.args for i in final.instructions if i.keyword == "ARG")
    assert version_arg == f"VERSION={PYPROJECT['project']['version']}"
    # The Deployment runs the image's user: the two must agree.
    assert by_keyword["USER"] == "10001:10001"
    assert not any(i.keyword == "RUN" and "apt-get" in i.args for s in stages
                   for i in s.instructions), "apt-get: add the DL3008/DL3009 care first"


def test_dockerignore_keeps_the_context_to_what_the_build_copies() -> None:
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    _, stages = dockerfile.parse(TEXT)
    copied = [w for i in stages[0].instructions if i.keyword == "COPY"
              for w in i.args.split()[:-1]]
    assert ignore[0] == "*"  # an allowlist: nothing new slips into the context
    for path in copied:
        assert f"!{path.rstrip('/')}" in ignore or f"!{path.rstrip('/')}/" in ignore, path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def installed() -> Iterator[Path]:
    """The build stage's RUN steps, replayed: /src, /wheels and /opt/venv in a temp dir."""
    if not (WHEELHOUSE / ".stamp").exists():
        pytest.skip(f"no wheelhouse at {WHEELHOUSE}: `make test` downloads it before the tests")
    _, stages = dockerfile.parse(TEXT)
    build = stages[0]
    base = Path(tempfile.mkdtemp(prefix="festivals-image-", dir="/tmp"))
    try:
        src = base / "src"
        src.mkdir()
        for ins in build.instructions:
            if ins.keyword == "COPY":
                *sources, _dest = ins.args.split()
                for source in sources:
                    origin = ROOT / source
                    if origin.is_dir():
                        shutil.copytree(origin, src / source,
                                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                    else:
                        shutil.copy(origin, src / source)
        for ins in build.instructions:
            if ins.keyword != "RUN":
                continue
            # The same commands, but for speed (a minute of CPU on this machine): the pip
            # cache stays on and nothing is byte-compiled, which the image does to start
            # faster, not to work.
            # Offline: the wheels come from the wheelhouse `make test` downloads first.
            offline = f"--no-index --find-links {WHEELHOUSE} "
            command = (ins.args.replace("/opt/venv", str(base / "venv"))
                       .replace("/wheels", str(base / "wheels"))
                       .replace("--no-cache-dir ", "")
                       .replace("pip install ", "pip install --no-compile " + offline)
                       .replace("pip wheel ", "pip wheel " + offline)
                       .replace("python -m venv", f"{_BASE_PYTHON} -m venv"))
            command = re.sub(r"&& \S+ -m compileall .*?(?=&&|$)", "", command)
            # At the lowest priority: a minute of pip must not starve the timing-sensitive
            # tests running beside it on the other worker.
            subprocess.run(["nice", "-n", "19", "bash", "-euo", "pipefail", "-c", command],
                           cwd=src, check=True, capture_output=True, timeout=540)
        # Everything is root's and not writable by others (umask 022): read-only for the
        # unprivileged uid, as a read-only root filesystem would be. Only the top needs
        # opening up (mkdtemp makes it 0700).
        base.chmod(0o755)
        yield base / "venv"
    finally:
        shutil.rmtree(base)


def _as_nobody(argv: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged uid")
    setpriv = shutil.which("setpriv")
    assert setpriv is not None
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


@pytest.mark.timeout(600)
def test_the_installed_wheel_runs_unprivileged_on_a_read_only_install(installed: Path) -> None:
    script = installed / "bin" / "festivals-exporter"
    assert script.exists()
    site = next(installed.glob("lib/python*/site-packages"))
    assert (site / "exporter" / "templates" / "index.html").exists()
    assert not list(site.glob("tests*")), "the tests are not part of the wheel"
    workdir = installed.parent / "src"  # read-only, like the image's WORKDIR
    tmp = Path(tempfile.mkdtemp(prefix="festivals-tmp-", dir="/tmp"))
    tmp.chmod(0o1777)
    port = _free_port()
    config = tmp / "config.yml"
    config.write_text((site / "exporter" / "demo.yaml").read_text()
                      .replace("127.0.0.1:9816", f"127.0.0.1:{port}"))
    config.chmod(0o644)
    before = {p: p.stat().st_mtime for p in installed.parent.rglob("*")}
    env = {"PATH": f"{installed / 'bin'}:/usr/bin:/bin", "HOME": "/nonexistent",
           "TMPDIR": str(tmp), "PYTHONDONTWRITEBYTECODE": "1",
           "HEALTHCHECK_URL": f"http://127.0.0.1:{port}/-/healthy"}
    try:
        version = subprocess.run(_as_nobody([str(script), "version"], workdir, env), cwd=workdir,
                                 env=env, capture_output=True, text=True, timeout=60)
        assert version.returncode == 0, version.stderr
        assert PYPROJECT["project"]["version"] in version.stdout
        proc = subprocess.Popen(
            _as_nobody([str(script), "run", f"--config.file={config}"], workdir, env),
            cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            _wait_ready(f"http://127.0.0.1:{port}", proc)
            # The image's HEALTHCHECK command, as the container engine would run it.
            _, stages = dockerfile.parse(TEXT)
            check = next(i.args for i in stages[-1].instructions if i.keyword == "HEALTHCHECK")
            argv = dockerfile._exec_form(check.split(" CMD ", 1)[1])
            assert argv is not None
            health = subprocess.run(_as_nobody([str(installed / "bin" / argv[0]), *argv[1:]],
                                               workdir, env),
                                    cwd=workdir, env=env, capture_output=True, timeout=30)
            assert health.returncode == 0, health.stderr
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr and "Permission denied" not in stderr, stderr
        # Nothing was written into the install or the working directory.
        after = {p: p.stat().st_mtime for p in installed.parent.rglob("*")}
        assert after == before, sorted(set(after.items()) ^ set(before.items()))[:5]
    finally:
        shutil.rmtree(tmp)


def _wait_ready(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exporter exited: {proc.communicate()}")
        try:
            if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never became ready")


def test_healthcheck_command_fails_when_nothing_answers() -> None:
    _, stages = dockerfile.parse(TEXT)
    check = next(i.args for i in stages[-1].instructions if i.keyword == "HEALTHCHECK")
    argv = dockerfile._exec_form(check.split(" CMD ", 1)[1])
    assert argv is not None and argv[0] == "python"
    env = {**os.environ, "HEALTHCHECK_URL": f"http://127.0.0.1:{_free_port()}/-/healthy"}
    result = subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True,
                            timeout=30)
    assert result.returncode != 0
    assert re.search(rb"Connection refused|URLError", result.stderr)
