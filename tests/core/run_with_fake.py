"""Run the exporter CLI with the test-only ``fake`` kind registered (for subprocess tests)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from exporter.cli import main  # noqa: E402
from probes import KIND_MODULES  # noqa: E402

KIND_MODULES["fake"] = "tests.core.fake_kind"

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
