"""The accounting rules by example: worked examples A-H of accounting.md are the acceptance tests.

Every (q, p, R) triple is compared with Decimal equality, so a value that is off by one unit of the
8th decimal fails. Fill times are one second apart unless a test says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from consumer.accounting import (
    ClosedTrip,
    Fill,
    OpenTrip,
    Position,
    apply_fill,
    apply_fills,
    apply_mark,
    new_position,
)

D = Decimal
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
SYMBOL = "BTCUSDT"
NAIVE = T0.replace(tzinfo=None)  # a time without a zone, which the module must refuse


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fill(side, quantity, price, fee="0", *, time=None, symbol=SYMBOL):
    return Fill(symbol, side, D(quantity), D(price), D(fee), time or T0)


def fee_pct(side, quantity, price, pct="0.001"):
    """A fill whose fee is a share of its notional (example G: 0.1 %)."""
    return fill(side, quantity, price, str(D(pct) * D(quantity) * D(price)))


def run(fills):
    """Apply ``fills`` one second apart from flat; every outcome, in order."""
    position = new_position(SYMBOL)
    outcomes = []
    for i, f in enumerate(fills):
        outcome = apply_fill(position, Fill(f.symbol, f.side, f.quantity, f.price, f.fee, at(i)))
        outcomes.append(outcome)
        position = outcome.position
    return outcomes


def qpr(position: Position) -> tuple[Decimal, Decimal, Decimal]:
    return position.quantity, position.avg_entry_price, position.realized_pnl


def trips_of(outcomes) -> list[ClosedTrip]:
    return [trip for outcome in outcomes for trip in outcome.closed_trips]


# (fills, (q, p, R) after each fill, closed trips as (direction, P&L, reason)) — accounting.md.
EXAMPLES = {
    "A": (
        [fill("BUY", "1", "100"), fill("BUY", "1", "110"), fill("SELL", "1", "120")],
        [("1", "100", "0"), ("2", "105", "0"), ("1", "105", "15")],
        [],
    ),
    "B": (
        [fill("BUY", "2", "100"), fill("SELL", "3", "90")],
        [("2", "100", "0"), ("-1", "90", "-20")],
        [("LONG", "-20", "FLIP")],
    ),
    "C": (
        [fill("SELL", "1", "50", "0.05"), fill("BUY", "1", "40", "0.04")],
        [("-1", "50", "-0.05"), ("0", "50", "9.91")],
        [("SHORT", "9.91", "FLAT")],
    ),
    "D": (
        [fill("BUY", "0.5", "30000"), fill("BUY", "0.25", "31500"), fill("SELL", "0.75", "30900")],
        [("0.5", "30000", "0"), ("0.75", "30500", "0"), ("0", "30500", "300")],
        [("LONG", "300", "FLAT")],
    ),
    "E": (
        [fill("BUY", "1", "100"), fill("SELL", "1", "100", "0.1")],
        [("1", "100", "0"), ("0", "100", "-0.1")],
        [("LONG", "-0.1", "FLAT")],
    ),
    "F": (
        [
            fill("BUY", "100", "8"),
            fill("BUY", "100", "9"),
            fill("SELL", "100", "10"),
            fill("BUY", "150", "11"),
            fill("SELL", "100", "12"),
            fill("SELL", "150", "14"),
        ],
        [
            ("100", "8", "0"),
            ("200", "8.5", "0"),
            ("100", "8.5", "150"),
            ("250", "10", "150"),
            ("150", "10", "350"),
            ("0", "10", "950"),  # flat: p keeps its last value (rule 2)
        ],
        [("LONG", "950", "FLAT")],
    ),
    "G": (
        [
            fee_pct("SELL", "0.5", "60000"),
            fee_pct("BUY", "0.2", "58000"),
            fee_pct("BUY", "0.5", "59000"),
            fee_pct("SELL", "0.2", "61000"),
        ],
        [
            ("-0.5", "60000", "-30"),
            ("-0.3", "60000", "358.4"),
            ("0.2", "59000", "628.9"),
            ("0", "59000", "1016.7"),
        ],
        [("SHORT", "640.7", "FLIP"), ("LONG", "376.0", "FLAT")],
    ),
    "H": (
        [fill("BUY", "1", "100"), fill("SELL", "3", "110"), fill("BUY", "2", "120")],
        [("1", "100", "0"), ("-2", "110", "10"), ("0", "110", "-10")],
        [("LONG", "10", "FLIP"), ("SHORT", "-20", "FLAT")],
    ),
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_worked_example_q_p_r_after_each_fill(name):
    fills, expected, _ = EXAMPLES[name]
    outcomes = run(fills)
    assert [qpr(o.position) for o in outcomes] == [tuple(map(D, row)) for row in expected]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_worked_example_closed_trips(name):
    fills, _, expected = EXAMPLES[name]
    trips = trips_of(run(fills))
    assert [(t.direction, t.realized_pnl, t.reason) for t in trips] == [
        (direction, D(pnl), reason) for direction, pnl, reason in expected
    ]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_worked_example_realized_deltas_add_up_and_trip_is_open_iff_not_flat(name):
    fills, _, _ = EXAMPLES[name]
    outcomes = run(fills)
    assert sum(o.realized_delta for o in outcomes) == outcomes[-1].position.realized_pnl
    assert all((o.position.trip is None) == (o.position.quantity == 0) for o in outcomes)


def test_b_flip_opens_the_rest_at_the_fill_price_as_a_new_trip():
    outcomes = run(EXAMPLES["B"][0])
    after = outcomes[-1].position
    assert after.opened_at == at(1)
    assert after.closed_at is None
    assert after.trip is not None
    assert (after.trip.direction, after.trip.opened_at, after.trip.fills) == ("SHORT", at(1), 1)
    assert (after.trip.entry_quantity, after.trip.realized_pnl) == (D(1), D(0))
    assert (after.entry_trades, after.exit_trades) == (2, 1)  # the flip counts as both


def test_c_and_e_trips_win_and_lose_by_fees():
    (c_trip,) = trips_of(run(EXAMPLES["C"][0]))
    (e_trip,) = trips_of(run(EXAMPLES["E"][0]))
    assert c_trip.realized_pnl > 0
    assert c_trip.fees == D("0.09")
    assert e_trip.realized_pnl < 0
    assert e_trip.fees == D("0.1")


def test_closing_to_flat_sets_closed_at_and_keeps_opened_at():
    outcomes = run(EXAMPLES["D"][0])
    flat = outcomes[-1].position
    assert (flat.opened_at, flat.closed_at) == (at(0), at(2))
    assert (flat.entry_trades, flat.exit_trades) == (2, 1)
    assert (flat.unrealized_pnl, flat.cost_basis, flat.market_value) == (0, 0, 0)


def test_reopening_after_flat_starts_a_new_trip_and_clears_closed_at():
    position, trips, _ = apply_fills(
        new_position(SYMBOL),
        [
            fill("BUY", "1", "100", time=at(0)),
            fill("SELL", "1", "101", time=at(1)),
            fill("SELL", "2", "102", time=at(2)),
        ],
    )
    assert len(trips) == 1
    assert (position.quantity, position.avg_entry_price) == (D(-2), D(102))
    assert (position.opened_at, position.closed_at) == (at(2), None)
    assert position.trip is not None
    assert (position.trip.direction, position.trip.opened_at) == ("SHORT", at(2))


def test_f_trip_report_averages_and_extremes():
    (trip,) = trips_of(run(EXAMPLES["F"][0]))
    assert trip.max_quantity == D(250)
    assert trip.quantity == D(350)
    assert trip.entry_avg_price == D("9.57142857")  # 3350 / 350
    assert trip.exit_avg_price == D("12.28571429")  # 4300 / 350
    assert (trip.fills, trip.opened_at, trip.closed_at) == (6, at(0), at(5))


def test_g_flip_splits_the_fee_pro_rata_and_reports_both_trips():
    outcomes = run(EXAMPLES["G"][0])
    first, second = trips_of(outcomes)
    assert outcomes[2].realized_delta == D("300") - D("29.5")
    assert first.fees == D("30") + D("11.6") + D("17.7")  # 0.3/0.5 of the flip's 29.5
    assert (first.entry_avg_price, first.exit_avg_price) == (D(60000), D(58600))
    assert (first.quantity, first.max_quantity, first.fills) == (D("0.5"), D("0.5"), 3)
    assert (first.opened_at, first.closed_at) == (at(0), at(2))
    assert second.fees == D("11.8") + D("12.2")
    assert (second.entry_avg_price, second.exit_avg_price) == (D(59000), D(61000))
    assert (second.quantity, second.fills, second.opened_at) == (D("0.2"), 2, at(2))
    assert (outcomes[-1].position.entry_trades, outcomes[-1].position.exit_trades) == (2, 3)


def test_g_unrealized_at_mark_59500_after_fill_1():
    position = run(EXAMPLES["G"][0][:1])[0].position
    assert position.current_price == D(60000)  # the fill price is the first mark
    assert position.unrealized_pnl == 0
    marked = apply_mark(position, D(59500), at(0.5))
    assert marked.unrealized_pnl == D(250)
    assert marked.total_pnl == D(220)


def test_h_unrealized_at_mark_105_after_fill_2():
    position = run(EXAMPLES["H"][0][:2])[-1].position
    marked = apply_mark(position, D(105), at(1.5))
    assert marked.unrealized_pnl == D(10)
    assert (marked.cost_basis, marked.market_value) == (D(-220), D(-210))
    assert marked.market_value - marked.cost_basis == marked.unrealized_pnl
    assert marked.total_pnl == D(20)


def test_win_rate_over_g_and_h_is_three_of_four():
    trips = trips_of(run(EXAMPLES["G"][0])) + trips_of(run(EXAMPLES["H"][0]))
    winning = sum(1 for t in trips if t.realized_pnl > 0)
    losing = sum(1 for t in trips if t.realized_pnl < 0)
    assert (winning, losing, len(trips)) == (3, 1, 4)
    assert D(winning) / D(len(trips)) == D("0.75")


# ------------------------------------------------------------------------------------- rounding


def test_unrepresentable_average_is_rounded_to_8_dp():
    (_, second) = run([fill("BUY", "1", "1"), fill("BUY", "2", "2")])
    assert second.position.avg_entry_price == D("1.66666667")


def test_next_fill_starts_from_the_stored_rounded_average():
    outcomes = run([fill("BUY", "1", "1"), fill("BUY", "2", "2"), fill("SELL", "3", "2")])
    # 3 · (2 - 1.66666667), not 3 · (2 - 5/3) = 1: replay from the table gives the same.
    assert outcomes[-1].position.realized_pnl == D("0.99999999")


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        ("0.00000001", "0.00000002", "0.00000002"),  # 1.5e-8 -> 2e-8 (to even)
        ("0.00000002", "0.00000003", "0.00000002"),  # 2.5e-8 -> 2e-8 (half-up would give 3)
    ],
)
def test_average_rounds_half_even(low, high, expected):
    outcomes = run([fill("BUY", "1", low), fill("BUY", "1", high)])
    assert outcomes[-1].position.avg_entry_price == D(expected)


@pytest.mark.parametrize(("exit_price", "expected"), [("0.00000002", "0"), ("0.00000004", "2E-8")])
def test_realized_rounds_half_even(exit_price, expected):
    # 0.5 · 1e-8 = 0.5e-8 -> 0; 0.5 · 3e-8 = 1.5e-8 -> 2e-8
    outcomes = run([fill("BUY", "0.5", "0.00000001"), fill("SELL", "0.5", exit_price)])
    assert outcomes[-1].position.realized_pnl == D(expected)
    assert outcomes[-1].closed_trips[0].realized_pnl == D(expected)


def test_flip_fee_share_is_rounded_and_the_shares_sum_to_the_fee():
    # closing share 0.00000001 · 1/3 = 0.0000000033.. -> 0; the opening trip gets all of it
    outcomes = run([fill("BUY", "1", "10"), fill("SELL", "3", "10", "0.00000001")])
    (closed,) = outcomes[-1].closed_trips
    opened = outcomes[-1].position.trip
    assert opened is not None
    assert (closed.fees, opened.fees) == (D(0), D("0.00000001"))


def test_fill_inputs_are_rounded_to_8_dp_like_the_fills_table():
    (outcome,) = run([fill("BUY", "1.000000005", "100.000000015", "0.000000025")])
    assert outcome.position.quantity == D("1.00000000")  # half-even: ...0|5 -> 0
    assert outcome.position.avg_entry_price == D("100.00000002")
    assert outcome.position.realized_pnl == D("-0.00000002")


# ---------------------------------------------------------------------------------------- marks


def test_a_stale_mark_is_ignored():
    position = apply_mark(new_position(SYMBOL), D(100), at(10))
    assert apply_mark(position, D(90), at(9)) == position


def test_a_newer_mark_replaces_and_an_equal_time_mark_wins_as_the_later_call():
    position = apply_mark(new_position(SYMBOL), D(100), at(10))
    assert apply_mark(position, D(101), at(11)).current_price == D(101)
    same_time = apply_mark(position, D(99), at(10))
    assert (same_time.current_price, same_time.mark_time) == (D(99), at(10))


def test_a_fill_older_than_the_mark_moves_the_position_but_not_the_price():
    marked = apply_mark(new_position(SYMBOL), D(120), at(10))
    outcome = apply_fill(marked, fill("BUY", "1", "100", time=at(5)))
    assert outcome.position.quantity == D(1)
    assert (outcome.position.current_price, outcome.position.mark_time) == (D(120), at(10))
    assert outcome.position.unrealized_pnl == D(20)


def test_marks_and_fills_give_the_same_price_whatever_order_they_arrive_in():
    buy = fill("BUY", "1", "100", time=at(1))
    fill_first = apply_mark(apply_fill(new_position(SYMBOL), buy).position, D(105), at(2))
    mark_first = apply_fill(apply_mark(new_position(SYMBOL), D(105), at(2)), buy).position
    assert fill_first == mark_first


def test_a_flat_or_unpriced_position_has_no_unrealized_pnl():
    fresh = new_position(SYMBOL)
    assert (fresh.quantity, fresh.avg_entry_price, fresh.trip) == (0, 0, None)
    assert (fresh.unrealized_pnl, fresh.cost_basis, fresh.market_value) == (0, 0, None)
    assert fresh.total_pnl == 0


# ---------------------------------------------------------------------------------- persistence


def through_json(metadata):
    """What JSONB does to the metadata: a JSON text round trip."""
    return json.loads(json.dumps(metadata))


def open_position() -> Position:
    outcomes = run([fill("BUY", "0.5", "30000", "0.015"), fill("SELL", "0.2", "30100", "0.006")])
    return apply_mark(outcomes[-1].position, D("30050.5"), at(7))


def test_metadata_round_trips_the_open_trip_and_mark_time_exactly():
    position = open_position()
    metadata = through_json(position.to_metadata())
    assert set(metadata) == {"accounting_version", "mark_time", "trip"}
    rebuilt = Position.from_metadata(
        metadata,
        symbol=position.symbol,
        quantity=position.quantity,
        avg_entry_price=position.avg_entry_price,
        realized_pnl=position.realized_pnl,
        current_price=position.current_price,
        entry_trades=position.entry_trades,
        exit_trades=position.exit_trades,
        opened_at=position.opened_at,
        closed_at=position.closed_at,
    )
    assert rebuilt == position
    assert rebuilt.to_metadata() == position.to_metadata()


@pytest.mark.parametrize("flat", [False, True])
def test_row_round_trip(flat):
    position = open_position()
    if flat:
        position = apply_fill(position, fill("SELL", "0.3", "30200", time=at(8))).position
    row = position.to_row()
    row["metadata"] = through_json(row["metadata"])
    row["total_pnl_usdt"] = position.total_pnl  # a real row also has the generated column
    assert Position.from_row(row) == position
    assert row["unrealized_pnl_usdt"] + row["realized_pnl_usdt"] == position.total_pnl


def test_row_values_with_trailing_zeros_read_back_equal():
    position = open_position()
    row = position.to_row()
    row["quantity"] = D("0.30000000")  # how DECIMAL(18,8) returns it
    assert Position.from_row(row) == position


def test_an_open_row_without_metadata_rebuilds_its_trip_at_the_next_fill():
    legacy = Position(
        symbol=SYMBOL, quantity=D(2), avg_entry_price=D(10), realized_pnl=D(5), opened_at=at(0)
    )
    outcome = apply_fill(legacy, fill("SELL", "2", "12", time=at(1)))
    (trip,) = outcome.closed_trips
    assert (trip.direction, trip.entry_avg_price, trip.exit_avg_price) == ("LONG", D(10), D(12))
    assert (trip.realized_pnl, trip.opened_at) == (D(4), at(0))
    assert outcome.position.realized_pnl == D(9)


def test_malformed_metadata_is_a_value_error():
    metadata = open_position().to_metadata()
    metadata["trip"]["fees"] = 0.1  # a binary float: not what this module writes
    with pytest.raises(ValueError, match="decimal string"):
        Position.from_metadata(
            metadata, symbol=SYMBOL, quantity=D(1), avg_entry_price=D(1), realized_pnl=D(0)
        )


# -------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("bad_fill", "message"),
    [
        (fill("BUY", "0", "100"), "quantity"),
        (fill("BUY", "-1", "100"), "quantity"),
        (fill("BUY", "0.000000004", "100"), "quantity"),  # rounds to 0 at 8 dp
        (fill("BUY", "NaN", "100"), "quantity"),
        (fill("BUY", "1", "0"), "price"),
        (fill("BUY", "1", "-100"), "price"),
        (fill("BUY", "1", "Infinity"), "price"),
        (fill("BUY", "1", "100", "-0.01"), "fee"),
        (fill("BUY", "1", "100", symbol="ETHUSDT"), "ETHUSDT"),
        (Fill(SYMBOL, "HOLD", D(1), D(100), D(0), T0), "side"),  # type: ignore[arg-type]
        (fill("BUY", "1", "100", time=NAIVE), "timezone"),
    ],
)
def test_apply_fill_refuses_invalid_fills(bad_fill, message):
    with pytest.raises(ValueError, match=message):
        apply_fill(new_position(SYMBOL), bad_fill)


@pytest.mark.parametrize("price", ["0", "-1", "NaN"])
def test_apply_mark_refuses_a_non_positive_price(price):
    with pytest.raises(ValueError, match="price"):
        apply_mark(new_position(SYMBOL), D(price), T0)


def test_apply_mark_refuses_a_naive_time():
    with pytest.raises(ValueError, match="timezone"):
        apply_mark(new_position(SYMBOL), D(1), NAIVE)


# accounting.py builds each new Position / OpenTrip / Fill field by field (dataclasses.replace
# cost a third of the fold). A field added to one of them must be carried by every builder:
# _open_or_increase, _reduce, _flip, _marked, _trip_entry, _trip_exit, _validated.
def test_the_field_by_field_builders_know_every_field() -> None:
    assert [f.name for f in dataclasses.fields(Position)] == [
        "symbol", "quantity", "avg_entry_price", "realized_pnl", "current_price", "mark_time",
        "entry_trades", "exit_trades", "opened_at", "closed_at", "trip",
    ]  # fmt: skip
    assert [f.name for f in dataclasses.fields(OpenTrip)] == [
        "direction", "opened_at", "realized_pnl", "fees", "fills", "max_quantity",
        "entry_quantity", "entry_notional", "exit_quantity", "exit_notional",
    ]  # fmt: skip
    assert [f.name for f in dataclasses.fields(Fill)] == [
        "symbol", "side", "quantity", "price", "fee", "time",
    ]  # fmt: skip


def test_a_mark_changes_the_price_and_its_time_and_nothing_else() -> None:
    opened = apply_fill(new_position(SYMBOL), Fill(SYMBOL, "BUY", D(2), D(100), D("0.1"), T0))
    later = T0 + timedelta(minutes=1)
    marked = apply_mark(opened.position, D(105), later)
    assert marked == dataclasses.replace(opened.position, current_price=D(105), mark_time=later)
