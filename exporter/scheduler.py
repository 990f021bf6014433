"""Running every configured probe on its own interval.

Each probe has one task: first run at a stable offset within ``start_spread`` (so a
restart does not fire every probe at once), then every ``interval``. A probe never
overlaps itself (a per-probe lock, also taken by on-demand runs) and every run sits
under a hard deadline on top of the client's own timeout. Whatever a probe does
(raise, hang, return garbage) becomes a failed result; the scheduler carries on.
"""

from __future__ import annotations

import gc
import logging
import math
import time
import traceback
import zlib
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from exporter.config import Config, ProbeSpec
from exporter.results import ON_DEMAND, SCHEDULED, ResultStore, RunRecord
from probes.base import ProbeResult, ProbeState, Reason, format_duration

log = logging.getLogger("festivals_exporter.scheduler")

# Closing a probe's state (a connection) must not hold up a reload or shutdown for long.
_CLOSE_TIMEOUT = 2.0


# New probes are published and started in batches, so that a config of thousands of
# probes never holds the event loop in one long step.
_BATCH = 50
# Long-lived objects (probe states, records, history) are moved out of the garbage
# collector's scans this often: with thousands of probes a full collection pauses the loop
# for 0.2-0.5 s, and these objects are freed by reference counting anyway.
_FREEZE_EVERY = 60.0


class _OnDemand:
    """An on-demand run in progress: later requests for the probe wait for its result
    instead of starting another run."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.run: RunRecord | None = None


@dataclass(eq=False)
class _Runner:
    spec: ProbeSpec
    state: ProbeState
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    failing: bool | None = None  # None until the first run
    on_demand: _OnDemand | None = None


def start_offset(name: str, interval: float, spread: float) -> float:
    """A stable delay in [0, min(interval, spread)) derived from the probe's name."""
    window = min(interval, spread)
    return (zlib.crc32(name.encode()) % 10_000) / 10_000 * window


async def execute(spec: ProbeSpec, state: ProbeState) -> ProbeResult:
    """Run a probe once under its hard deadline; never raises (except cancellation)."""
    kind = spec.kind_impl
    try:
        with anyio.fail_after(spec.timeout):
            result = await kind.run(spec.settings, state)
    except TimeoutError:
        return ProbeResult.fail(
            Reason.TIMEOUT,
            kind.failure_metrics,
            detail=(f"hard deadline of {format_duration(spec.timeout)} fired",),
        )
    except Exception as exc:  # a probe bug must never take the daemon down
        # Where it happened, without the message: client errors can carry DSNs.
        frames = traceback.extract_tb(exc.__traceback__)[-3:]
        where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}"
                            for f in reversed(frames))
        log.warning(
            "probe raised an unexpected error",
            extra={"probe": spec.name, "error_type": type(exc).__name__, "where": where},
        )
        return ProbeResult.fail(
            Reason.INTERNAL, kind.failure_metrics, detail=(f"probe raised {type(exc).__name__}",)
        )
    if not isinstance(result, ProbeResult):
        return ProbeResult.fail(
            Reason.INTERNAL,
            kind.failure_metrics,
            detail=(f"probe returned {type(result).__name__}, not a result",),
        )
    return result


async def close_state(name: str, state: ProbeState, lock: anyio.Lock | None = None) -> None:
    if lock is not None:
        # An on-demand run of the old config may still use the state: let it finish first.
        with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            async with lock:
                pass
    with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
        try:
            await state.aclose()
        except Exception as exc:
            log.warning(
                "closing probe state failed",
                extra={"probe": name, "error_type": type(exc).__name__},
            )


async def _close_all(runners: list[_Runner]) -> None:
    """Close the states of stopped runners concurrently: one slow close delays no other."""
    async with anyio.create_task_group() as tg:
        for index, runner in enumerate(runners):
            tg.start_soon(close_state, runner.spec.name, runner.state, runner.lock)
            if index % _BATCH == _BATCH - 1:
                await anyio.lowlevel.checkpoint()


def _freeze() -> None:
    """Young cyclic garbage collected (cheap), then everything alive frozen."""
    gc.collect(1)
    gc.freeze()


