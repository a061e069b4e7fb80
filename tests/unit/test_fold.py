"""The pure accounting fold (``consumer/fold.py``), without any database.

The fold is what every writer shares (live batches, replay, the in-memory twin), so its own
promises are checked here directly: the rows it decides do not depend on where a history is cut
into steps, a stored fill is never applied again, a placeholder carries its order's fills, and a
step reports each row once, only when it changed.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer import accounting
from consumer.events import FillEvent, MarkEvent, OrderEvent, OrderStatus, Side
from consumer.fold import BatchResult, FillVersion, Fold
from consumer.orders import PLACEHOLDER_KEY
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
        timestamp=T0 + timedelta(seconds=t),
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
