"""The long-running process: scheduler + web server + signal handling + reloads."""

from __future__ import annotations

import asyncio
import logging
import signal
import traceback
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from hypercorn.asyncio import serve

from exporter.config import DEFAULT_LISTEN_ADDRESS, Config, ConfigError, load_config
from exporter.demo import serve_tls as serve_demo_tls
from exporter.logs import setup_logging
from exporter.results import ResultStore, RunRecord
from exporter.scheduler import Scheduler
from exporter.web import create_app
from exporter.websecurity import WebSecurity

log = logging.getLogger("festivals_exporter")

# SIGTERM to exit must stay under 5 s: web server drain, then probe state closing.
_HTTP_GRACE_SECONDS = 1.0
_STOP_BUDGET_SECONDS = 3.0
_LISTEN_WAIT_SECONDS = 2.0
# Errors of a failed reload that are logged and kept for the page; the count says the rest.
_MAX_REPORTED_ERRORS = 100


def bind_address(listen_address: str) -> str:
    """``:9816`` -> ``0.0.0.0:9816``; ``host:port`` and ``[::1]:port`` pass through."""
    host, sep, port = listen_address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address {listen_address!r} must be host:port or :port")
    return f"{host or '0.0.0.0'}:{port}"


class Daemon:
    def __init__(
        self, config_path: Path, config: Config, listen_address: str | None,
        log_flags: tuple[str | None, str | None] = (None, None),
        web: WebSecurity | None = None,
    ) -> None:
        self.config_path = config_path
        self.web = web or WebSecurity()
        self.config = config
        self.listen_address = (
            listen_address or config.global_.listen_address or DEFAULT_LISTEN_ADDRESS
        )
        # --log.level and --log.format win over the file, at start and on every reload.
        self.log_flags = log_flags
        self.store = ResultStore()
        self.scheduler: Scheduler | None = None
        self._reload_lock = anyio.Lock()
        self._shutdown = anyio.Event()
        self.started = anyio.Event()
        self._http_stopped = anyio.Event()

    async def reload(self) -> list[str]:
        """Load the web config and the config file again; on any error keep the running
        one.

        Any error: not only a bad file but whatever loading raises (a bug, a
        ``MemoryError``) is reported like a bad file and never ends the process.
        """
        web_errors = await self.web.reload()
        errors = web_errors + await self._reload_config()
        if web_errors:  # a config file that loaded must not hide a web config that did not
            self.store.reload_failed(errors)
        return errors

    async def _reload_config(self) -> list[str]:
        async with self._reload_lock:
            try:
                new = await anyio.to_thread.run_sync(load_config, self.config_path)
            except ConfigError as exc:
                return self._reload_failed(exc.errors)
            except Exception as exc:
                return self._reload_failed(
                    [f"{self.config_path}: config cannot be loaded: internal error "
                     f"{type(exc).__name__}"], exc)
            try:
                if self.scheduler is not None:
                    await self.scheduler.apply(new)
            except Exception as exc:
                return self._reload_failed(
                    [f"{self.config_path}: applying the new config failed: "
                     f"{type(exc).__name__}"], exc)
            self.config = new
            level, fmt = self.log_flags
            setup_logging(level or new.global_.log_level, fmt or new.global_.log_format)
            log.info("config reloaded", extra={"probes": len(new.probes)})
            return []

    def _reload_failed(self, errors: list[str], exc: BaseException | None = None) -> list[str]:
        if len(errors) > _MAX_REPORTED_ERRORS:
            more = len(errors) - _MAX_REPORTED_ERRORS
            errors = [*errors[:_MAX_REPORTED_ERRORS], f"... and {more} more error(s)"]
        self.store.reload_failed(errors)
        extra = {}
        if exc is not None:
            # Where it happened, not the message: it could quote a secret from the file.
            frames = traceback.extract_tb(exc.__traceback__)[-3:]
            extra["where"] = " <- ".join(
                f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames)
            )
        for line in errors:
            log.error("config reload failed, keeping the running config",
                      extra={"error": line, **extra})
        return errors

    async def run_now(self, name: str) -> RunRecord | None:
        return None if self.scheduler is None else await self.scheduler.run_now(name)

    def request_shutdown(self) -> None:
        self._shutdown.set()

    async def run(self) -> None:
        bind = bind_address(self.listen_address)
        # Bind errors (port in use) must surface as a clear startup failure, before any
        # task starts: inside the server they would only be logged.
        host, _, port = bind.rpartition(":")
        listener = await anyio.create_tcp_listener(
            local_host=host.strip("[]"), local_port=int(port)
        )
        await listener.aclose()
        _ignore_cancelled_callbacks()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._handle_signals)
            tg.start_soon(self.web.watch, self.store.reload_failed)
            await tg.start(self._serve_http, bind)
            if self.config.global_.demo:
                await tg.start(serve_demo_tls, host.strip("[]"), int(port) + 1)
            # Probes may target the exporter itself (demo mode): start them once it answers.
            await _wait_until_listening(host, int(port))
            self.scheduler = Scheduler(self.store, tg)
            await self.scheduler.apply(self.config)
            log.info(
                "festivals-exporter started",
                extra={"listen_address": bind, "probes": len(self.config.probes),
                       "config": str(self.config_path)},
            )
            self.started.set()
            await self._shutdown.wait()
            log.info("shutting down")
            with anyio.move_on_after(_STOP_BUDGET_SECONDS, shield=True):
                await self.scheduler.stop()
                # Let the web server finish its graceful drain rather than cancelling it.
                await self._http_stopped.wait()
            tg.cancel_scope.cancel()
        log.info("stopped")

    async def _serve_http(
        self, bind: str, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        config = self.web.hypercorn_config()  # TLS, header size and read timeouts
        config.bind = [bind]
        config.accesslog = None
        config.errorlog = logging.getLogger("hypercorn.error")
        config.graceful_timeout = _HTTP_GRACE_SECONDS
        app = self.web.wrap(create_app(self))
        task_status.started()
        try:
            await serve(app, config, shutdown_trigger=self._shutdown.wait)  # type: ignore[arg-type]
        finally:
            self._http_stopped.set()

    async def _handle_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    log.info("SIGHUP received, reloading config")
                    await self.reload()
                else:
                    log.info("signal received", extra={"signal": signal.Signals(signum).name})
                    self.request_shutdown()
                    return


def _ignore_cancelled_callbacks() -> None:
    """Keep cancellation out of the error log.

    When the graceful drain ends, hypercorn cancels the requests still running and its
    connection callback then reads the cancelled task's exception, which asyncio reports
    as "Exception in callback" with a traceback: a normal shutdown would look like a crash.
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), asyncio.CancelledError):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


async def _wait_until_listening(host: str, port: int) -> None:
    connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else host.strip("[]")
    connect_host = "::1" if connect_host == "::" else connect_host
    with anyio.move_on_after(_LISTEN_WAIT_SECONDS):
        while True:
            try:
                stream = await anyio.connect_tcp(connect_host, port)
            except OSError:
                await anyio.sleep(0.01)
                continue
            await stream.aclose()
            return
