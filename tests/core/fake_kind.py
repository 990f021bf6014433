"""A probe kind for testing the daemon itself: behaves as its ``mode`` says.

Not a stand-in for any real component: the daemon's contract with probes is what is
under test (a probe that raises, hangs, returns garbage, or keeps state).
"""

from __future__ import annotations

from typing import Literal

import anyio
from pydantic import field_validator

from probes.base import KindConfig, ProbeKind, ProbeResult, Reason, gauge


class FakeConfig(KindConfig):
    mode: Literal["ok", "fail", "hang", "raise", "garbage", "slow"] = "ok"
    value: float = 1.0
    delay: float = 0.0
    # A config-time bug on demand: loading raises something that is not a ConfigError.
    explode: bool = False

    @field_validator("explode")
    @classmethod
    def _explode(cls, value: bool) -> bool:
        if value:
            raise RuntimeError("a bug while loading the config")
        return value


class FakeState:
    instances: list[FakeState] = []

    def __init__(self, config: FakeConfig) -> None:
        self.runs = 0
        self.closed = False
        FakeState.instances.append(self)

    async def aclose(self) -> None:
        self.closed = True


async def run(config: FakeConfig, state: FakeState) -> ProbeResult:
    state.runs += 1
    if config.delay:
        await anyio.sleep(config.delay)
    if config.mode == "hang":
        await anyio.sleep_forever()
    if config.mode == "raise":
        raise RuntimeError("secret-password-in-message")
    if config.mode == "garbage":
        return "not a result"  # type: ignore[return-value]
    metrics = (gauge("fake_value", "A value the test chose.", config.value),)
    if config.mode == "fail":
        return ProbeResult.fail(Reason.REFUSED, metrics, detail=("refused on purpose",))
    return ProbeResult.ok(metrics, detail=("all good",))


KIND = ProbeKind(
    name="fake",
    config_model=FakeConfig,
    run=run,
    new_state=FakeState,
    target=lambda config: f"fake://{config.mode}",
    reasons=frozenset({Reason.REFUSED}),
    failure_metrics=(gauge("fake_up", "1 if the fake answered.", 0),),
)
