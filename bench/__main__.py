"""``make bench``: run every benchmark module ``bench/bench_*.py`` (its ``main()``).

Each module's ``main()`` returns its rows (see ``bench/report.py``); this runner prints
them and writes the whole table to ``docs/performance.md``. ``python -m bench http redis``
runs only those modules and leaves the file alone unless ``--write`` is given.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from pathlib import Path

from bench.report import Row, as_rows, print_rows, render

DOC = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    write = "--write" in sys.argv or not args
    wanted = set(args)
    here = Path(__file__).parent
    rows: list[Row] = []
    failed: list[str] = []
    for module_info in sorted(pkgutil.iter_modules([str(here)]), key=lambda m: m.name):
        if not module_info.name.startswith("bench_"):
            continue
        if wanted and module_info.name.removeprefix("bench_") not in wanted:
            continue
        print(f"== {module_info.name}", flush=True)
        try:
            module = importlib.import_module(f"bench.{module_info.name}")
            got = as_rows(module.main())
        except Exception:  # one broken scenario must not lose the other figures
            traceback.print_exc()
            failed.append(module_info.name)
            continue
        print_rows(got)
        rows.extend(got)
    if write:
        DOC.write_text(render(rows))
        print(f"wrote {DOC}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
