"""The results table of ``make bench``: one row per figure, ours against the peer.

Each ``bench/bench_*.py`` module's ``main()`` returns a list of :class:`Row` (or of dicts
with the same keys). ``python -m bench`` prints them and writes ``docs/performance.md``
with the machine they were measured on, because only ratios from the same run mean
anything on a noisy machine.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Row:
    """One measured figure. ``peer`` is the competing tool's figure in the same run (None
    where there is no peer, e.g. a latency goal); ``goal`` is what the issue asks for, as
    text; ``met`` says whether ``ours`` reached it (None: no goal)."""

    scenario: str
    ours: float
    unit: str
    peer: float | None = None
    peer_name: str = ""
    goal: str = ""
    met: bool | None = None
    command: str = ""
    measured: str = ""  # "YYYY-MM-DD HH:MM UTC at <commit>", set by the runner

    @property
    def ratio(self) -> float | None:
        if self.peer is None or self.peer == 0:
            return None
        return self.ours / self.peer


def as_rows(items: Iterable[Row | Mapping[str, Any]] | None) -> list[Row]:
    """Accept rows or dicts (a bench module need not import this one), stamped with when
    and at which commit they were measured."""
    names = {f.name for f in fields(Row)}
    stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC at {_git_head()}"
    out: list[Row] = []
    for item in items or ():
        row = item if isinstance(item, Row) else Row(
            **{k: v for k, v in item.items() if k in names}
        )
        out.append(row if row.measured else replace(row, measured=stamp))
    return out


def load_rows(path: Path) -> dict[str, list[Row]]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {module: as_rows(rows) for module, rows in data.items()}


def save_rows(path: Path, by_module: Mapping[str, list[Row]]) -> None:
    data = {module: [asdict(row) for row in rows] for module, rows in sorted(by_module.items())}
    path.write_text(json.dumps(data, indent=1) + "\n")


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{text} {unit}".strip()


def _machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    kernel = platform.release()
    return (
        f"{os.cpu_count()} cores ({model or platform.machine()}), kernel {kernel}, "
        f"Python {platform.python_version()}"
    )


def _git_head() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def render(by_module: Mapping[str, list[Row]]) -> str:
    rows = [row for module in sorted(by_module) for row in by_module[module]]
    lines = [
        "# Performance",
        "",
        "Written by `make bench` (`python -m bench`); do not edit by hand. Every ratio is",
        "ours divided by the peer's figure measured in the same run on the same targets,",
        "sides alternating, because this machine is shared and noisy: compare ratios, not",
        "absolute figures, across runs. Lower is better unless the goal says otherwise.",
        "",
        f"Machine: {_machine()}. The raw rows are in `performance.json`.",
        "",
        "| scenario | ours | peer | ratio | goal | met | command | measured |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        peer = f"{_number(row.peer, row.unit)} ({row.peer_name})" if row.peer is not None else "-"
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[row.met]
        command = f"`{row.command}`" if row.command else ""
        lines.append(
            f"| {row.scenario} | {_number(row.ours, row.unit)} | {peer} | {ratio} "
            f"| {row.goal or '-'} | {met} | {command} | {row.measured} |"
        )
    return "\n".join(lines) + "\n"


def print_rows(rows: list[Row]) -> None:
    for row in rows:
        ratio = f"  ratio {row.ratio:.2f}x vs {row.peer_name}" if row.ratio is not None else ""
        goal = f"  goal {row.goal}: {'met' if row.met else 'NOT met'}" if row.goal else ""
        print(f"  {row.scenario}: {_number(row.ours, row.unit)}{ratio}{goal}", flush=True)
