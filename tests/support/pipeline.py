"""Publish events to real Redis, run a real worker until idle, read back real rows.

Everything here goes through the same code a user runs: ``RedisStream``, ``PostgresStore`` and
``Worker``; nothing is mocked.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
import redis
from psycopg.rows import dict_row

from consumer.db import PostgresStore
from consumer.settings import Settings
from consumer.stream import RedisStream
from consumer.worker import Worker

CONNECTION_VARS = re.compile(r"^(PAPER_|DATABASE_URL$|REDIS_|POSTGRES_)")
"""This process's variables that must not leak into a ``paper-consumer`` subprocess."""


def clean_environ() -> dict[str, str]:
    """This process's environment without its connection and ``PAPER_*`` settings."""
    return {k: v for k, v in os.environ.items() if not CONNECTION_VARS.match(k)}


def worker_env(settings: Settings, name: str, **extra: str) -> dict[str, str]:
    """The environment of a ``python -m consumer run`` subprocess named ``name`` with the
    servers, streams and shards of ``settings``, tuned for tests (short blocks and waits, no
    metrics port, JSON logs); ``extra`` adds or overrides variables."""
    return {
        **clean_environ(),
        **settings.child_environ(),
        "PAPER_CONSUMER_NAME": name,
        "PAPER_BLOCK_MS": "100",
        "PAPER_BATCH_MAX_WAIT_MS": "20",
        "PAPER_METRICS_PORT": "0",  # no endpoint: tests must not bind a fixed port
        "PAPER_LOG_FORMAT": "json",
        **extra,
    }


def publish(client: redis.Redis, stream: str, fields: Mapping[str, Any]) -> str:
    """XADD one entry with every value as a string (what publishers send)."""
    return str(client.xadd(stream, {k: str(v) for k, v in fields.items()}))


def publish_json(client: redis.Redis, stream: str, payload: Mapping[str, Any]) -> str:
    """XADD one entry whose single ``data`` field holds the JSON object."""
    return str(client.xadd(stream, {"data": json.dumps(payload, default=str)}))


@contextmanager
def worker_for(settings: Settings, **kwargs: Any) -> Iterator[Worker]:
    store = PostgresStore(
        settings.database_dsn(),
        group=settings.group,
        start_balance=settings.start_balance_usdt,
        **kwargs,
    )
    store.open()
    stream = RedisStream.from_settings(settings)
    try:
        yield Worker(settings, store, stream)
    finally:
        stream.close()
        store.close()


def run_until_idle(settings: Settings, **kwargs: Any) -> Worker:
    with worker_for(settings, **kwargs) as worker:
        assert worker.run(until_idle=True) == 0
        return worker