class Scheduler:
    """Owns one task per configured probe inside the daemon's task group."""

    def __init__(self, store: ResultStore, task_group: anyio.abc.TaskGroup) -> None:
        self.store = store
        self.task_group = task_group
        self.runners: dict[str, _Runner] = {}
        self.spread = 5.0
        self._freezer: anyio.CancelScope | None = None

    async def apply(self, config: Config) -> None:
        """Switch to ``config``. Unchanged probes keep their state and schedule; changed
        and removed ones are stopped and their state closed; new ones start."""
        # No full collection in the middle of creating thousands of objects (each one a
        # 0.2-0.5 s pause): they are frozen at the end instead.
        collecting = gc.isenabled()
        gc.disable()
        try:
            await self._apply(config)
        finally:
            gc.freeze()  # what the apply created: too much to scan now
            if collecting:
                gc.enable()
        if self._freezer is None:
            self._freezer = anyio.CancelScope()
            self.task_group.start_soon(self._freeze_periodically, self._freezer)

    async def _apply(self, config: Config) -> None:
        self.spread = config.global_.start_spread
        wanted = {spec.name: spec for spec in config.probes}
        stale = [
            runner for name, runner in self.runners.items()
            if wanted.get(name) != runner.spec
        ]
        added = self.store.apply_config(config)
        for index, runner in enumerate(stale):
            runner.scope.cancel()
            del self.runners[runner.spec.name]
            if index % _BATCH == _BATCH - 1:
                await anyio.lowlevel.checkpoint()
        await _close_all(stale)
        for index, record in enumerate(added):
            self.store.publish(record)
            if index % _BATCH == _BATCH - 1:
                await anyio.lowlevel.checkpoint()
        started = 0
        for name, spec in wanted.items():
            if name not in self.runners:
                runner = _Runner(spec, spec.kind_impl.new_state(spec.settings))
                self.runners[name] = runner
                self.task_group.start_soon(self._loop, runner, name=f"probe:{name}")
                started += 1
                if started % _BATCH == 0:
                    await anyio.lowlevel.checkpoint()

    async def _freeze_periodically(self, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
                await anyio.sleep(_FREEZE_EVERY)
                _freeze()

    async def stop(self) -> None:
        if self._freezer is not None:
            self._freezer.cancel()
            self._freezer = None
        runners = list(self.runners.values())
        self.runners.clear()
        for index, runner in enumerate(runners):
            runner.scope.cancel()
            if index % _BATCH == _BATCH - 1:
                await anyio.lowlevel.checkpoint()
        await _close_all(runners)

    async def run_now(self, name: str) -> RunRecord | None:
        """Run one configured probe immediately (after a run already in progress).

        At most one on-demand run per probe: a request arriving while one is in progress
        gets that run's result. On-demand runs do not count in the probe's counters."""
        while (runner := self.runners.get(name)) is not None:
            pending = runner.on_demand
            if pending is not None:
                await pending.done.wait()
                if pending.run is not None:
                    return pending.run
                continue  # its requester went away before it finished: run it ourselves
            pending = runner.on_demand = _OnDemand()
            try:
                pending.run = await self._run_once(runner, trigger=ON_DEMAND)
                return pending.run
            finally:
                runner.on_demand = None
                pending.done.set()
        return None

    async def _loop(self, runner: _Runner) -> None:
        spec = runner.spec
        with runner.scope:
            start = anyio.current_time()
            next_at = start + start_offset(spec.name, spec.interval, self.spread)
            # After the first run, the probe keeps a phase of its own over the whole
            # interval: thousands of probes whose first runs were packed into
            # start_spread would otherwise stay packed, in bursts, forever.
            phase = start + start_offset(spec.name, spec.interval, spec.interval)
            if phase - next_at < spec.interval / 2:
                phase += spec.interval
            first = True
            while True:
                await anyio.sleep_until(next_at)
                self.store.lag.observe(max(0.0, anyio.current_time() - next_at))
                await self._run_once(runner, trigger=SCHEDULED)
                next_at = phase if first else next_at + spec.interval
                first = False
                behind = anyio.current_time() - next_at
                if behind > 0:  # the run overran: skip the ticks it covered, never overlap
                    next_at += math.ceil(behind / spec.interval) * spec.interval

    async def _run_once(self, runner: _Runner, trigger: str) -> RunRecord:
        async with runner.lock:
            self.store.in_flight += 1
            started_at = time.time()
            began = anyio.current_time()
            try:
                result = await execute(runner.spec, runner.state)
            finally:
                self.store.in_flight -= 1
            duration = anyio.current_time() - began
            if trigger == SCHEDULED:
                for prepare in self.store.preparers:
                    await prepare(runner.spec, result.metrics)
            run = self.store.record(runner.spec, started_at, duration, result, trigger)
            self._log_transition(runner, result)
            return run

    @staticmethod
    def _log_transition(runner: _Runner, result: ProbeResult) -> None:
        failing = not result.success
        if failing == runner.failing or (runner.failing is None and not failing):
            runner.failing = failing
            return
        runner.failing = failing
        extra: dict[str, Any] = {"probe": runner.spec.name, "kind": runner.spec.kind}
        if failing:
            log.warning("probe failing", extra={**extra, "reason": result.reason})
        else:
            log.info("probe recovered", extra=extra)
