from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import pytest

from exporter.config import Config, parse_config
from exporter.metrics import exposition
from exporter.results import ResultStore
from exporter.scheduler import Scheduler, start_offset
from tests.core.fake_kind import FakeState

pytestmark = pytest.mark.anyio


def _metrics(store: ResultStore) -> str:
    return b"".join(exposition(store).scrape()[0]).decode()


def _config(probes: str, spread: str = "0s") -> Config:
    return parse_config(f"global: {{start_spread: {spread}}}\nprobes:\n{probes}")


async def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


async def test_every_kind_of_misbehaviour_becomes_a_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    store = ResultStore()
    exposition(store)
    config = _config(
        "  - {name: good, kind: fake, interval: 1s, timeout: 0.2s}\n"
        "  - {name: hang, kind: fake, mode: hang, interval: 1s, timeout: 0.2s}\n"
        "  - {name: boom, kind: fake, mode: raise, interval: 1s, timeout: 0.2s}\n"
        "  - {name: junk, kind: fake, mode: garbage, interval: 1s, timeout: 0.2s}\n"
    )
    async with anyio.create_task_group() as tg:
        scheduler = Scheduler(store, tg)
        await scheduler.apply(config)
        await _wait_for(store.ready)
        await scheduler.stop()
    results = {name: record.last.result for name, record in store.probes.items() if record.last}
    assert results["good"].success
    assert (results["hang"].success, results["hang"].reason) == (False, "timeout")
    assert results["hang"].detail == ("hard deadline of 200ms fired",)
    # A run cut off by the deadline still says "down", so down-alerts fire.
    text = _metrics(store)
    for name in ("hang", "boom", "junk"):
        assert f'fake_up{{kind="fake",probe="{name}"}} 0.0' in text
        assert f'fake_value{{kind="fake",probe="{name}"}}' not in text
    assert 'fake_value{kind="fake",probe="good"} 1.0' in text
    # History keeps what the pages show, not metric payloads.
    assert all(not run.result.metrics for r in store.probes.values() for run in r.history)
    assert (results["boom"].reason, results["junk"].reason) == ("internal", "internal")
    # Exception messages never reach the result (they may carry secrets).
    assert "secret" not in " ".join(results["boom"].detail)
    logged = " ".join(str(v) for record in caplog.records for v in vars(record).values())
    assert "secret-password" not in logged and "fake_kind.py" in logged
    assert store.probes["hang"].failures == {"timeout": 1}


async def test_deadline_fires_close_to_the_timeout() -> None:
    store = ResultStore()
    async with anyio.create_task_group() as tg:
        scheduler = Scheduler(store, tg)
        await scheduler.apply(
            _config("  - {name: hang, kind: fake, mode: hang, interval: 10s, timeout: 0.3s}\n")
        )
        await _wait_for(store.ready)
        await scheduler.stop()
    last = store.probes["hang"].last
    assert last is not None and 0.3 <= last.duration < 0.6


async def test_reload_keeps_unchanged_probes_and_closes_replaced_ones() -> None:
    store = ResultStore()
    FakeState.instances.clear()
    before = _config(
        "  - {name: same, kind: fake, interval: 0.1s, timeout: 0.05s}\n"
        "  - {name: changed, kind: fake, interval: 0.1s, timeout: 0.05s}\n"
        "  - {name: removed, kind: fake, interval: 0.1s, timeout: 0.05s}\n"
    )
    after = _config(
        "  - {name: same, kind: fake, interval: 0.1s, timeout: 0.05s}\n"
        "  - {name: changed, kind: fake, value: 2, interval: 0.1s, timeout: 0.05s}\n"
        "  - {name: added, kind: fake, interval: 0.1s, timeout: 0.05s}\n"
    )
    async with anyio.create_task_group() as tg:
        scheduler = Scheduler(store, tg)
        await scheduler.apply(before)
        await _wait_for(lambda: all(r.runs >= 2 for r in store.probes.values()))
        same_state = scheduler.runners["same"].state
        old_changed = scheduler.runners["changed"].state
        removed_state = scheduler.runners["removed"].state
        same_runs = store.probes["same"].runs
        await scheduler.apply(after)
        assert scheduler.runners["same"].state is same_state
        assert store.probes["same"].runs >= same_runs  # counters survive the reload
        assert isinstance(old_changed, FakeState) and old_changed.closed
        assert isinstance(removed_state, FakeState) and removed_state.closed
        assert "removed" not in store.probes
        await _wait_for(lambda: store.probes["added"].runs >= 1)
        exposition(store)
        await _wait_for(lambda: 'fake_value{kind="fake",probe="changed"} 2.0' in _metrics(store))
        text = _metrics(store)
        assert 'probe="removed"' not in text and 'probe="added"' in text
        await scheduler.stop()
    assert all(state.closed for state in FakeState.instances)


