"""The daemon's runtime: uvloop where it is installed (else asyncio's own loop), and the
garbage collector's thresholds.

uvloop takes about a third less CPU per HTTP probe than the default loop here (see
docs/architecture.md); everything also runs on the default loop, which the test suite uses.
"""

from __future__ import annotations

import gc
import importlib.util
from typing import Any


def backend_options() -> dict[str, Any]:
    """``anyio.run(..., backend_options=...)`` for the asyncio backend."""
    try:
        found = importlib.util.find_spec("uvloop") is not None
    except (ImportError, ValueError):
        found = False
    return {"use_uvloop": True} if found else {}


# A probe run allocates thousands of short-lived objects, and hundreds of runs overlap.
# With Python's default youngest generation (700 allocations) the collector runs several
# times per run and promotes other runs' in-flight objects to the old generations, which
# only full collections free; those walk every live object (all probes' results and
# history) and took most of a core with 10,000 probes. A larger youngest generation lets
# run garbage die young; the ratios between generations stay Python's (10, 10).
GC_THRESHOLDS = (50_000, 10, 10)


def tune_gc() -> None:
    """Set the daemon's collector thresholds (see ``GC_THRESHOLDS``)."""
    gc.set_threshold(*GC_THRESHOLDS)
