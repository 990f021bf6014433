"""One HTTP/1.1 exchange on a fresh connection (private to the ``http`` kind).

h11 (httpx's own HTTP/1.1 parser) on asyncio streams, without httpx's client and
httpcore's pool: those cost about 0.9 ms of CPU per request here against 0.2 ms for this
(see docs/architecture.md). The probe resolves the name itself and connects to the address
it chose, so a pool, proxies and cookie handling would be unused machinery.

Each connection is opened for one request (``Connection: close``) and closed when the
response is done, so every run measures a fresh connect and handshake. Bytes that cannot be
the start of an HTTP response raise :class:`NotHttp` as soon as they arrive, not when the
peer hangs up or the timeout ends the wait.

asyncio streams, so anyio's asyncio backend only (the daemon's, on uvloop or the default
loop); the caller's cancel scopes bound every await here.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator, Iterable

import h11

_READ = 64 * 1024
# A status line as h11 accepts it; then header fields (or obs-fold continuations).
_STATUS_RE = re.compile(rb"HTTP/\d\.\d [0-9]{3}(?: [^\r\n]*)?\r?")
_FIELD_RE = re.compile(rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n]*|[ \t][^\r\n]*)\r?")
_PREFIX = b"HTTP/"

open_connections = 0
"""Connections currently open (tests check that a cancelled run leaves none)."""


class NotHttp(Exception):
    """The peer sent bytes that are not an HTTP/1.x response (reason ``protocol``)."""


class _HeadCheck:
    """Validates the response head line by line as bytes arrive (h11 parses it only once
    the blank line has come, so garbage on a connection held open would wait for the
    timeout). Stops at the end of the first head; h11 checks everything after."""

    __slots__ = ("_buf", "_lines", "done")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._lines = 0
        self.done = False

    def feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if self._lines == 0 and len(buf) < len(_PREFIX):
            if not _PREFIX.startswith(bytes(buf)):
                raise NotHttp("the answer does not start with HTTP/")
            return
        if self._lines == 0 and not buf.startswith(_PREFIX):
            raise NotHttp("the answer does not start with HTTP/")
        while True:
            end = buf.find(b"\n")
            if end < 0:
                return
            line = bytes(buf[:end])
            del buf[: end + 1]
            if self._lines == 0:
                if not _STATUS_RE.fullmatch(line):
                    raise NotHttp("the status line is not HTTP")
            elif line in (b"", b"\r"):
                self.done = True
                self._buf = bytearray()
                return
            elif not _FIELD_RE.fullmatch(line):
                raise NotHttp("a response header line is not HTTP")
            self._lines += 1


class Response:
    """Status line and headers of a response; the body is read with :meth:`Exchange.body`."""

    __slots__ = ("headers", "http_version", "status")

    def __init__(self, status: int, http_version: str, headers: list[tuple[bytes, bytes]]):
        self.status = status
        self.http_version = http_version
        self.headers = headers  # names lower-cased (h11 does)

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    def header_list(self, name: bytes) -> list[str]:
        """Every value of ``name``, comma-separated lists split."""
        out: list[str] = []
        for key, value in self.headers:
            if key == name:
                out.extend(part.strip() for part in value.decode("latin-1").split(","))
        return out


class Exchange:
    """One connection, one request, one response. Always :meth:`close` it (sync, so it
    also runs in a cancelled ``finally``)."""

    __slots__ = ("_check", "_conn", "_reader", "_writer", "ssl_object")

    def __init__(self) -> None:
        self._conn = h11.Connection(h11.CLIENT)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._check = _HeadCheck()
        self.ssl_object: ssl.SSLObject | None = None

    async def connect(
        self,
        address: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
        phases: dict[str, float],
    ) -> None:
        global open_connections
        start = time.perf_counter()
        self._reader, self._writer = await asyncio.open_connection(address, port)
        open_connections += 1
        phases["connect"] += time.perf_counter() - start
        if ssl_context is not None:
            start = time.perf_counter()
            await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
            phases["tls"] += time.perf_counter() - start
            ssl_object = self._writer.get_extra_info("ssl_object")
            self.ssl_object = ssl_object if isinstance(ssl_object, ssl.SSLObject) else None

    async def request(
        self,
        method: str,
        target: bytes,
        headers: Iterable[tuple[str, str]],
        body: bytes | None,
        phases: dict[str, float],
    ) -> Response:
        """Send the request and read up to the final (non-1xx) response head; the time from
        the first byte sent to the head is the ``processing`` phase."""
        assert self._writer is not None
        conn = self._conn
        start = time.perf_counter()
        data = conn.send(h11.Request(method=method, target=target, headers=list(headers)))
        if body:
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
        self._writer.write(data)
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Response):
                phases["processing"] += time.perf_counter() - start
                return Response(
                    event.status_code,
                    "HTTP/" + event.http_version.decode("ascii"),
                    list(event.headers),
                )
            if isinstance(event, h11.InformationalResponse):
                continue  # 100 Continue and friends: the final response follows
            raise NotHttp(f"unexpected {type(event).__name__} before the response")

    async def body(self) -> AsyncIterator[bytes]:
        """The raw (still encoded) body, chunk by chunk."""
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise NotHttp(f"unexpected {type(event).__name__} in the body")

    async def _next_event(self) -> object:
        assert self._reader is not None
        conn = self._conn
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self._reader.read(_READ)
            if data and not self._check.done:
                self._check.feed(data)
            conn.receive_data(data)

    def close(self) -> None:
        """Drop the connection at once: the answer is read (or no longer wanted), and a TLS
        close_notify exchange would only add a round trip to every run."""
        global open_connections
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.transport.abort()
            open_connections -= 1
