"""Concurrent batches of different shards (separate transactions) and the snapshot rows.

Two real connections, each inside ``db.batch.write_rows`` as a shard's batch: one batch creates
the row 11:00 (its symbol crosses it), the other changes a symbol whose clock is still before
11:00 (so the row must include that change). Whichever commits first, the row ends up with both
(the creation lock on the global clock row, docs/scaling.md "P&L snapshots").
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from decimal import Decimal as D

import psycopg
import pytest
from psycopg.rows import dict_row

from consumer import db, retention
from consumer.db.batch import write_rows
from consumer.events import FillEvent
from consumer.fold import BatchResult
from consumer.records import EntryKey, ParsedEntry, RawEntry
from tests.support.pipeline import rows


def at(hhmm: str) -> datetime:
    return datetime.fromisoformat(f"2026-11-20T{hhmm}:00+00:00").astimezone(UTC)


def fill(n: int, symbol: str, when: str, qty: str = "1", price: str = "100") -> ParsedEntry:
    event = FillEvent(fill_id=f"f{n}", order_id=f"o{n}", symbol=symbol, side="BUY",
                      quantity=D(qty), price=D(price), timestamp=at(when))  # fmt: skip
    return ParsedEntry(RawEntry(EntryKey(f"fills.{symbol}", f"{n}-0"), {"n": str(n)}), event)


def write(dsn: str, items: list[ParsedEntry]) -> None:
    target = db.PostgresStore(dsn, group="g")
    target.open()
    try:
        target.write_batch(items)
    finally:
        target.close()


def open_batch(dsn: str, items: list[ParsedEntry]) -> psycopg.Connection:
    """A batch written but not committed (its locks held)."""
    conn = psycopg.connect(dsn, row_factory=dict_row)
    write_rows(conn, items, BatchResult(), group="g", archive=False)
    return conn


def in_thread(dsn: str, items: list[ParsedEntry]) -> threading.Thread:
    thread = threading.Thread(target=write, args=(dsn, items))
    thread.start()
    return thread


@pytest.mark.parametrize("first", ["creator", "changer"])
def test_a_created_row_includes_a_concurrent_change(db_url, first):
    # AAA's clock 10:30, BBB's 10:40: both before 11:00.
    write(db_url, [fill(1, "AAAUSDT", "10:30"), fill(2, "BBBUSDT", "10:40")])
    creates = [fill(3, "AAAUSDT", "11:10")]  # crosses 11:00 by AAA's clock: creates the row
    changes = [fill(4, "BBBUSDT", "10:50", qty="2")]  # BBB still before 11:00: changes the row
    held, other = (creates, changes) if first == "creator" else (changes, creates)
    conn = open_batch(db_url, held)
    try:
        thread = in_thread(db_url, other)
        time.sleep(0.5)
        assert thread.is_alive()  # waits for the held batch: the global clock row lock
        conn.commit()
    finally:
        conn.close()
    thread.join(10)
    assert not thread.is_alive()
    (row,) = rows(db_url, "SELECT snapshot_time, total_volume_usdt, symbol_pnl "
                          "FROM paper_pnl_snapshots")  # fmt: skip
    assert row["snapshot_time"] == at("11:00")
    # AAA before its 11:10 fill (100) + BBB with both fills (100 + 200).
    assert row["total_volume_usdt"] == 400
    assert {s: b["volume"] for s, b in row["symbol_pnl"].items()} == {
        "AAAUSDT": 100, "BBBUSDT": 300,
    }  # fmt: skip


def test_two_batches_refreshing_one_row_both_count(db_url):
    # Row 11:00 exists; AAA and BBB both still before it; two batches change each concurrently.
    write(db_url, [fill(1, "AAAUSDT", "10:30"), fill(2, "BBBUSDT", "10:40"),
                   fill(3, "CCCUSDT", "10:00"), fill(4, "CCCUSDT", "11:05")])  # fmt: skip
    conn = open_batch(db_url, [fill(5, "AAAUSDT", "10:45")])
    try:
        thread = in_thread(db_url, [fill(6, "BBBUSDT", "10:50")])
        time.sleep(0.5)
        assert thread.is_alive()  # waits for the row lock of 11:00
        conn.commit()
    finally:
        conn.close()
    thread.join(10)
    assert not thread.is_alive()
    (row,) = rows(db_url, "SELECT total_volume_usdt FROM paper_pnl_snapshots")
    assert row["total_volume_usdt"] == 500  # AAA 200, BBB 200, CCC 100 (before 11:05)


def test_prune_drops_only_parts_no_row_can_need(db_url):
    write(db_url, [fill(1, "AAAUSDT", "10:30"), fill(2, "BBBUSDT", "10:00"),
                   fill(3, "AAAUSDT", "11:10"), fill(4, "AAAUSDT", "12:10"),
                   fill(5, "BBBUSDT", "13:05")])  # fmt: skip
    parts = "SELECT symbol, until_time FROM paper_pnl_snapshot_parts ORDER BY 1, 2"
    assert [(r["symbol"], r["until_time"]) for r in rows(db_url, parts)] == [
        ("AAAUSDT", at("11:10")), ("AAAUSDT", at("12:10")), ("BBBUSDT", at("13:05")),
    ]  # fmt: skip
    done = retention.prune(db_url, at("12:30"))
    assert done.rows["hourly_snapshots"] == 2  # 11:00, 12:00
    # Horizon: least(cutoff, smallest symbol clock) = AAA's 12:10. BBB's part (10:00, 13:05]
    # ends after it: kept (the row 13:00 may still be recomputed).
    assert done.rows["snapshot_parts"] == 2
    assert [(r["symbol"], r["until_time"]) for r in rows(db_url, parts)] == [
        ("BBBUSDT", at("13:05"))
    ]
    assert rows(db_url, "SELECT parts_since FROM paper_pnl_clock") == [{"parts_since": at("12:10")}]
    # A late AAA event (11:30) changes the row 13:00 (AAA's clock 12:10 < 13:00), which still
    # finds BBB's part: AAA 4 x 100 + BBB before 13:05 (100).
    write(db_url, [fill(6, "AAAUSDT", "11:30")])
    volume = "SELECT snapshot_time, total_volume_usdt FROM paper_pnl_snapshots"
    assert rows(db_url, volume) == [{"snapshot_time": at("13:00"), "total_volume_usdt": 500}]
