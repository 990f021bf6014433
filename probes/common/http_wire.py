"""Tell a peer that does not speak HTTP from a slow one, as soon as its first bytes arrive.

h11 parses a response only once its whole header block is in, so a peer that answers
``SSH-2.0-...`` (or any other protocol) and keeps the connection open reads as a timeout,
and the same bytes followed by a hang-up as a protocol error. Here the first bytes after
each request are checked against the start of an HTTP status line (``HTTP/1.1 200``) as
they arrive, and anything else raises :class:`httpcore.RemoteProtocolError`, which httpx
reports as :class:`httpx.RemoteProtocolError`.
"""

from __future__ import annotations

import re
import ssl
import typing
from collections.abc import Iterable

import httpcore
import httpx

_PREFIX = b"HTTP/"
_STATUS_LINE = re.compile(rb"HTTP/\d(\.\d)? \d{3}(\s|$)")
_MAX_STATUS_LINE = 8192
_SocketOption = typing.Any  # httpcore's socket option tuples


class _GuardedStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._expecting = False
        self._head = b""

    def _check(self, data: bytes) -> None:
        self._head += data
        head = self._head.lstrip(b"\r\n")
        n = min(len(head), len(_PREFIX))
        if head[:n] != _PREFIX[:n]:
            raise httpcore.RemoteProtocolError("the peer does not speak HTTP")
        line, newline, _ = head.partition(b"\n")
        if newline:
            if not _STATUS_LINE.match(line.rstrip(b"\r")):
                raise httpcore.RemoteProtocolError("malformed HTTP status line")
            self._expecting = False
        elif len(head) > _MAX_STATUS_LINE:
            raise httpcore.RemoteProtocolError("HTTP status line too long")

    # The signatures are httpcore's interface, timeout parameters included.
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        data = await self._inner.read(max_bytes, timeout)
        if self._expecting and data:
            self._check(data)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        # What the peer sends after a request starts with the status line of its answer.
        self._expecting, self._head = True, b""
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        return _GuardedStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """A network backend whose streams check that the peer answers in HTTP."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _GuardedStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _GuardedStream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guard(transport: httpx.AsyncHTTPTransport) -> bool:
    """Make ``transport``'s connections check the status line; ``False`` when this httpx
    keeps its pool elsewhere (then answers are parsed as before)."""
    pool = getattr(transport, "_pool", None)  # httpx has no public hook for the backend
    inner = getattr(pool, "_network_backend", None)
    if pool is None or not isinstance(inner, httpcore.AsyncNetworkBackend):
        return False
    pool._network_backend = GuardedBackend(inner)
    return True
