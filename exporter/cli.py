"""Command line: ``run`` (default), ``check-config``, ``probe``, ``version``, ``mixin``.

Flags follow exporter conventions (``--web.listen-address``, ``--config.file``,
``--log.level``, ``--log.format``). Exit codes: 0 ok, 1 a probe failed or the daemon
could not start, 2 bad config or usage.
"""

from __future__ import annotations

import argparse
import difflib
import gc
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

import anyio

from exporter import __version__, sharding
from exporter.config import (
    DEFAULT_LISTEN_ADDRESS,
    Config,
    ConfigError,
    ProbeSpec,
    load_config,
)
from exporter.diagnose import command as diagnose_command
from exporter.eventloop import backend_options, tune_gc
from exporter.logs import setup_logging
from exporter.results import redact_result
from exporter.scheduler import close_state, execute
from exporter.webconfig import WebConfigError
from exporter.websecurity import WebSecurity
from probes.base import Metric, ProbeResult

DEFAULT_CONFIG_FILE = "festivals-exporter.yml"
COMMANDS = ("run", "check-config", "probe", "diagnose", "version", "mixin")
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
# A file with 20,000 unknown keys must not print 20,000 lines: the first ones say enough.
MAX_PRINTED_ERRORS = 100
# Samples printed per probe by ``probe``; /probe?name= serves them all.
MAX_PRINTED_SAMPLES = 50


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
    run.add_argument("--web.config.file", dest="web_config_file",
                     help="exporter-toolkit web config: TLS, basic auth (docs/web-config.md)")
    run.add_argument("--web.enable-lifecycle", dest="enable_lifecycle", action="store_true",
                     help="enable POST /-/reload and on-demand runs (/probe)")
    run.add_argument("--shard", type=sharding.shard_argument,
                     help="i/n: run only shard i of n of the probes (default: global.shard)")

    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("file", nargs="?", help="config file (default: --config.file)")
    check.add_argument("--config.file", dest="config_file", default=DEFAULT_CONFIG_FILE)
    check.add_argument("--skip-file-checks", action="store_true",
                       help="do not check that the files probes name (secret *_file keys, "
                            "CA, certificate, key, kubeconfig) exist and are readable, "
                            "e.g. in CI where secrets are not mounted")
    check.add_argument("--shard", type=sharding.shard_argument,
                       help="i/n: list only the probes shard i of n runs")

    probe = sub.add_parser("probe", help="run probes once, print a table, exit 1 if any failed")
    common(probe)
    probe.add_argument("names", nargs="*", help="probe names")
    probe.add_argument("--all", action="store_true", help="run every configured probe")

    mixin = sub.add_parser("mixin", help="write the alert rules, Alertmanager config, "
                           "dashboards and Kubernetes objects from a values file")
    mixin.add_argument("--values", dest="values_file",
                       help="values YAML merged over the defaults (docs/alerts.md)")
    mixin.add_argument("--output", default=".", help="directory to write into (default: .)")
    mixin.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 if a file differs from the generator")

    diagnose_command.add_parser(sub)
    sub.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # e.g. piped into head: the reader has all it wanted
        _quiet_pipe(sys.stdout)
        return EXIT_FAILED


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, "run")
    args = _parser().parse_args(args_list)

    sharding.set_flag(getattr(args, "shard", None))
    if args.command == "version":
        _write([f"festivals-exporter {__version__}"])
        return EXIT_OK
    if args.command == "diagnose":
        return diagnose_command.run(args)
    if args.command == "check-config":
        return _check_config(Path(args.file or args.config_file), not args.skip_file_checks)
    if args.command == "mixin":
        from exporter.mixin.cli import run as run_mixin

        return run_mixin(args.values_file, args.output, args.check)

    config = _load(Path(args.config_file), check_files=False)
    if config is None:
        return EXIT_CONFIG
    # Loading the config imported every configured kind's client library (kubernetes alone
    # is ~140k objects). They live as long as the process: keep them out of the garbage
    # collector's scans, which would otherwise pause the event loop for 0.2-0.3 s.
    gc.freeze()
    setup_logging(args.log_level or config.global_.log_level,
                  args.log_format or config.global_.log_format)
    if args.command == "probe":
        return _probe(config, args.names, args.all)
    web = _web_security(args)
    if web is None:
        return EXIT_CONFIG
    return _run(Path(args.config_file), config, args.listen_address,
                (args.log_level, args.log_format), web)


def _write(lines: Iterable[str], stream: TextIO | None = None) -> None:
    """Print lines; a reader that went away (``| head``) ends the output quietly."""
    stream = stream or sys.stdout
    try:
        for line in lines:
            stream.write(line + "\n")
        stream.flush()
    except BrokenPipeError:
        _quiet_pipe(stream)


def _quiet_pipe(stream: TextIO) -> None:
    # Python flushes the stream again at exit and would report the broken pipe then.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
    except (OSError, ValueError):
        pass


def error_lines(errors: list[str], limit: int = MAX_PRINTED_ERRORS) -> list[str]:
    """At most ``limit`` errors, then how many more there are."""
    lines = errors[:limit]
    if len(errors) > limit:
        lines.append(f"... and {len(errors) - limit} more error(s)")
    return lines


