"""Shared plumbing of the bench scripts: scratch databases, streams, settings, synthetic
archives, COPY ceiling.

Servers: PAPER_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres, a
superuser maintenance database: scratch databases ``paper_bench_*`` are created and dropped) and
PAPER_BENCH_REDIS_URL (default redis://127.0.0.1:6379/14; the bench's own streams are deleted).
Loopback only: the scripts refuse any other host.
"""

from __future__ import annotations

import io
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consumer import migrations, replay  # noqa: E402
from consumer.collector import fewer_collections  # noqa: E402
from consumer.publisher import Publisher  # noqa: E402
from consumer.settings import Settings  # noqa: E402

SERVER = os.environ.get("PAPER_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("PAPER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
LOOPBACK = {"127.0.0.1", "localhost", "::1", ""}

# Every table the worker writes, with the columns a COPY must carry (generated columns and
# serial ids are left to the table, as an insert would).
COPIED = {
    "paper_orders": "order_id, client_id, symbol, side, order_type, quantity, price, "
    "filled_quantity, filled_price, status, slippage_pct, fees_usdt, fee_type, created_at, "
    "submitted_at, filled_at, rejection_reason, error_message, metadata, updated_at",
    "paper_fills": "fill_id, order_id, symbol, quantity, price, fees_usdt, fee_type, filled_at, "
    "metadata",
    "paper_positions": "symbol, quantity, avg_entry_price, current_price, unrealized_pnl_usdt, "
    "realized_pnl_usdt, cost_basis_usdt, market_value_usdt, entry_trades, exit_trades, "
    "opened_at, closed_at, metadata, updated_at",
    "paper_fill_pnl": "fill_id, symbol, filled_at, realized_pnl_usdt, position_quantity",
    "paper_round_trips": "closing_fill_id, symbol, direction, opened_at, closed_at, quantity, "
    "max_quantity, entry_avg_price, exit_avg_price, realized_pnl_usdt, fees_usdt, fills, "
    "close_reason",
    "paper_trading_stats": "stat_date, total_orders, filled_orders, partial_fills, "
    "rejected_orders, cancelled_orders, avg_slippage_pct, avg_fee_pct, avg_latency_ms, "
    "total_volume_usdt, total_fees_usdt, daily_pnl_usdt, cumulative_pnl_usdt, updated_at",
    "paper_pnl_snapshots": "snapshot_time, snapshot_type, total_pnl_usdt, realized_pnl_usdt, "
    "unrealized_pnl_usdt, balance_usdt, equity_usdt, total_trades, winning_trades, "
    "losing_trades, total_volume_usdt, total_fees_usdt, symbol_pnl, metadata",
}


def check_loopback() -> None:
    pg_host = conninfo_to_dict(SERVER).get("host") or ""
    redis_host = urlsplit(REDIS_URL).hostname or ""
    for name, host in (("PostgreSQL", pg_host), ("Redis", redis_host)):
        if host not in LOOPBACK and not str(host).startswith("/"):
            raise SystemExit(f"{name} host {host!r} is not loopback: benchmarks only run locally")


def machine() -> str:
    with psycopg.connect(SERVER) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    rv = redis.Redis.from_url(REDIS_URL).info("server")["redis_version"]
    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, PostgreSQL {pg}, "
        f"Redis {rv}, {platform.system()} {platform.release()}"
    )


