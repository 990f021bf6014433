"""Endpoint security: TLS and basic auth from ``--web.config.file``, the lifecycle switch,
and limits that keep a flood of slow or large requests from exhausting the process.

One :class:`WebSecurity` lives as long as the daemon. It wraps the Starlette app in an
ASGI middleware (auth, lifecycle, body size, concurrency, response headers) and tunes
Hypercorn (header size, read and handshake timeouts). Reloads (SIGHUP, ``/-/reload``, or a
watched file changing) swap the TLS certificate, key and client CA for new handshakes and
the users for new requests; a bad new web config changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import bcrypt
from hypercorn.config import Config as HypercornConfig

from exporter.webconfig import (
    GO_CIPHER_SUITES,
    LoadedWebConfig,
    WebConfig,
    WebConfigError,
    load_web_config,
)

log = logging.getLogger("festivals_exporter")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Limits (docs/web-config.md). No endpoint takes a body; Prometheus sends a few hundred
# bytes of headers.
MAX_CONCURRENT_REQUESTS = 32
MAX_BODY_BYTES = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
HEADER_TIMEOUT_SECONDS = 5.0  # connect to the end of the headers; also the keep-alive idle
READ_TIMEOUT_SECONDS = 10  # between two reads of a request in progress
TLS_HANDSHAKE_TIMEOUT_SECONDS = 5.0
MAX_BCRYPT_WAITING = 16  # unverified credentials queued for a bcrypt check
BCRYPT_THREADS = 2
_AUTH_CACHE_SIZE = 256
WATCH_INTERVAL_SECONDS = 2.0

# Never behind auth: liveness and readiness probes (kubelet) carry no credentials.
OPEN_PATHS = frozenset({"/-/healthy", "/-/ready"})
# Change state or run probes: off unless --web.enable-lifecycle, as in Prometheus.
LIFECYCLE_PATHS = frozenset({"/-/reload", "/probe"})


def _default_ciphers() -> str:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    return ":".join(c["name"] for c in ctx.get_ciphers() if c["protocol"] != "TLSv1.3")


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _stamps(paths: tuple[Path, ...]) -> dict[Path, tuple[int, int, int] | None]:
    return {p: _stamp(p) for p in paths}


class WebSecurity:
    def __init__(self, path: Path | None = None, *, enable_lifecycle: bool = False) -> None:
        self.path = path
        self.enable_lifecycle = enable_lifecycle
        self.loaded = LoadedWebConfig(None, WebConfig(), None, ())
        self._base_ctx: ssl.SSLContext | None = None  # the context Hypercorn serves with
        self._current_ctx: ssl.SSLContext | None = None  # what new handshakes switch to
        self._default_ciphers = _default_ciphers()
        self._dummy_hash = b""
        self._auth_cache: OrderedDict[bytes, None] = OrderedDict()
        self._bcrypt = anyio.CapacityLimiter(BCRYPT_THREADS)
        self._in_flight = 0
        self._stamps: dict[Path, tuple[int, int, int] | None] = {}
        self._reload_lock = anyio.Lock()

    # --- loading ----------------------------------------------------------------------

    def load(self) -> None:
        """Read the web config at start-up (blocking); :class:`WebConfigError` if bad."""
        if self.path is None:
            return
        loaded = load_web_config(self.path)
        self._install(loaded, self._dummy_for(loaded))

    def _dummy_for(self, loaded: LoadedWebConfig) -> bytes:
        """A hash of the configured cost, checked for unknown users so that they take as
        long as a wrong password."""
        costs = [int(h[4:6]) for h in loaded.config.basic_auth_users.values()]
        if not costs:
            return b""
        return bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(max(costs)))

    def _install(self, loaded: LoadedWebConfig, dummy: bytes) -> None:
        new = loaded.ssl_context
        if self._base_ctx is None:
            self._base_ctx = new
            if new is not None:
                new.sni_callback = self._pick_context
        elif new is not None:
            # Per-connection settings come from the listening context when a connection
            # starts; certificate, key and client CA store from the context the handshake
            # switches to (_pick_context).
            tls = loaded.config.tls_server_config
            assert tls is not None
            base = self._base_ctx
            base.minimum_version = new.minimum_version
            base.maximum_version = new.maximum_version
            base.verify_mode = new.verify_mode
            base.options = new.options
            base.set_ciphers(
                ":".join(GO_CIPHER_SUITES[c] for c in tls.cipher_suites)
                or self._default_ciphers
            )
        self._current_ctx = new
        self.loaded = loaded
        self._dummy_hash = dummy
        self._auth_cache = OrderedDict()  # rebound, not cleared: the loop may be reading it
        self._stamps = _stamps(loaded.watched)

    def _pick_context(
        self, ssl_object: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext
    ) -> None:
        current = self._current_ctx
        if current is not None and current is not ctx:
            ssl_object.context = current

    async def reload(self) -> list[str]:
        """Read the web config file again; on any error keep the running one."""
        if self.path is None:
            return []
        async with self._reload_lock:  # SIGHUP, /-/reload and the watcher may coincide
            return await self._reload(self.path)

    async def _reload(self, path: Path) -> list[str]:
        try:
            loaded = await anyio.to_thread.run_sync(load_web_config, path)
            dummy = await anyio.to_thread.run_sync(self._dummy_for, loaded)
        except WebConfigError as exc:
            errors = [f"web config: {e}" for e in exc.errors]
        except Exception as exc:  # a reload never ends the process, whatever it meets
            errors = [f"web config: {path}: cannot be loaded ({type(exc).__name__})"]
        else:
            if (loaded.ssl_context is None) != (self._base_ctx is None):
                errors = ["web config: tls_server_config: turning TLS on or off needs a restart"]
            else:
                try:
                    await anyio.to_thread.run_sync(self._install, loaded, dummy)
                except (ssl.SSLError, OSError) as exc:
                    errors = [f"web config: tls_server_config: cannot apply ({type(exc).__name__})"]
                else:
                    log.info("web config reloaded", extra={"file": str(path)})
                    return []
        for line in errors:
            log.error("web config reload failed, keeping the running one", extra={"error": line})
        # A failed reload must not retrigger until a file changes again.
        self._stamps = await anyio.to_thread.run_sync(_stamps, tuple(self._stamps))
        return errors

    async def watch(self, on_failure: Callable[[list[str]], None] | None = None) -> None:
        """Reload when the web config file or a certificate, key or CA file it names
        changes (cert-manager and Kubernetes secret mounts replace files in place);
        ``on_failure`` gets the errors of a reload that failed."""
        if self.path is None:
            return
        while True:
            await anyio.sleep(WATCH_INTERVAL_SECONDS)
            stamps = self._stamps
            now = await anyio.to_thread.run_sync(_stamps, tuple(stamps))
            if now != stamps:
                errors = await self.reload()
                if errors and on_failure is not None:
                    on_failure(errors)

    # --- serving ----------------------------------------------------------------------

    def hypercorn_config(self) -> HypercornConfig:
        security = self

        class Config(HypercornConfig):
            def create_ssl_context(self) -> ssl.SSLContext | None:
                return security._base_ctx

            @property
            def ssl_enabled(self) -> bool:
                return security._base_ctx is not None

        config = Config()
        config.h11_max_incomplete_size = MAX_HEADER_BYTES
        config.h2_max_header_list_size = MAX_HEADER_BYTES
        config.keep_alive_timeout = HEADER_TIMEOUT_SECONDS
        config.read_timeout = READ_TIMEOUT_SECONDS
        config.ssl_handshake_timeout = TLS_HANDSHAKE_TIMEOUT_SECONDS
        config.backlog = 128
        if not self.loaded.config.http_server_config.http2:
            config.alpn_protocols = ["http/1.1"]
        return config

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            await self._handle(app, scope, receive, send)

        return guarded

    async def _handle(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or ())
        extra = [(k.lower().encode(), v.encode())
                 for k, v in self.loaded.config.http_server_config.headers.items()]
        # Hypercorn enforces the size while HTTP/1.1 headers arrive; HTTP/2 only
        # advertises it, so it is checked here too.
        if sum(len(k) + len(v) for k, v in scope.get("headers") or ()) > MAX_HEADER_BYTES:
            await _respond(send, 431, "request headers too large\n", extra)
            return
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            await _respond(send, 413, "request body too large\n", extra)
            return
        path = scope.get("path", "")
        if self.loaded.config.basic_auth_users and path == "/-/ready":
            # Open for kubelet, but the waiting probes' names are for authorised eyes.
            send = _status_only(send, head=scope.get("method") == "HEAD")
        if self.loaded.config.basic_auth_users and path not in OPEN_PATHS:
            verdict = await self._check_auth(headers.get(b"authorization"))
            if verdict is not True:
                if verdict is None:
                    await _respond(send, 429, "too many unverified requests\n",
                                   [*extra, (b"retry-after", b"1")])
                else:
                    await _respond(send, 401, "Unauthorized\n", [
                        *extra, (b"www-authenticate", b'Basic realm="festivals-exporter"')])
                return
        if path in LIFECYCLE_PATHS and not self.enable_lifecycle:
            await _respond(send, 403, "Lifecycle API is not enabled (--web.enable-lifecycle).\n",
                           extra)
            return
        if self._in_flight >= MAX_CONCURRENT_REQUESTS:
            await _respond(send, 503, "too many requests in flight\n",
                           [*extra, (b"retry-after", b"1")])
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY_BYTES:  # a chunked body that grew too large
                return {"type": "http.disconnect"}
            return message

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and extra:
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        self._in_flight += 1
        try:
            await app(scope, limited_receive, send_with_headers)
        finally:
            self._in_flight -= 1

    async def _check_auth(self, header: bytes | None) -> bool | None:
        """``True`` authorised, ``False`` not, ``None`` too many checks queued."""
        users = self.loaded.config.basic_auth_users
        user, password = _basic_credentials(header)
        if user is None or password is None:
            return False
        hashed = users.get(user)
        target = hashed.encode() if hashed is not None else self._dummy_hash
        key = hashlib.sha256(b"\0".join((user.encode(), password, target))).digest()
        if hashed is not None and key in self._auth_cache:
            self._auth_cache.move_to_end(key)
            return True
        if self._bcrypt.statistics().tasks_waiting >= MAX_BCRYPT_WAITING:
            return None
        # Unknown users are checked against a dummy hash of the same cost: same timing.
        ok = await anyio.to_thread.run_sync(bcrypt.checkpw, password, target,
                                            limiter=self._bcrypt)
        if ok and hashed is not None:
            self._auth_cache[key] = None
            while len(self._auth_cache) > _AUTH_CACHE_SIZE:
                self._auth_cache.popitem(last=False)
            return True
        return False

    @property
    def tls_enabled(self) -> bool:
        return self._base_ctx is not None


def _basic_credentials(header: bytes | None) -> tuple[str | None, bytes | None]:
    if not header or not header[:6].lower() == b"basic ":
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None, None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None, None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None, None


def _status_only(send: Send, head: bool) -> Send:
    """A ``send`` that keeps the status of the answer and replaces its body."""
    status = 200

    async def replaced(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            body = b"Ready\n" if status == 200 else b"Not ready\n"
            await send({**message, "headers": [
                (k, v) for k, v in message.get("headers", ())
                if k.lower() != b"content-length"] + [(b"content-length",
                                                       str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": b"" if head else body})
        # the original body is dropped

    return replaced


async def _respond(
    send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]]
) -> None:
    body = text.encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": body})

