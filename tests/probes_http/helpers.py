"""Small helpers to read a ProbeResult in tests."""

from __future__ import annotations

from probes.base import ProbeResult


def value(result: ProbeResult, name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    found = [
        s.value
        for m in result.metrics
        if m.name == name
        for s in m.samples
        if set(labels.items()) <= set(s.labels)
    ]
    assert len(found) == 1, f"{name}{labels}: {found} in {[m.name for m in result.metrics]}"
    return found[0]


def names(result: ProbeResult) -> set[str]:
    return {m.name for m in result.metrics}


def label_values(result: ProbeResult, name: str, label: str) -> list[str]:
    return [
        dict(s.labels)[label] for m in result.metrics if m.name == name for s in m.samples
    ]
