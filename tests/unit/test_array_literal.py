"""``rows.array_literal``'s joined fast forms give exactly the text of the per-element forms
(the reference below is the function as it was before them, 2026-12-06); that text is checked
against real PostgreSQL in tests/integration/test_array_params.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.db.rows import array_literal


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def reference(values: list[Any]) -> str | list[Any]:
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if kinds <= {str}:
        return "{" + ",".join(["NULL" if v is None else _quoted(v) for v in values]) + "}"
    if kinds in ({Decimal}, {int}) and all(v.is_finite() for v in values if type(v) is Decimal):
        return "{" + ",".join(["NULL" if v is None else str(v) for v in values]) + "}"
    if kinds <= {datetime} and all(v is None or v.tzinfo is not None for v in values):
        return "{" + ",".join(["NULL" if v is None else f'"{v.isoformat()}"' for v in values]) + "}"
    return values


texts = st.one_of(
    st.text(max_size=8),
    st.sampled_from(['"', "\\", '","', "{", "}", ",", "", "NULL", "NaN", "Inf", "é😀"]),
)
decimals = st.one_of(
    st.decimals(),  # NaN, sNaN, Infinity included
    st.decimals(allow_nan=False, allow_infinity=False, places=8),
    st.sampled_from([Decimal("-0"), Decimal("0E-8"), Decimal("1E+3"), Decimal("-Infinity")]),
)
times = st.one_of(
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))])),
    st.datetimes(),  # naive: the list itself
)
nones = st.none()
one_kind = st.one_of(
    st.lists(st.one_of(texts, nones), max_size=6),
    st.lists(texts, max_size=6),
    st.lists(st.one_of(decimals, nones), max_size=6),
    st.lists(decimals, max_size=6),
    st.lists(st.one_of(st.integers(), nones), max_size=6),
    st.lists(st.one_of(times, nones), max_size=6),
    st.lists(times, max_size=6),
    st.lists(st.one_of(texts, decimals, st.integers(), st.booleans(), times, nones), max_size=6),
)


@settings(max_examples=2000, deadline=None)
@given(one_kind)
def test_the_same_literal_or_the_same_refusal_as_the_per_element_form(values: list[Any]) -> None:
    got, expected = array_literal(values), reference(values)
    assert got == expected
    assert type(got) is type(expected)
    if isinstance(got, list):
        assert got is values  # refused: psycopg dumps the list itself, as before


def test_the_fast_forms() -> None:
    assert array_literal(["a", "b c"]) == '{"a","b c"}'
    assert array_literal(['a"b', "c"]) == '{"a\\"b","c"}'
    assert array_literal(["a\\", "c"]) == '{"a\\\\","c"}'
    assert array_literal([Decimal("1.50"), Decimal("-2E+3")]) == "{1.50,-2E+3}"
    nan = [Decimal("1"), Decimal("NaN")]
    assert array_literal(nan) is nan
    t = datetime(2099, 1, 1, tzinfo=UTC)
    assert array_literal([t, t]) == '{"2099-01-01T00:00:00+00:00","2099-01-01T00:00:00+00:00"}'
    naive = [t, datetime(2099, 1, 1)]
    assert array_literal(naive) is naive
