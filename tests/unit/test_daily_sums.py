"""The per-date terms a batch adds to paper_stats_sums (consumer/daily_sums.py), without servers.

The digits matter, not only the values: ``WRITE``'s averages are ``sum / n`` and PostgreSQL
chooses a quotient's scale from its operands', so each sum must carry the scale PostgreSQL's own
``sum()`` of the same terms would (tests/integration/test_daily_sums_sql.py checks the latency
against PostgreSQL itself)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from consumer.daily_sums import BatchSums, DaySums, OrderRow, latency_ms, utc_date
from consumer.step_terms import column, division_scale, fee_pct, numeric_divide

T0 = datetime(2026, 11, 25, 23, 59, 59, 500_000, tzinfo=UTC)


def test_latency_has_postgresqls_scale_of_six():
    assert str(latency_ms(T0 + timedelta(milliseconds=123, microseconds=456), T0)) == "123.456000"
    assert str(latency_ms(T0, T0)) == "0.000000"


def test_latency_counts_only_fills_within_24_hours_after_their_order():
    day = timedelta(hours=24)
    assert latency_ms(T0 + day - timedelta(microseconds=1), T0) == Decimal("86399999.999")
    assert latency_ms(T0 + day, T0) is None
    assert latency_ms(T0 - timedelta(microseconds=1), T0) is None


def test_dates_are_utc_dates():
    later = datetime(2026, 11, 26, 1, 0, tzinfo=UTC).astimezone(datetime.now().astimezone().tzinfo)
    assert utc_date(later) == date(2026, 11, 26)


def test_an_order_counted_now_and_taken_back_as_it_was():
    terms = BatchSums()
    terms.add_order(OrderRow(T0, "FILLED", Decimal("0.010000")), 1)
    terms.add_order(OrderRow(T0, "PENDING", None), -1)
    assert terms.changed() == {
        date(2026, 11, 25): DaySums(filled_orders=1, slippage_n=1, slippage_sum=Decimal("0.010000"))
    }


def test_terms_that_cancel_leave_the_date_out():
    terms = BatchSums()
    row = OrderRow(T0, "PARTIALLY_FILLED", Decimal("0.500000"))
    terms.add_order(row, 1)
    terms.add_order(row, -1)
    assert terms.changed() == {}


def test_sums_are_exact_beyond_the_default_decimal_precision():
    terms = BatchSums()
    big = Decimal("99999999999999999800000000000000000001E-16")  # 38 digits, exact
    for _ in range(3):
        terms.add_fill(T0, T0, big, Decimal("0.00000001"), Decimal("1.0000000000000000"))
    day = terms.changed()[date(2026, 11, 25)]
    assert str(day.volume_usdt) == "29999999999999999940000.0000000000000003"
    assert str(day.fees_usdt) == "3E-8"  # PostgreSQL reads it as 0.00000003, scale 8
    assert str(day.fee_pct_sum) == "3.0000000000000000"
    assert day.fee_pct_n == 3
    assert day.latency_n == 3
    assert str(day.latency_sum_ms) == "0.000000"


def test_a_sum_without_terms_is_a_plain_zero():
    terms = BatchSums()
    terms.add_pnl(T0, Decimal("-1.50000000"))
    day = terms.changed()[date(2026, 11, 25)]
    assert str(day.realized_pnl_usdt) == "-1.50000000"
    assert str(day.slippage_sum) == "0"
    assert str(day.volume_usdt) == "0"


def test_a_moved_order_moves_its_older_fills_latency():
    terms = BatchSums()
    filled = T0 + timedelta(seconds=2)
    terms.add_latency(filled, T0 + timedelta(seconds=1), 1)
    terms.add_latency(filled, T0, -1)
    day = terms.changed()[date(2026, 11, 26)]
    assert day.latency_n == 0
    assert day.latency_sum_ms == Decimal("-1000")


def test_merged_batches_equal_one_batch_digit_for_digit():
    one, first, second = BatchSums(), BatchSums(), BatchSums()
    later = T0 + timedelta(hours=1)
    terms = [
        (T0, T0, Decimal("99.3333333300000000"), Decimal("0.01000000"),
         Decimal("0.01006711409429755400")),
        (later, T0, Decimal("2.0000000000000000"), Decimal("0E-8"), Decimal("0E-20")),
    ]  # fmt: skip
    for n, term in enumerate(terms):
        one.add_fill(*term)
        (first if n == 0 else second).add_fill(*term)
    one.add_order(OrderRow(T0, "FILLED", Decimal("0.100000")), -1)
    second.add_order(OrderRow(T0, "FILLED", Decimal("0.100000")), -1)
    first.merge(second)
    assert first.dates() == one.dates() == {date(2026, 11, 25), date(2026, 11, 26)}
    assert {d: str(s) for d, s in first.changed().items()} == {
        d: str(s) for d, s in one.changed().items()
    }


def test_a_touched_date_without_terms_is_a_date_but_not_a_change():
    terms = BatchSums()
    terms.touch(T0)
    assert terms.dates() == {date(2026, 11, 25)}
    assert terms.changed() == {}


def test_columns_round_half_away_from_zero_and_keep_their_scale():
    assert str(column(Decimal("0.000000005"))) == "1E-8"
    assert str(column(Decimal("-0.000000005"))) == "-1E-8"
    assert str(column(Decimal("-0.0333333"), 6)) == "-0.033333"
    assert str(column(Decimal("1"))) == "1.00000000"


def test_the_fee_pct_is_postgresqls_quotient_with_its_scale():
    # SELECT 0.33333333::numeric / 99.3333333300000000 * 100 (PostgreSQL 15)
    assert str(fee_pct(Decimal("0.33333333"), Decimal("99.3333333300000000"))) == (
        "0.33557046645421377400"
    )
    # A zero fee: 0 at the quotient's scale, 16 - 4 * (-1) = 20 digits for a volume of 100.
    assert str(fee_pct(Decimal("0E-8"), Decimal("100.0000000000000000"))) == "0E-20"
    assert fee_pct(Decimal("0E-8"), Decimal("0E-16")) is None


def test_division_rounds_the_exact_quotient_half_away_from_zero():
    assert str(numeric_divide(Decimal(2), Decimal(3))) == "0.66666666666666666667"
    assert str(numeric_divide(Decimal(-2), Decimal(3))) == "-0.66666666666666666667"
    assert str(numeric_divide(Decimal(1), Decimal(8))) == "0.12500000000000000000"
    # 16 significant digits, by base-10000 weights (SELECT 1::numeric / 10: scale 20;
    # 123456789.00000000 / 1: 12), never fewer than either operand's scale.
    assert division_scale(Decimal(1), Decimal(10)) == 20
    assert division_scale(Decimal("123456789.00000000"), Decimal(1)) == 12
    assert division_scale(Decimal("123456789.0000000000000"), Decimal(1)) == 13
