"""Fixtures: a template data dir per worker, a shared cluster per session, private clusters."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.probes_postgres._cluster import Bouncer, Cluster, make_template, make_workdir


@pytest.fixture(scope="session")
def pg_template() -> Iterator[Path]:
    base = make_workdir("fe-pgt-")
    try:
        yield make_template(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_shared(pg_template: Path) -> Iterator[Cluster]:
    """Shared cluster (tests using it are in xdist group ``pg_shared``); never stopped."""
    cluster = Cluster(pg_template, max_connections=20)
    cluster.start()
    try:
        admin_sql(cluster, "CREATE EXTENSION pg_stat_statements")
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_private(pg_template: Path) -> Iterator[Cluster]:
    """A cluster of this test alone: it may be stopped, paused or restarted."""
    cluster = Cluster(pg_template, max_connections=20)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_small(pg_template: Path) -> Iterator[Cluster]:
    """max_connections 8 with 3 superuser-reserved: 5 slots for ordinary roles."""
    cluster = Cluster(pg_template, max_connections=8, superuser_reserved=3)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pgbouncer(pg_shared: Cluster) -> Iterator[Bouncer]:
    bouncer = Bouncer(pg_shared)
    try:
        yield bouncer
    finally:
        bouncer.destroy()


def admin_sql(cluster: Cluster, *statements: str, dbname: str = "postgres") -> list[Any]:
    """Run statements as superuser (sync: call from sync fixtures or a worker thread)."""
    rows: list[Any] = []
    with psycopg.connect(cluster.admin_dsn(dbname), autocommit=True) as conn:
        for stmt in statements:
            cur = conn.execute(stmt.encode())
            if cur.description is not None:
                rows.extend(cur.fetchall())
    return rows