@dataclass
class Scratch:
    """Scratch databases (cloned from one migrated template) and stream names for one run."""

    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    names: list[str] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"bench{self.run}"

    def template(self) -> str:
        name = f"paper_bench_tpl_{self.run}"
        self._create(name, None)
        migrations.upgrade(make_conninfo(SERVER, dbname=name))
        return name

    def database(self, label: str, template: str) -> str:
        name = f"paper_bench_{label}_{self.run}"
        self._create(name, template)
        return make_conninfo(SERVER, dbname=name)

    def _create(self, name: str, template: str | None) -> None:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template:
                query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(query)
        self.names.append(name)

    def settings(self, dsn: str, tag: str = "", **overrides: Any) -> Settings:
        prefix = f"{self.prefix}{tag}"
        values: dict[str, Any] = {
            "database_url": dsn,
            "redis_url": REDIS_URL,
            "orders_stream": f"{prefix}.orders",
            "fills_stream": f"{prefix}.fills",
            "marks_stream": f"{prefix}.market_data",
            "dlq_stream": f"{prefix}.dlq",
            "consumer_name": "bench-1",
            "metrics_port": 0,
        }
        values.update(overrides)
        return Settings(**values)

    def drop(self) -> None:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{self.prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
        with psycopg.connect(SERVER, autocommit=True) as conn:
            for name in reversed(self.names):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


@contextmanager
def scratch() -> Iterator[Scratch]:
    check_loopback()
    s = Scratch()
    try:
        yield s
    finally:
        s.drop()


@contextmanager
def synthetic_archive(
    settings: Settings, events: int, *, seed: int = 4
) -> Iterator[tuple[Path, replay.ExportSummary]]:
    """Publish ``events`` synthetic events (``Publisher``, 1 % malformed, event time from
    2099-01-01) into ``settings``' streams, export them to a temporary ``.jsonl.gz`` archive
    and yield it with the export's summary; the streams and the file are removed afterwards.
    The data of bench/replay.py and bench/parse.py."""
    client = redis.Redis.from_url(settings.redis_dsn())
    try:
        started = time.perf_counter()
        Publisher.for_settings(
            client,
            settings,
            seed=seed,
            malformed_ratio=0.01,
            start=datetime(2099, 1, 1, tzinfo=UTC),
            run_id=f"bench{seed}",
        ).publish(events)
        print(f"published {events} events in {time.perf_counter() - started:.1f} s")
        with tempfile.TemporaryDirectory() as folder:
            archive = Path(folder) / "bench.jsonl.gz"
            exported = replay.export(settings.redis_dsn(), settings.streams(), archive)
            print(f"export: {exported.entries} entries in {exported.seconds:.2f} s")
            yield archive, exported
    finally:
        client.delete(*settings.streams(), settings.dlq_stream)
        client.close()


def best_cpu_seconds(passes: int, run: Callable[[], object]) -> float:
    """The least process CPU time of ``passes`` calls of ``run`` (the CPU-only benches), under
    the collector policy replay and the worker run under (``collector.fewer_collections``):
    without it, most of what bench/fold.py measured was the cyclic GC (12.96 us/entry against
    7.74, 2026-12-07)."""
    best = float("inf")
    with fewer_collections():
        for _ in range(passes):
            started = time.process_time()
            run()
            best = min(best, time.process_time() - started)
    return best


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a ``paper-consumer run`` subprocess with ``settings``' names."""
    return {
        **os.environ,
        **settings.child_environ(),
        "PAPER_METRICS_PORT": "0",
        "PAPER_LOG_FORMAT": "json",
        "PAPER_LOG_LEVEL": "warning",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def copy_ceiling(
    source: str, target: str, tables: dict[str, str] | None = None
) -> tuple[float, dict[str, int]]:
    """COPY every paper-table row of ``source`` into the empty migrated ``target`` (indexes and
    constraints in place, one transaction); return the load's seconds and rows per table."""
    chosen = COPIED if tables is None else tables
    dumps: dict[str, bytes] = {}
    with psycopg.connect(source) as conn:
        for table, columns in chosen.items():
            buffer = io.BytesIO()
            with conn.cursor().copy(f"COPY (SELECT {columns} FROM {table}) TO STDOUT") as copy:
                for chunk in copy:
                    buffer.write(chunk)
            dumps[table] = buffer.getvalue()
    counts: dict[str, int] = {}
    with psycopg.connect(target) as conn:
        started = time.perf_counter()
        with conn.transaction():
            for table, columns in chosen.items():
                with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    copy.write(dumps[table])
                counts[table] = dumps[table].count(b"\n")
        seconds = time.perf_counter() - started
    return seconds, counts


def table_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
            for t in COPIED
        }


def sql_breakdown() -> dict[str, list[float]]:
    """Time every ``Connection.execute`` of the worker by the name of its SQL constant in
    ``consumer/db/`` (wall time including the round trip); returns the live table."""
    import pkgutil  # noqa: PLC0415
    from importlib import import_module  # noqa: PLC0415

    from consumer import db  # noqa: PLC0415

    names = {
        v: k
        for info in pkgutil.iter_modules(db.__path__)
        for k, v in vars(import_module(f"consumer.db.{info.name}")).items()
        if isinstance(v, str) and k.isupper()
    }
    table: dict[str, list[float]] = {}
    original = psycopg.Connection.execute

    def timed(self: Any, query: Any, *a: Any, **k: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, query, *a, **k)
        finally:
            name = names.get(query, "other") if isinstance(query, str) else "other"
            table.setdefault(name, []).append(time.perf_counter() - started)

    psycopg.Connection.execute = timed  # type: ignore[method-assign]
    return table


def print_breakdown(table: dict[str, list[float]], wall_s: float, batches: int = 0) -> None:
    """One line per statement, the costliest first: total, share of ``wall_s``, count, the
    last run, and (with ``batches``) the mean per batch."""
    for name, times in sorted(table.items(), key=lambda kv: -sum(kv[1])):
        per_batch = f" {1000 * sum(times) / batches:6.2f} ms/batch" if batches else ""
        print(
            f"    {name:28s} {sum(times):7.2f} s {100 * sum(times) / wall_s:5.1f} % "
            f"n={len(times):5d} last={times[-1] * 1000:7.1f} ms{per_batch}"
        )