def _print_errors(exc: ConfigError) -> None:
    _write([f"config is invalid ({len(exc.errors)} error(s)):",
            *(f"  {line}" for line in error_lines(exc.errors))], sys.stderr)


def _load(path: Path, check_files: bool) -> Config | None:
    try:
        return load_config(path, check_files=check_files)
    except ConfigError as exc:
        _print_errors(exc)
    except Exception as exc:  # a bug, or an input nobody foresaw: still no traceback
        _write([f"{path}: config cannot be loaded: internal error {type(exc).__name__} "
                "(please report it with the file)"], sys.stderr)
    return None


def _check_config(path: Path, check_files: bool) -> int:
    config = _load(path, check_files)
    if config is None:
        return EXIT_CONFIG
    shard = f" in shard {config.global_.shard}" if config.global_.shard else ""
    _write([f"{path}: ok, {len(config.probes)} probe(s){shard}",
            *(f"  {spec.name} ({spec.kind}) every {spec.interval:g}s, "
              f"timeout {spec.timeout:g}s: {spec.target()}" for spec in config.probes)])
    return EXIT_OK


def _web_security(args: argparse.Namespace) -> WebSecurity | None:
    """The web config, loaded at start-up; ``None`` (errors printed) when it is bad."""
    path = args.web_config_file
    web = WebSecurity(Path(path) if path else None, enable_lifecycle=args.enable_lifecycle)
    try:
        web.load()
    except WebConfigError as exc:
        print(f"web config {path} is invalid ({len(exc.errors)} error(s)):", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return None
    return web


def _run(
    config_path: Path, config: Config, listen_address: str | None,
    log_flags: tuple[str | None, str | None], web: WebSecurity,
) -> int:
    from exporter.daemon import Daemon

    daemon = Daemon(config_path, config, listen_address, log_flags=log_flags, web=web)
    tune_gc()
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
            _write(["name at least one probe, or --all"], sys.stderr)
            return EXIT_CONFIG
        unknown = [n for n in names if config.probe(n) is None]
        if unknown:
            _write(_unknown_names(config, unknown), sys.stderr)
            return EXIT_CONFIG
        specs = [spec for n in names if (spec := config.probe(n)) is not None]

    async def run_all_once() -> list[tuple[ProbeSpec, ProbeResult, float]]:
        rows: list[tuple[ProbeSpec, ProbeResult, float]] = []

        async def one(spec: ProbeSpec) -> None:
            state = spec.kind_impl.new_state(spec.settings)
            began = anyio.current_time()
            try:
                result = redact_result(spec, await execute(spec, state))
            finally:
                await close_state(spec.name, state)
            rows.append((spec, result, anyio.current_time() - began))

        async with anyio.create_task_group() as tg:
            for spec in specs:
                tg.start_soon(one, spec)
        order = {spec.name: i for i, spec in enumerate(specs)}
        return sorted(rows, key=lambda row: order[row[0].name])

    rows = anyio.run(run_all_once, backend_options=backend_options())
    header = ("PROBE", "KIND", "RESULT", "REASON", "DURATION")
    table = [header] + [
        (spec.name, spec.kind, "ok" if result.success else "FAIL", result.reason or "-",
         f"{duration:.3f}s")
        for spec, result, duration in rows
    ]
    out = _aligned(table)
    # Then what the probe's page shows: detail, tables and the figures of the run.
    for spec, result, _ in rows:
        out.extend(["", f"{spec.name}:"])
        out.extend(f"  {line}" for line in result.detail)
        for title, cells in result.tables:
            if cells:
                out.extend(["", f"  {spec.redact(title)}:"])
                out.extend(f"    {line}" for line in _aligned(cells))
        out.extend(_figures(spec, result.metrics))
    _write(out)
    return EXIT_OK if all(result.success for _, result, _ in rows) else EXIT_FAILED


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    width = max(len(row) for row in rows)
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(width)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip()
            for row in rows]


def _figures(spec: ProbeSpec, metrics: Sequence[Metric]) -> list[str]:
    samples = [
        (metric.name + ("_total" if metric.type == "counter" else "")
         + ("_info" if metric.type == "info" else ""), sample)
        for metric in metrics for sample in metric.samples
    ]
    if not samples:
        return []
    out = ["", "  figures:"]
    for name, sample in samples[:MAX_PRINTED_SAMPLES]:
        labels = ",".join(f'{k}="{spec.redact(v)}"' for k, v in sample.labels)
        out.append(f"    {name}{{{labels}}} {sample.value:g}" if labels
                   else f"    {name} {sample.value:g}")
    if len(samples) > MAX_PRINTED_SAMPLES:
        out.append(f"    ... and {len(samples) - MAX_PRINTED_SAMPLES} more "
                   f"(all of them: /probe?name={spec.name})")
    return out


def _unknown_names(config: Config, unknown: list[str]) -> list[str]:
    names = [spec.name for spec in config.probes]
    lines = [f"unknown probe(s): {', '.join(unknown)}"]
    for name in unknown:
        close = difflib.get_close_matches(name, names, n=3)
        if close:
            lines.append(f"  {name}: did you mean {', '.join(close)}?")
    shown = ", ".join(names[:MAX_PRINTED_ERRORS]) or "(none)"
    more = f" ... and {len(names) - MAX_PRINTED_ERRORS} more" if len(names) > 100 else ""
    lines.append(f"configured probes: {shown}{more}")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
