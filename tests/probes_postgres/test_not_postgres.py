"""A port that answers with bytes that are not the PostgreSQL protocol (another service,
an HTTP error page) is ``protocol`` for both kinds, as soon as the bytes arrive, whatever
the sslmode and whether the peer hangs up or keeps the connection open."""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.abc
import pytest

from probes.base import ProbeKind
from probes.pgbouncer import KIND as BOUNCER
from probes.postgres import KIND as POSTGRES
from tests.runs import run_once

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("kind", [POSTGRES, BOUNCER], ids=lambda k: k.name)
@pytest.mark.parametrize("sslmode", ["prefer", "disable"])
@pytest.mark.parametrize(("payload", "hang_up"), [
    (b"x" * 4096, True), (b"x" * 4096, False),
    (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", True),
], ids=["bytes-hangup", "bytes-open", "http"])
async def test_not_postgres_is_protocol(
    kind: ProbeKind[Any, Any], sslmode: str, payload: bytes, hang_up: bool
) -> None:
    async def serve(client: anyio.abc.SocketStream) -> None:
        async with client:
            await client.receive()  # the startup packet or SSLRequest
            await client.send(payload)
            if not hang_up:
                await anyio.sleep(30)

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, serve)
            config = kind.config_model.model_validate({
                "port": port, "user": "u", "password": "p-Secret-1", "sslmode": sslmode,
                "client_timeout": 3.0})
            start = time.monotonic()
            result = await run_once(kind, config)
            assert not result.success and result.reason == "protocol", result.detail
            assert time.monotonic() - start < 1.5
            tg.cancel_scope.cancel()
