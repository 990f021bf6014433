"""Command line: ``run`` (default), ``check-config``, ``probe``, ``version``.

Flags follow exporter conventions (``--web.listen-address``, ``--config.file``,
``--log.level``, ``--log.format``). Exit codes: 0 ok, 1 a probe failed or the daemon
could not start, 2 bad config or usage.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio

from exporter import __version__, sharding
from exporter.config import (
    DEFAULT_LISTEN_ADDRESS,
    Config,
    ConfigError,
    ProbeSpec,
    load_config,
)
from exporter.eventloop import backend_options
from exporter.logs import setup_logging
from exporter.results import redact_result
from exporter.scheduler import close_state, execute

DEFAULT_CONFIG_FILE = "festivals-exporter.yml"
COMMANDS = ("run", "check-config", "probe", "version")
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="festivals-exporter",
        description="Prometheus exporter and synthetic prober for the Festivals platform.",
    )
    sub = parser.add_subparsers(dest="command")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config.file", dest="config_file", default=DEFAULT_CONFIG_FILE,
                       help=f"YAML config file (default: {DEFAULT_CONFIG_FILE})")
        p.add_argument("--log.level", dest="log_level",
                       choices=["debug", "info", "warning", "error"],
                       help="log level (default: global.log_level, else info)")
        p.add_argument("--log.format", dest="log_format", choices=["logfmt", "json"],
                       help="log format (default: global.log_format, else logfmt)")

    run = sub.add_parser("run", help="run the exporter (the default command)")
    common(run)
    run.add_argument("--web.listen-address", dest="listen_address",
                     help=f"address to serve on (default: global.listen_address, "
                          f"else {DEFAULT_LISTEN_ADDRESS})")
    run.add_argument("--shard", type=sharding.shard_argument,
                     help="i/n: run only shard i of n of the probes (default: global.shard)")

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file", nargs="?", help="config file (default: --config.file)")
    check.add_argument("--config.file", dest="config_file", default=DEFAULT_CONFIG_FILE)
    check.add_argument("--shard", type=sharding.shard_argument,
                       help="i/n: list only the probes shard i of n runs")

    probe = sub.add_parser("probe", help="run probes once, print a table, exit 1 if any failed")
    common(probe)
    probe.add_argument("names", nargs="*", help="probe names")
    probe.add_argument("--all", action="store_true", help="run every configured probe")

    sub.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, "run")
    args = _parser().parse_args(args_list)

    sharding.set_flag(getattr(args, "shard", None))
    if args.command == "version":
        print(f"festivals-exporter {__version__}")
        return EXIT_OK
    if args.command == "check-config":
        return _check_config(Path(args.file or args.config_file))

    try:
        config = load_config(args.config_file)
    except ConfigError as exc:
        _print_errors(exc)
        return EXIT_CONFIG
    # Loading the config imported every configured kind's client library (kubernetes alone
    # is ~140k objects). They live as long as the process: keep them out of the garbage
    # collector's scans, which would otherwise pause the event loop for 0.2-0.3 s.
    gc.freeze()
    setup_logging(args.log_level or config.global_.log_level,
                  args.log_format or config.global_.log_format)
    if args.command == "probe":
        return _probe(config, args.names, args.all)
    return _run(Path(args.config_file), config, args.listen_address)


def _print_errors(exc: ConfigError) -> None:
    print(f"config is invalid ({len(exc.errors)} error(s)):", file=sys.stderr)
    for line in exc.errors:
        print(f"  {line}", file=sys.stderr)


def _check_config(path: Path) -> int:
    try:
        config = load_config(path)
    except ConfigError as exc:
        _print_errors(exc)
        return EXIT_CONFIG
    shard = f" in shard {config.global_.shard}" if config.global_.shard else ""
    print(f"{path}: ok, {len(config.probes)} probe(s){shard}")
    for spec in config.probes:
        print(f"  {spec.name} ({spec.kind}) every {spec.interval:g}s, "
              f"timeout {spec.timeout:g}s: {spec.target()}")
    return EXIT_OK


def _run(config_path: Path, config: Config, listen_address: str | None) -> int:
    from exporter.daemon import Daemon

    daemon = Daemon(config_path, config, listen_address)
    try:
        anyio.run(daemon.run, backend_options=backend_options())
    except OSError as exc:
        logging.getLogger("festivals_exporter").error(
            "cannot start", extra={"listen_address": daemon.listen_address,
                                   "error": exc.strerror or type(exc).__name__})
        return EXIT_FAILED
    except ValueError as exc:
        logging.getLogger("festivals_exporter").error("cannot start", extra={"error": str(exc)})
        return EXIT_CONFIG
    return EXIT_OK


def _probe(config: Config, names: list[str], run_all: bool) -> int:
    if run_all:
        specs = list(config.probes)
    else:
        if not names:
            print("name at least one probe, or --all", file=sys.stderr)
            return EXIT_CONFIG
        unknown = [n for n in names if config.probe(n) is None]
        if unknown:
            print(f"unknown probe(s): {', '.join(unknown)}", file=sys.stderr)
            return EXIT_CONFIG
        specs = [spec for n in names if (spec := config.probe(n)) is not None]

    async def run_all_once() -> list[tuple[str, str, str, str, float, tuple[str, ...]]]:
        rows: list[tuple[str, str, str, str, float, tuple[str, ...]]] = []

        async def one(spec: ProbeSpec) -> None:
            state = spec.kind_impl.new_state(spec.settings)
            began = anyio.current_time()
            try:
                result = redact_result(spec, await execute(spec, state))
            finally:
                await close_state(spec.name, state)
            rows.append((spec.name, spec.kind, "ok" if result.success else "FAIL",
                         result.reason, anyio.current_time() - began, result.detail))

        async with anyio.create_task_group() as tg:
            for spec in specs:
                tg.start_soon(one, spec)
        order = {spec.name: i for i, spec in enumerate(specs)}
        return sorted(rows, key=lambda row: order[row[0]])

    rows = anyio.run(run_all_once, backend_options=backend_options())
    header = ("PROBE", "KIND", "RESULT", "REASON", "DURATION")
    table = [header] + [(n, k, r, why or "-", f"{d:.3f}s") for n, k, r, why, d, _ in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    failed = [row for row in rows if row[2] != "ok"]
    for name, _, _, _, _, detail in failed:
        if detail:
            print(f"\n{name}:")
            for line in detail:
                print(f"  {line}")
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
