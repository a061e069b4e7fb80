"""Properties of the accounting fold over random fill sequences on one symbol.

The generator tracks the running quantity so that closes to exactly 0 and flips (which random
quantities with 8 dp would almost never hit) make up a good share of the fills.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.accounting import Fill, Position, apply_fill, apply_fills, apply_mark, new_position

SYMBOL = "ETHUSDT"
T0 = datetime(2024, 3, 1, tzinfo=UTC)
# database=None: no .hypothesis directory left in the working tree.
FAST = settings(max_examples=200, deadline=None, database=None)


def dec8(low: int, high: int):
    """Decimals with up to 8 dp between low·1e-8 and high·1e-8."""
    return st.integers(low, high).map(lambda units: Decimal(units).scaleb(-8))


QUANTITIES = st.one_of(st.integers(1, 10).map(Decimal), dec8(1, 100 * 10**8))
PRICES = st.one_of(st.integers(1, 100_000).map(Decimal), dec8(1, 100_000 * 10**8))
FEES = st.one_of(st.just(Decimal(0)), dec8(0, 10 * 10**8))


# One step: (kind, side, quantity, price, fee, seconds after the previous fill; 0 = same time).
STEPS = st.tuples(
    st.sampled_from(["any", "any", "close", "flip"]),
    st.sampled_from(["BUY", "SELL"]),
    QUANTITIES,
    PRICES,
    FEES,
    st.integers(0, 3),
)


def side_and_size(kind, side, quantity, held):
    """ "close" and "flip" take their side and size from the running q (when not flat)."""
    if held == 0 or kind == "any":
        return side, quantity
    extra = quantity if kind == "flip" else 0
    return ("SELL" if held > 0 else "BUY"), abs(held) + extra


def to_fills(steps):
    fills, held, time = [], Decimal(0), T0
    for kind, drawn_side, drawn_quantity, price, fee, seconds in steps:
        side, quantity = side_and_size(kind, drawn_side, drawn_quantity, held)
        time += timedelta(seconds=seconds)
        fills.append(Fill(SYMBOL, side, quantity, price, fee, time))
        held += quantity if side == "BUY" else -quantity
    return fills


# A flat list of tuples draws about 4x faster than a @composite with a draw per field.
FILL_SEQUENCES = st.lists(STEPS, min_size=1, max_size=25).map(to_fills)


def signed(fill: Fill) -> Decimal:
    return fill.quantity if fill.side == "BUY" else -fill.quantity


def sign(value) -> int:
    return (value > 0) - (value < 0)


def fold(fills):
    """Every position along the way, and every closed trip."""
    position, positions, trips = new_position(SYMBOL), [], []
    for fill in fills:
        outcome = apply_fill(position, fill)
        position = outcome.position
        positions.append(position)
        trips.extend(outcome.closed_trips)
    return positions, trips


def through_database(position: Position) -> Position:
    """What a batch boundary does: write the row (metadata as JSONB text), read it back."""
    row = position.to_row()
    row["metadata"] = json.loads(json.dumps(row["metadata"]))
    row = {k: Decimal(str(v)) if isinstance(v, Decimal) else v for k, v in row.items()}
    return Position.from_row(row)


@FAST
@given(FILL_SEQUENCES)
def test_a_realized_equals_closed_trips_plus_the_open_trip(fills):
    positions, trips = fold(fills)
    final = positions[-1]
    open_part = final.trip.realized_pnl if final.trip is not None else 0
    assert final.realized_pnl == sum(t.realized_pnl for t in trips) + open_part
    assert final.realized_pnl == apply_fills(new_position(SYMBOL), fills)[2]


@FAST
@given(FILL_SEQUENCES)
def test_b_a_trip_closes_each_time_q_returns_to_0_or_changes_sign(fills):
    _, trips = fold(fills)
    held, expected = Decimal(0), 0
    for fill in fills:
        after = held + signed(fill)
        if held != 0 and sign(after) != sign(held):
            expected += 1
        held = after
    assert len(trips) == expected
    assert all(t.quantity > 0 and t.entry_avg_price > 0 and t.exit_avg_price > 0 for t in trips)


@FAST
@given(FILL_SEQUENCES, st.lists(st.integers(0, 25), max_size=6))
def test_c_folding_in_chunks_through_the_database_equals_one_fold(fills, cuts):
    whole, whole_trips, whole_realized = apply_fills(new_position(SYMBOL), fills)
    bounds = [0, *sorted({c for c in cuts if c < len(fills)}), len(fills)]
    position, trips, realized = new_position(SYMBOL), [], Decimal(0)
    for start, end in itertools.pairwise(bounds):
        position, chunk_trips, chunk_realized = apply_fills(position, fills[start:end])
        trips += chunk_trips
        realized += chunk_realized
        position = through_database(position)
    assert position == whole
    assert position.to_row() == whole.to_row()
    assert (trips, realized) == (whole_trips, whole_realized)


class CostLedger:
    """Independent reference: exact Fractions, no rounding, the open position kept as a signed
    cost (Σ signed quantity · price) instead of an average price.

    ``error_bound`` bounds how far the rounded module may drift from it: each stored average may
    move 1e-8 per increasing fill (rounding, plus a possible double rounding at 50 digits), every
    later close of x then differs by x·(that drift), and each realized amount is rounded once.
    """

    STEP = Fraction(1, 10**8)

    def __init__(self) -> None:
        self.quantity = self.cost = self.realized = Fraction(0)
        self.average_drift = self.error_bound = Fraction(0)

    def apply(self, fill: Fill) -> None:
        d, price = Fraction(signed(fill)), Fraction(fill.price)
        self.realized -= Fraction(fill.fee)
        if self.quantity == 0 or sign(d) == sign(self.quantity):
            self.average_drift += self.STEP if self.quantity != 0 else -self.average_drift
            self.cost += d * price
            self.quantity += d
            return
        average = self.cost / self.quantity
        closing = min(abs(d), abs(self.quantity))
        self.realized += closing * (price - average) * sign(self.quantity)
        self.error_bound += self.STEP / 2 + closing * self.average_drift
        remaining = self.quantity + d
        if sign(remaining) == sign(self.quantity):
            self.cost = remaining * average
        else:  # flat, or flipped: what is left was opened at this price, exactly
            self.cost, self.average_drift = remaining * price, Fraction(0)
        self.quantity = remaining


@FAST
@given(FILL_SEQUENCES)
def test_d_an_exact_reference_ledger_agrees(fills):
    positions, _ = fold(fills)
    ledger = CostLedger()
    for fill, position in zip(fills, positions, strict=True):
        ledger.apply(fill)
        assert Fraction(position.quantity) == ledger.quantity
        assert abs(Fraction(position.realized_pnl) - ledger.realized) <= ledger.error_bound
        if ledger.quantity != 0:
            drift = Fraction(position.avg_entry_price) - ledger.cost / ledger.quantity
            assert abs(drift) <= ledger.average_drift + ledger.STEP / 2


@FAST
@given(FILL_SEQUENCES)
def test_e_quantity_is_the_sum_of_signed_fills(fills):
    positions, _ = fold(fills)
    running = Decimal(0)
    for fill, position in zip(fills, positions, strict=True):
        running += signed(fill)
        assert position.quantity == running


@FAST
@given(FILL_SEQUENCES)
def test_f_the_average_entry_price_stays_positive_after_the_first_fill(fills):
    positions, _ = fold(fills)
    assert all(p.avg_entry_price > 0 for p in positions)
    assert all((p.trip is None) == (p.quantity == 0) for p in positions)


@FAST
@given(
    st.lists(st.tuples(st.booleans(), PRICES), min_size=1, max_size=20),
    st.randoms(use_true_random=False),
)
def test_marks_and_fills_interleaved_in_any_order_keep_the_newest_price(events, rnd):
    """Marks and fills come from two streams read in batches: only event time decides."""
    timed = [
        (T0 + timedelta(seconds=i), is_fill, price) for i, (is_fill, price) in enumerate(events)
    ]
    fills = [Fill(SYMBOL, "BUY", Decimal(1), p, Decimal(0), t) for t, f, p in timed if f]
    marks = [(p, t) for t, f, p in timed if not f]
    # a random interleaving that keeps each stream's own order
    order = [True] * len(fills) + [False] * len(marks)
    rnd.shuffle(order)
    position, fill_iter, mark_iter = new_position(SYMBOL), iter(fills), iter(marks)
    for is_fill in order:
        if is_fill:
            position = apply_fill(position, next(fill_iter)).position
        else:
            position = apply_mark(position, *next(mark_iter))
    newest_time, _, newest_price = timed[-1]
    assert (position.current_price, position.mark_time) == (newest_price, newest_time)
