"""Which event loop the daemon runs on: uvloop where it is installed, else asyncio's own.

uvloop takes about a third less CPU per HTTP probe than the default loop here (see
docs/architecture.md); everything also runs on the default loop, which the test suite uses.
"""

from __future__ import annotations

import importlib.util
from typing import Any


def backend_options() -> dict[str, Any]:
    """``anyio.run(..., backend_options=...)`` for the asyncio backend."""
    try:
        found = importlib.util.find_spec("uvloop") is not None
    except (ImportError, ValueError):
        found = False
    return {"use_uvloop": True} if found else {}
