"""Reading the event ledger (``paper_event_ledger``, migration 004) back, for replay.

Entries come in the worker's order through a server-side cursor on a connection of their own
(constant memory, never competing with the replay transaction).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from consumer.db.connection import TRANSIENT, describe
from consumer.errors import (
    DatabaseUnavailableError,
)
from consumer.records import EntryKey, RawEntry

# Ledger order = the worker's order: stream id, then the configured stream order.
SELECT_LEDGER = """
SELECT stream_name, entry_id, fields::text
FROM paper_event_ledger
WHERE stream_name = ANY(%(streams)s::varchar[])
  AND (entry_ms, entry_seq) >= (%(lo_ms)s, %(lo_seq)s)
  AND (entry_ms, entry_seq) <= (%(hi_ms)s, %(hi_seq)s)
ORDER BY entry_ms, entry_seq, array_position(%(streams)s::varchar[], stream_name)
"""


COUNT_LEDGER = """
SELECT count(*) AS n
FROM paper_event_ledger
WHERE stream_name = ANY(%(streams)s::varchar[])
  AND (entry_ms, entry_seq) >= (%(lo_ms)s, %(lo_seq)s)
  AND (entry_ms, entry_seq) <= (%(hi_ms)s, %(hi_seq)s)
"""


LEDGER_FETCH_SIZE = 10_000


def ledger_bounds(
    lo: tuple[int, int], hi: tuple[int, int], streams: Sequence[str]
) -> dict[str, Any]:
    return {
        "streams": list(streams),
        "lo_ms": lo[0],
        "lo_seq": lo[1],
        "hi_ms": hi[0],
        "hi_seq": hi[1],
    }


def count_ledger(dsn: str, streams: Sequence[str], lo: tuple[int, int], hi: tuple[int, int]) -> int:
    """How many ledger entries ``read_ledger`` would yield (for progress and ETA)."""
    try:
        with psycopg.connect(dsn, row_factory=dict_row) as conn:
            row = conn.execute(COUNT_LEDGER, ledger_bounds(lo, hi, streams)).fetchone()
    except TRANSIENT as exc:
        raise DatabaseUnavailableError(describe(exc)) from exc
    return int(row["n"]) if row else 0


def read_ledger(
    dsn: str, streams: Sequence[str], lo: tuple[int, int], hi: tuple[int, int]
) -> Iterator[RawEntry]:
    """The ledger's entries of ``streams`` between ``lo`` and ``hi`` (inclusive), in the
    worker's order, through a server-side cursor on its own connection (constant memory; it
    never competes with the replay transaction, even when the ledger is in the target)."""
    try:
        with (
            psycopg.connect(dsn) as conn,
            conn.cursor(name="paper_replay_ledger") as cursor,
        ):
            cursor.itersize = LEDGER_FETCH_SIZE
            cursor.execute(SELECT_LEDGER, ledger_bounds(lo, hi, streams))
            for stream_name, entry_id, fields in cursor:
                yield RawEntry(EntryKey(stream_name, entry_id), json.loads(fields))
    except TRANSIENT as exc:
        raise DatabaseUnavailableError(describe(exc)) from exc
