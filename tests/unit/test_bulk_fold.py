"""consumer/bulk_fold.py: the bulk replay's parts equal what ``_SYMBOL_STATE`` reads from the
tables (values as DECIMAL(18,8) stores them, exact sums, trades by the stored P&L's sign)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D
from types import SimpleNamespace

from consumer import accounting
from consumer.bulk_fold import BulkBook, PartRow, first_per_key, stored, stored_or_zero
from consumer.fold import FoldStep

T = datetime(2099, 3, 1, 23, 59, tzinfo=UTC)
U = datetime(2099, 3, 2, 0, 30, tzinfo=UTC)


def test_stored_rounds_as_postgresql_numeric():
    assert stored(D("0.000000005")) == D("0.00000001")
    assert stored(D("-0.000000005")) == D("-0.00000001")
    assert stored(D("1.234567894999")) == D("1.23456789")
    assert str(stored(D("2"))) == "2.00000000"
    assert stored_or_zero(None) == 0


def _fill(symbol: str, quantity: str, price: str, fee: str, at: datetime) -> SimpleNamespace:
    return SimpleNamespace(
        symbol=symbol, quantity=D(quantity), price=D(price), fees_usdt=D(fee), timestamp=at
    )


def test_totals_sum_the_stored_values_exactly_and_count_trips_by_stored_sign():
    book = BulkBook()
    step = FoldStep()
    big = _fill("BTCUSDT", "1234567890.123456789", "9999999999.999999999", "0.000000005", T)
    small = _fill("BTCUSDT", "0.1", "3", "0.2", U)
    step.fills = [(None, big, None), (None, small, None)]  # type: ignore[list-item]
    trips = [D("0.000000004"), D("0.000000005"), D("-1"), D("-0.000000004")]
    step.trips = [("f", SimpleNamespace(symbol="BTCUSDT", realized_pnl=r)) for r in trips]  # type: ignore[misc]
    step.fill_effects = [(big, None), (small, None)]  # type: ignore[list-item]
    book.add_step(step)
    part = book.part("BTCUSDT", T, U, {})
    expected_volume = D("1234567890.12345679") * D("10000000000.00000000") + D("0.3")
    assert part.volume == expected_volume  # beyond the default 28 digits, still exact
    assert part.fees == D("0.20000001")
    assert (part.trades, part.winning, part.losing) == (4, 1, 1)  # 4e-9 and -4e-9 store as 0
    assert part.has_position is False
    assert (part.realized, part.unrealized) == (0, 0)
    assert book.stat_dates == {date(2099, 3, 1), date(2099, 3, 2)}


def test_a_part_takes_the_position_as_stored_and_other_symbols_start_empty():
    position = accounting.Position(
        symbol="ETHUSDT", realized_pnl=D("1.000000005"), quantity=D("2"),
        avg_entry_price=D("10"), current_price=D("10.5"),
    )  # fmt: skip
    book = BulkBook()
    part = book.part("ETHUSDT", T, U, {"ETHUSDT": position})
    assert part.has_position is True
    assert part.realized == D("1.00000001")
    assert part.unrealized == stored(position.unrealized_pnl)
    assert (part.trades, part.volume, part.fees) == (0, 0, 0)
    assert part.values()[:3] == ("ETHUSDT", T, U)


def test_first_per_key_keeps_the_first_part_of_a_symbol_and_time():
    a = PartRow("S", T, U, False, D(0), D(0), 0, 0, 0, D(0), D(0))
    b = PartRow("S", datetime(2099, 3, 1, 22, tzinfo=UTC), U, True, D(1), D(0), 1, 1, 0, D(1), D(0))
    c = PartRow("R", T, U, False, D(0), D(0), 0, 0, 0, D(0), D(0))
    assert first_per_key([a, b, c]) == [a, c]
