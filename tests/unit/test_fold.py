"""The pure accounting fold (``consumer/fold.py``), without any database.

The fold is what every writer shares (live batches, replay, the in-memory twin), so its own
promises are checked here directly: the rows it decides do not depend on where a history is cut
into steps, a stored fill is never applied again, a placeholder carries its order's fills, and a
step reports each row once, only when it changed.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer import accounting, step_terms
from consumer.daily_sums import COLUMNS, BatchSums, DaySums
from consumer.dialect import OrderRequestEvent, OrderResultEvent
from consumer.events import FillEvent, MarkEvent, OrderEvent, OrderStatus, Side
from consumer.fold import BatchResult, FillVersion, Fold
from consumer.orders import PLACEHOLDER_KEY, apply_order_event
from consumer.records import EntryKey, ParsedEntry, RawEntry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def entry(n: int, event: OrderEvent | FillEvent | MarkEvent) -> ParsedEntry:
    return ParsedEntry(RawEntry(EntryKey("s", f"{n}-0"), {}), event)


def order(oid: str, t: int, **kw: object) -> OrderEvent:
    return OrderEvent(order_id=oid, timestamp=T0 + timedelta(seconds=t), **kw)  # type: ignore[arg-type]


def fill(fid: str, oid: str, t: int, qty: str = "1", price: str = "100", **kw: object) -> FillEvent:
    return FillEvent(
        fill_id=fid,
        order_id=oid,
        symbol=kw.pop("symbol", "BTCUSDT"),  # type: ignore[arg-type]
        quantity=D(qty),
        price=D(price),
        timestamp=kw.pop("timestamp", T0 + timedelta(seconds=t)),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def fold_all(steps: list[list[ParsedEntry]]) -> tuple[Fold, BatchResult, list[str]]:
    fold = Fold({}, {}, set())
    result = BatchResult()
    applied: list[str] = []
    for items in steps:
        step = fold.apply(items, result)
        applied.extend(f.fill_id for _, f, _ in step.fills)
    return fold, result, applied


def test_a_fill_before_its_order_makes_a_placeholder_that_carries_every_fill():
    items = [
        entry(1, fill("f1", "o1", 10, qty="0.4", side="BUY")),
        entry(2, fill("f2", "o1", 5, qty="0.6", side="BUY")),
    ]
    fold, _, applied = fold_all([items])
    placeholder = fold.orders["o1"]
    assert placeholder.metadata == {PLACEHOLDER_KEY: "f1"}
    assert placeholder.quantity == D(1)  # 0.4 + 0.6
    assert placeholder.created_at == T0 + timedelta(seconds=5)  # the earliest fill
    assert applied == ["f1", "f2"]
    assert fold.positions["BTCUSDT"].quantity == D(1)


def test_the_real_order_replaces_its_placeholder():
    items = [
        entry(1, fill("f1", "o1", 10, side="BUY")),
        entry(2, order("o1", 1, symbol="BTCUSDT", side="BUY", quantity=D(2), status="SUBMITTED")),
    ]
    fold, _, _ = fold_all([items])
    row = fold.orders["o1"]
    assert not row.is_placeholder
    assert row.quantity == D(2)
    assert row.status is OrderStatus.SUBMITTED


def test_a_stored_fill_is_a_duplicate_and_moves_nothing():
    position = accounting.new_position("BTCUSDT")
    fold = Fold({}, {"BTCUSDT": position}, {"f1"})
    result = BatchResult()
    step = fold.apply([entry(1, fill("f1", "o1", 1, side="BUY"))], result)
    assert result.fills_duplicate == 1
    assert step.fills == []
    assert step.positions == []
    assert step.orders == []


def test_a_fill_without_side_for_an_unknown_order_is_rejected_with_its_reason():
    result = BatchResult()
    Fold({}, {}, set()).apply([entry(1, fill("f1", "o1", 1))], result)
    ((_, reason),) = result.rejected
    assert "has no side and its order 'o1' is unknown" in reason


def test_a_step_reports_each_row_once_and_only_when_it_changed():
    fold = Fold({}, {}, set())
    result = BatchResult()
    first = fold.apply(
        [
            entry(1, order("o1", 1, symbol="BTCUSDT", side="BUY", quantity=D(1))),
            entry(2, order("o1", 2, status="SUBMITTED")),
            entry(3, fill("f1", "o1", 3)),
            entry(4, MarkEvent(symbol="BTCUSDT", price=D(110), timestamp=T0)),
        ],
        result,
    )
    assert [o.order_id for o in first.orders] == ["o1"]
    assert [p.symbol for p in first.positions] == ["BTCUSDT"]
    # The same events again: nothing changes, nothing to write.
    again = fold.apply([entry(5, order("o1", 2, status="SUBMITTED"))], result)
    assert again.orders == []
    assert again.positions == []
    assert again.fills == []


def test_a_mark_for_a_symbol_never_traded_moves_nothing():
    step = Fold({}, {}, set()).apply(
        [entry(1, MarkEvent(symbol="ETHUSDT", price=D(5), timestamp=T0))], BatchResult()
    )
    assert step.positions == []


# A history of contract events over two orders and one symbol: order creations and updates,
# fills (repeated ids, before their order, with or without side) and marks.
_event = st.one_of(
    st.builds(
        lambda oid, t, qty: order(oid, t, symbol="BTCUSDT", side="BUY", quantity=D(qty)),
        st.sampled_from(["o1", "o2"]),
        st.integers(0, 50),
        st.sampled_from(["1", "2", "3"]),
    ),
    st.builds(
        lambda oid, t, status: order(oid, t, status=status),
        st.sampled_from(["o1", "o2"]),
        st.integers(0, 50),
        st.sampled_from(["SUBMITTED", "FILLED", "CANCELLED"]),
    ),
    st.builds(
        lambda fid, oid, t, qty, side: fill(fid, oid, t, qty=qty, side=side),
        st.sampled_from(["f1", "f2", "f3", "f4"]),
        st.sampled_from(["o1", "o2"]),
        st.integers(0, 50),
        st.sampled_from(["0.5", "1"]),
        st.sampled_from([None, "BUY", "SELL"]),
    ),
    st.builds(
        lambda t, price: MarkEvent(
            symbol="BTCUSDT", price=D(price), timestamp=T0 + timedelta(seconds=t)
        ),
        st.integers(0, 50),
        st.sampled_from(["90", "100", "120"]),
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_event, max_size=25), st.lists(st.integers(0, 25), max_size=5))
def test_where_a_history_is_cut_into_steps_does_not_change_the_rows(events, cuts):
    items = [entry(n, e) for n, e in enumerate(events)]
    whole, whole_result, whole_fills = fold_all([items])
    bounds = sorted({0, len(items), *(min(c, len(items)) for c in cuts)})
    steps = [items[a:b] for a, b in itertools.pairwise(bounds)]
    cut, cut_result, cut_fills = fold_all(steps)
    assert cut.orders == whole.orders
    assert cut.positions == whole.positions
    assert cut_fills == whole_fills
    assert [r for _, r in cut_result.rejected] == [r for _, r in whole_result.rejected]
    assert cut_result.fills_duplicate == whole_result.fills_duplicate
    assert cut_result.closed_trips == whole_result.closed_trips


def test_an_identical_redelivery_is_silent_a_conflicting_one_rejected_with_both_versions():
    result = BatchResult()
    first = fill("f1", "o1", 1, side="BUY")
    Fold({}, {}, set()).apply(
        [
            entry(1, first),
            entry(2, fill("f1", "o1", 1, side="BUY")),
            entry(3, fill("f1", "o1", 1, price="101", side="BUY")),
        ],
        result,
    )
    assert result.fills_duplicate == 1
    assert result.conflicts == 1
    ((_, reason),) = result.rejected
    assert reason.startswith("conflicts with stored fill 'f1': stored order 'o1' BUY 1 BTCUSDT")
    assert "@ 100, fee 0, at 2026-01-01T00:00:01+00:00; received" in reason
    assert reason.endswith("@ 101, fee 0, at 2026-01-01T00:00:01+00:00")


def test_a_stored_fill_without_its_side_given_again_is_the_same_fill():
    version = FillVersion.of(fill("f1", "o1", 1), Side.SELL)
    result = BatchResult()
    Fold({}, {}, {"f1"}, fill_versions={"f1": version}).apply(
        [entry(1, fill("f1", "o1", 1))], result
    )
    assert result.fills_duplicate == 1
    assert result.rejected == []


def test_a_fill_past_its_order_quantity_is_rejected_and_moves_nothing():
    result = BatchResult()
    fold = Fold({}, {}, set(), filled={"o1": D("0.6")})
    fold.apply([entry(1, order("o1", 0, symbol="BTCUSDT", side="BUY", quantity=D(1)))], result)
    step = fold.apply([entry(2, fill("f2", "o1", 1, qty="0.6"))], result)
    ((_, reason),) = result.rejected
    assert reason == "fill 'f2' takes order 'o1' past its quantity: its fills would total 1.2 of 1"
    assert step.fills == []
    assert step.positions == []


def test_a_real_order_smaller_than_its_fills_is_stored_as_sent_and_refuses_more_fills():
    """The fills were valid when they came (the order was unknown) and stay applied; the order
    then arrives with its own quantity, and from then on a further fill is an over-fill."""
    result = BatchResult()
    fold = Fold({}, {}, set())
    fold.apply(
        [
            entry(1, fill("f1", "o1", 1, qty="0.6", side="BUY")),
            entry(2, fill("f2", "o1", 2, qty="0.6", side="BUY")),
            entry(3, order("o1", 0, symbol="BTCUSDT", side="BUY", quantity=D(1))),
            entry(4, fill("f3", "o1", 3, qty="0.1", side="BUY")),
        ],
        result,
    )
    assert fold.orders["o1"].quantity == D(1)
    assert fold.positions["BTCUSDT"].quantity == D("1.2")
    ((_, reason),) = result.rejected
    assert "its fills would total 1.3 of 1" in reason


def test_an_order_created_again_with_other_values_is_rejected_the_same_one_is_not():
    result = BatchResult()
    fold = Fold({}, {}, set())
    create = order("o1", 0, symbol="BTCUSDT", side="BUY", quantity=D(1))
    fold.apply([entry(1, create)], result)
    fold.apply([entry(2, order("o1", 1, symbol="BTCUSDT", side="BUY", quantity=D(1)))], result)
    assert result.rejected == []
    step = fold.apply(
        [entry(3, order("o1", 2, symbol="BTCUSDT", side="SELL", quantity=D(2)))], result
    )
    ((_, reason),) = result.rejected
    assert reason == (
        "conflicts with stored order 'o1': stored BUY 1 BTCUSDT; received SELL 2 BTCUSDT"
    )
    assert result.conflicts == 1
    assert step.orders == []
    assert fold.orders["o1"].side is Side.BUY


# --- statistics terms and snapshot part contributions (step_terms.py) -------------------------

DAY = T0.date()
# Besides the contract events above: bot requests and results (a request row re-keyed to its
# result, or merged into it, its created_at moving to the request time; derived fills), fills
# with fees and slippage, times on both sides of a UTC midnight and more than a day apart.
_MINUTES = st.integers(-90, 1600)


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


_stat_event = st.one_of(
    _event,
    st.builds(
        lambda oid, m, slip, status: OrderEvent(
            order_id=oid,
            symbol="BTCUSDT",
            side="BUY",
            quantity=D(3),
            status=status,
            slippage_pct=slip,
            timestamp=_at(m),
        ),
        st.sampled_from(["o1", "o2", "o3"]),
        _MINUTES,
        st.sampled_from([None, D("0.1"), D("-0.0333333")]),
        st.sampled_from([None, "PARTIALLY_FILLED", "FILLED", "REJECTED", "CANCELLED"]),
    ),
    st.builds(
        lambda fid, oid, m, qty, price, fee, side: fill(
            fid,
            oid,
            0,
            qty=qty,
            price=price,
            fees_usdt=D(fee),
            side=side,
            timestamp=_at(m),
        ),
        st.sampled_from(["f1", "f5", "f6", "f7"]),
        st.sampled_from(["o1", "o3"]),
        _MINUTES,
        st.sampled_from(["0.5", "1"]),
        st.sampled_from(["100", "99.33333333"]),
        st.sampled_from(["0", "0.01", "0.33333333"]),
        st.sampled_from(["BUY", "SELL"]),
    ),
    st.builds(
        lambda cid, m: OrderRequestEvent(
            order_id=cid,
            client_id=cid,
            symbol="BTCUSDT",
            side="BUY",
            quantity=D(2),
            status="PENDING",
            timestamp=_at(m),
        ),
        st.sampled_from(["c1", "c2"]),
        _MINUTES,
    ),
    st.builds(
        lambda oid, cid, m, filled, fee: OrderResultEvent(
            order_id=oid,
            client_id=cid,
            symbol="BTCUSDT",
            side="BUY",
            quantity=D(2),
            status="FILLED",
            filled_quantity=D(filled),
            filled_price=D(100),
            fee_amount=None if fee is None else D(fee),
            timestamp=_at(m),
        ),
        st.sampled_from(["r1", "r2"]),
        st.sampled_from(["c1", "c2"]),
        _MINUTES,
        st.sampled_from(["0", "1", "2"]),
        st.sampled_from([None, "0.02"]),
    ),
)


def fold_terms(steps: list[list[ParsedEntry]]) -> tuple[Fold, BatchSums, dict[str, tuple]]:
    """Fold the steps; every step's terms merged, and each new fill's time and P&L."""
    fold = Fold({}, {}, set())
    result = BatchResult()
    total = BatchSums()
    pnl: dict[str, tuple] = {}
    for items in steps:
        step = fold.apply(items, result)
        step.stat_terms(total)
        pnl.update({f.fill_id: (f.timestamp, o.realized_delta) for f, o in step.fill_effects})
    return fold, total, pnl


def from_scratch(fold: Fold, pnl: dict[str, tuple]) -> BatchSums:
    """RECOMPUTE_STATS_SUMS over the fold's final rows: its orders, every applied fill joined
    to its order, every fill's P&L."""
    terms = BatchSums()
    for order in fold.orders.values():
        terms.add_order(step_terms.order_row(order), 1)
    for fill_id, (event, _side) in fold._applied.items():
        volume = step_terms.fill_volume(event)
        fees = step_terms.column(event.fees_usdt)
        created = fold.orders[event.order_id].created_at
        terms.add_fill(event.timestamp, created, volume, fees, step_terms.fee_pct(fees, volume))
        terms.add_pnl(*pnl[fill_id][:1], step_terms.column(pnl[fill_id][1]))
    return terms


