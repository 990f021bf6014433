"""Small helpers shared by the postgres/pgbouncer probe tests."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import psycopg

from probes.base import ProbeResult
from probes.postgres import PostgresConfig
from tests.probes_postgres._cluster import SUPERUSER_PASSWORD, Cluster


def pg_config(cluster: Cluster, **overrides: Any) -> PostgresConfig:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": cluster.port,
        "user": "postgres",
        "password": SUPERUSER_PASSWORD,
        "client_timeout": 3.0,
        "reconnect_backoff_max": 0.2,
    }
    values.update(overrides)
    return PostgresConfig.model_validate(values)


def value(result: ProbeResult, name: str, **labels: str) -> float:
    """The value of the sample of ``name`` whose labels include ``labels``."""
    for metric in result.metrics:
        if metric.name == name:
            for sample in metric.samples:
                if set(labels.items()) <= set(sample.labels):
                    return sample.value
    raise AssertionError(f"no sample {name}{labels} in {[m.name for m in result.metrics]}")


def names(result: ProbeResult) -> set[str]:
    return {m.name for m in result.metrics}


def assert_no_secret(result: ProbeResult, *secrets: str) -> None:
    text = repr(result)
    for secret in secrets:
        assert secret not in text


async def admin(cluster: Cluster, dbname: str = "postgres") -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(
        cluster.admin_dsn(dbname), autocommit=True, application_name="test-admin"
    )


async def admin_exec(cluster: Cluster, *statements: str, dbname: str = "postgres") -> list[Any]:
    conn = await admin(cluster, dbname)
    rows: list[Any] = []
    async with conn:
        for stmt in statements:
            cur = await conn.execute(stmt.encode())
            if cur.description is not None:
                rows.extend(await cur.fetchall())
    return rows


async def exporter_backends(cluster: Cluster) -> int:
    rows = await admin_exec(
        cluster,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'festivals-exporter'",
    )
    return int(rows[0][0])


async def poll(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, every: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await anyio.sleep(every)
