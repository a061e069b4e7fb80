"""Property: HOURLY/DAILY snapshots do not depend on how symbols' events interleave.

Hypothesis draws, per symbol, a sequence of fills with times that are not monotone (late events,
jumps over many hours and midnights), then several interleavings of those sequences (as a
sharded run would apply them, in any relative order) cut into random batches. Through the real
store (PostgresStore.write_batch, real PostgreSQL) every interleaving must give (a) the rows of
the independent reference (tests/support/snapshot_reference.py) and (b) identical rows in every
column (ids and metadata aside), whatever the batch cuts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer import db
from consumer.db.replay_target import RESET_REPLAY_TABLES
from consumer.events import FillEvent, MarkEvent
from consumer.records import EntryKey, ParsedEntry, RawEntry
from tests.support import snapshot_reference as ref
from tests.support.pipeline import SNAPSHOT_QUERIES, rows

START = datetime(2026, 11, 20, 21, 5, tzinfo=UTC)
SYMBOLS = ["AAAUSDT", "BBBUSDT", "CCCUSDT"]

FILL = st.tuples(
    st.integers(0, 60 * 60),  # minutes after START: up to 2.5 days, in any order
    st.sampled_from(["BUY", "SELL"]),
    st.integers(1, 500).map(lambda n: D(n) / 100),
    st.integers(9000, 11000).map(lambda n: D(n) / 100),
    st.sampled_from([D(0), D("0.01"), D("0.33333333")]),
)
SEQUENCES = st.fixed_dictionaries({s: st.lists(FILL, max_size=8) for s in SYMBOLS})
# Marks between the fills: (index of the fill they follow, minutes after START, price).
MARKS = st.fixed_dictionaries(
    {s: st.lists(st.tuples(st.integers(0, 8), st.integers(0, 3600), st.integers(9000, 11000)),
                 max_size=4) for s in SYMBOLS}
)  # fmt: skip
# An interleaving: which symbol's next event comes next (drawn as keys to sort by), and batch cuts.
ORDER = st.tuples(st.lists(st.integers(0, 10**6), min_size=30, max_size=30),
                  st.lists(st.integers(1, 7), min_size=1, max_size=30))  # fmt: skip


def _entries(sequences, marks) -> dict[str, list[ParsedEntry]]:
    out: dict[str, list[ParsedEntry]] = {}
    for symbol, fills in sequences.items():
        out[symbol] = []
        for n, (_, minutes, price) in enumerate(marks[symbol]):
            event = MarkEvent(symbol=symbol, price=D(price) / 100,
                              timestamp=START + timedelta(minutes=minutes))  # fmt: skip
            raw = RawEntry(EntryKey(f"marks.{symbol}", f"{n + 1}-0"), {"symbol": symbol})
            out[symbol].append(ParsedEntry(raw, event))
        for k, (minutes, side, qty, price, fee) in enumerate(fills):
            event = FillEvent(fill_id=f"{symbol}-{k}", order_id=f"o-{symbol}-{k}", symbol=symbol,
                              side=side, quantity=qty, price=price, fees_usdt=fee,
                              timestamp=START + timedelta(minutes=minutes))  # fmt: skip
            raw = RawEntry(EntryKey(f"fills.{symbol}", f"{k + 1}-0"), {"fill_id": event.fill_id})
            mark_count = sum(1 for after, _, _ in marks[symbol] if after <= k)
            out[symbol].insert(k + mark_count, ParsedEntry(raw, event))
    return out


def _interleave(per_symbol: dict[str, list[ParsedEntry]], keys: list[int]) -> list[ParsedEntry]:
    """Merge the per-symbol lists keeping each one's order; ``keys`` decides who goes next."""
    queues = {s: list(items) for s, items in per_symbol.items() if items}
    out: list[ParsedEntry] = []
    step = 0
    while queues:
        names = sorted(queues)
        symbol = names[keys[step % len(keys)] % len(names)]
        out.append(queues[symbol].pop(0))
        if not queues[symbol]:
            del queues[symbol]
        step += 1
    return out


def _run(dsn: str, items: list[ParsedEntry], cuts: list[int]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(RESET_REPLAY_TABLES)
    target = db.PostgresStore(dsn, group="prop", start_balance=D(1000))
    target.open()
    try:
        pos, k = 0, 0
        while pos < len(items):
            size = cuts[k % len(cuts)]
            target.write_batch(items[pos : pos + size])
            pos, k = pos + size, k + 1
    finally:
        target.close()


def _as_reference(dsn: str) -> dict[tuple[datetime, str], ref.RefSnapshot]:
    got = {}
    for r in rows(dsn, "SELECT snapshot_time, snapshot_type, total_volume_usdt, total_fees_usdt, "
                       "ARRAY(SELECT key FROM jsonb_each(symbol_pnl) ORDER BY key) AS symbols, "
                       "ARRAY(SELECT (value->>'volume')::numeric FROM jsonb_each(symbol_pnl) "
                       "ORDER BY key) AS volumes FROM paper_pnl_snapshots"):  # fmt: skip
        got[(r["snapshot_time"], r["snapshot_type"])] = ref.RefSnapshot(
            r["total_volume_usdt"],
            r["total_fees_usdt"],
            dict(zip(r["symbols"], r["volumes"], strict=True)),
        )
    return got


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequences=SEQUENCES, marks=MARKS, orders=st.lists(ORDER, min_size=2, max_size=3))
def test_snapshots_are_the_same_for_every_interleaving(sequences, marks, orders, make_database):
    dsn = make_database()
    per_symbol = _entries(sequences, marks)
    expected = ref.all_snapshots({
        s: [ref.RefFillAt(e.event.timestamp, e.event.quantity, e.event.price, e.event.fees_usdt)
            if isinstance(e.event, FillEvent) else ref.RefMarkAt(e.event.timestamp)
            for e in entries]
        for s, entries in per_symbol.items()
    })  # fmt: skip
    first = None
    for keys, cuts in orders:
        _run(dsn, _interleave(per_symbol, keys), cuts)
        assert _as_reference(dsn) == expected
        got = rows(dsn, SNAPSHOT_QUERIES["snapshots"])
        if first is None:
            first = got
        assert got == first
