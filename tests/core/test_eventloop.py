"""The daemon's loop: uvloop where installed, asyncio's own otherwise; both run probes."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest

from exporter import cli, eventloop


def test_uvloop_where_installed() -> None:
    pytest.importorskip("uvloop")
    assert eventloop.backend_options() == {"use_uvloop": True}


def test_fallback_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a)
    )
    assert eventloop.backend_options() == {}


@pytest.mark.parametrize("uvloop", [True, False])
def test_probe_command_runs_on_the_chosen_loop(
    uvloop: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if uvloop:
        pytest.importorskip("uvloop")
    options = {"use_uvloop": True} if uvloop else {}
    monkeypatch.setattr(cli, "backend_options", lambda: dict(options))
    loops: list[str] = []
    real_run = anyio.run

    def recording_run(func: Any, *args: Any, **kw: Any) -> Any:
        async def wrapped() -> Any:
            loops.append(type(asyncio.get_running_loop()).__module__)
            return await func(*args)

        return real_run(wrapped, **kw)

    monkeypatch.setattr(anyio, "run", recording_run)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "c.yml"
    config.write_text(
        f"probes:\n  - {{name: closed, kind: tcp, host: 127.0.0.1, port: {port}, timeout: 2s}}\n"
    )
    assert cli.main(["probe", "closed", f"--config.file={config}"]) == 1
    assert "refused" in capsys.readouterr().out
    assert len(loops) == 1 and loops[0].startswith("uvloop") == uvloop


def test_daemon_collector_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    before = gc.get_threshold()
    try:
        eventloop.tune_gc()
        assert gc.get_threshold() == eventloop.GC_THRESHOLDS
        assert gc.isenabled()
    finally:
        gc.set_threshold(*before)