def comparable(terms: BatchSums) -> dict[date, tuple[object, ...]]:
    """The dates' sums, by value; the sums only ever added to also by their digits (the scale
    decides the rounding of an average, tests/support/stats.py)."""
    out = {}
    for day, sums in terms.changed().items():
        values = [getattr(sums, c) for c in COLUMNS]
        digits = [str(getattr(sums, c)) for c in TEXT_COLUMNS]
        out[day] = (*values, *digits)
    return out


TEXT_COLUMNS = ("fee_pct_sum", "volume_usdt", "fees_usdt", "realized_pnl_usdt")


@settings(max_examples=200, deadline=None)
@given(st.lists(_stat_event, max_size=25), st.lists(st.integers(0, 25), max_size=6))
def test_where_a_history_is_cut_into_steps_does_not_change_its_statistics_terms(events, cuts):
    """Every step's terms are deltas of what it wrote: however the history is cut, they add up
    to the same per-date sums, and those are the sums of the final rows from scratch."""
    items = [entry(n, e) for n, e in enumerate(events)]
    whole, whole_terms, whole_pnl = fold_terms([items])
    bounds = sorted({0, len(items), *(min(c, len(items)) for c in cuts)})
    _, cut_terms, _ = fold_terms([items[a:b] for a, b in itertools.pairwise(bounds)])
    assert comparable(cut_terms) == comparable(whole_terms)
    assert comparable(whole_terms) == comparable(from_scratch(whole, whole_pnl))
    # Every date with terms is touched (its stats row is written).
    assert set(whole_terms.changed()) <= whole_terms.dates()


