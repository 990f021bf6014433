"""Pure helpers of the postgres probes: column detection, redaction, reasons, config."""

from __future__ import annotations

import psycopg
import pytest
from pydantic import ValidationError

from exporter.config import ConfigError, parse_config
from probes.base import Reason
from probes.common.libpq import reason_for_pg_error
from probes.pgbouncer import KIND as BOUNCER
from probes.pgbouncer import reason_for_bouncer_error
from probes.postgres import KIND, PostgresConfig
from probes.postgres import sql as q


def test_statement_columns_detects_pre_and_post_pg13_names() -> None:
    new = ["userid", "queryid", "calls", "mean_exec_time", "total_exec_time", "mean_plan_time"]
    old = ["userid", "queryid", "calls", "mean_time", "total_time"]
    assert q.statement_columns(new) == ("mean_exec_time", "total_exec_time")
    assert q.statement_columns(old) == ("mean_time", "total_time")
    assert q.statement_columns(["userid", "calls"]) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CREATE ROLE a LOGIN PASSWORD 'x''y' VALID UNTIL 'infinity'",
         "CREATE ROLE a LOGIN PASSWORD '***' VALID UNTIL 'infinity'"),
        ("alter user a with encrypted password E'abc",
         "alter user a with encrypted password '***'"),
        ("SELECT 1", "SELECT 1"),
        (None, ""),
        # connection strings, as pg_stat_activity shows dblink / postgres_fdw calls
        ("SELECT * FROM dblink('host=a password=s3cr3t dbname=b', 'q')",
         "SELECT * FROM dblink('host=a password=*** dbname=b', 'q')"),
        ("SELECT dblink_connect('c', 'password = ''s3 cr3t'' port=5')",
         "SELECT dblink_connect('c', 'password = *** port=5')"),
        ("SELECT * FROM dblink('postgresql://u:s3cr3t@h/db', 'q')",
         "SELECT * FROM dblink('postgresql://u:***@h/db', 'q')"),
        ("SELECT 1 FROM t WHERE password = $1", "SELECT 1 FROM t WHERE password = $1"),
    ],
)
def test_redact_masks_password_literals(text: str | None, expected: str) -> None:
    assert q.redact(text) == expected


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (psycopg.errors.InvalidPassword(), Reason.AUTH),
        (psycopg.errors.InvalidCatalogName(), Reason.NOT_FOUND),
        (psycopg.errors.TooManyConnections(), Reason.TOO_MANY_CLIENTS),
        (psycopg.errors.InsufficientPrivilege(), Reason.FORBIDDEN),
        (psycopg.errors.QueryCanceled(), Reason.TIMEOUT),
        (psycopg.errors.AdminShutdown(), Reason.UNREACHABLE),
        (psycopg.OperationalError('connection failed: FATAL:  sorry, too many clients already'),
         Reason.TOO_MANY_CLIENTS),
        (psycopg.OperationalError("connection failed: Connection refused"), Reason.REFUSED),
        (psycopg.OperationalError('FATAL:  role "x" does not exist'), Reason.AUTH),
        (psycopg.OperationalError('FATAL:  database "x" does not exist'), Reason.NOT_FOUND),
        (psycopg.OperationalError("server closed the connection unexpectedly"),
         Reason.UNREACHABLE),
        (psycopg.errors.ConnectionTimeout("connection timeout expired"), Reason.TIMEOUT),
        (ConnectionResetError(), Reason.UNREACHABLE),
    ],
)
def test_reason_mapping(exc: BaseException, reason: str) -> None:
    assert reason_for_pg_error(exc) == reason


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("FATAL:  not allowed", Reason.FORBIDDEN),
        ("FATAL:  no more connections allowed (max_client_conn)", Reason.TOO_MANY_CLIENTS),
        ("FATAL:  password authentication failed", Reason.AUTH),
    ],
)
def test_bouncer_reason_mapping(message: str, reason: str) -> None:
    assert reason_for_bouncer_error(psycopg.OperationalError(message)) == reason


def test_config_validation_and_target() -> None:
    with pytest.raises(ValidationError, match="between 1 and 65535"):
        PostgresConfig.model_validate({"port": 0})
    with pytest.raises(ValidationError, match="either password or password_file"):
        PostgresConfig.model_validate({"password": "a", "password_file": "/x"})
    with pytest.raises(ValidationError, match="either dsn or dsn_file"):
        PostgresConfig.model_validate({"dsn": "host=a", "dsn_file": "/x"})
    with pytest.raises(ValidationError):
        PostgresConfig.model_validate({"statement_timeout": "soon"})
    cfg = PostgresConfig.model_validate(
        {"dsn": "postgresql://u:topsecret@db.example:6543/app", "port": 5433})
    assert KIND.target(cfg) == "postgres://db.example:5433/app"  # explicit key wins
    assert cfg.conn_params()["application_name"] == "festivals-exporter"
    assert cfg.conn_params()["password"] == "topsecret"
    assert "topsecret" not in repr(cfg)
    sock = PostgresConfig.model_validate({"host": "/run/postgresql", "dbname": "x"})
    assert KIND.target(sock) == "postgres:///run/postgresql/.s.PGSQL.5432/x"
    assert BOUNCER.target(BOUNCER.config_model.model_validate({"host": "::1"})) == (
        "pgbouncer://[::1]:6432/pgbouncer")
    assert KIND.reasons >= {"too_many_clients", "auth", "not_found", "forbidden", "timeout",
                            "extension_missing"}


@pytest.mark.parametrize(("kind", "line", "key", "expected"), [
    # every documented value as a user types it: YAML 1.1 reads unquoted off as false,
    # and 2024 / 1001 as numbers
    *[("postgres", f"pg_stat_statements: {v}", "pg_stat_statements", v)
      for v in ("auto", "require", "off")],
    *[(kind, f"sslmode: {v}", "sslmode", v)
      for kind in ("postgres", "pgbouncer")
      for v in ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")],
    ("postgres", "dbname: 2024", "dbname", "2024"),
    ("postgres", "user: 1001", "user", "1001"),
    ("postgres", "statements_info: yes", "statements_info", True),
    ("postgres", "check_new_client: off", "check_new_client", False),
    ("pgbouncer", "include_admin_pool: on", "include_admin_pool", True),
    ("postgres", "idle_threshold: 10m", "idle_threshold", 600.0),
    ("postgres", "idle_in_transaction_threshold: 90", "idle_in_transaction_threshold", 90.0),
])
def test_documented_values_work_as_typed_in_yaml(
    kind: str, line: str, key: str, expected: object
) -> None:
    text = f"probes:\n  - name: p\n    kind: {kind}\n    {line}\n"
    (spec,) = parse_config(text, {}).probes
    assert getattr(spec.settings, key) == expected


def test_yaml_true_is_not_a_pg_stat_statements_mode() -> None:
    with pytest.raises(ConfigError, match="pg_stat_statements"):
        parse_config("probes:\n  - {name: p, kind: postgres, pg_stat_statements: on}\n", {})
