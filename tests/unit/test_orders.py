"""The order lifecycle fold: status rules, fill-in of empty fields, placeholders, idempotency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.events import FillEvent, OrderEvent, OrderStatus, Side
from consumer.orders import (
    PLACEHOLDER_KEY,
    OrderEventRejectedError,
    apply_order_event,
    placeholder_from_fill,
)

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def order(**fields) -> OrderEvent:
    base = {"order_id": "o-1", "timestamp": T0}
    return OrderEvent(**{**base, **fields})


NEW = {"symbol": "BTCUSDT", "side": "BUY", "quantity": "1"}


def fold(*events: OrderEvent):
    state = None
    for event in events:
        state = apply_order_event(state, event)
    return state


def test_a_new_order_needs_symbol_side_and_quantity():
    with pytest.raises(OrderEventRejectedError, match=r"lacks symbol, side, quantity"):
        apply_order_event(None, order(status="FILLED"))
    state = apply_order_event(None, order(**NEW))
    assert state.status == OrderStatus.PENDING
    assert state.order_type == "MARKET"
    assert state.created_at == T0


@pytest.mark.parametrize(
    ("statuses", "final"),
    [
        (["PENDING", "SUBMITTED", "FILLED"], "FILLED"),
        (["FILLED", "SUBMITTED"], "FILLED"),  # never backwards
        (["SUBMITTED", "PARTIALLY_FILLED", "PENDING"], "PARTIALLY_FILLED"),
        (["CANCELLED", "FILLED"], "CANCELLED"),  # first terminal wins
        (["REJECTED", "FAILED"], "REJECTED"),
        (["PARTIAL", "PARTIALLY_FILLED"], "PARTIALLY_FILLED"),  # PARTIAL arrives mapped
    ],
)
def test_status_is_monotonic_and_first_terminal_wins(statuses, final):
    state = fold(order(**NEW), *(order(status=s) for s in statuses))
    assert state.status == final


def test_late_events_fill_only_empty_fields_and_amounts_only_grow():
    state = fold(
        order(**NEW, status="SUBMITTED", client_id="c-1"),
        order(status="PARTIALLY_FILLED", filled_quantity="0.4", filled_price="100"),
        order(client_id="c-2", rejection_reason="late", slippage_pct="0.05"),
        order(filled_quantity="0.2", filled_price="90", fees_usdt="0.1"),  # stale: ignored
        order(status="FILLED", filled_quantity="1", filled_price="101", fees_usdt="0.2"),
    )
    assert state.client_id == "c-1"
    assert state.rejection_reason == "late"
    assert state.slippage_pct == D("0.05")
    assert (state.filled_quantity, state.filled_price) == (D(1), D(101))
    assert state.fees_usdt == D("0.2")
    assert state.status == OrderStatus.FILLED
    assert state.submitted_at == T0
    assert state.filled_at == T0


def test_created_at_is_the_earliest_event_time():
    later = order(**NEW, timestamp=T0 + timedelta(seconds=5))
    earlier = order(status="SUBMITTED", timestamp=T0)
    assert fold(later, earlier).created_at == T0


def test_placeholder_is_replaced_by_the_first_real_event():
    fill = FillEvent(
        fill_id="f-1", order_id="o-1", symbol="BTCUSDT", side="SELL", quantity="0.3",
        price="100", timestamp=T0 + timedelta(seconds=1),
    )  # fmt: skip
    placeholder = placeholder_from_fill(fill, Side.SELL)
    assert placeholder.is_placeholder
    assert placeholder.metadata == {PLACEHOLDER_KEY: "f-1"}
    real = apply_order_event(
        placeholder,
        order(symbol="BTCUSDT", side="SELL", quantity="1", order_type="LIMIT", price="99",
              status="PARTIALLY_FILLED", metadata={"strategy": "s1"}),
    )  # fmt: skip
    assert not real.is_placeholder
    assert (real.quantity, real.order_type, real.price) == (D(1), "LIMIT", D(99))
    assert real.metadata == {"strategy": "s1"}
    assert real.created_at == T0


EVENTS = st.lists(
    st.builds(
        order,
        status=st.sampled_from([None, *OrderStatus]),
        filled_quantity=st.sampled_from([None, "0", "0.5", "1"]),
        filled_price=st.sampled_from([None, "99", "100"]),
        client_id=st.sampled_from([None, "a", "b"]),
        rejection_reason=st.sampled_from([None, "x", "y"]),
        timestamp=st.integers(0, 100).map(lambda s: T0 + timedelta(seconds=s)),
        metadata=st.dictionaries(st.sampled_from(["k1", "k2"]), st.sampled_from(["v1", "v2"])),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(events=EVENTS, data=st.data())
def test_reapplying_any_already_applied_event_changes_nothing(events, data):
    """What makes redelivery safe: the fold is idempotent for every event already seen."""
    state = fold(order(**NEW), *events)
    again = data.draw(st.sampled_from(events))
    assert apply_order_event(state, again) == state


@settings(max_examples=300, deadline=None)
@given(events=EVENTS)
def test_status_rank_never_decreases(events):
    from consumer.events import status_rank  # noqa: PLC0415

    state = apply_order_event(None, order(**NEW))
    for event in events:
        new = apply_order_event(state, event)
        assert status_rank(new.status) >= status_rank(state.status)
        if state.status in {"FILLED", "REJECTED", "CANCELLED", "FAILED"}:
            assert new.status == state.status
        state = new


def test_the_fold_names_every_field_of_the_row():
    """apply_order_event builds the row field by field (not dataclasses.replace, for speed): a
    field added to OrderState and not named there would silently fall back to its default."""
    import dataclasses  # noqa: PLC0415
    import inspect  # noqa: PLC0415
    import re  # noqa: PLC0415

    from consumer.orders import OrderState  # noqa: PLC0415

    source = inspect.getsource(apply_order_event)
    fields = dataclasses.fields(OrderState)
    missing = [f.name for f in fields if not re.search(rf"\b{f.name}=", source)]
    assert not missing
