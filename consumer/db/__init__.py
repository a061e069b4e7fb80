"""PostgreSQL: the only package that imports psycopg for the worker's data path.

One module per concern, each holding the SQL it runs as named constants:

- ``connection``: the pool, connection setup (presence lock, plan mode), transactions and
  pipeline mode, and how driver errors become the project's exceptions;
- ``rows``: rows to objects and objects to ``unnest`` array parameters (JSON kept exact);
- ``batch``: the live batch writer (``PostgresStore``: one transaction per batch);
- ``stats``: the incremental daily statistics step of a batch (and the reference queries);
- ``pnl_snapshots``: per-symbol clocks, snapshot parts and the HOURLY/DAILY/MANUAL rows;
- ``replay_target``: the database a replay rebuilds (one transaction, presence lock);
- ``bulk``: the bulk replay engine (one in-memory fold, COPY, statistics and snapshots in SQL);
- ``ledger``: reading the event ledger back;
- ``leases``: shard leases and their fence inside the batch transaction;
- ``reads``: the read side of ``status`` and ``snapshot``; ``report_queries``: ``report``'s;
- ``maintenance``: ``prune``'s retention statements.

The accounting itself (orders, fills, positions, round trips) is decided by the pure fold in
``consumer/fold.py``; this package reads what the fold needs and writes what it decided.
"""

from consumer.db.batch import PostgresStore
from consumer.db.bulk import BulkWriter
from consumer.db.leases import Fence, LeaseStore, check_fence, read_leases
from consumer.db.ledger import count_ledger, read_ledger
from consumer.db.reads import read_status
from consumer.db.replay_target import ReplayTarget

__all__ = [
    "BulkWriter",
    "Fence",
    "LeaseStore",
    "PostgresStore",
    "ReplayTarget",
    "check_fence",
    "count_ledger",
    "read_leases",
    "read_ledger",
    "read_status",
]
