"""Small helpers shared by the redis probe tests."""

from __future__ import annotations

from typing import Any

from probes.base import ProbeResult
from probes.redis import KIND, RedisConfig, RedisState


def make(url: str, **keys: Any) -> tuple[RedisConfig, RedisState]:
    config = KIND.config_model.model_validate({"url": url, **keys})
    return config, KIND.new_state(config)


def values(result: ProbeResult, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for metric in result.metrics:
        if metric.name == name:
            for sample in metric.samples:
                out[sample.labels] = sample.value
    return out


def one(result: ProbeResult, name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` whose labels include ``labels``."""
    found = [
        v for lbl, v in values(result, name).items() if set(labels.items()) <= set(lbl)
    ]
    assert len(found) == 1, (name, labels, values(result, name))
    return found[0]


def has_metric(result: ProbeResult, name: str) -> bool:
    return any(m.name == name for m in result.metrics)
