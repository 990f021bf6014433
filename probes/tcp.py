"""The ``tcp`` probe kind: connect to host:port, optionally TLS, optionally send/expect.

Covers the runbook's ``nc -zv postgres 5432`` check, plus simple line protocols such as
Redis ``PING`` -> ``+PONG``. The name is resolved by the probe (timed, filtered by
``ip_protocol``) and the first address is used.
"""

from __future__ import annotations

import re
import ssl
import time
from pathlib import Path
from typing import Literal

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute, TLSStream
from pydantic import Field, field_validator

from probes.base import (
    COMMON_REASONS,
    KindConfig,
    Metric,
    ProbeKind,
    ProbeResult,
    Reason,
    gauge,
)
from probes.common.net import (
    ResolveError,
    SharedContextState,
    classify,
    host_port,
    ip_version,
    resolve,
    tls_metrics,
)


class TcpConfig(KindConfig):
    """Keys of a ``tcp`` probe entry (see docs/probes/tcp.md)."""

    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    tls_server_name: str | None = None
    tls_verify: bool = True
    ca_file: Path | None = None
    send: str | None = None
    expect: str | None = None
    max_read_bytes: int = Field(default=64 * 1024, ge=1)
    ip_protocol: Literal["auto", "ip4", "ip6"] = "auto"
    ip_protocol_fallback: bool = True

    @field_validator("host")
    @classmethod
    def _strip_brackets(cls, value: str) -> str:
        return value.strip("[]")

    @field_validator("expect")
    @classmethod
    def _check_expect(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value.encode())
            except re.error as exc:
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
        return value


class TcpState(SharedContextState):
    """What a ``tcp`` probe keeps between runs: the shared TLS context, nothing else."""

    __slots__ = ()


def new_state(config: TcpConfig) -> TcpState:
    return TcpState()


def target(config: TcpConfig) -> str:
    return host_port(config.host, config.port)


class _Fail(Exception):
    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


async def _converse(
    config: TcpConfig, stream: ByteStream, detail: list[str], figures: dict[str, float]
) -> None:
    if config.send is not None:
        await stream.send(config.send.encode())
        detail.append(f"sent {len(config.send.encode())} bytes")
    if config.expect is None:
        return
    pattern = re.compile(config.expect.encode(), re.MULTILINE)
    received = bytearray()
    while True:
        try:
            chunk = await stream.receive()
        except anyio.EndOfStream:
            figures["regex_failed"] = 1
            raise _Fail(
                Reason.VALIDATION, f"connection closed before {config.expect!r} was seen"
            ) from None
        received += chunk
        if pattern.search(received):
            detail.append(f"received {_show(received)}: matches {config.expect!r}")
            return
        if len(received) >= config.max_read_bytes:
            figures["regex_failed"] = 1
            raise _Fail(
                Reason.VALIDATION,
                f"no match for {config.expect!r} in the first {config.max_read_bytes} bytes: "
                f"{_show(received)}",
            )


def _show(data: bytes | bytearray) -> str:
    text = repr(bytes(data[:120]))
    return text + ("..." if len(data) > 120 else "")


def _metrics(figures: dict[str, float], extra: list[Metric]) -> list[Metric]:
    out = [
        gauge(
            "probe_tcp_connect_duration_seconds",
            "Time to establish the TCP connection.",
            figures["connect"],
        ),
        gauge(
            "probe_dns_lookup_time_seconds", "Time taken to resolve the target name.",
            figures["dns"],
        ),
        gauge(
            "probe_ip_protocol", "IP version of the address probed (4 or 6), 0 if none.",
            figures["ip"],
        ),
        gauge(
            "probe_failed_due_to_regex", "1 if the expected reply did not arrive.",
            figures["regex_failed"],
        ),
    ]
    if "tls" in figures:
        out.append(
            gauge(
                "probe_tcp_tls_handshake_duration_seconds",
                "Time of the TLS handshake after connect.",
                figures["tls"],
            )
        )
    return out + extra


async def run(config: TcpConfig, state: TcpState) -> ProbeResult:
    figures: dict[str, float] = {"connect": 0.0, "dns": 0.0, "ip": 0.0, "regex_failed": 0.0}
    if config.tls:
        figures["tls"] = 0.0
    detail: list[str] = []
    extra: list[Metric] = []
    ctx: ssl.SSLContext | None = None
    if config.tls:
        try:
            ctx = await state.ssl_context(config.tls_verify, config.ca_file)
        except (OSError, ssl.SSLError) as exc:
            text = f"cannot load ca_file {config.ca_file}: {getattr(exc, 'strerror', None) or exc}"
            return ProbeResult.fail(Reason.CONFIG, _metrics(figures, extra), [text])

    reason = ""
    with anyio.move_on_after(config.client_timeout) as scope:
        stream: ByteStream | None = None
        try:
            resolved = await resolve(
                config.host, config.port, config.ip_protocol, config.ip_protocol_fallback
            )
            figures["dns"] = resolved.seconds
            address = resolved.addresses[0]
            figures["ip"] = ip_version(address)
            detail.append(f"connect {host_port(address, config.port)}")
            start = time.perf_counter()
            stream = await anyio.connect_tcp(address, config.port)
            figures["connect"] = time.perf_counter() - start
            detail.append(f"connected in {figures['connect'] * 1000:.1f}ms")
            if ctx is not None:
                start = time.perf_counter()
                tls_stream = await TLSStream.wrap(
                    stream,
                    hostname=config.tls_server_name or config.host,
                    ssl_context=ctx,
                    standard_compatible=False,
                )
                stream = tls_stream
                figures["tls"] = time.perf_counter() - start
                ssl_object = tls_stream.extra(TLSAttribute.ssl_object)
                extra = tls_metrics(ssl_object)
                detail.append(
                    f"TLS {ssl_object.version()} handshake in {figures['tls'] * 1000:.1f}ms"
                )
            await _converse(config, stream, detail, figures)
        except _Fail as exc:
            reason = exc.reason
            detail.append(exc.text)
        except ResolveError as exc:
            reason = Reason.DNS
            detail.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - mapped to a reason
            reason, text = classify(exc)
            detail.append(text)
        finally:
            if stream is not None:
                with anyio.move_on_after(1, shield=True):
                    await stream.aclose()
    if scope.cancelled_caught:
        reason = Reason.TIMEOUT
        detail.append(f"no complete answer within {config.client_timeout:g}s")
    if reason:
        return ProbeResult.fail(reason, _metrics(figures, extra), detail)
    return ProbeResult.ok(_metrics(figures, extra), detail)


KIND: ProbeKind[TcpConfig, TcpState] = ProbeKind(
    name="tcp",
    config_model=TcpConfig,
    run=run,
    new_state=new_state,
    target=target,
    reasons=COMMON_REASONS | {Reason.UNREACHABLE, Reason.TLS, Reason.VALIDATION, Reason.CONFIG},
    sample_labels=frozenset({"address", "version"}),
)
