"""Shared test setup: the asyncio backend, and a guard against blocking calls.

Every callback the event loop runs is timed; the autouse fixture turns a step slower than
``SLOW_STEP_SECONDS`` into a test failure, so a blocking call (a sync socket,
``time.sleep``, the sync kubernetes client) on the loop cannot pass. This is asyncio debug
mode's slow-callback check without debug mode's cost (a stack capture per callback),
which would distort the timings of the code under test.
"""

from __future__ import annotations

import asyncio.events
import gc
import time
from collections.abc import Iterator

import pytest

# A step that holds the loop this long is a blocking call, not scheduling noise.
SLOW_STEP_SECONDS = 0.25

_slow_steps: list[str] = []
_original_run = asyncio.events.Handle._run


def _timed_run(self: asyncio.events.Handle) -> None:
    began = time.perf_counter()
    _original_run(self)
    took = time.perf_counter() - began
    if took > SLOW_STEP_SECONDS:
        _slow_steps.append(f"{self!r} took {took:.3f} seconds")


asyncio.events.Handle._run = _timed_run  # type: ignore[method-assign]


def pytest_collection_finish(session: pytest.Session) -> None:
    # As the daemon does after loading its config: the imported client libraries are
    # long-lived, and a full collection scanning them pauses the loop for 0.2-0.3 s.
    gc.freeze()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def fail_on_blocking_event_loop() -> Iterator[None]:
    _slow_steps.clear()
    yield
    if _slow_steps:
        steps = list(_slow_steps)
        _slow_steps.clear()
        pytest.fail("blocking call inside the event loop:\n" + "\n".join(steps))
