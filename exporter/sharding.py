"""Splitting one config's probes over ``n`` exporter processes (``--shard=i/n``).

Each probe belongs to exactly one shard, chosen by rendezvous (highest random weight)
hashing of its name: every shard scores the name and the highest score wins. The choice
depends only on the name and ``n``, so every process reading the same file agrees without
talking to the others, and going from ``n`` to ``n + 1`` shards moves only the probes the
new shard now wins, about ``1 / (n + 1)`` of them; a modulo hash would move most of them.

A sharded process adds ``shard="i/n"`` to every series it serves (the probes' and its
own), so rules can tell a missing shard (no series with that label) from a healthy one.
An unsharded process adds nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exporter.config import Config

SHARD_LABEL = "shard"
_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_MAX_SHARDS = 1000


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based: shards of 3 are 1/3, 2/3, 3/3
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, name: str) -> bool:
        return owner(name, self.count) == self.index


def parse_shard(text: str) -> Shard:
    """``"2/3"`` -> ``Shard(2, 3)``; anything else raises ``ValueError`` saying why."""
    match = _SHARD_RE.match(text)
    if match is None:
        raise ValueError(f"shard {text!r} must be i/n, e.g. 2/3")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= count <= _MAX_SHARDS:
        raise ValueError(f"shard {text!r}: the shard count must be 1 to {_MAX_SHARDS}")
    if not 1 <= index <= count:
        raise ValueError(f"shard {text!r}: the index must be 1 to {count} (shards count from 1)")
    return Shard(index, count)


def shard_argument(text: str) -> Shard:
    """``argparse`` type for ``--shard``: a bad value is a usage error (exit 2)."""
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _score(name: str, index: int) -> int:
    # blake2b rather than Python's hash(): stable across processes and versions.
    digest = hashlib.blake2b(f"{index}\x00{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(name: str, count: int) -> int:
    """The shard (1..count) that runs probe ``name``."""
    return max(range(1, count + 1), key=lambda index: _score(name, index))


# The --shard flag, kept for the process's lifetime so that reloads (which parse the file
# again) keep honouring it; it wins over global.shard like every flag over its key.
_flag: Shard | None = None


def set_flag(shard: Shard | None) -> None:
    global _flag
    _flag = shard


def apply(config: Config) -> Config:
    """Keep only this process's probes and label them with the shard.

    The effective shard is the ``--shard`` flag, else ``global.shard``; ``global.shard`` of
    the returned config holds it, so the store and the self-metrics can label with it.
    """
    shard = _flag or (parse_shard(config.global_.shard) if config.global_.shard else None)
    if shard is None:
        return config
    label = (SHARD_LABEL, str(shard))
    probes = tuple(
        dataclasses.replace(spec, labels=tuple(sorted((*spec.labels, label))))
        for spec in config.probes
        if shard.owns(spec.name)
    )
    global_ = config.global_.model_copy(update={"shard": str(shard)})
    return dataclasses.replace(config, global_=global_, probes=probes)

