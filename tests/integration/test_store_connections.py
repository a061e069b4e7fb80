"""How the store's connections talk to PostgreSQL: statements prepared once, planned each time.

A generic plan, chosen once while the tables are small, grows with the tables (a scan of every
fill or order against a batch's ids); parsing each statement on every batch costs time. The
store prepares every statement on its first run and forces custom plans, on every connection
its pool makes.
"""

from __future__ import annotations

from consumer.store import APPLY_STATS_DELTA, PostgresStore, _StatsDelta
from tests.support.pipeline import publish, run_until_idle


def test_every_store_connection_prepares_and_plans_each_run(db_url, settings, redis_client):
    store = PostgresStore(db_url, group="g")
    store.open()
    try:
        with store._transaction() as conn:
            assert conn.execute("SHOW plan_cache_mode").fetchone() == {
                "plan_cache_mode": "force_custom_plan"
            }
            assert conn.prepare_threshold == 0
    finally:
        store.close()

    # Real batches first (the tables are no longer empty), then the statistics statement six
    # times on one connection: past PostgreSQL's five custom plans, it would switch to generic.
    for n in range(3):
        publish(redis_client, settings.fills_stream, {"fill_id": f"f{n}", "order_id": f"o{n}",
                "symbol": "BTCUSDT", "side": "BUY", "quantity": "1", "price": "100"})  # fmt: skip
    assert run_until_idle(settings).totals.fills == 3
    store = PostgresStore(db_url, group="g")
    store.open()
    try:
        with store._transaction() as conn:
            for _ in range(6):
                conn.execute(APPLY_STATS_DELTA, _StatsDelta().params()).fetchall()
            prepared = conn.execute("SELECT statement FROM pg_prepared_statements").fetchall()
            assert any("paper_stats_sums" in row["statement"] for row in prepared), prepared
            # A statement without parameters has one plan only, which PostgreSQL counts as
            # generic; every statement with parameters must have been planned for its values.
            plans = conn.execute(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE cardinality(parameter_types) > 0"
            ).fetchall()
            assert plans
            assert all(r["generic_plans"] == 0 and r["custom_plans"] > 0 for r in plans), plans
    finally:
        store.close()
