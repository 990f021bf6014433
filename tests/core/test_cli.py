from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LAUNCHER = Path(__file__).with_name("run_with_fake.py")
CONFIG = """
probes:
  - {name: good, kind: fake, interval: 5s, timeout: 1s}
  - {name: bad, kind: fake, mode: fail, interval: 5s, timeout: 1s}
  - {name: stuck, kind: fake, mode: hang, interval: 5s, timeout: 0.3s}
"""


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LAUNCHER), *args, f"--config.file={config}"],
        capture_output=True, text=True, timeout=60,
    )


def test_probe_command_prints_a_table_and_fails_when_a_probe_fails(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text(CONFIG)
    all_probes = _cli(config, "probe", "--all")
    assert all_probes.returncode == 1
    lines = all_probes.stdout.splitlines()
    assert lines[0].split() == ["PROBE", "KIND", "RESULT", "REASON", "DURATION"]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    assert rows["good"][2:4] == ["ok", "-"]
    assert rows["bad"][2:4] == ["FAIL", "refused"]
    assert rows["stuck"][2:4] == ["FAIL", "timeout"]
    assert "refused on purpose" in all_probes.stdout  # the failed probes' detail follows

    only_good = _cli(config, "probe", "good")
    assert only_good.returncode == 0 and "FAIL" not in only_good.stdout


def test_probe_command_rejects_unknown_names_and_no_names(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text(CONFIG)
    unknown = _cli(config, "probe", "nope")
    assert unknown.returncode == 2 and "unknown probe(s): nope" in unknown.stderr
    nothing = _cli(config, "probe")
    assert nothing.returncode == 2 and "--all" in nothing.stderr


def test_version_command() -> None:
    result = subprocess.run(
        [sys.executable, str(LAUNCHER), "version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.startswith("festivals-exporter ")
