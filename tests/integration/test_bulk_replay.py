"""The bulk replay engine (``--engine bulk``, consumer/db/bulk.py) against the batches engine.

The same entries (a seeded synthetic flow over several symbols with lagging clocks, malformed
entries, partial fills, marks, about a day of event time crossing many hourly boundaries and a
midnight, plus the bot's own requests and results) are replayed by both engines into two
databases; every table a replay rebuilds (``REPLAY_TABLES``) must hold the same rows, serial
ids and ingestion timestamps aside.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
import pytest
import redis

from consumer import replay
from consumer.bulk_fold import BulkBook, PartRow
from consumer.db import bulk as bulk_engine
from consumer.db.replay_target import REPLAY_TABLES, SELECT_HISTORY_COLUMNS
from consumer.errors import ReplayRefusedError
from consumer.publisher import Publisher
from consumer.records import RawEntry
from consumer.settings import Settings
from tests.support.bot import request, result
from tests.support.pipeline import clean_environ, publish, rows

REPO = Path(__file__).resolve().parents[2]
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
START = datetime(2099, 3, 1, 14, 58, tzinfo=UTC)


def _tables(dsn: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for table in REPLAY_TABLES:
        columns = [r["column_name"] for r in rows(dsn, SELECT_HISTORY_COLUMNS, {"table": table})]
        assert columns, table
        listed = ", ".join(f"{c}::text AS {c}" for c in columns)
        order = ", ".join(str(n) for n in range(1, len(columns) + 1))
        out[table] = rows(dsn, f"SELECT {listed} FROM {table} ORDER BY {order}")
    return out


def _publish(settings: Settings, redis_client: redis.Redis) -> None:
    Publisher.for_settings(
        redis_client,
        settings,
        seed=23,
        symbols=SYMBOLS,
        malformed_ratio=0.03,
        start=START,
        run_id="bulk23",
        time_step_ms=(5_000, 90_000),  # ~1,200 events over about a day of event time
        symbol_lag={"ETHUSDT": timedelta(minutes=50)},
    ).publish(1200)
    # The bot's dialect: requests and results linked by client id, in both arrival orders, a
    # partial result growing, on a symbol of its own and on one the flow trades.
    base = int((START + timedelta(hours=30)).timestamp())
    orders, fills = settings.orders_stream, settings.fills_stream
    publish(redis_client, orders, request("ADAUSDT-1", symbol="ADAUSDT", quantity="10", ts=base))
    publish(
        redis_client,
        fills,
        result("MOCK_1", client_id="ADAUSDT-1", symbol="ADAUSDT", quantity="10", price="0.5",
               ts=base + 5),
    )  # fmt: skip
    publish(
        redis_client,
        fills,
        result("MOCK_2", client_id="BTCUSDT-2", quantity="1.0", filled="0.4", price="100.0",
               status="PARTIAL", ts=base + 3700),
    )  # fmt: skip
    publish(redis_client, orders, request("BTCUSDT-2", quantity="1.0", ts=base + 3600))
    publish(
        redis_client,
        fills,
        result("MOCK_2", client_id="BTCUSDT-2", quantity="1.0", filled="1.0", price="101.0",
               ts=base + 7300),
    )  # fmt: skip
    publish(
        redis_client,
        fills,
        result("MOCK_3", symbol="ADAUSDT", side="SELL", quantity="10", price="0.55",
               ts=base + 90_000),
    )  # fmt: skip


@pytest.fixture
def history(settings: Settings, redis_client: redis.Redis) -> Settings:
    _publish(settings, redis_client)
    return settings


class Replayed(NamedTuple):
    dsn: str
    summary: replay.ReplaySummary


@pytest.fixture
def replayed(make_database: Any) -> Callable[..., Replayed]:
    """``replayed(settings, engine, chunk_size=…)``: the Redis history replayed by ``engine``
    into a new database."""

    def into_new_database(
        settings: Settings, engine: str, *, chunk_size: int = replay.DEFAULT_CHUNK_SIZE
    ) -> Replayed:
        target = make_database()
        summary = replay.replay(
            settings,
            replay.SourceSpec("redis"),
            target_dsn=target,
            chunk_size=chunk_size,
            engine=engine,
        )
        return Replayed(target, summary)

    return into_new_database


def _replay_both(
    settings: Settings, replayed: Callable[..., Replayed], *, bulk_chunk: int = 173
) -> tuple[str, str]:
    one = replayed(settings, "batches", chunk_size=173)
    other = replayed(settings, "bulk", chunk_size=bulk_chunk)
    described = [r.summary.describe().split(" seconds=")[0] for r in (one, other)]
    assert described[0] == described[1]
    assert other.summary.rejected == one.summary.rejected
    return one.dsn, other.dsn


@pytest.mark.parametrize("bulk_chunk", [173, replay.DEFAULT_CHUNK_SIZE])
def test_the_bulk_engine_rebuilds_every_table_as_the_batches_engine(
    history: Settings, replayed: Callable[..., Replayed], bulk_chunk: int
):
    batches, bulk = _replay_both(history, replayed, bulk_chunk=bulk_chunk)
    expected = _tables(batches)
    # The history exercises what the comparison is for.
    assert len(expected["paper_trading_stats"]) >= 2
    assert len(expected["paper_pnl_snapshots"]) >= 20
    assert len(expected["paper_pnl_snapshot_parts"]) >= 20
    assert expected["paper_round_trips"]
    assert any(r["order_id"] == "MOCK_2" for r in expected["paper_orders"])
    assert len(expected["paper_consumer_offsets"]) == 3
    got = _tables(bulk)
    for table in REPLAY_TABLES:
        assert got[table] == expected[table], table


def test_the_comparison_fails_on_a_wrong_part(
    history: Settings, replayed: Callable[..., Replayed], monkeypatch: pytest.MonkeyPatch
):
    """A part one trade off (the kind of slip the comparison must catch)."""
    real = BulkBook.part

    def off_by_one(self: BulkBook, *args: Any, **kwargs: Any) -> PartRow:
        part = real(self, *args, **kwargs)
        return PartRow(**{**part.__dict__, "trades": part.trades + 1})

    monkeypatch.setattr(BulkBook, "part", off_by_one)
    batches, bulk = _replay_both(history, replayed)
    expected, got = _tables(batches), _tables(bulk)
    assert got["paper_pnl_snapshot_parts"] != expected["paper_pnl_snapshot_parts"]
    assert got["paper_pnl_snapshots"] != expected["paper_pnl_snapshots"]


def test_bulk_on_an_empty_history_writes_nothing(
    settings: Settings, replayed: Callable[..., Replayed]
):
    target, summary = replayed(settings, "bulk")
    assert summary.entries == 0
    assert all(not rows for rows in _tables(target).values())


def test_an_interrupted_bulk_replay_leaves_the_previous_state_and_reset_rebuilds(
    history: Settings, replayed: Callable[..., Replayed], monkeypatch: pytest.MonkeyPatch
):
    batches = replayed(history, "batches").dsn
    expected = _tables(batches)

    def breaks_late(entries: Iterator[RawEntry]) -> Iterator[RawEntry]:
        yield from entries
        raise RuntimeError("source lost at the end")

    with pytest.raises(RuntimeError, match="at the end"):
        replay.replay(
            history, replay.SourceSpec("redis"), target_dsn=batches, reset=True, engine="bulk",
            wrap_source=breaks_late,
        )  # fmt: skip
    assert _tables(batches) == expected
    # Failing in its last statement, after every COPY: rolled back too.
    with monkeypatch.context() as patched:
        patched.setattr(bulk_engine, "INSERT_OFFSETS", "SELECT 1 / 0")
        with pytest.raises(psycopg.errors.DivisionByZero):
            replay.replay(
                history, replay.SourceSpec("redis"), target_dsn=batches, reset=True, engine="bulk"
            )
    assert _tables(batches) == expected
    with pytest.raises(ReplayRefusedError, match="--reset"):
        replay.replay(history, replay.SourceSpec("redis"), target_dsn=batches, engine="bulk")
    replay.replay(
        history, replay.SourceSpec("redis"), target_dsn=batches, reset=True, engine="bulk"
    )
    assert _tables(batches) == expected


def test_the_cli_takes_the_engine(
    history: Settings, make_database: Any, replayed: Callable[..., Replayed]
):
    batches, bulk = replayed(history, "batches").dsn, make_database()
    env = {
        **clean_environ(),
        "REDIS_URL": history.redis_dsn(),
        "PAPER_ORDERS_STREAM": history.orders_stream,
        "PAPER_FILLS_STREAM": history.fills_stream,
        "PAPER_MARKS_STREAM": history.marks_stream or "",
        "PAPER_DLQ_STREAM": history.dlq_stream,
        "DATABASE_URL": bulk,
    }
    done = subprocess.run(
        [sys.executable, "-m", "consumer", "replay", "--engine", "bulk"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _tables(bulk) == _tables(batches)
    wrong = subprocess.run(
        [sys.executable, "-m", "consumer", "replay", "--engine", "fast"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert wrong.returncode != 0
    assert "--engine" in wrong.stderr


def test_a_date_left_without_activity_keeps_its_zero_sums_row(
    settings: Settings, redis_client: redis.Redis, replayed: Callable[..., Replayed]
):
    """A bot result (no fill) stamped after midnight makes its row on that date; its request,
    stamped before midnight and read in a later chunk, moves the row's created_at back. The
    batches engine leaves a stats row of zeros on that date (it touched it): so must bulk."""
    after = int(datetime(2099, 3, 2, 0, 5, tzinfo=UTC).timestamp())
    before = int(datetime(2099, 3, 1, 23, 55, tzinfo=UTC).timestamp())
    # Explicit ids: the result first (entries of one millisecond would put orders first).
    redis_client.xadd(
        settings.fills_stream,
        result("MOCK_9", client_id="BTCUSDT-9", filled="0", status="REJECTED", ts=after),
        id="1000-0",
    )
    redis_client.xadd(settings.orders_stream, request("BTCUSDT-9", ts=before), id="2000-0")
    batches = replayed(settings, "batches", chunk_size=1).dsn
    bulk = replayed(settings, "bulk", chunk_size=1).dsn
    expected = _tables(batches)
    assert [r["total_orders"] for r in expected["paper_trading_stats"]] == ["1", "0"]
    assert _tables(bulk) == expected


def _interrupted_after(n: int) -> Callable[[Iterator[RawEntry]], Iterator[RawEntry]]:
    """A source that raises KeyboardInterrupt (Ctrl-C) after ``n`` entries."""

    def wrap(entries: Iterator[RawEntry]) -> Iterator[RawEntry]:
        for done, entry in enumerate(entries):
            if done == n:
                raise KeyboardInterrupt
            yield entry

    return wrap


@pytest.mark.parametrize("engine", replay.ENGINES)
def test_ctrl_c_mid_replay_leaves_the_tables_as_they_were(
    history: Settings, replayed: Callable[..., Replayed], make_database: Any, engine: str
):
    """Interrupted after 700 of ~1,200 entries (several chunks written, by the bulk engine too):
    an empty target stays empty, and with --reset the previous content stays whole."""
    empty = make_database()
    with pytest.raises(KeyboardInterrupt):
        replay.replay(
            history, replay.SourceSpec("redis"), target_dsn=empty, engine=engine, chunk_size=97,
            wrap_source=_interrupted_after(700),
        )  # fmt: skip
    assert all(not table for table in _tables(empty).values())
    previous = replayed(history, "batches").dsn
    expected = _tables(previous)
    assert expected["paper_orders"]
    with pytest.raises(KeyboardInterrupt):
        replay.replay(
            history, replay.SourceSpec("redis"), target_dsn=previous, engine=engine, reset=True,
            chunk_size=97, wrap_source=_interrupted_after(700),
        )  # fmt: skip
    assert _tables(previous) == expected
    # The lock and the connection were released: a replay runs again at once.
    replay.replay(
        history, replay.SourceSpec("redis"), target_dsn=previous, engine=engine, reset=True
    )
    assert _tables(previous) == expected
