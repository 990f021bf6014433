"""A RESP2 reply parser that calls a non-Redis peer ``protocol`` as soon as it speaks.

redis-py reads a reply header up to its line break before looking at it, so a port that
answers bytes without one (another service, a half-configured proxy) reads ``timeout``
while it keeps the connection open and ``unreachable`` once it hangs up. Every RESP2
reply line starts with one of five type bytes: checking the first byte as it arrives
makes both cases ``protocol`` at once. Private helper of :mod:`probes.redis`.
"""

from __future__ import annotations

import asyncio

from redis._parsers import _AsyncRESP2Parser
from redis._parsers.socket import SERVER_CLOSED_CONNECTION_ERROR
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse

RESP2_TYPES = frozenset(b"+-:$*")


def _check_start(line: bytes) -> None:
    if line and line[0] not in RESP2_TYPES:
        raise InvalidResponse(f"not a RESP2 reply: starts with {line[:1]!r}")


class StrictRESP2Parser(_AsyncRESP2Parser):
    """redis-py's RESP2 parser, with the header's first byte checked on arrival.

    Keeps the base class's bookkeeping: every byte taken from the stream is also appended
    to ``_chunks``, so a read cut off by a timeout is parsed again from the start.
    """

    async def _readline(self) -> bytes:
        stream = self._stream
        if stream is None:
            raise RedisConnectionError(SERVER_CLOSED_CONNECTION_ERROR)
        found = self._buffer.find(b"\r\n", self._pos)
        if found >= 0:
            result = self._buffer[self._pos : found]
            _check_start(result)
        else:
            tail = self._buffer[self._pos :]
            head = b""
            if not tail:
                # Peek at what the stream already holds (as redis-py's can_read does);
                # only wait for one byte on its own when nothing has arrived yet, so a
                # pipeline's thousands of buffered replies cost no extra step.
                buffered = getattr(stream, "_buffer", None)
                if isinstance(buffered, bytearray) and buffered:
                    _check_start(bytes(buffered[:1]))
                else:
                    head = await stream.read(1)
                    if not head:
                        raise RedisConnectionError(SERVER_CLOSED_CONNECTION_ERROR)
                    self._chunks.append(head)
            _check_start(tail + head)
            try:
                data = await stream.readuntil(b"\n")
            except asyncio.LimitOverrunError as exc:  # no line break in the stream's 64 KiB
                raise InvalidResponse("reply line without a line break") from exc
            except asyncio.IncompleteReadError as exc:  # the peer hung up mid-line
                self._chunks.append(exc.partial)
                raise RedisConnectionError(SERVER_CLOSED_CONNECTION_ERROR) from exc
            self._chunks.append(data)
            line = tail + head + data
            if not line.endswith(b"\r\n"):
                raise InvalidResponse("reply line not ended by CRLF")
            result = line[:-2]
        self._pos += len(result) + 2
        return result