def test_the_stored_state_before_a_step_is_taken_back_and_older_fills_latency_moves():
    """A stored order whose created_at a late event moves: its row as stored is subtracted,
    the new one added, and its stored fills' latency is measured against the new time."""
    stored = apply_order_event(
        None, order("o1", 60, symbol="BTCUSDT", side="BUY", quantity=D(1), slippage_pct=D("0.1"))
    )
    fold = Fold({"o1": stored}, {}, {"f0"}, fill_times={"o1": [T0 + timedelta(seconds=61)]})
    step = fold.apply([entry(1, order("o1", 59, status="FILLED"))], BatchResult())
    assert step.facts.orders["o1"][0] is stored
    assert step.facts.latency_moves == [
        (T0 + timedelta(seconds=61), T0 + timedelta(seconds=60), T0 + timedelta(seconds=59))
    ]
    ((day, sums),) = step.stat_terms().changed().items()
    assert day == DAY
    assert sums == DaySums(filled_orders=1, latency_sum_ms=D(1000))
    assert str(sums.slippage_sum) == "0.000000"  # +0.100000 - 0.100000: the column scale


def test_a_new_fill_is_counted_with_the_stored_digits_and_postgresqls_fee_pct():
    step = Fold({}, {}, set()).apply(
        [
            entry(1, order("o1", 0, symbol="BTCUSDT", side="BUY", quantity=D(3))),
            entry(
                2,
                fill(
                    "f1",
                    "o1",
                    2,
                    qty="2.25",
                    price="44.14814813",
                    fees_usdt=D("0.33333333"),
                    side="BUY",
                ),
            ),
        ],
        BatchResult(),
    )
    day = step.stat_terms().changed()[DAY]
    assert str(day.volume_usdt) == "99.3333332925000000"  # 2.25000000 * 44.14814813
    assert str(day.fees_usdt) == "0.33333333"
    assert str(day.fee_pct_sum) == "0.33557046658089725600"  # SELECT 0.33333333 / ... * 100
    assert (day.fee_pct_n, day.latency_n, str(day.latency_sum_ms)) == (1, 1, "2000.000000")
    assert str(day.realized_pnl_usdt) == "-0.33333333"  # an opening fill realizes its fee


