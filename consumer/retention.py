"""``paper-consumer prune``: the seed's cleanup, in bounded batches, keeping what is still used.

What goes (rules and reasons in ``sql/schema/paper_trading_erd.md``, "Retention"):

- HOURLY P&L snapshots older than the cutoff (DAILY and MANUAL ones are kept);
- orders created before the cutoff in a final status without execution (REJECTED, CANCELLED,
  FAILED) that have no fill;
- snapshot parts (migration 007) that end before the cutoff and before every symbol's clock: no
  HOURLY/DAILY row at or before that horizon can be created or recomputed any more, and prune
  records the horizon in ``paper_pnl_clock.parts_since``.

Nothing else: fills (exactly-once record, volume since start), positions, round trips, per-fill
P&L, daily stats, offsets and the ledger are never pruned. Each batch is one ``DELETE … WHERE
ctid IN (SELECT ctid … LIMIT n)`` in its own short transaction (autocommit), so no lock is held
for long and an interrupted prune keeps what it deleted so far. SQL lives in ``db/maintenance.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from consumer.db.maintenance import (
    COUNT_PRUNABLE_ORDERS,
    COUNT_PRUNABLE_PARTS,
    COUNT_PRUNABLE_SNAPSHOTS,
    PRUNE_ORDERS,
    PRUNE_SNAPSHOT_PARTS,
    PRUNE_SNAPSHOTS,
)
from consumer.errors import DatabaseUnavailableError, SchemaNotReadyError

DEFAULT_BATCH_SIZE = 5000

# (what, count query, delete query), in this order.
RULES: tuple[tuple[str, str, str], ...] = (
    ("hourly_snapshots", COUNT_PRUNABLE_SNAPSHOTS, PRUNE_SNAPSHOTS),
    ("orders_without_fills", COUNT_PRUNABLE_ORDERS, PRUNE_ORDERS),
    ("snapshot_parts", COUNT_PRUNABLE_PARTS, PRUNE_SNAPSHOT_PARTS),
)


@dataclass(frozen=True)
class PruneResult:
    cutoff: datetime
    dry_run: bool
    rows: dict[str, int]  # per rule: deleted (or, in a dry run, that would be)
    batches: int

    def describe(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        parts = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in self.rows.items())
        suffix = "" if self.dry_run else f" in {self.batches} batches"
        return f"{verb} {parts} older than {self.cutoff.isoformat()}{suffix}"


def prune(
    dsn: str,
    cutoff: datetime,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    connect_timeout_s: float = 5.0,
    on_batch: Callable[[str, int], None] | None = None,
) -> PruneResult:
    """Delete (or count, with ``dry_run``) what the retention rules allow before ``cutoff``."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    rows: dict[str, int] = {}
    batches = 0
    try:
        with psycopg.connect(
            dsn,
            autocommit=True,  # every DELETE below is its own short transaction
            row_factory=dict_row,
            connect_timeout=max(1, round(connect_timeout_s)),
        ) as conn:
            for name, count_query, delete_query in RULES:
                if dry_run:
                    row = conn.execute(count_query, {"cutoff": cutoff}).fetchone()
                    rows[name] = int(row["n"]) if row else 0
                    continue
                rows[name] = 0
                while True:
                    deleted = _delete_batch(conn, delete_query, cutoff, batch_size)
                    batches += 1
                    rows[name] += deleted
                    if on_batch is not None:
                        on_batch(name, deleted)
                    if deleted < batch_size:
                        break
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"PostgreSQL: {exc}") from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        raise SchemaNotReadyError(f"prune is not allowed for this role: {exc}") from exc
    except psycopg.errors.UndefinedTable as exc:
        raise SchemaNotReadyError(
            f"cannot find the paper tables ({exc}); run `paper-consumer migrate up`"
        ) from exc
    return PruneResult(cutoff=cutoff, dry_run=dry_run, rows=rows, batches=batches)


def _delete_batch(
    conn: psycopg.Connection[dict[str, Any]], query: str, cutoff: datetime, limit: int
) -> int:
    return conn.execute(query, {"cutoff": cutoff, "limit": limit}).rowcount
