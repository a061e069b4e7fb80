"""Every PostgreSQL query of the Grafana dashboard runs against a migrated database.

Grafana expands its macros before sending the SQL; the few the dashboard uses are expanded here
the same way, and each query runs as a read-only role like the dashboard's ``paper_reader``
(a member of nothing, with SELECT on the paper tables and views only).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy/grafana/dashboards/paper-consumer.json"
PANELS = [
    (panel["title"], target["rawSql"])
    for panel in json.loads(DASHBOARD.read_text())["panels"]
    for target in panel["targets"]
    if "rawSql" in target
]


def expand_macros(query: str) -> str:
    """Grafana's $__timeFilter(col), over the dashboard's default range (last 24 h)."""
    expanded = re.sub(
        r"\$__timeFilter\((\w+)\)",
        r"\1 BETWEEN now() - interval '24 hours' AND now()",
        query,
    )
    assert "$__" not in expanded, f"unexpanded macro in {query!r}"
    return expanded


@pytest.fixture
def reader_url(pg_server_url, db_url):
    name = f"paper_rd_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
                sql.Identifier(name)
            )
        )
        # A snapshot and an open position, so the queries return rows, not just parse.
        conn.execute(
            "INSERT INTO paper_pnl_snapshots (snapshot_time, snapshot_type, total_pnl_usdt,"
            " realized_pnl_usdt, unrealized_pnl_usdt) VALUES (now(), 'MANUAL', 3, 1, 2)"
        )
        conn.execute(
            "INSERT INTO paper_positions (symbol, quantity, avg_entry_price, cost_basis_usdt,"
            " opened_at) VALUES ('BTCUSDT', 1, 100, 100, now())"
        )
    yield make_conninfo(db_url, user=name)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_the_dashboard_has_sql_panels():
    titles = [title for title, _ in PANELS]
    assert any("P&L over time" in t for t in titles)
    assert any("Open positions" in t for t in titles)


@pytest.mark.parametrize(("title", "query"), PANELS, ids=[t for t, _ in PANELS])
def test_panel_query_runs_and_returns_rows(reader_url, title, query):
    with psycopg.connect(reader_url) as conn:
        result = conn.execute(expand_macros(query)).fetchall()
    assert result, f"{title}: no rows"
