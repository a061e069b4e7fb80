"""``daily_sums`` and ``step_terms`` compute every statistics term from the fold's values: a
fill's latency, the UTC date of every term, the stored amounts, a fill's volume and fee %
(PostgreSQL's numeric division). Each must equal what the reference SQL (``REAGGREGATE_STATS``)
computes, digit for digit: the latency and date for any pair of times, in any session time zone
(the window is 24 hours, not a calendar day, so a daylight-saving change cannot make them
differ), the amounts and quotients for any values the columns hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.daily_sums import EXACT, latency_ms, utc_date
from consumer.step_terms import column, fee_pct, numeric_divide

# The reference's latency and date expressions (db/stats.py REAGGREGATE_STATS), on two parameters.
REFERENCE = """
SELECT (CASE WHEN %(f)s::timestamptz >= %(c)s::timestamptz
              AND %(f)s::timestamptz < %(c)s::timestamptz + interval '24 hours'
             THEN extract(epoch FROM (%(f)s::timestamptz - %(c)s::timestamptz)) * 1000 END)::text,
       (%(f)s::timestamptz AT TIME ZONE 'UTC')::date
"""

DAY = timedelta(hours=24)
MICRO = timedelta(microseconds=1)
EDGES = st.sampled_from([timedelta(0), DAY, DAY - MICRO, -MICRO, DAY + MICRO, timedelta(days=400)])
GAPS = st.one_of(EDGES, st.timedeltas(min_value=-timedelta(days=3), max_value=timedelta(days=3)))
MOMENTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(
    created=MOMENTS, gap=GAPS, zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"])
)
def test_latency_and_date_equal_postgresqls(pg_server_url, created, gap, zone):
    filled = created + gap
    with psycopg.connect(pg_server_url) as conn:
        conn.execute(f"SET TimeZone = '{zone}'")
        text, day = conn.execute(REFERENCE, {"f": filled, "c": created}).fetchone()
    mine = latency_ms(filled, created)
    assert (None if mine is None else str(mine)) == text
    assert utc_date(filled) == day


# The reference's volume and fee % (REAGGREGATE_STATS, RECOMPUTE_STATS_SUMS) of one fill, its
# amounts rounded by the DECIMAL(18,8) casts as the insert rounds them.
FILL_REFERENCE = """
WITH f AS (SELECT %(q)s::numeric::DECIMAL(18,8) AS quantity,
                  %(p)s::numeric::DECIMAL(18,8) AS price,
                  %(fee)s::numeric::DECIMAL(18,8) AS fees_usdt)
SELECT (f.quantity * f.price)::text, f.fees_usdt::text,
       (f.fees_usdt / (f.quantity * f.price) * 100)::text
FROM f
"""

AMOUNTS = st.decimals(min_value=Decimal("0.000000005"), max_value=Decimal("99999999.99"), places=9)
FEES = st.one_of(
    st.just(Decimal(0)), st.decimals(min_value=0, max_value=Decimal("9999.999999999"), places=9)
)
NUMBERS = st.builds(
    lambda n, s: Decimal(n).scaleb(-s), st.integers(-(10**20), 10**20), st.integers(0, 30)
)


@settings(max_examples=300, deadline=None)
@given(quantity=AMOUNTS, price=AMOUNTS, fee=FEES)
def test_a_fills_volume_and_fee_pct_equal_postgresqls(pg_server_url, quantity, price, fee):
    with psycopg.connect(pg_server_url) as conn:
        volume, fees, pct = conn.execute(
            FILL_REFERENCE, {"q": quantity, "p": price, "fee": fee}
        ).fetchone()
    mine = EXACT.multiply(column(quantity), column(price))
    assert str(mine) == str(Decimal(volume))
    assert str(column(fee)) == str(Decimal(fees))
    assert str(fee_pct(column(fee), mine)) == str(Decimal(pct))


@settings(max_examples=300, deadline=None)
@given(a=NUMBERS, b=NUMBERS.filter(lambda v: v != 0))
def test_numeric_division_equals_postgresqls(pg_server_url, a, b):
    with psycopg.connect(pg_server_url) as conn:
        (quotient,) = conn.execute("SELECT (%s::numeric / %s::numeric)::text", (a, b)).fetchone()
    assert str(numeric_divide(a, b)) == str(Decimal(quotient))
