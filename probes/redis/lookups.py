"""Keyspace hits and misses with the probe's own lookups measured apart.

Every key the probe reads (TYPE, LLEN, LINDEX, XINFO ..., and SCAN ... TYPE, which looks up
each matching key) counts in Redis's ``keyspace_hits``/``keyspace_misses``, and a
configured queue that does not exist is a miss: one run over 2,500 lists moves the hits by
thousands, so the cache hit ratio the runbook asks for would mostly measure the probe.
Redis cannot tell who caused a lookup, and which commands count differs between versions,
so the probe measures around its own reads instead of predicting them: ``INFO`` before the
first and after the last key command. Other clients' lookups inside that window (a few
milliseconds) are counted as the probe's too, which leaves their hit ratio unbiased.
Private helper of :mod:`probes.redis`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from probes.base import Metric, counter, gauge


def hits_misses(info: Mapping[str, Any]) -> tuple[float, float] | None:
    try:
        return float(info["keyspace_hits"]), float(info["keyspace_misses"])
    except (KeyError, TypeError, ValueError):
        return None


@dataclass(slots=True)
class Lookups:
    """Per-probe memory: the probe's own lookups so far, Redis's counters after the last
    run's reads."""

    own_hits: float = 0.0
    own_misses: float = 0.0
    last: tuple[float, float] | None = None

    def account(
        self, before: tuple[float, float] | None, after: tuple[float, float] | None
    ) -> tuple[float, float, float]:
        """Add the window ``before`` .. ``after`` to the probe's own lookups; return
        (other clients' hits, misses since the last run, hit ratio), NaN when unknown."""
        others = (math.nan, math.nan)
        if before is not None and self.last is not None and all(
            b >= last for b, last in zip(before, self.last, strict=True)
        ):  # not across a restart or CONFIG RESETSTAT
            others = (before[0] - self.last[0], before[1] - self.last[1])
        if before is not None and after is not None:
            self.own_hits += max(0.0, after[0] - before[0])
            self.own_misses += max(0.0, after[1] - before[1])
        self.last = after
        total = others[0] + others[1]
        ratio = others[0] / total if total > 0 else math.nan
        return (*others, ratio)

    def metrics(self, after: tuple[float, float] | None, ratio: float) -> tuple[Metric, ...]:
        hits, misses = after if after is not None else (math.nan, math.nan)
        return (
            counter("redis_keyspace_hits", "Successful key lookups (cache hits), all clients "
                    "and this probe (INFO keyspace_hits after the probe's reads).", hits),
            counter("redis_keyspace_misses", "Failed key lookups (cache misses), all clients "
                    "and this probe (INFO keyspace_misses after the probe's reads).", misses),
            counter("redis_probe_keyspace_hits", "Key lookups counted as hits while this "
                    "probe read its keys (measured around its reads).", self.own_hits),
            counter("redis_probe_keyspace_misses", "Key lookups counted as misses while this "
                    "probe read its keys (measured around its reads).", self.own_misses),
            gauge("redis_keyspace_hit_ratio", "hits / (hits + misses) of the other clients' "
                  "lookups between the previous run and this one, the probe's own excluded "
                  "(NaN when there were none).", ratio),
        )
