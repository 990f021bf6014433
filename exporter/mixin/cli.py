"""``festivals-exporter mixin``: write (or check) the mixin's files from a values file."""

from __future__ import annotations

import sys
from pathlib import Path

from exporter.mixin.generate import stale, write
from exporter.mixin.values import ValuesError, load_values

EXIT_OK, EXIT_STALE, EXIT_USAGE = 0, 1, 2


def run(values_file: str | None, output: str, check: bool) -> int:
    try:
        values = load_values(values_file)
    except ValuesError as exc:
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    root = Path(output)
    if check:
        changed = stale(root, values)
        for rel in changed:
            print(f"out of date: {rel}", file=sys.stderr)
        return EXIT_STALE if changed else EXIT_OK
    for rel in write(root, values):
        print(f"wrote {root / rel}")
    return EXIT_OK
