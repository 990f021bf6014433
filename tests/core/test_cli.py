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


def test_probe_prints_what_the_page_shows_for_a_successful_run(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text(CONFIG.replace("kind: fake,", "kind: fake, value: 42.5,", 1))
    good = _cli(config, "probe", "good")
    assert good.returncode == 0, good.stderr
    out = good.stdout
    assert "good:" in out and "all good" in out  # the detail, as on /probes/good
    assert "fake_value 42.5" in out  # the figures the run produced


def test_probe_with_an_unknown_name_lists_the_configured_ones(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text(CONFIG)
    result = _cli(config, "probe", "gdoo")
    assert result.returncode == 2
    assert "unknown probe(s): gdoo" in result.stderr
    assert "did you mean good?" in result.stderr
    assert "configured probes: good, bad, stuck" in result.stderr


def _piped_into_head(*args: str, lines: int = 1) -> subprocess.CompletedProcess[str]:
    command = " ".join(f"'{a}'" for a in [sys.executable, str(LAUNCHER), *args])
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{command} | head -n {lines}"],
        capture_output=True, text=True, timeout=60,
    )


def test_check_config_and_probe_piped_into_head_exit_quietly(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    # Output well past a pipe's 64 KiB buffer, so the writer meets the closed pipe.
    many = "".join(f"  - {{name: p{i}, kind: fake, interval: 5s, timeout: 1s}}\n"
                   for i in range(3_000))
    config.write_text(f"probes:\n{many}")
    for args in (("check-config", str(config)),
                 ("probe", "--all", f"--config.file={config}")):
        result = _piped_into_head(*args)
        assert result.stdout.count("\n") == 1, result.stdout[:200]
        assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, (
            result.stderr[-2000:]
        )


def test_check_config_prints_at_most_100_errors_then_how_many_more(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    keys = ", ".join(f"k{i}: 1" for i in range(20_000))
    config.write_text(f"probes:\n  - {{name: a, kind: fake, {keys}}}\n")
    result = _cli(config, "check-config", str(config))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "config is invalid (20000 error(s)):"
    assert len(lines) == 102 and lines[-1] == "  ... and 19900 more error(s)", lines[-3:]


def test_check_config_reports_missing_files_unless_told_not_to(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text(f"probes:\n  - {{name: db, kind: postgres, password_file: {tmp_path}/pw}}\n")
    checked = _cli(config, "check-config", str(config))
    assert checked.returncode == 2
    assert f"probes[0].password_file: cannot read {tmp_path}/pw: No such file" in checked.stderr
    skipped = _cli(config, "check-config", "--skip-file-checks", str(config))
    assert skipped.returncode == 0, skipped.stderr
