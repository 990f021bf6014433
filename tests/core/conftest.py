from __future__ import annotations

from collections.abc import Iterator

import pytest

from probes import KIND_MODULES


@pytest.fixture(autouse=True)
def fake_kind() -> Iterator[None]:
    KIND_MODULES["fake"] = "tests.core.fake_kind"
    yield
    KIND_MODULES.pop("fake", None)
