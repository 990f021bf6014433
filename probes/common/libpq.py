"""Helpers shared by the ``postgres`` and ``pgbouncer`` probe kinds.

Connection parameters (DSN and/or discrete keys), the redacted target string, SQLSTATE and
libpq-message to reason mapping, and a connect helper that honours a client deadline and
never leaves a half-open connection behind when it is cancelled.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import anyio
import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import ConfigDict, SecretStr, field_validator

from probes.base import (
    COMMON_REASONS,
    Duration,
    KindConfig,
    Reason,
    read_secret,
    read_secret_async,
    reason_for_exception,
)

APPLICATION_NAME = "festivals-exporter"

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

# SQLSTATE -> reason. Classes (first two characters) are the fallback.
_SQLSTATE_REASONS: dict[str, str] = {
    "28P01": Reason.AUTH,  # invalid_password
    "28000": Reason.AUTH,  # invalid_authorization_specification (pg_hba reject, no such role)
    "3D000": Reason.NOT_FOUND,  # invalid_catalog_name: database does not exist
    "53300": Reason.TOO_MANY_CLIENTS,  # too_many_connections
    "42501": Reason.FORBIDDEN,  # insufficient_privilege
    "57014": Reason.TIMEOUT,  # query_canceled (statement_timeout)
    "57P01": Reason.UNREACHABLE,  # admin_shutdown (server stopping / restarting)
    "57P02": Reason.UNREACHABLE,  # crash_shutdown
    "57P03": Reason.REFUSED,  # cannot_connect_now (starting up / shutting down)
    "08P01": Reason.PROTOCOL,  # protocol_violation: the peer does not speak what we sent
}
_CLASS_REASONS: dict[str, str] = {
    "08": Reason.UNREACHABLE,  # connection exception
    "28": Reason.AUTH,
    "53": Reason.TOO_MANY_CLIENTS,  # insufficient resources
    "42": Reason.PROTOCOL,  # syntax / undefined object: the server is not what we expect
}
# libpq reports connection failures without a SQLSTATE: map its (stable, English) messages.
_MESSAGE_REASONS: tuple[tuple[str, str], ...] = (
    ("too many clients", Reason.TOO_MANY_CLIENTS),
    ("remaining connection slots are reserved", Reason.TOO_MANY_CLIENTS),
    ("no more connections allowed", Reason.TOO_MANY_CLIENTS),  # pgbouncer max_client_conn
    # "password/SASL/peer/ident/... authentication failed"; PgBouncer with
    # auth_type = scram-sha-256 says "SASL authentication failed" for a wrong password
    ("authentication failed", Reason.AUTH),
    ("channel binding", Reason.AUTH),
    ("no password supplied", Reason.AUTH),
    ("no pg_hba.conf entry", Reason.AUTH),
    ("not permitted to log in", Reason.AUTH),
    ('role "', Reason.AUTH),  # role "x" does not exist: a credentials problem
    ("does not exist", Reason.NOT_FOUND),
    ("no such database", Reason.NOT_FOUND),  # pgbouncer
    ("timeout expired", Reason.TIMEOUT),
    ("connection refused", Reason.REFUSED),
    ("no such file or directory", Reason.REFUSED),  # unix socket absent
    ("the database system is", Reason.REFUSED),  # starting up / shutting down
    # the peer is not PostgreSQL (another service on the port): its first byte says so,
    # before any TLS is negotiated, so these come before "ssl"
    ("invalid response to ssl negotiation", Reason.PROTOCOL),
    ("expected authentication request", Reason.PROTOCOL),
    ("lost synchronization with server", Reason.PROTOCOL),
    ("invalid message length", Reason.PROTOCOL),
    ("could not translate host name", Reason.DNS),
    ("name or service not known", Reason.DNS),
    ("ssl", Reason.TLS),
    ("certificate", Reason.TLS),
)


def reason_for_pg_error(exc: BaseException) -> str:
    """A reason for a psycopg / OS error; never the exception text itself."""
    if isinstance(exc, psycopg.errors.ConnectionTimeout):
        return Reason.TIMEOUT
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate or ""
        if state in _SQLSTATE_REASONS:
            return _SQLSTATE_REASONS[state]
        if state[:2] in _CLASS_REASONS:
            return _CLASS_REASONS[state[:2]]
        message = str(exc).lower()
        for needle, reason in _MESSAGE_REASONS:
            if needle in message:
                return reason
        if isinstance(exc, psycopg.OperationalError):
            return Reason.UNREACHABLE
        return Reason.PROTOCOL
    return reason_for_exception(exc)


def error_summary(exc: BaseException) -> str:
    """A short, secret-free description for ``detail``: class name and SQLSTATE only.

    Server messages can quote connection parameters, so they never reach the page.
    """
    name = type(exc).__name__
    state = getattr(exc, "sqlstate", None)
    return f"{name} (SQLSTATE {state})" if state else name


class PgConnConfig(KindConfig):
    """Connection keys common to both kinds. Discrete keys override the DSN's values."""

    # a rejected DSN may hold a password: keep input values out of validation errors;
    # ``dbname: 2024`` or ``user: 1001`` are strings, though YAML reads them as numbers
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True,
                              coerce_numbers_to_str=True)

    dsn: SecretStr | None = None
    dsn_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 5432
    dbname: str = "postgres"
    user: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    sslmode: SslMode | None = None
    connect_timeout: Duration = 3.0

    @field_validator("port")
    @classmethod
    def _port_range(cls, value: int) -> int:
        if not 0 < value < 65536:
            raise ValueError("must be between 1 and 65535")
        return value

    @field_validator("dsn")
    @classmethod
    def _dsn_parses(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                conninfo_to_dict(value.get_secret_value())
            except psycopg.ProgrammingError:
                # never echo the DSN: it may hold a password
                raise ValueError("is not a valid libpq DSN or URI") from None
        return value

    def conn_params(self) -> dict[str, Any]:
        """libpq parameters (may contain the password: never log them).

        Reads secret files in the calling thread: a probe's run uses
        :meth:`read_conn_params`. Raises ``ValueError`` when a secret file is unreadable
        or the DSN file is invalid.
        """
        dsn = read_secret(self.dsn, self.dsn_file, "dsn")
        password = read_secret(self.password, self.password_file, "password")
        return self._params(dsn, password)

    async def read_conn_params(self) -> dict[str, Any]:
        """:meth:`conn_params` with the secret files read off the event loop."""
        dsn = await read_secret_async(self.dsn, self.dsn_file, "dsn")
        password = await read_secret_async(self.password, self.password_file, "password")
        return self._params(dsn, password)

    def _params(self, dsn: str | None, password: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if dsn:
            try:
                params.update(conninfo_to_dict(dsn))
            except psycopg.ProgrammingError:
                raise ValueError("dsn_file does not hold a valid libpq DSN or URI") from None
        explicit = self.model_fields_set
        for key in ("host", "port", "dbname", "user", "sslmode"):
            value = getattr(self, key)
            if value is not None and (key in explicit or key not in params):
                params[key] = value
        if password is not None:
            params["password"] = password
        params["application_name"] = APPLICATION_NAME
        params["connect_timeout"] = self.libpq_connect_timeout()
        return params

    def effective_connect_timeout(self) -> float:
        return max(0.05, min(self.connect_timeout, self.client_timeout))

    def libpq_connect_timeout(self) -> int:
        # libpq takes whole seconds and treats values below 2 as 2; the client-side
        # deadline (anyio) enforces the precise value.
        return max(2, math.ceil(self.effective_connect_timeout()))

    def target_text(self) -> str:
        """``host:port/dbname`` without user or password.

        Never reads a secret file: the target is shown on pages rendered on the event
        loop, and a missing file must not change what is shown.
        """
        dsn = self.dsn.get_secret_value() if self.dsn is not None else None
        params = self._params(dsn, None)
        if self.dsn_file is not None and "host" not in self.model_fields_set:
            return f"(dsn_file {self.dsn_file})"
        host = str(params.get("host") or "localhost")
        port = str(params.get("port") or 5432)
        dbname = str(params.get("dbname") or params.get("user") or "")
        if host.startswith("/"):
            return f"{host}/.s.PGSQL.{port}/{dbname}"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{port}/{dbname}"


async def connect(
    params: dict[str, Any], seconds: float
) -> psycopg.AsyncConnection[tuple[Any, ...]]:
    """Open an autocommit connection within ``seconds`` (``TimeoutError`` after).

    If the caller is cancelled mid-handshake, psycopg drops the half-built PGconn (closing
    its socket) and the cancellation propagates.

    Statements are never prepared server-side (``prepare_threshold=None``): the probes run
    the same few queries on one held connection, so psycopg's default would prepare them on
    the sixth run, which PgBouncer's admin console (no extended protocol) and PgBouncer
    before 1.21 in transaction mode (prepared statements lost between transactions) reject.
    """
    with anyio.fail_after(seconds):
        return await psycopg.AsyncConnection.connect(
            **params, autocommit=True, prepare_threshold=None
        )


async def close_quietly(conn: psycopg.AsyncConnection[Any] | None) -> None:
    """Close a connection, shielded from cancellation and bounded in time."""
    if conn is None or conn.closed:
        return
    with anyio.move_on_after(2.0, shield=True):
        try:
            await conn.close()
        except (psycopg.Error, OSError):
            pass
    if not conn.closed:  # the polite close did not finish: drop the socket
        conn.pgconn.finish()


# What a PostgreSQL-protocol connection can fail with, for the probes' pre-created reasons.
CONNECTION_REASONS: frozenset[str] = COMMON_REASONS | {
    Reason.AUTH,
    Reason.NOT_FOUND,
    Reason.TOO_MANY_CLIENTS,
    Reason.FORBIDDEN,
    Reason.UNREACHABLE,
    Reason.TLS,
    Reason.CONFIG,
}
