"""Running a probe kind directly, as the scheduler would, for the kinds' own tests."""

from __future__ import annotations

from typing import Any

from probes.base import KindConfig, ProbeKind, ProbeResult


async def run_once(kind: ProbeKind[Any, Any], config: KindConfig, runs: int = 1) -> ProbeResult:
    """Run ``kind`` ``runs`` times on one fresh state, close the state, return the last
    result."""
    state = kind.new_state(config)
    try:
        result: ProbeResult = await kind.run(config, state)
        for _ in range(runs - 1):
            result = await kind.run(config, state)
        return result
    finally:
        await state.aclose()
