"""--shard=i/n: every probe runs in exactly one shard, resharding moves few probes."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from exporter import sharding
from exporter.cli import main
from exporter.config import ConfigError, parse_config
from probes import KIND_MODULES

LAUNCHER = Path(__file__).resolve().parents[1] / "core" / "run_with_fake.py"
NAMES = [f"probe-{i:04d}" for i in range(1200)]


@pytest.fixture(autouse=True)
def fake_kind_and_no_flag() -> Iterator[None]:
    KIND_MODULES["fake"] = "tests.core.fake_kind"
    sharding.set_flag(None)
    yield
    sharding.set_flag(None)
    KIND_MODULES.pop("fake", None)


def _config(names: list[str], global_: str = "{}") -> str:
    probes = "\n".join(
        f"  - {{name: {n}, kind: fake, interval: 0.5s, timeout: 0.2s}}" for n in names
    )
    return f"global: {global_}\nprobes:\n{probes}\n"


def test_three_shards_partition_the_probes() -> None:
    owners = {name: sharding.owner(name, 3) for name in NAMES}
    for index in (1, 2, 3):
        shard = sharding.Shard(index, 3)
        mine = {name for name in NAMES if shard.owns(name)}
        assert mine == {name for name, o in owners.items() if o == index}
        # Balanced enough that no shard carries much more than its third.
        assert 0.27 < len(mine) / len(NAMES) < 0.40, (index, len(mine))
    assert set(owners.values()) == {1, 2, 3}


def test_resharding_three_to_four_moves_about_a_quarter_and_only_to_the_new_shard() -> None:
    moved = [n for n in NAMES if sharding.owner(n, 3) != sharding.owner(n, 4)]
    assert 0.20 < len(moved) / len(NAMES) < 0.30, len(moved) / len(NAMES)
    assert {sharding.owner(n, 4) for n in moved} == {4}
    # The bound can fail: a modulo hash of the same names moves about three quarters.
    modulo = [n for n in NAMES if sharding._score(n, 0) % 3 != sharding._score(n, 0) % 4]
    assert len(modulo) / len(NAMES) > 0.6


def test_the_hash_is_stable_across_processes_and_versions() -> None:
    # Changing the hash would reshuffle every fleet on upgrade: these owners are frozen,
    # and a process with another PYTHONHASHSEED computes the same ones.
    code = f"from exporter.sharding import owner; print([owner(n, 7) for n in {GOLDEN_NAMES}])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123"}).stdout
    assert out.strip() == "[7, 1, 7, 1, 7, 4, 4, 1]"


GOLDEN_NAMES = ("api-health", "postgres", "redis-ping", "tls-ingress", "stripe-status",
                "pgbouncer", "kube-festivals", "api-slow")


@pytest.mark.parametrize(
    ("text", "why"),
    [("0/3", "index must be 1 to 3"), ("4/3", "index must be 1 to 3"), ("1/0", "count"),
     ("two/3", "must be i/n"), ("1/3/4", "must be i/n")],
)
def test_bad_shards_are_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        sharding.parse_shard(text)
    with pytest.raises(ConfigError) as info:
        parse_config(_config(NAMES[:2], f"{{shard: '{text}'}}"))
    assert info.value.errors[0].startswith("global.shard: ") and why in info.value.errors[0]


def test_shard_is_a_reserved_label() -> None:
    with pytest.raises(ConfigError, match=r"probes\[0\].labels: .*'shard' is reserved"):
        parse_config("probes:\n  - {name: a, kind: fake, labels: {shard: x}}\n")


def test_config_key_filters_and_labels_and_the_flag_wins_over_it() -> None:
    names = NAMES[:60]
    config = parse_config(_config(names, "{shard: '2/3'}"))
    assert [p.name for p in config.probes] == [n for n in names if sharding.owner(n, 3) == 2]
    assert all(("shard", "2/3") in p.labels for p in config.probes)
    assert config.global_.shard == "2/3"
    sharding.set_flag(sharding.Shard(1, 4))
    # What a reload does: parse the file again. The flag keeps winning.
    config = parse_config(_config(names, "{shard: '2/3'}"))
    assert [p.name for p in config.probes] == [n for n in names if sharding.owner(n, 4) == 1]
    assert {dict(p.labels)["shard"] for p in config.probes} == {"1/4"}
    sharding.set_flag(None)
    unsharded = parse_config(_config(names))
    assert len(unsharded.probes) == 60 and unsharded.global_.shard is None
    assert all("shard" not in dict(p.labels) for p in unsharded.probes)


def test_check_config_lists_one_shard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yml"
    path.write_text(_config(NAMES[:30]))
    assert main(["check-config", str(path), "--shard=3/3"]) == 0
    out = capsys.readouterr().out
    listed = re.findall(r"^  (probe-\d+) ", out, re.M)
    assert listed == [n for n in NAMES[:30] if sharding.owner(n, 3) == 3]
    assert "in shard 3/3" in out
    with pytest.raises(SystemExit) as info:
        main(["check-config", str(path), "--shard=5/3"])
    assert info.value.code == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _runs(body: str) -> dict[str, tuple[str, float]]:
    """probe -> (shard label, runs) from one exporter's /metrics."""
    found: dict[str, tuple[str, float]] = {}
    for match in re.finditer(r"^probe_runs_total\{([^}]*)\} (\S+)$", body, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        found[labels["probe"]] = (labels.get("shard", ""), float(match.group(2)))
    return found


def test_three_exporter_processes_run_every_probe_exactly_once(tmp_path: Path) -> None:
    names = NAMES[:24]
    path = tmp_path / "config.yml"
    path.write_text(_config(names, "{start_spread: 0s}"))
    procs: list[tuple[str, subprocess.Popen[str]]] = []
    try:
        for index in (1, 2, 3):
            port = _free_port()
            proc = subprocess.Popen(
                [sys.executable, str(LAUNCHER), "run", f"--config.file={path}",
                 f"--web.listen-address=127.0.0.1:{port}", f"--shard={index}/3"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            procs.append((f"http://127.0.0.1:{port}", proc))
        seen: dict[str, list[tuple[str, float]]] = {}
        for index, (url, proc) in enumerate(procs, start=1):
            body = _wait_ready_then_metrics(url, proc)
            assert f'festivals_exporter_shards{{shard="{index}/3"}} 3.0' in body
            assert f'festivals_exporter_probes{{shard="{index}/3"}}' in body
            for probe, (shard, runs) in _runs(body).items():
                assert shard == f"{index}/3"
                assert runs >= 1
                seen.setdefault(probe, []).append((shard, runs))
        assert sorted(seen) == sorted(names)
        assert all(len(where) == 1 for where in seen.values()), seen
        # The flag survives a reload: new probes are split the same way.
        more = NAMES[:40]
        path.write_text(_config(more, "{start_spread: 0s}"))
        url, proc = procs[0]
        proc.send_signal(signal.SIGHUP)
        wanted = {n for n in more if sharding.owner(n, 3) == 1}
        assert wanted - set(names)
        deadline = time.monotonic() + 30
        while set(_runs(httpx.get(url + "/metrics", timeout=5).text)) != wanted:
            assert time.monotonic() < deadline, "the reload never applied the shard"
            time.sleep(0.1)
    finally:
        for _, proc in procs:
            proc.terminate()
        for _, proc in procs:
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def _wait_ready_then_metrics(url: str, proc: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 90  # three interpreters starting on a busy machine
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exporter exited: {proc.communicate()}")
        try:
            if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                return httpx.get(url + "/metrics", timeout=2).text
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} never became ready")
