"""Fixtures: a fresh fake API server per test (cheap: a threaded http.server on port 0)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.probes_kubernetes.fake_api import FakeKube


@pytest.fixture
def fake_kube(tmp_path: Path) -> Iterator[FakeKube]:
    fake = FakeKube()
    fake.start()
    fake.kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
    try:
        yield fake
    finally:
        fake.stop()
