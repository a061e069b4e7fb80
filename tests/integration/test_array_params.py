"""The store passes each ``unnest`` column as one array literal (``db.rows.array_literal``) instead
of a list psycopg dumps element by element: against real PostgreSQL, the literal gives exactly
the array psycopg's own dumping gives, for generated values of every kind the store sends (text
with quotes, backslashes, braces, commas, spaces, "NULL", unicode; Decimals of any exponent and
sign; ints; aware datetimes in any offset; NULLs), under each cast the statements use."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.db.rows import array_literal

MANY = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

texts = st.one_of(
    st.text(
        alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=12
    ),
    st.sampled_from(
        ['"', "\\", '\\"', "{", "}", ",", " ", "", "NULL", "null", " a ", '{"k": "v\\"w"}', "é€😀"]
    ),
)
decimals = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=8),
    st.sampled_from([Decimal("-0"), Decimal("0E-8"), Decimal("1E+3"), Decimal("-1.50")]),
)
offsets = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]
)
times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=offsets
)
CASES = {
    "text": texts,
    "varchar": texts,
    "numeric": decimals,
    "bigint": st.integers(-(2**63), 2**63 - 1),
    "int": st.integers(-(2**31), 2**31 - 1),
    "timestamptz": times,
}


@pytest.fixture
def conn(pg_server_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(pg_server_url, autocommit=True) as connection:
        yield connection


def as_postgres_sees(conn: psycopg.Connection[Any], cast: str, param: Any) -> Any:
    row = conn.execute(f"SELECT %(a)s::{cast}[]::text, %(a)s::{cast}[]", {"a": param}).fetchone()
    assert row is not None
    return row


@st.composite
def columns(draw: Any) -> tuple[str, list[Any]]:
    cast = draw(st.sampled_from(sorted(CASES)))
    values = draw(st.lists(st.none() | CASES[cast], max_size=12))
    return cast, values


@MANY
@given(columns())
def test_array_literal_is_what_psycopg_sends(conn, column):
    cast, values = column
    literal = array_literal(values)
    assert isinstance(literal, str), values  # every kind the store sends becomes a literal
    assert as_postgres_sees(conn, cast, literal) == as_postgres_sees(conn, cast, values)


def test_other_elements_stay_lists():
    naive = datetime(2024, 1, 1)
    for values in (
        [Decimal("NaN")],
        [Decimal("sNaN")],
        [True, 1],
        [naive],
        ["a", 1],
        [1.5],
        [Decimal(1), 1],  # psycopg refuses mixed lists: the literal must not hide that
    ):
        assert array_literal(values) == values
