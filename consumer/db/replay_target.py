"""The database a replay rebuilds: one connection, one transaction, the presence lock.

What a replay rebuilds (``REPLAY_TABLES``), the refusal when a live worker is connected or the
tables hold rows (unless ``--reset``, which TRUNCATEs them in the same transaction), and the
chunk writer of the batches engine, which runs the live batch writer's ``write_rows`` under a
savepoint and splits a chunk PostgreSQL refuses exactly as the worker splits a batch. The bulk
engine (``db/bulk.py``) shares the same connection and transaction (``connection``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from consumer.db.batch import StaleFoldError, write_rows
from consumer.db.connection import (
    DATA_ERRORS,
    TRANSIENT,
    TRY_EXCLUSIVE_PRESENCE,
    WORKER_PRESENCE_LOCK_KEY,
    describe,
)
from consumer.errors import (
    DatabaseUnavailableError,
    ReplayRefusedError,
)
from consumer.fold import BatchResult
from consumer.records import ParsedEntry

# What a replay rebuilds (and `--reset` empties). The ledger and the migration ledger are kept:
# the ledger is a replay source, and history in it must survive a reset.
REPLAY_TABLES = (
    "paper_orders",
    "paper_fills",
    "paper_positions",
    "paper_pnl_snapshots",
    "paper_trading_stats",
    "paper_stats_sums",
    "paper_round_trips",
    "paper_fill_pnl",
    "paper_pnl_clock",
    "paper_symbol_clocks",
    "paper_pnl_snapshot_parts",
    "paper_consumer_offsets",
)

# A replayed table's history columns: all but serial ids and when a row was written. What a
# rebuild must reproduce exactly (the engines' comparisons: bench/replay.py --check-tables,
# tests/integration/test_bulk_replay.py).
SELECT_HISTORY_COLUMNS = """
SELECT column_name FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = %(table)s
  AND coalesce(column_default, '') NOT LIKE 'nextval(%%'
  AND column_name NOT IN ('updated_at', 'inserted_at', 'ingested_at', 'recorded_at')
  AND is_generated = 'NEVER'
ORDER BY ordinal_position
"""

SELECT_NONEMPTY_REPLAY_TABLES = """
SELECT name FROM (VALUES
    ('paper_orders', EXISTS (SELECT 1 FROM paper_orders)),
    ('paper_fills', EXISTS (SELECT 1 FROM paper_fills)),
    ('paper_positions', EXISTS (SELECT 1 FROM paper_positions)),
    ('paper_pnl_snapshots', EXISTS (SELECT 1 FROM paper_pnl_snapshots)),
    ('paper_trading_stats', EXISTS (SELECT 1 FROM paper_trading_stats)),
    ('paper_stats_sums', EXISTS (SELECT 1 FROM paper_stats_sums)),
    ('paper_round_trips', EXISTS (SELECT 1 FROM paper_round_trips)),
    ('paper_fill_pnl', EXISTS (SELECT 1 FROM paper_fill_pnl)),
    ('paper_pnl_clock', EXISTS (SELECT 1 FROM paper_pnl_clock)),
    ('paper_symbol_clocks', EXISTS (SELECT 1 FROM paper_symbol_clocks)),
    ('paper_pnl_snapshot_parts', EXISTS (SELECT 1 FROM paper_pnl_snapshot_parts)),
    ('paper_consumer_offsets', EXISTS (SELECT 1 FROM paper_consumer_offsets))
) AS t(name, has_rows)
WHERE has_rows
"""


# TRUNCATE rather than DELETE: the tables start exactly as in an empty schema (serials too) and
# the rebuild does not wade through dead tuples. It is transactional: an interrupted replay rolls
# it back. Readers wait for the commit instead of seeing a half-built history.
RESET_REPLAY_TABLES = """
TRUNCATE paper_orders, paper_fills, paper_positions, paper_pnl_snapshots, paper_trading_stats,
         paper_stats_sums, paper_round_trips, paper_fill_pnl, paper_pnl_clock,
         paper_symbol_clocks, paper_pnl_snapshot_parts, paper_consumer_offsets
         RESTART IDENTITY
