"""``festivals-exporter diagnose [SECTION ...]``: run the sections' probes now and print
the diagnosis. Exit 0 healthy, 1 degraded, 2 failing, 3 could not diagnose."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import anyio

from exporter.config import ConfigError, load_config
from exporter.diagnose.engine import diagnose
from exporter.diagnose.model import EXIT_UNDIAGNOSED, exit_code
from exporter.diagnose.render import to_json, to_text
from exporter.diagnose.runner import observe_now, specs_for
from exporter.diagnose.sections import SECTION_IDS, load_sections
from exporter.eventloop import backend_options


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("diagnose", help="diagnose runbook sections from the configured "
                       "probes; exit 0 healthy, 1 degraded, 2 failing, 3 could not diagnose")
    p.add_argument("--config.file", dest="config_file", default="festivals-exporter.yml")
    p.add_argument("sections", nargs="*", metavar="SECTION",
                   help=f"{', '.join(SECTION_IDS)} or all (the default)")
    p.add_argument("--output", choices=["text", "json"], default="text",
                   help="text (coloured on a terminal) or json (see docs/diagnose.md)")


def run(args: argparse.Namespace) -> int:
    wanted = [s for s in args.sections if s != "all"] or list(SECTION_IDS)
    unknown = [s for s in wanted if s not in SECTION_IDS]
    if unknown:
        print(f"unknown section(s): {', '.join(unknown)}; choose from "
              f"{', '.join(SECTION_IDS)} or all", file=sys.stderr)
        return EXIT_UNDIAGNOSED
    try:
        config = load_config(args.config_file)
    except ConfigError as exc:
        print(f"cannot diagnose: config is invalid ({len(exc.errors)} error(s)):",
              file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return EXIT_UNDIAGNOSED
    sections = [s for s in load_sections() if s.id in wanted]
    observations = anyio.run(observe_now, specs_for(config, sections),
                             backend_options=backend_options())
    diagnoses = diagnose(sections, observations, time.time())
    if args.output == "json":
        print(json.dumps(to_json(diagnoses), indent=2))
    else:
        colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        sys.stdout.write(to_text(diagnoses, colour))
    return exit_code(diagnoses)