def test_a_resized_placeholder_is_among_the_written_orders_with_its_before_state():
    fold = Fold({}, {}, set())
    fold.apply([entry(1, fill("f1", "o1", 10, side="BUY"))], BatchResult())
    step = fold.apply([entry(2, fill("f2", "o1", 5, side="BUY"))], BatchResult())
    (resized,) = step.orders
    before, after = step.facts.orders["o1"]
    assert after is resized
    assert before is not None
    assert (before.quantity, after.quantity) == (D(1), D(2))
    assert after.created_at == T0 + timedelta(seconds=5)
    # f1 was stored at 10 s after the old created_at; both fills now count from 5 s.
    assert step.facts.latency_moves == [(T0 + timedelta(seconds=10), before.created_at,
                                         after.created_at)]  # fmt: skip
    assert step.stat_terms().changed()[DAY].latency_sum_ms == D(5000)


def test_a_request_row_re_keyed_to_its_result_moves_its_count_with_it():
    request = OrderRequestEvent(order_id="c1", client_id="c1", symbol="BTCUSDT", side="BUY",
                                quantity=D(1), status="PENDING", timestamp=T0)  # fmt: skip
    fold = Fold({}, {}, set())
    fold.apply([entry(1, request)], BatchResult())
    result = OrderResultEvent(order_id="r1", client_id="c1", symbol="BTCUSDT", side="BUY",
                              quantity=D(1), status="FILLED", filled_quantity=D(1),
                              filled_price=D(100), timestamp=T0 + timedelta(seconds=1))  # fmt: skip
    step = fold.apply([entry(2, result)], BatchResult())
    assert step.moved == {"c1": "r1"}
    assert step.facts.orders["c1"][1] is None
    assert step.facts.orders["r1"][0] is None
    day = step.stat_terms().changed()[DAY]
    assert (day.total_orders, day.filled_orders, day.latency_n) == (0, 1, 1)


