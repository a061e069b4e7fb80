"""Test harness: real PostgreSQL and real Redis, always.

``PAPER_TEST_DATABASE_URL`` / ``PAPER_TEST_REDIS_URL`` point the suite at running servers (CI's
PostgreSQL 15 and Redis 7). When they are unset, embedded servers are started for the session
(see ``consumer.embedded``), so the suite passes on a machine with no servers installed. Nothing
is ever skipped for lack of a server.

Databases: every test session creates its own uniquely named databases and drops them at the
end. ``db_url`` gives each test a fresh, fully migrated database cloned from a template (fast);
``empty_db_url`` gives an empty one for migration tests. Redis: ``stream_names`` gives each test
its own stream keys, so tests never see each other's entries.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql
from psycopg.conninfo import make_conninfo

from consumer import embedded
from consumer.settings import Settings
from tests.support.cluster import redis_cluster  # noqa: F401 - a fixture (three-master cluster)

RUN_ID = uuid.uuid4().hex[:8]


def _url_for(server_url: str, dbname: str) -> str:
    return make_conninfo(server_url, dbname=dbname)


def _create_database(server_url: str, name: str, template: str | None = None) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(query)


def _drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def _embedded_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: its folders are private to root (0700), and embedded PostgreSQL,
    # started by root, runs as its own unprivileged user, which must reach its data folder.
    folder = Path(tempfile.mkdtemp(prefix="paper-consumer-test-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server_url(_embedded_dir: Path) -> Iterator[str]:
    """A superuser URL of a real PostgreSQL server (maintenance database)."""
    configured = os.environ.get("PAPER_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    url, server = embedded.start_postgres(_embedded_dir / "pg", keep_data=False)
    yield url
    server.cleanup()


@pytest.fixture(scope="session")
def redis_url(_embedded_dir: Path) -> Iterator[str]:
    """The URL of a real Redis server."""
    configured = os.environ.get("PAPER_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    url, server = embedded.start_redis(_embedded_dir / "redis")
    yield url
    server.shutdown(nosave=True)


@pytest.fixture(scope="session")
def migrated_template(pg_server_url: str) -> Iterator[str]:
    """Name of a database migrated to the latest version, used as a template."""
    from consumer import migrations  # noqa: PLC0415 - keeps collection fast for unit-only runs

    name = f"paper_tpl_{RUN_ID}"
    _create_database(pg_server_url, name)
    migrations.upgrade(_url_for(pg_server_url, name))
    yield name
    _drop_database(pg_server_url, name)


@pytest.fixture
def db_url(pg_server_url: str, migrated_template: str) -> Iterator[str]:
    """A fresh, fully migrated database for this test only."""
    name = f"paper_t_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    _create_database(pg_server_url, name, template=migrated_template)
    yield _url_for(pg_server_url, name)
    _drop_database(pg_server_url, name)


@pytest.fixture(scope="session")
def make_database(pg_server_url: str, migrated_template: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh migrated databases (for hypothesis tests: one per example)."""
    created: list[str] = []

    def make() -> str:
        name = f"paper_h_{RUN_ID}_{uuid.uuid4().hex[:8]}"
        _create_database(pg_server_url, name, template=migrated_template)
        created.append(name)
        return _url_for(pg_server_url, name)

    yield make
    for name in created:
        _drop_database(pg_server_url, name)


@pytest.fixture
def empty_db_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty database (nothing migrated) for this test only."""
    name = f"paper_e_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    _create_database(pg_server_url, name)
    yield _url_for(pg_server_url, name)
    _drop_database(pg_server_url, name)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def stream_names(redis_client: redis.Redis) -> Iterator[dict[str, str]]:
    """Stream keys unique to this test; deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    names = {
        "orders_stream": f"{prefix}.orders",
        "fills_stream": f"{prefix}.fills",
        "marks_stream": f"{prefix}.market_data",
        "dlq_stream": f"{prefix}.dlq",
    }
    yield names
    redis_client.delete(*names.values())


@pytest.fixture
def settings(db_url: str, redis_url: str, stream_names: dict[str, str]) -> Settings:
    """Worker settings wired to this test's database and streams, tuned for fast tests."""
    return Settings(
        database_url=db_url,
        redis_url=redis_url,
        consumer_name="test-worker",
        batch_max_wait_ms=20,
        block_ms=100,
        claim_idle_s=1.0,
        claim_interval_s=0.2,
        retry_initial_ms=20,
        retry_max_ms=500,
        shutdown_grace_s=10.0,
        **stream_names,
    )