async def test_a_probe_never_overlaps_itself() -> None:
    store = ResultStore()
    config = _config("  - {name: slow, kind: fake, delay: 0.15, interval: 0.2s, timeout: 0.19s}\n")
    async with anyio.create_task_group() as tg:
        scheduler = Scheduler(store, tg)
        await scheduler.apply(config)
        await _wait_for(store.ready)
        # An on-demand run while a scheduled one is in flight waits for it.
        async with anyio.create_task_group() as inner:
            for _ in range(3):
                inner.start_soon(scheduler.run_now, "slow")
        await _wait_for(lambda: store.probes["slow"].runs >= 3)
        await scheduler.stop()
    history = sorted(store.probes["slow"].history, key=lambda r: r.started_at)
    assert len(history) >= 4
    for earlier, later in zip(history, history[1:], strict=False):
        assert later.started_at >= earlier.started_at + earlier.duration - 0.005


def test_start_offsets_are_spread_and_stable() -> None:
    offsets = [start_offset(f"probe-{i}", 30.0, 10.0) for i in range(200)]
    assert all(0 <= o < 10.0 for o in offsets)
    assert offsets == [start_offset(f"probe-{i}", 30.0, 10.0) for i in range(200)]
    # Spread, not bunched: every second of the window gets some probes.
    assert len({int(o) for o in offsets}) == 10
    assert start_offset("x", 2.0, 10.0) < 2.0


async def test_on_demand_runs_do_not_count_and_run_one_at_a_time() -> None:
    store = ResultStore()
    FakeState.instances.clear()
    config = _config(
        "  - {name: p, kind: fake, mode: fail, delay: 0.2, interval: 30s, timeout: 1s}\n"
    )
    async with anyio.create_task_group() as tg:
        scheduler = Scheduler(store, tg)
        await scheduler.apply(config)
        await _wait_for(store.ready)
        record = store.probes["p"]
        before = (record.runs, dict(record.failures), record.durations.count, record.last)
        state = FakeState.instances[-1]
        state_runs = state.runs
        results = []

        async def ask() -> None:
            results.append(await scheduler.run_now("p"))

        async with anyio.create_task_group() as inner:
            for _ in range(5):
                inner.start_soon(ask)
        # Five concurrent requests, one run: each got the same result.
        assert state.runs == state_runs + 1
        assert len({id(run) for run in results}) == 1
        run = results[0]
        assert run is not None and run.trigger == "on-demand" and not run.result.success
        assert run.result.metrics  # the /probe answer has the run's own metrics
        # Counters, histogram and the last scheduled result did not move.
        assert (record.runs, record.failures, record.durations.count, record.last) == before
        text = _metrics(store)
        assert 'probe_runs_total{kind="fake",probe="p"} 1.0' in text
        assert 'probe_failures_total{kind="fake",probe="p",reason="refused"} 1.0' in text
        # ... but the pages show it, marked on-demand, without its metric payload.
        assert [r.trigger for r in record.history] == ["on-demand", "schedule"]
        assert not record.history[0].result.metrics
        assert store.recent(10)[0].trigger == "on-demand"
        # A later request runs again.
        again = await scheduler.run_now("p")
        assert again is not None and again.run_id != run.run_id
        assert await scheduler.run_now("nope") is None
        await scheduler.stop()


async def test_hundreds_of_probes_start_without_a_long_loop_step() -> None:
    store = ResultStore()
    exposition(store)
    probes = "".join(
        f"  - {{name: p{i}, kind: fake, interval: 30s, timeout: 1s}}\n" for i in range(600)
    )
    config = await anyio.to_thread.run_sync(_config, probes, "1s")
    async with anyio.create_task_group() as tg:
        scheduler = Scheduler(store, tg)
        await scheduler.apply(config)
        await _wait_for(store.ready, timeout=20)
        assert store.recent(5) and len(store.recent(500)) <= 200
        await scheduler.stop()
    # The autouse fixture fails this test on any loop step above its limit.


async def test_later_runs_spread_over_the_whole_interval() -> None:
    # First runs packed into start_spread (0.1 s); later runs keep their own phase over
    # the whole interval, so a large fleet does not stay in bursts.
    store = ResultStore()
    probes = "".join(
        f"  - {{name: p{i}, kind: fake, interval: 1s, timeout: 0.5s}}\n" for i in range(20)
    )
    async with anyio.create_task_group() as tg:
        scheduler = Scheduler(store, tg)
        await scheduler.apply(_config(probes, spread="0.1s"))
        await _wait_for(lambda: all(r.runs >= 2 for r in store.probes.values()))
        await scheduler.stop()
    firsts = [min(run.started_at for run in r.history) for r in store.probes.values()]
    seconds = [sorted(run.started_at for run in r.history)[1] for r in store.probes.values()]
    assert max(firsts) - min(firsts) < 0.3
    assert max(seconds) - min(seconds) > 0.5
    for first, second in zip(firsts, seconds, strict=True):
        assert 0.45 <= second - first <= 1.6
