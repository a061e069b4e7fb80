"""``daily_sums`` computes the one term PostgreSQL does not hand it — a fill's latency — and the
UTC date of every term: both must equal what the reference SQL (``REAGGREGATE_STATS``) computes,
digit for digit, for any pair of times, in any session time zone (the window is 24 hours, not a
calendar day, so a daylight-saving change cannot make them differ)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.daily_sums import latency_ms, utc_date

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
