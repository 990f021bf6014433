"""Shared test setup: asyncio backend in debug mode, and a guard against blocking calls.

asyncio's debug mode logs every event-loop step slower than ``slow_callback_duration``;
the autouse fixture below turns such a log line into a test failure, so a blocking call
(a sync socket, ``time.sleep``, the sync kubernetes client) on the loop cannot pass.
"""

from __future__ import annotations

import asyncio.base_events
import logging
from collections.abc import Iterator

import pytest

# A step that holds the loop this long is a blocking call, not scheduling noise.
SLOW_STEP_SECONDS = 0.25


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {"debug": True})


class _SlowStepCatcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing ") and " took " in message:
            self.messages.append(message)


@pytest.fixture(autouse=True)
def fail_on_blocking_event_loop() -> Iterator[None]:
    catcher = _SlowStepCatcher()
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(catcher)
    original_init = asyncio.base_events.BaseEventLoop.__init__

    def init_with_threshold(self: asyncio.base_events.BaseEventLoop) -> None:
        original_init(self)
        self.slow_callback_duration = SLOW_STEP_SECONDS

    asyncio.base_events.BaseEventLoop.__init__ = init_with_threshold  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        asyncio.base_events.BaseEventLoop.__init__ = original_init  # type: ignore[method-assign]
        asyncio_logger.removeHandler(catcher)
    if catcher.messages:
        pytest.fail("blocking call inside the event loop:\n" + "\n".join(catcher.messages))
