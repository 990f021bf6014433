"""``make bench``: run every benchmark module ``bench/bench_*.py`` (its ``main()``).

Benchmarks report ratios against a baseline measured in the same run, because the
machine is noisy; absolute times are printed for context only.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    wanted = set(sys.argv[1:])
    here = Path(__file__).parent
    for module_info in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if not module_info.name.startswith("bench_"):
            continue
        if wanted and module_info.name.removeprefix("bench_") not in wanted:
            continue
        print(f"== {module_info.name}", flush=True)
        module = importlib.import_module(f"bench.{module_info.name}")
        module.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