def test_a_step_reports_each_symbols_trips_volume_and_fees_as_stored():
    fold = Fold({}, {}, set())
    step = fold.apply(
        [
            entry(1, fill("f1", "o1", 1, qty="1", price="100", fees_usdt=D("0.1"), side="BUY")),
            entry(2, fill("f2", "o2", 2, qty="1", price="90", side="SELL")),
            entry(3, fill("f3", "o3", 3, qty="1", price="80", side="BUY", symbol="ETHUSDT")),
        ],
        BatchResult(),
    )
    totals = step.symbol_totals()
    btc = totals["BTCUSDT"]
    assert (btc.trades, btc.winning, btc.losing) == (1, 0, 1)
    assert str(btc.volume) == "190.0000000000000000"
    assert str(btc.fees) == "0.10000000"
    assert totals["ETHUSDT"].trades == 0
    base = step_terms.SymbolTotals(2, 1, 1, D("5.0000000000000000"), D("0E-8"))
    base.add(btc)
    part = step_terms.part_values(fold.positions["BTCUSDT"], base)
    assert (part.has_position, part.trades, part.winning, part.losing) == (True, 3, 1, 2)
    assert str(part.volume) == "195.0000000000000000"
    assert str(part.realized) == "-10.10000000"  # sold 10 lower, fee 0.1: as the column stores
    assert step_terms.part_values(None, None) == step_terms.PartValues(
        False, D(0), D(0), 0, 0, 0, D(0), D(0)
    )
