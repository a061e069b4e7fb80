"""The migration files as an operator runs them: ``psql -v ON_ERROR_STOP=1 -f FILE``.

Covers the BEGIN;/COMMIT; framing rule the runner relies on, that every file (migration and
rollback) runs twice in a row without error and the second run changes nothing, that the
rollbacks leave the ``public`` schema exactly as it was (relations, functions, views, types,
constraints and the runtime role's grants), that an error inside a file leaves nothing behind,
and that 003 upgrades tables left by the original seed (narrow ids, a fee_type check that accepts
anything). Uses the ``psql`` found on PATH.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "sql" / "migrations"
UP_FILES = sorted(
    p for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql") if "_rollback" not in p.name
)
ROLLBACK_FILES = sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*_rollback.sql"), reverse=True)
ALL_FILES = sorted(MIGRATIONS_DIR.glob("*.sql"))


def _psql(dsn: str, path: Path) -> subprocess.CompletedProcess[str]:
    psql = shutil.which("psql")
    assert psql, "psql must be on PATH for these tests"
    return subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(path), "-d", dsn],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _apply(dsn: str, path: Path) -> None:
    result = _psql(dsn, path)
    assert result.returncode == 0, f"{path.name}: {result.stderr}"


def _code_lines(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("--")]


def _public_schema(dsn: str) -> dict[str, list[Any]]:
    """Everything in schema ``public`` a migration can leave behind, by catalog."""
    queries = {
        "pg_class": "SELECT relname, relkind, relacl::text FROM pg_class "
        "WHERE relnamespace = 'public'::regnamespace",
        "pg_proc": "SELECT proname, pg_get_function_arguments(oid), provolatile, proacl::text "
        "FROM pg_proc WHERE pronamespace = 'public'::regnamespace",
        "pg_views": "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public'",
        "pg_type": "SELECT typname FROM pg_type WHERE typnamespace = 'public'::regnamespace",
        "pg_constraint": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
        "FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
        "claire_user_grants": "SELECT classid::regclass::text, objid FROM pg_shdepend "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND refobjid = (SELECT oid FROM pg_roles WHERE rolname = 'claire_user')",
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {name: sorted(conn.execute(query).fetchall()) for name, query in queries.items()}


def test_every_migration_has_a_rollback():
    assert [p.name for p in UP_FILES][:3] == [
        "001_initial_schema.sql",
        "002_core_tables.sql",
        "003_paper_trading_schema.sql",
    ]
    assert sorted(p.name for p in ROLLBACK_FILES) == [
        p.name.replace(".sql", "_rollback.sql") for p in UP_FILES
    ]


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_file_is_framed_by_begin_and_commit(path):
    code = _code_lines(path)
    assert code[0] == "BEGIN;"
    assert code[-1] == "COMMIT;"
    inner = [line.upper() for line in code[1:-1]]
    # A second transaction-control line would end the transaction early (non-atomic under psql).
    assert not {"BEGIN;", "COMMIT;", "ROLLBACK;"} & set(inner)


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: p.name)
def test_file_is_plain_sql(path):
    code = _code_lines(path)
    assert not [line for line in code if line.startswith("\\")], "psql meta-commands"
    text = " ".join(code).upper()
    assert "SET TIME ZONE" not in text
    assert "SET TIMEZONE" not in text
    assert "COMPLETE" not in text


def test_apply_twice_then_roll_back_twice_leaves_nothing(empty_db_url):
    before = _public_schema(empty_db_url)
    for path in UP_FILES:
        _apply(empty_db_url, path)
    applied = _public_schema(empty_db_url)
    for path in UP_FILES:
        _apply(empty_db_url, path)
    assert _public_schema(empty_db_url) == applied, "a second run changed the schema"
    assert applied["claire_user_grants"], "no grants to claire_user recorded"
    for path in ROLLBACK_FILES:
        _apply(empty_db_url, path)
        _apply(empty_db_url, path)
    assert _public_schema(empty_db_url) == before


@pytest.mark.parametrize("path", UP_FILES, ids=lambda p: p.name)
def test_each_migration_is_rerunnable_on_its_own(empty_db_url, path):
    for earlier in UP_FILES[: UP_FILES.index(path)]:
        _apply(empty_db_url, earlier)
    _apply(empty_db_url, path)
    once = _public_schema(empty_db_url)
    _apply(empty_db_url, path)
    assert _public_schema(empty_db_url) == once


def test_rollback_of_003_right_after_003(empty_db_url):
    before = _public_schema(empty_db_url)
    path = MIGRATIONS_DIR / "003_paper_trading_schema.sql"
    _apply(empty_db_url, path)
    _apply(empty_db_url, MIGRATIONS_DIR / "003_paper_trading_schema_rollback.sql")
    assert _public_schema(empty_db_url) == before


def test_error_inside_a_file_leaves_nothing_behind(empty_db_url, tmp_path):
    source = (MIGRATIONS_DIR / "003_paper_trading_schema.sql").read_text(encoding="utf-8")
    head, _, tail = source.rpartition("\nCOMMIT;")
    broken = tmp_path / "003_broken.sql"
    broken.write_text(f"{head}\nSELECT 1 / 0;\nCOMMIT;{tail}", encoding="utf-8")
    before = _public_schema(empty_db_url)

    result = _psql(empty_db_url, broken)

    assert result.returncode != 0
    assert "division by zero" in result.stderr
    assert _public_schema(empty_db_url) == before
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT to_regclass('paper_orders')").fetchone() == (None,)


def test_003_upgrades_tables_left_by_the_original_seed(empty_db_url):
    """The seed's flaws 6 and 10 in a minimal table pair, then 003 over them."""
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(
            """
            CREATE TABLE paper_orders (
                order_id VARCHAR(50) PRIMARY KEY, client_id VARCHAR(50),
                symbol VARCHAR(20) NOT NULL, side VARCHAR(4) NOT NULL,
                order_type VARCHAR(20) DEFAULT 'MARKET', quantity DECIMAL(18,8) NOT NULL,
                price DECIMAL(18,8), filled_quantity DECIMAL(18,8) DEFAULT 0,
                filled_price DECIMAL(18,8), status VARCHAR(20) NOT NULL,
                slippage_pct DECIMAL(10,6), fees_usdt DECIMAL(18,8) DEFAULT 0,
                fee_type VARCHAR(10) CHECK (fee_type IN ('TAKER', 'MAKER', NULL)),
                created_at TIMESTAMPTZ DEFAULT now(), submitted_at TIMESTAMPTZ,
                filled_at TIMESTAMPTZ, updated_at TIMESTAMPTZ DEFAULT now(),
                rejection_reason TEXT, error_message TEXT, metadata JSONB);
            CREATE TABLE paper_fills (
                fill_id VARCHAR(50) PRIMARY KEY,
                order_id VARCHAR(50) NOT NULL REFERENCES paper_orders ON DELETE CASCADE,
                symbol VARCHAR(20) NOT NULL, quantity DECIMAL(18,8) NOT NULL,
                price DECIMAL(18,8) NOT NULL, fees_usdt DECIMAL(18,8) DEFAULT 0,
                fee_type VARCHAR(10), filled_at TIMESTAMPTZ DEFAULT now(), metadata JSONB);
            CREATE VIEW v_paper_recent_orders AS SELECT order_id FROM paper_orders;
            """
        )
    _apply(empty_db_url, MIGRATIONS_DIR / "003_paper_trading_schema.sql")
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        widths = conn.execute(
            "SELECT table_name, column_name, character_maximum_length "
            "FROM information_schema.columns WHERE column_name IN ('order_id', 'client_id', "
            "'fill_id') AND table_schema = 'public' ORDER BY 1, 2"
        ).fetchall()
        assert widths == [
            ("paper_fills", "fill_id", 100),
            ("paper_fills", "order_id", 100),
            ("paper_orders", "client_id", 100),
            ("paper_orders", "order_id", 100),
            ("v_paper_recent_orders", "order_id", 100),
        ]
        with pytest.raises(psycopg.errors.CheckViolation) as excinfo:
            conn.execute(
                "INSERT INTO paper_orders (order_id, symbol, side, quantity, status, fee_type) "
                "VALUES ('o', 'BTCUSDT', 'BUY', 1, 'FILLED', 'FOO')"
            )
        assert excinfo.value.diag.constraint_name == "paper_orders_fee_type_check"
