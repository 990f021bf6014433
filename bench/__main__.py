"""``make bench``: run every benchmark module ``bench/bench_*.py`` (its ``main()``).

Each module's ``main()`` returns its rows (see ``bench/report.py``); this runner prints
them, keeps each module's latest rows in ``docs/performance.json`` and writes the whole
table to ``docs/performance.md``. ``make bench ARGS="http redis"`` runs only those
modules and replaces only their rows (each row says when it was measured).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from pathlib import Path

from bench.report import as_rows, load_rows, print_rows, render, save_rows

DOCS = Path(__file__).resolve().parent.parent / "docs"
DOC, DATA = DOCS / "performance.md", DOCS / "performance.json"


def main() -> int:
    wanted = {a for a in sys.argv[1:] if not a.startswith("--")}
    here = Path(__file__).parent
    by_module = load_rows(DATA)
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
        by_module[module_info.name] = got
        save_rows(DATA, by_module)  # after each module: a later failure loses nothing
    DOC.write_text(render(by_module))
    print(f"wrote {DOC}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
