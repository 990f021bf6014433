"""Evidence for the CLI: run the configured probes of the chosen sections once, now."""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio

from exporter.config import Config, ProbeSpec
from exporter.diagnose.model import Observation, Run
from exporter.diagnose.sections import SectionDef
from exporter.results import ResultStore, redact_result
from exporter.scheduler import close_state, execute


def specs_for(config: Config, sections: Sequence[SectionDef]) -> list[ProbeSpec]:
    """The configured probes that give evidence to any of ``sections`` (config order)."""
    return [spec for spec in config.probes if any(s.selects(spec) for s in sections)]


async def observe_now(specs: Sequence[ProbeSpec]) -> list[Observation]:
    """Run each probe once, concurrently, each under its own hard deadline."""
    found: dict[str, Observation] = {}

    async def one(spec: ProbeSpec) -> None:
        state = spec.kind_impl.new_state(spec.settings)
        started = time.time()
        began = anyio.current_time()
        try:
            result = redact_result(spec, await execute(spec, state))
        finally:
            await close_state(spec.name, state)
        found[spec.name] = Observation(spec, (Run(started, anyio.current_time() - began,
                                                  result),))

    async with anyio.create_task_group() as tg:
        for spec in specs:
            tg.start_soon(one, spec)
    return [found[spec.name] for spec in specs]


def observe_store(store: ResultStore) -> list[Observation]:
    """The kept runs of every configured probe, newest first (the pages' evidence)."""
    return [
        Observation(record.spec, tuple(Run(r.started_at, r.duration, r.result)
                                       for r in record.history))
        for record in store.probes.values()
    ]