"""


class ReplayTarget:
    """The database a replay rebuilds: one connection, one transaction, a presence lock.

    ``open()`` connects, takes the worker presence lock EXCLUSIVELY (refusing while any live
    worker — or another replay — is connected to this database), begins the transaction, and
    checks the paper tables are empty (or, with ``reset``, TRUNCATEs them inside it).
    ``write(items)`` runs the live worker's ``write_rows`` on one chunk under a savepoint; a chunk
    PostgreSQL rejects is split like the worker splits a batch, so the same bad entry is set
    aside with the same reason. ``commit()`` makes the rebuild visible at once; ``close()``
    without a commit rolls everything back, leaving the previous state untouched.
    """

    def __init__(
        self,
        dsn: str,
        *,
        group: str,
        reset: bool,
        start_balance: Decimal | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._group = group
        self._start_balance = start_balance
        self._reset = reset
        self._timeout = connect_timeout_s
        self._conn: psycopg.Connection[dict[str, Any]] | None = None

    def open(self) -> None:
        try:
            conn = psycopg.connect(
                self._dsn,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=max(1, round(self._timeout)),
            )
        except TRANSIENT as exc:
            raise DatabaseUnavailableError(describe(exc)) from exc
        self._conn = conn
        try:
            self._prepare(conn)
        except TRANSIENT as exc:
            self.close()
            raise DatabaseUnavailableError(describe(exc)) from exc
        except BaseException:
            self.close()
            raise

    def _prepare(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        row = conn.execute(TRY_EXCLUSIVE_PRESENCE, {"key": WORKER_PRESENCE_LOCK_KEY}).fetchone()
        if not (row and row["acquired"]):
            raise ReplayRefusedError(
                "a live paper-consumer worker (or another replay) is connected to the target "
                "database; stop every worker on it first, or replay into another database "
                "with --database-url"
            )
        conn.autocommit = False  # from here on: one transaction until commit() or close()
        nonempty = [r["name"] for r in conn.execute(SELECT_NONEMPTY_REPLAY_TABLES)]
        if nonempty and not self._reset:
            raise ReplayRefusedError(
                f"the target already holds rows in {', '.join(nonempty)}; replay rebuilds "
                "history into empty tables: pass --reset to empty them first (in the same "
                "transaction), or use --database-url for another database"
            )
        if self._reset:
            conn.execute(RESET_REPLAY_TABLES)

    @property
    def connection(self) -> psycopg.Connection[dict[str, Any]]:
        """The replay transaction's connection (for the bulk engine, ``db/bulk.py``)."""
        if self._conn is None:
            raise RuntimeError("ReplayTarget.connection before open()")
        return self._conn

    def write(self, items: Sequence[ParsedEntry]) -> list[BatchResult]:
        """Apply one chunk (in stream order) inside the replay transaction."""
        if self._conn is None:
            raise RuntimeError("ReplayTarget.write before open()")
        if not items:
            return []
        try:
            return self._write_or_split(self._conn, list(items))
        except TRANSIENT as exc:
            raise DatabaseUnavailableError(describe(exc)) from exc

    def _write_or_split(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        items: list[ParsedEntry],
        known_fills: Sequence[str] = (),
    ) -> list[BatchResult]:
        result = BatchResult()
        try:
            with conn.transaction():  # a savepoint inside the replay transaction
                write_rows(
                    conn,
                    items,
                    result,
                    group=self._group,
                    archive=False,
                    start_balance=self._start_balance,
                    known_fills=known_fills,
                )
        except StaleFoldError as stale:  # rolled back to the savepoint: again, knowing them
            if set(stale.fill_ids) <= set(known_fills):
                raise
            return self._write_or_split(conn, items, [*known_fills, *stale.fill_ids])
        except DATA_ERRORS as exc:
            if len(items) == 1:
                reason = f"rejected by PostgreSQL: {describe(exc)}"
                return [BatchResult(rejected=[(items[0], reason)])]
            middle = len(items) // 2
            return self._write_or_split(conn, items[:middle]) + self._write_or_split(
                conn, items[middle:]
            )
        return [result]

    def commit(self) -> None:
        if self._conn is None:
            raise RuntimeError("ReplayTarget.commit before open()")
        try:
            self._conn.commit()
        except TRANSIENT as exc:
            raise DatabaseUnavailableError(describe(exc)) from exc

    def close(self) -> None:
        """Roll back whatever was not committed, release the lock, disconnect."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            # A broken connection rolls back on the server by itself.
            with contextlib.suppress(*TRANSIENT):
                conn.rollback()
            conn.close()