def rows(dsn: str, query: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def position(dsn: str, symbol: str) -> tuple[Decimal, Decimal, Decimal]:
    (row,) = rows(
        dsn,
        "SELECT quantity, avg_entry_price, realized_pnl_usdt FROM paper_positions "
        "WHERE symbol = %(s)s",
        {"s": symbol},
    )
    return row["quantity"], row["avg_entry_price"], row["realized_pnl_usdt"]


def dead_letters(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    return [fields for _, fields in client.xrange(stream)]  # type: ignore[union-attr]


# Comparable snapshots of every paper table, ingestion timestamps left out.
SNAPSHOT_QUERIES = {
    "orders": "SELECT order_id, client_id, symbol, side, order_type, quantity, price, "
    "filled_quantity, filled_price, status, slippage_pct, fees_usdt, fee_type, created_at, "
    "submitted_at, filled_at, rejection_reason, error_message, metadata, fill_ratio "
    "FROM paper_orders ORDER BY order_id",
    "fills": "SELECT fill_id, order_id, symbol, quantity, price, fees_usdt, fee_type, filled_at, "
    "metadata FROM paper_fills ORDER BY fill_id",
    "positions": "SELECT symbol, quantity, avg_entry_price, current_price, unrealized_pnl_usdt, "
    "realized_pnl_usdt, total_pnl_usdt, cost_basis_usdt, market_value_usdt, entry_trades, "
    "exit_trades, opened_at, closed_at, metadata FROM paper_positions ORDER BY symbol",
    "snapshots": "SELECT snapshot_time, snapshot_type, total_pnl_usdt, realized_pnl_usdt, "
    "unrealized_pnl_usdt, balance_usdt, equity_usdt, total_trades, winning_trades, "
    "losing_trades, win_rate, total_volume_usdt, total_fees_usdt, symbol_pnl "
    "FROM paper_pnl_snapshots ORDER BY snapshot_time, snapshot_type",
    "round_trips": "SELECT closing_fill_id, symbol, direction, opened_at, closed_at, quantity, "
    "max_quantity, entry_avg_price, exit_avg_price, realized_pnl_usdt, fees_usdt, fills, "
    "close_reason FROM paper_round_trips ORDER BY closing_fill_id",
    "fill_pnl": "SELECT * FROM paper_fill_pnl ORDER BY fill_id",
    "clock": "SELECT nullif(greatest((SELECT event_time FROM paper_pnl_clock), "
    "(SELECT max(event_time) FROM paper_symbol_clocks)), '-infinity') AS event_time",
    "stats": "SELECT stat_date, total_orders, filled_orders, partial_fills, rejected_orders, "
    "cancelled_orders, fill_rate, avg_slippage_pct, avg_fee_pct, avg_latency_ms, "
    "total_volume_usdt, total_fees_usdt, daily_pnl_usdt, cumulative_pnl_usdt "
    "FROM paper_trading_stats ORDER BY stat_date",
}


def snapshot(dsn: str) -> dict[str, list[dict[str, Any]]]:
    return {name: rows(dsn, query) for name, query in SNAPSHOT_QUERIES.items()}


def property_settings(database_url: str, redis_url: str, tag: str) -> Settings:
    """Settings for one hypothesis example: its own streams, fast idle detection."""
    prefix = f"{tag}{uuid.uuid4().hex[:10]}"
    return Settings(
        database_url=database_url, redis_url=redis_url, consumer_name="prop",
        orders_stream=f"{prefix}.orders", fills_stream=f"{prefix}.fills",
        marks_stream=f"{prefix}.marks", dlq_stream=f"{prefix}.dlq",
        batch_max_wait_ms=5, block_ms=20, claim_idle_s=60,
    )  # fmt: skip


def crash_read(client: redis.Redis, settings: Settings, count: int) -> None:
    """A worker of ``settings.consumer_name`` reads ``count`` entries per stream and dies
    before committing them (they stay pending for it)."""
    streams = (settings.orders_stream, settings.fills_stream)
    for stream in streams:
        with contextlib.suppress(redis.ResponseError):  # BUSYGROUP: the group exists already
            client.xgroup_create(stream, settings.group, id="0", mkstream=True)
    client.xreadgroup(
        settings.group, settings.consumer_name, dict.fromkeys(streams, ">"), count=count
    )


def without_mark_terms(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` (from ``snapshot``) with the snapshots' mark-dependent terms left out: total and
    unrealized P&L, equity, and ``symbol_pnl``'s pnl/unrealized. What fills determine stays
    (realized, trade counts, volume, fees, the symbols present). See docs/scaling.md "P&L
    snapshots" for why the sharded chaos comparison uses this."""
    dropped = ("total_pnl_usdt", "unrealized_pnl_usdt", "equity_usdt")
    out = dict(state)
    out["snapshots"] = [
        {k: v for k, v in row.items() if k not in dropped}
        | {"symbol_pnl": {s: {k: v for k, v in body.items() if k not in ("pnl", "unrealized")}
                          for s, body in (row["symbol_pnl"] or {}).items()}}
        for row in state["snapshots"]
    ]  # fmt: skip
    return out
