"""Probe kinds. ``KIND_MODULES`` is the whole plug-in system: kind name -> module.

Modules are imported on first use so that a kind's heavy client library (kubernetes,
psycopg...) is only loaded when a probe of that kind is configured.
"""

from __future__ import annotations

import importlib
from typing import Any

from probes.base import ProbeKind

KIND_MODULES: dict[str, str] = {
    "http": "probes.http",
    "tcp": "probes.tcp",
    "postgres": "probes.postgres",
    "pgbouncer": "probes.pgbouncer",
    "redis": "probes.redis",
    "statuspage": "probes.statuspage",
    "tls": "probes.tls",
    "kubernetes": "probes.kubernetes",
}


def load_kind(name: str) -> ProbeKind[Any, Any]:
    """The ``ProbeKind`` registered under ``name``; ``KeyError`` if there is none."""
    module = importlib.import_module(KIND_MODULES[name])
    kind: ProbeKind[Any, Any] = module.KIND
    return kind
