"""PostgreSQL: the only module that imports psycopg for the worker's data path.

``PostgresStore.write_batch`` turns one batch of validated events into rows, in ONE transaction:

1. lock and read the batch's orders, fold the order events into them (``orders.py``), create
   placeholder orders for fills whose order is unknown, upsert what changed;
2. insert the fills with ``ON CONFLICT (fill_id) DO NOTHING RETURNING fill_id`` — the database is
   the record of which fills were already applied, so only the fills inserted *now* move
   positions (lessons.md #1): a redelivered or duplicated fill changes nothing;
3. lock and read the touched positions, apply the new fills and marks in stream order
   (``accounting.py``), upsert them;
4. update ``paper_trading_stats`` incrementally: the batch remembers the state each order row had
   before it (the rows read FOR UPDATE), the fills and per-fill P&L rows it inserted (as their
   INSERTs returned them), reads its order rows back as they end up, and ``daily_sums.py`` turns
   that into signed per-date terms; they are added to ``paper_stats_sums`` (exact per-date
   counts and numeric sums, migration 005) and the touched stats rows derived from the sums,
   so each still equals a full re-aggregation (``REAGGREGATE_STATS``, kept as the reference) at
   a cost that grows with the batch, not with the day. One advisory lock serialises this last
   step of concurrent writers;
5. advance ``paper_consumer_offsets`` (and, when archiving, append raw entries to the ledger).

The caller acknowledges the entries in Redis only after this commits. Statements are
set-based (``unnest`` arrays, one round trip per table per batch) and are named constants below:
this is the one place query SQL lives. Driver errors leave this module as
``DatabaseUnavailableError`` (retry later) or ``RejectedByDatabaseError`` (the data is bad).
"""

from __future__ import annotations

import contextlib
import json
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from consumer import accounting, daily_sums, snapshots
from consumer.dialect import (
    OrderRequestEvent,
    OrderResultEvent,
    derive_fill,
    is_request_row,
    merge_request,
)
from consumer.errors import (
    DatabaseUnavailableError,
    LeaseLostError,
    RejectedByDatabaseError,
    ReplayRefusedError,
    SchemaNotReadyError,
)
from consumer.events import FillEvent, MarkEvent, OrderEvent, OrderStatus, OrderType, Side
from consumer.orders import (
    PLACEHOLDER_KEY,
    OrderEventRejectedError,
    OrderState,
    apply_order_event,
    placeholder_from_fill,
)
from consumer.records import EntryKey, ParsedEntry, RawEntry

# --------------------------------------------------------------------------------------------
# SQL (named constants; nothing else in the package writes query SQL)
# --------------------------------------------------------------------------------------------

SELECT_ORDERS_FOR_UPDATE = """
SELECT order_id, client_id, symbol, side, order_type, quantity, price, filled_quantity,
       filled_price, status, slippage_pct, fees_usdt, fee_type, created_at, submitted_at,
       filled_at, rejection_reason, error_message, metadata::text AS metadata
FROM paper_orders
WHERE order_id = ANY(%(ids)s::varchar[])
ORDER BY order_id
FOR UPDATE
"""

# The same, also finding rows by client id: the bot's request and result meet through it
# (bot-dialect.md). One statement, so the rows are locked in one order (order_id).
SELECT_ORDERS_AND_CLIENTS_FOR_UPDATE = """
SELECT order_id, client_id, symbol, side, order_type, quantity, price, filled_quantity,
       filled_price, status, slippage_pct, fees_usdt, fee_type, created_at, submitted_at,
       filled_at, rejection_reason, error_message, metadata::text AS metadata
FROM paper_orders
WHERE order_id = ANY(%(ids)s::varchar[]) OR client_id = ANY(%(client_ids)s::varchar[])
ORDER BY order_id
FOR UPDATE
"""

# A bot request row (keyed by its client id, no fills yet) takes its result's order id.
REKEY_ORDERS = """
UPDATE paper_orders AS o SET order_id = r.new_id, updated_at = now()
FROM unnest(%(old_ids)s::varchar[], %(new_ids)s::varchar[]) AS r(old_id, new_id)
WHERE o.order_id = r.old_id
"""

# A bot request row merged into its result's existing row (it has no fills to cascade).
DELETE_MERGED_REQUESTS = """
DELETE FROM paper_orders WHERE order_id = ANY(%(ids)s::varchar[]) AND filled_quantity = 0
"""

UPSERT_ORDERS = """
INSERT INTO paper_orders (
    order_id, client_id, symbol, side, order_type, quantity, price, filled_quantity,
    filled_price, status, slippage_pct, fees_usdt, fee_type, created_at, submitted_at,
    filled_at, rejection_reason, error_message, metadata, updated_at)
SELECT u.order_id, u.client_id, u.symbol, u.side, u.order_type, u.quantity, u.price,
       u.filled_quantity, u.filled_price, u.status, u.slippage_pct, u.fees_usdt, u.fee_type,
       u.created_at, u.submitted_at, u.filled_at, u.rejection_reason, u.error_message,
       u.metadata::jsonb, now()
FROM unnest(
    %(order_id)s::varchar[], %(client_id)s::varchar[], %(symbol)s::varchar[],
    %(side)s::varchar[], %(order_type)s::varchar[], %(quantity)s::numeric[],
    %(price)s::numeric[], %(filled_quantity)s::numeric[], %(filled_price)s::numeric[],
    %(status)s::varchar[], %(slippage_pct)s::numeric[], %(fees_usdt)s::numeric[],
    %(fee_type)s::varchar[], %(created_at)s::timestamptz[], %(submitted_at)s::timestamptz[],
    %(filled_at)s::timestamptz[], %(rejection_reason)s::text[], %(error_message)s::text[],
    %(metadata)s::text[]
) AS u(order_id, client_id, symbol, side, order_type, quantity, price, filled_quantity,
       filled_price, status, slippage_pct, fees_usdt, fee_type, created_at, submitted_at,
       filled_at, rejection_reason, error_message, metadata)
ON CONFLICT (order_id) DO UPDATE SET
    client_id = EXCLUDED.client_id, symbol = EXCLUDED.symbol, side = EXCLUDED.side,
    order_type = EXCLUDED.order_type, quantity = EXCLUDED.quantity, price = EXCLUDED.price,
    filled_quantity = EXCLUDED.filled_quantity, filled_price = EXCLUDED.filled_price,
    status = EXCLUDED.status, slippage_pct = EXCLUDED.slippage_pct,
    fees_usdt = EXCLUDED.fees_usdt, fee_type = EXCLUDED.fee_type,
    created_at = EXCLUDED.created_at, submitted_at = EXCLUDED.submitted_at,
    filled_at = EXCLUDED.filled_at, rejection_reason = EXCLUDED.rejection_reason,
    error_message = EXCLUDED.error_message, metadata = EXCLUDED.metadata,
    updated_at = now()
"""

INSERT_FILLS = """
INSERT INTO paper_fills (fill_id, order_id, symbol, quantity, price, fees_usdt, fee_type,
                         filled_at, metadata)
SELECT f.fill_id, f.order_id, f.symbol, f.quantity, f.price, f.fees_usdt, f.fee_type,
       f.filled_at, f.metadata::jsonb
FROM unnest(
    %(fill_id)s::varchar[], %(order_id)s::varchar[], %(symbol)s::varchar[],
    %(quantity)s::numeric[], %(price)s::numeric[], %(fees_usdt)s::numeric[],
    %(fee_type)s::varchar[], %(filled_at)s::timestamptz[], %(metadata)s::text[]
) AS f(fill_id, order_id, symbol, quantity, price, fees_usdt, fee_type, filled_at, metadata)
ON CONFLICT (fill_id) DO NOTHING
RETURNING fill_id, order_id, filled_at, quantity * price AS volume, fees_usdt AS fees,
          fees_usdt / (quantity * price) * 100 AS fee_pct
"""

# A placeholder order (fill before order) carries the quantity of the fills stored for it so far,
# computed from the table so the row does not depend on how fills were split into batches. The
# fills are summed per order id through the order_id index (a LATERAL aggregate, never a scan of
# all fills: as a join, a plan could scan every fill against the whole id list, 40 ms a batch at
# 30,000 fills). A row that would not change (a placeholder made in this batch for its only fill)
# is not rewritten: no dead tuple, no new entry in its eight indexes.
RESIZE_PLACEHOLDERS = """
UPDATE paper_orders AS o
SET quantity = s.total, created_at = LEAST(o.created_at, s.first_fill), updated_at = now()
FROM unnest(%(ids)s::varchar[]) AS i(order_id),
     LATERAL (SELECT sum(f.quantity) AS total, min(f.filled_at) AS first_fill
              FROM paper_fills f WHERE f.order_id = i.order_id) AS s
WHERE o.order_id = i.order_id AND o.metadata ? %(placeholder_key)s AND s.total IS NOT NULL
  AND (o.quantity, o.created_at) IS DISTINCT FROM (s.total, LEAST(o.created_at, s.first_fill))
"""

SELECT_POSITIONS_FOR_UPDATE = """
SELECT symbol, quantity, avg_entry_price, current_price, realized_pnl_usdt, entry_trades,
       exit_trades, opened_at, closed_at, metadata::text AS metadata
FROM paper_positions
WHERE symbol = ANY(%(symbols)s::varchar[])
ORDER BY symbol
FOR UPDATE
"""

UPSERT_POSITIONS = """
INSERT INTO paper_positions (
    symbol, quantity, avg_entry_price, current_price, unrealized_pnl_usdt, realized_pnl_usdt,
    cost_basis_usdt, market_value_usdt, entry_trades, exit_trades, opened_at, closed_at,
    metadata, updated_at)
SELECT p.symbol, p.quantity, p.avg_entry_price, p.current_price, p.unrealized, p.realized,
       p.cost_basis, p.market_value, p.entry_trades, p.exit_trades, p.opened_at, p.closed_at,
       p.metadata::jsonb, now()
FROM unnest(
    %(symbol)s::varchar[], %(quantity)s::numeric[], %(avg_entry_price)s::numeric[],
    %(current_price)s::numeric[], %(unrealized)s::numeric[], %(realized)s::numeric[],
    %(cost_basis)s::numeric[], %(market_value)s::numeric[], %(entry_trades)s::int[],
    %(exit_trades)s::int[], %(opened_at)s::timestamptz[], %(closed_at)s::timestamptz[],
    %(metadata)s::text[]
) AS p(symbol, quantity, avg_entry_price, current_price, unrealized, realized, cost_basis,
       market_value, entry_trades, exit_trades, opened_at, closed_at, metadata)
ON CONFLICT (symbol) DO UPDATE SET
    quantity = EXCLUDED.quantity, avg_entry_price = EXCLUDED.avg_entry_price,
    current_price = EXCLUDED.current_price, unrealized_pnl_usdt = EXCLUDED.unrealized_pnl_usdt,
    realized_pnl_usdt = EXCLUDED.realized_pnl_usdt, cost_basis_usdt = EXCLUDED.cost_basis_usdt,
    market_value_usdt = EXCLUDED.market_value_usdt, entry_trades = EXCLUDED.entry_trades,
    exit_trades = EXCLUDED.exit_trades, opened_at = EXCLUDED.opened_at,
    closed_at = EXCLUDED.closed_at, metadata = EXCLUDED.metadata, updated_at = now()
"""

# Serialise the statistics step of concurrent writers: under READ COMMITTED the statements after
# the lock see every row committed by a writer that held it before us (cumulative P&L spans
# every date, so one lock for the table, held only for the last statements of a batch). Taken
# before any row of paper_stats_sums or paper_trading_stats is locked, so writers cannot
# deadlock on them.
LOCK_STATS = "SELECT pg_advisory_xact_lock(hashtextextended('paper_trading_stats', 0))"

# One definition of the daily statistics, applied to the given dates. filled_orders counts
# FILLED, PARTIAL and PARTIALLY_FILLED so that the generated fill_rate equals
# get_paper_fill_rate() (see sql/schema/paper_trading_erd.md, "fill rate"). The worker no longer
# runs it (it rescans whole days): it is the reference that APPLY_STATS_SUMS and
# WRITE_STATS_FROM_SUMS must equal, and what the tests recompute from scratch.
REAGGREGATE_STATS = """
WITH d AS (SELECT DISTINCT unnest(%(dates)s::date[]) AS stat_date),
bounds AS (SELECT (min(stat_date)::timestamp AT TIME ZONE 'UTC') AS lo,
                  ((max(stat_date) + 1)::timestamp AT TIME ZONE 'UTC') AS hi FROM d),
o AS (
    SELECT (o.created_at AT TIME ZONE 'UTC')::date AS stat_date,
           count(*) AS total_orders,
           count(*) FILTER (WHERE o.status IN ('FILLED', 'PARTIAL', 'PARTIALLY_FILLED'))
               AS filled_orders,
           count(*) FILTER (WHERE o.status IN ('PARTIAL', 'PARTIALLY_FILLED')) AS partial_fills,
           count(*) FILTER (WHERE o.status = 'REJECTED') AS rejected_orders,
           count(*) FILTER (WHERE o.status = 'CANCELLED') AS cancelled_orders,
           avg(o.slippage_pct) AS avg_slippage_pct
    FROM paper_orders o, bounds
    WHERE o.created_at >= bounds.lo AND o.created_at < bounds.hi
    GROUP BY 1),
p AS (
    SELECT (p.filled_at AT TIME ZONE 'UTC')::date AS stat_date,
           sum(p.realized_pnl_usdt) AS daily_pnl_usdt
    FROM paper_fill_pnl p, bounds
    WHERE p.filled_at >= bounds.lo AND p.filled_at < bounds.hi
    GROUP BY 1),
f AS (
    SELECT (f.filled_at AT TIME ZONE 'UTC')::date AS stat_date,
           sum(f.quantity * f.price) AS total_volume_usdt,
           sum(f.fees_usdt) AS total_fees_usdt,
           avg(f.fees_usdt / (f.quantity * f.price) * 100) AS avg_fee_pct,
           -- Latency counts fills within a day of their order (the column holds < 10^8 ms);
           -- a fill of an older order, or one stamped before its order, is not a latency.
           avg(extract(epoch FROM (f.filled_at - o.created_at)) * 1000) FILTER (
               WHERE f.filled_at >= o.created_at
                 AND f.filled_at < o.created_at + interval '24 hours') AS avg_latency_ms
    FROM paper_fills f JOIN paper_orders o ON o.order_id = f.order_id, bounds
    WHERE f.filled_at >= bounds.lo AND f.filled_at < bounds.hi
    GROUP BY 1)
INSERT INTO paper_trading_stats AS s (
    stat_date, total_orders, filled_orders, partial_fills, rejected_orders, cancelled_orders,
    avg_slippage_pct, avg_fee_pct, avg_latency_ms, total_volume_usdt, total_fees_usdt,
    daily_pnl_usdt, updated_at)
SELECT d.stat_date, coalesce(o.total_orders, 0), coalesce(o.filled_orders, 0),
       coalesce(o.partial_fills, 0), coalesce(o.rejected_orders, 0),
       coalesce(o.cancelled_orders, 0), o.avg_slippage_pct, f.avg_fee_pct, f.avg_latency_ms,
       coalesce(f.total_volume_usdt, 0), coalesce(f.total_fees_usdt, 0),
       coalesce(p.daily_pnl_usdt, 0), now()
FROM d LEFT JOIN o USING (stat_date) LEFT JOIN f USING (stat_date) LEFT JOIN p USING (stat_date)
ON CONFLICT (stat_date) DO UPDATE SET
    total_orders = EXCLUDED.total_orders, filled_orders = EXCLUDED.filled_orders,
    partial_fills = EXCLUDED.partial_fills, rejected_orders = EXCLUDED.rejected_orders,
    cancelled_orders = EXCLUDED.cancelled_orders, avg_slippage_pct = EXCLUDED.avg_slippage_pct,
    avg_fee_pct = EXCLUDED.avg_fee_pct, avg_latency_ms = EXCLUDED.avg_latency_ms,
    total_volume_usdt = EXCLUDED.total_volume_usdt, total_fees_usdt = EXCLUDED.total_fees_usdt,
    daily_pnl_usdt = EXCLUDED.daily_pnl_usdt, updated_at = now()
"""

# The order rows the daily statistics of a batch depend on, as they stand after its writes
# (consumer/daily_sums.py: its orders now, and the orders of the fills it inserted).
SELECT_ORDERS_FOR_STATS = """
SELECT order_id, created_at, status, slippage_pct
FROM paper_orders WHERE order_id = ANY(%(ids)s::varchar[])
"""

# The older fills of orders whose created_at a batch moved (a placeholder replaced or resized):
# their latency moves with it. By the order_id index.
SELECT_OLDER_FILL_TIMES = """
SELECT order_id, filled_at FROM paper_fills
WHERE order_id = ANY(%(ids)s::varchar[]) AND NOT fill_id = ANY(%(new_fill_ids)s::varchar[])
"""

# paper_stats_sums as it should be, from scratch (every date): the back-fill of migration 005
# selects exactly this. For checks and repairs; the worker never runs it.
RECOMPUTE_STATS_SUMS = """
SELECT t.stat_date,
       count(*) FILTER (WHERE t.is_order) AS total_orders,
       count(*) FILTER (WHERE t.status IN ('FILLED', 'PARTIAL', 'PARTIALLY_FILLED'))
           AS filled_orders,
       count(*) FILTER (WHERE t.status IN ('PARTIAL', 'PARTIALLY_FILLED')) AS partial_fills,
       count(*) FILTER (WHERE t.status = 'REJECTED') AS rejected_orders,
       count(*) FILTER (WHERE t.status = 'CANCELLED') AS cancelled_orders,
       count(t.slippage_pct) AS slippage_n, coalesce(sum(t.slippage_pct), 0) AS slippage_sum,
       count(t.fee_pct) AS fee_pct_n, coalesce(sum(t.fee_pct), 0) AS fee_pct_sum,
       count(t.latency_ms) AS latency_n, coalesce(sum(t.latency_ms), 0) AS latency_sum_ms,
       coalesce(sum(t.volume), 0) AS volume_usdt, coalesce(sum(t.fees), 0) AS fees_usdt,
       coalesce(sum(t.pnl), 0) AS realized_pnl_usdt
FROM (
    SELECT (o.created_at AT TIME ZONE 'UTC')::date AS stat_date, true AS is_order, o.status,
           o.slippage_pct, NULL::numeric AS fee_pct, NULL::numeric AS latency_ms,
           NULL::numeric AS volume, NULL::numeric AS fees, NULL::numeric AS pnl
    FROM paper_orders o
    UNION ALL
    SELECT (f.filled_at AT TIME ZONE 'UTC')::date, false, NULL, NULL,
           f.fees_usdt / (f.quantity * f.price) * 100,
           CASE WHEN f.filled_at >= o.created_at
                     AND f.filled_at < o.created_at + interval '24 hours'
                THEN extract(epoch FROM (f.filled_at - o.created_at)) * 1000 END,
           f.quantity * f.price, f.fees_usdt, NULL
    FROM paper_fills f JOIN paper_orders o ON o.order_id = f.order_id
    UNION ALL
    SELECT (p.filled_at AT TIME ZONE 'UTC')::date, false, NULL, NULL, NULL, NULL, NULL, NULL,
           p.realized_pnl_usdt
    FROM paper_fill_pnl p
) AS t
WHERE t.stat_date IS NOT NULL
GROUP BY t.stat_date
ORDER BY t.stat_date
"""

# One batch's signed per-date terms (consumer/daily_sums.py: the same terms REAGGREGATE_STATS
# averages and adds, each from stored values) added to paper_stats_sums: rows locked in date
# order, under LOCK_STATS; sums stay exact (unconstrained NUMERIC). WRITE_STATS_FROM_SUMS follows
# it in the same round trip (the dates are known before: no result is read in between).
APPLY_STATS_SUMS = """
INSERT INTO paper_stats_sums AS s (
    stat_date, total_orders, filled_orders, partial_fills, rejected_orders,
    cancelled_orders, slippage_n, slippage_sum, fee_pct_n, fee_pct_sum, latency_n,
    latency_sum_ms, volume_usdt, fees_usdt, realized_pnl_usdt, updated_at)
SELECT u.*, now()
FROM unnest(
    %(stat_date)s::date[], %(total_orders)s::bigint[], %(filled_orders)s::bigint[],
    %(partial_fills)s::bigint[], %(rejected_orders)s::bigint[],
    %(cancelled_orders)s::bigint[], %(slippage_n)s::bigint[], %(slippage_sum)s::numeric[],
    %(fee_pct_n)s::bigint[], %(fee_pct_sum)s::numeric[], %(latency_n)s::bigint[],
    %(latency_sum_ms)s::numeric[], %(volume_usdt)s::numeric[], %(fees_usdt)s::numeric[],
    %(realized_pnl_usdt)s::numeric[]) AS u
ORDER BY 1
ON CONFLICT (stat_date) DO UPDATE SET
    total_orders = s.total_orders + EXCLUDED.total_orders,
    filled_orders = s.filled_orders + EXCLUDED.filled_orders,
    partial_fills = s.partial_fills + EXCLUDED.partial_fills,
    rejected_orders = s.rejected_orders + EXCLUDED.rejected_orders,
    cancelled_orders = s.cancelled_orders + EXCLUDED.cancelled_orders,
    slippage_n = s.slippage_n + EXCLUDED.slippage_n,
    slippage_sum = s.slippage_sum + EXCLUDED.slippage_sum,
    fee_pct_n = s.fee_pct_n + EXCLUDED.fee_pct_n,
    fee_pct_sum = s.fee_pct_sum + EXCLUDED.fee_pct_sum,
    latency_n = s.latency_n + EXCLUDED.latency_n,
    latency_sum_ms = s.latency_sum_ms + EXCLUDED.latency_sum_ms,
    volume_usdt = s.volume_usdt + EXCLUDED.volume_usdt,
    fees_usdt = s.fees_usdt + EXCLUDED.fees_usdt,
    realized_pnl_usdt = s.realized_pnl_usdt + EXCLUDED.realized_pnl_usdt,
    updated_at = now()
"""

# The stats rows of the given dates (sorted, distinct) from their sums: an average is sum / n,
# which is exactly what avg(numeric) computes (numeric_div of the exact sum by the count), so the
# row equals REAGGREGATE_STATS; a date without sums gets the zeros and NULLs of an empty date. The
# written rows' cumulative P&L is computed here too (the stored daily P&L of the earlier dates
# not written now, plus the new daily P&L of the written ones up to the date: what
# REFRESH_CUMULATIVE_PNL would set); `later` says whether rows after the first written date
# were not written, so that REFRESH_CUMULATIVE_PNL must still run (a late fill). A row that would
# not change is not rewritten. Run under LOCK_STATS, after APPLY_STATS_SUMS: its snapshot has
# every committed daily P&L and the batch's sums.
WRITE_STATS_FROM_SUMS = """
WITH d AS (
    SELECT d.stat_date, coalesce(s.total_orders, 0) AS total_orders,
           coalesce(s.filled_orders, 0) AS filled_orders,
           coalesce(s.partial_fills, 0) AS partial_fills,
           coalesce(s.rejected_orders, 0) AS rejected_orders,
           coalesce(s.cancelled_orders, 0) AS cancelled_orders,
           s.slippage_sum / nullif(s.slippage_n, 0) AS avg_slippage_pct,
           s.fee_pct_sum / nullif(s.fee_pct_n, 0) AS avg_fee_pct,
           s.latency_sum_ms / nullif(s.latency_n, 0) AS avg_latency_ms,
           coalesce(s.volume_usdt, 0) AS total_volume_usdt,
           coalesce(s.fees_usdt, 0) AS total_fees_usdt,
           coalesce(s.realized_pnl_usdt, 0)::DECIMAL(18,8) AS daily_pnl_usdt
    FROM unnest(%(dates)s::date[]) AS d(stat_date)
    LEFT JOIN paper_stats_sums s USING (stat_date)),
c AS (
    SELECT d.*,
           (SELECT coalesce(sum(t.daily_pnl_usdt), 0) FROM paper_trading_stats t
            WHERE t.stat_date < d.stat_date AND t.stat_date <> ALL(%(dates)s::date[]))
           + sum(d.daily_pnl_usdt) OVER (ORDER BY d.stat_date) AS cumulative_pnl_usdt
    FROM d),
w AS (
    INSERT INTO paper_trading_stats AS t (
        stat_date, total_orders, filled_orders, partial_fills, rejected_orders,
        cancelled_orders, avg_slippage_pct, avg_fee_pct, avg_latency_ms, total_volume_usdt,
        total_fees_usdt, daily_pnl_usdt, cumulative_pnl_usdt, updated_at)
    SELECT stat_date, total_orders, filled_orders, partial_fills, rejected_orders,
           cancelled_orders, avg_slippage_pct, avg_fee_pct, avg_latency_ms, total_volume_usdt,
           total_fees_usdt, daily_pnl_usdt, cumulative_pnl_usdt, now()
    FROM c
    ORDER BY stat_date
    ON CONFLICT (stat_date) DO UPDATE SET
        total_orders = EXCLUDED.total_orders, filled_orders = EXCLUDED.filled_orders,
        partial_fills = EXCLUDED.partial_fills, rejected_orders = EXCLUDED.rejected_orders,
        cancelled_orders = EXCLUDED.cancelled_orders,
        avg_slippage_pct = EXCLUDED.avg_slippage_pct, avg_fee_pct = EXCLUDED.avg_fee_pct,
        avg_latency_ms = EXCLUDED.avg_latency_ms, total_volume_usdt = EXCLUDED.total_volume_usdt,
        total_fees_usdt = EXCLUDED.total_fees_usdt, daily_pnl_usdt = EXCLUDED.daily_pnl_usdt,
        cumulative_pnl_usdt = EXCLUDED.cumulative_pnl_usdt, updated_at = now()
    WHERE (t.total_orders, t.filled_orders, t.partial_fills, t.rejected_orders,
           t.cancelled_orders, t.avg_slippage_pct, t.avg_fee_pct, t.avg_latency_ms,
           t.total_volume_usdt, t.total_fees_usdt, t.daily_pnl_usdt, t.cumulative_pnl_usdt)
          IS DISTINCT FROM
          (EXCLUDED.total_orders, EXCLUDED.filled_orders, EXCLUDED.partial_fills,
           EXCLUDED.rejected_orders, EXCLUDED.cancelled_orders, EXCLUDED.avg_slippage_pct,
           EXCLUDED.avg_fee_pct, EXCLUDED.avg_latency_ms, EXCLUDED.total_volume_usdt,
           EXCLUDED.total_fees_usdt, EXCLUDED.daily_pnl_usdt, EXCLUDED.cumulative_pnl_usdt))
SELECT EXISTS (SELECT 1 FROM paper_trading_stats t
               WHERE t.stat_date > (%(dates)s::date[])[1]
                 AND t.stat_date <> ALL(%(dates)s::date[])) AS later
"""

# Cumulative P&L of every date from the earliest touched one on (a late fill moves them all):
# run when WRITE_STATS_FROM_SUMS reports rows after the first written date that it did not write.
REFRESH_CUMULATIVE_PNL = """
UPDATE paper_trading_stats AS s
SET cumulative_pnl_usdt = c.cumulative, updated_at = now()
FROM (SELECT stat_date, sum(daily_pnl_usdt) OVER (ORDER BY stat_date) AS cumulative
      FROM paper_trading_stats) AS c
WHERE s.stat_date = c.stat_date AND s.stat_date >= %(from)s
  AND s.cumulative_pnl_usdt IS DISTINCT FROM c.cumulative
"""

INSERT_ROUND_TRIPS = """
INSERT INTO paper_round_trips (closing_fill_id, symbol, direction, opened_at, closed_at, quantity,
                               max_quantity, entry_avg_price, exit_avg_price, realized_pnl_usdt,
                               fees_usdt, fills, close_reason)
SELECT * FROM unnest(
    %(fill_id)s::varchar[], %(symbol)s::varchar[], %(direction)s::varchar[],
    %(opened_at)s::timestamptz[], %(closed_at)s::timestamptz[], %(quantity)s::numeric[],
    %(max_quantity)s::numeric[], %(entry_avg_price)s::numeric[], %(exit_avg_price)s::numeric[],
    %(realized)s::numeric[], %(fees)s::numeric[], %(fills)s::int[], %(reason)s::varchar[])
ON CONFLICT (closing_fill_id) DO NOTHING
"""

INSERT_FILL_PNL = """
INSERT INTO paper_fill_pnl (fill_id, symbol, filled_at, realized_pnl_usdt, position_quantity)
SELECT * FROM unnest(%(fill_id)s::varchar[], %(symbol)s::varchar[],
                     %(filled_at)s::timestamptz[], %(realized)s::numeric[],
                     %(quantity)s::numeric[])
ON CONFLICT (fill_id) DO NOTHING
RETURNING filled_at, realized_pnl_usdt
"""

# --- Per-symbol snapshot clocks (migration 007, consumer/snapshots.py, docs/scaling.md) ------
# Lock order, every transaction: the batch's symbol clocks (by symbol), the global clock row,
# then snapshot rows (by time, type). The global clock row is the creation lock: every batch
# holds it FOR SHARE, a batch that creates snapshot rows (and the idle tick, and prune) FOR UPDATE.
LOCK_SYMBOL_CLOCKS = """
SELECT symbol, event_time FROM paper_symbol_clocks WHERE symbol = ANY(%(symbols)s::varchar[])
ORDER BY symbol FOR UPDATE
"""

_SELECT_CLOCK = """
SELECT nullif(event_time, '-infinity') AS event_time, parts_since
FROM paper_pnl_clock WHERE clock_id = 1
"""
SELECT_CLOCK_FOR_SHARE = _SELECT_CLOCK + "FOR SHARE"
SELECT_CLOCK_FOR_UPDATE = _SELECT_CLOCK + "FOR UPDATE"

# The lock above needs the row: '-infinity' is "no event yet" (idle ticks wait for an event).
ENSURE_CLOCK_ROW = """
INSERT INTO paper_pnl_clock (clock_id, event_time, updated_at) VALUES (1, '-infinity', now())
ON CONFLICT (clock_id) DO NOTHING
"""

# The newest event time of any symbol, or where the idle tick left the clock, whichever is later.
SELECT_EVENT_CLOCK = """
SELECT nullif(greatest((SELECT event_time FROM paper_pnl_clock WHERE clock_id = 1),
                       (SELECT max(event_time) FROM paper_symbol_clocks)),
              '-infinity') AS event_time
"""

SET_CLOCK = """
INSERT INTO paper_pnl_clock (clock_id, event_time, updated_at) VALUES (1, %(time)s, now())
ON CONFLICT (clock_id) DO UPDATE SET event_time = EXCLUDED.event_time, updated_at = now()
"""

SET_SYMBOL_CLOCKS = """
INSERT INTO paper_symbol_clocks AS c (symbol, event_time)
SELECT * FROM unnest(%(symbol)s::varchar[], %(time)s::timestamptz[])
ON CONFLICT (symbol) DO UPDATE SET event_time = greatest(c.event_time, EXCLUDED.event_time)
"""

# One symbol's snapshot state as it stands (the terms of INSERT_SNAPSHOT, per symbol).
_SYMBOL_STATE = """
SELECT s.symbol, p.symbol IS NOT NULL AS has_position,
       coalesce(p.realized_pnl_usdt, 0) AS realized,
       coalesce(p.unrealized_pnl_usdt, 0) AS unrealized,
       coalesce(t.trades, 0) AS trades, coalesce(t.winning, 0) AS winning,
       coalesce(t.losing, 0) AS losing,
       coalesce(v.volume, 0) AS volume, coalesce(v.fees, 0) AS fees
FROM {symbols} s
LEFT JOIN paper_positions p ON p.symbol = s.symbol
LEFT JOIN (SELECT symbol, count(*) AS trades,
                  count(*) FILTER (WHERE realized_pnl_usdt > 0) AS winning,
                  count(*) FILTER (WHERE realized_pnl_usdt < 0) AS losing
           FROM paper_round_trips GROUP BY symbol) t ON t.symbol = s.symbol
LEFT JOIN (SELECT symbol, sum(quantity * price) AS volume, coalesce(sum(fees_usdt), 0) AS fees
           FROM paper_fills GROUP BY symbol) v ON v.symbol = s.symbol
"""

# Before a crossing event of each symbol: its state, valid for boundaries in (after, until].
WRITE_SNAPSHOT_PARTS = (
    """
WITH w AS (SELECT * FROM unnest(%(symbol)s::varchar[], %(after)s::timestamptz[],
                                %(until)s::timestamptz[]) AS w(symbol, after_time, until_time)),
st AS ("""
    + _SYMBOL_STATE.format(symbols="(SELECT DISTINCT symbol FROM w)")
    + """)
INSERT INTO paper_pnl_snapshot_parts (symbol, after_time, until_time, has_position, realized,
                                      unrealized, trades, winning, losing, volume, fees)
SELECT w.symbol, w.after_time, w.until_time, st.has_position, st.realized, st.unrealized,
       st.trades, st.winning, st.losing, st.volume, st.fees
FROM w JOIN st USING (symbol)
ON CONFLICT (symbol, until_time) DO NOTHING
"""
)

# New HOURLY/DAILY rows; REFRESH_SNAPSHOTS computes their values in the same transaction.
CREATE_SNAPSHOT_ROWS = """
INSERT INTO paper_pnl_snapshots (snapshot_time, snapshot_type, total_pnl_usdt,
                                 realized_pnl_usdt, unrealized_pnl_usdt, metadata)
SELECT b.t, b.k, 0, 0, 0, jsonb_build_object('source', %(source)s::text)
FROM unnest(%(time)s::timestamptz[], %(type)s::varchar[]) AS b(t, k)
WHERE b.t > coalesce(%(parts_since)s::timestamptz, '-infinity')
ORDER BY b.t, b.k
ON CONFLICT (snapshot_time, snapshot_type) DO NOTHING
RETURNING snapshot_id
"""

# The rows a batch may have changed, locked in (time, type) order BEFORE REFRESH_SNAPSHOTS: a
# statement that starts after the lock is granted sees every batch that committed meanwhile.
LOCK_SNAPSHOT_ROWS = """
SELECT snapshot_id FROM paper_pnl_snapshots
WHERE snapshot_type IN ('HOURLY', 'DAILY')
  AND (snapshot_time > %(after)s::timestamptz OR snapshot_id = ANY(%(created)s::int[]))
  AND snapshot_time > coalesce(%(parts_since)s::timestamptz, '-infinity')
ORDER BY snapshot_time, snapshot_type
FOR UPDATE
"""

# Recompute rows from the symbols' states (lessons.md #7: never added up from earlier rows):
# per symbol the part whose range holds B, else its current state if its clock < B, else nothing.
REFRESH_SNAPSHOTS = (
    """
WITH target AS (SELECT snapshot_id, snapshot_time AS b FROM paper_pnl_snapshots
                WHERE snapshot_id = ANY(%(ids)s::int[])),
cur AS ("""
    + _SYMBOL_STATE.format(symbols="paper_symbol_clocks")
    + """),
part AS (
    SELECT t.snapshot_id, c.symbol,
           CASE WHEN p.symbol IS NULL THEN cur.has_position ELSE p.has_position END AS has_position,
           CASE WHEN p.symbol IS NULL THEN cur.realized ELSE p.realized END AS realized,
           CASE WHEN p.symbol IS NULL THEN cur.unrealized ELSE p.unrealized END AS unrealized,
           CASE WHEN p.symbol IS NULL THEN cur.trades ELSE p.trades END AS trades,
           CASE WHEN p.symbol IS NULL THEN cur.winning ELSE p.winning END AS winning,
           CASE WHEN p.symbol IS NULL THEN cur.losing ELSE p.losing END AS losing,
           CASE WHEN p.symbol IS NULL THEN cur.volume ELSE p.volume END AS volume,
           CASE WHEN p.symbol IS NULL THEN cur.fees ELSE p.fees END AS fees
    FROM target t
    CROSS JOIN paper_symbol_clocks c
    JOIN cur ON cur.symbol = c.symbol
    LEFT JOIN paper_pnl_snapshot_parts p
           ON p.symbol = c.symbol AND p.after_time < t.b AND t.b <= p.until_time
    WHERE p.symbol IS NOT NULL OR c.event_time < t.b),
total AS (
    SELECT t.snapshot_id,
           coalesce(sum(p.realized) FILTER (WHERE p.has_position), 0) AS realized,
           coalesce(sum(p.unrealized) FILTER (WHERE p.has_position), 0) AS unrealized,
           coalesce(sum(p.trades), 0) AS trades, coalesce(sum(p.winning), 0) AS winning,
           coalesce(sum(p.losing), 0) AS losing, coalesce(sum(p.volume), 0) AS volume,
           coalesce(sum(p.fees), 0) AS fees,
           coalesce(jsonb_object_agg(p.symbol, jsonb_build_object(
                        'pnl', p.realized + p.unrealized,
                        'realized', p.realized,
                        'unrealized', p.unrealized,
                        'trades', p.trades,
                        'volume', p.volume) ORDER BY p.symbol) FILTER (WHERE p.has_position),
                    '{}'::jsonb) AS body
    FROM target t LEFT JOIN part p USING (snapshot_id)
    GROUP BY t.snapshot_id)
UPDATE paper_pnl_snapshots s SET
    total_pnl_usdt = total.realized + total.unrealized,
    realized_pnl_usdt = total.realized,
    unrealized_pnl_usdt = total.unrealized,
    balance_usdt = %(start_balance)s::numeric + total.realized,
    equity_usdt = %(start_balance)s::numeric + total.realized + total.unrealized,
    total_trades = total.trades, winning_trades = total.winning, losing_trades = total.losing,
    total_volume_usdt = total.volume, total_fees_usdt = total.fees, symbol_pnl = total.body
FROM total
WHERE s.snapshot_id = total.snapshot_id
"""
)

# A snapshot is derived from the positions, the round trips and the fills as they stand — never
# added up from earlier snapshots (lessons.md #7). Idempotent through UNIQUE(time, type).
INSERT_SNAPSHOT = """
WITH pos AS (
    SELECT coalesce(sum(realized_pnl_usdt), 0) AS realized,
           coalesce(sum(unrealized_pnl_usdt), 0) AS unrealized
    FROM paper_positions),
trips AS (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE realized_pnl_usdt > 0) AS winning,
           count(*) FILTER (WHERE realized_pnl_usdt < 0) AS losing
    FROM paper_round_trips),
volume AS (
    SELECT coalesce(sum(quantity * price), 0) AS volume, coalesce(sum(fees_usdt), 0) AS fees
    FROM paper_fills),
per_symbol AS (
    SELECT p.symbol, jsonb_build_object(
               'pnl', p.realized_pnl_usdt + p.unrealized_pnl_usdt,
               'realized', p.realized_pnl_usdt,
               'unrealized', p.unrealized_pnl_usdt,
               'trades', coalesce(t.trades, 0),
               'volume', coalesce(v.volume, 0)) AS body
    FROM paper_positions p
    LEFT JOIN (SELECT symbol, count(*) AS trades FROM paper_round_trips GROUP BY symbol) t
           USING (symbol)
    LEFT JOIN (SELECT symbol, sum(quantity * price) AS volume FROM paper_fills GROUP BY symbol) v
           USING (symbol))
INSERT INTO paper_pnl_snapshots (
    snapshot_time, snapshot_type, total_pnl_usdt, realized_pnl_usdt, unrealized_pnl_usdt,
    balance_usdt, equity_usdt, total_trades, winning_trades, losing_trades, total_volume_usdt,
    total_fees_usdt, symbol_pnl, metadata)
SELECT %(time)s, %(type)s, pos.realized + pos.unrealized, pos.realized, pos.unrealized,
       %(start_balance)s::numeric + pos.realized,
       %(start_balance)s::numeric + pos.realized + pos.unrealized,
       trips.total, trips.winning, trips.losing, volume.volume, volume.fees,
       coalesce((SELECT jsonb_object_agg(symbol, body ORDER BY symbol) FROM per_symbol),
                '{}'::jsonb),
       jsonb_build_object('source', %(source)s::text)
FROM pos, trips, volume
ON CONFLICT (snapshot_time, snapshot_type) DO NOTHING
RETURNING snapshot_id
"""

ADVANCE_OFFSETS = """
WITH batch AS (
    SELECT * FROM unnest(%(entry_stream)s::varchar[], %(entry_ms)s::bigint[],
                         %(entry_seq)s::bigint[]) AS b(stream_name, ms, seq)
)
INSERT INTO paper_consumer_offsets AS t (stream_name, group_name, last_entry_id,
                                         entries_committed, updated_at)
SELECT o.stream_name, %(group)s, o.last_entry_id,
       (SELECT count(*) FROM batch b WHERE b.stream_name = o.stream_name), now()
FROM unnest(%(stream)s::varchar[], %(last_id)s::varchar[]) AS o(stream_name, last_entry_id)
ON CONFLICT (stream_name, group_name) DO UPDATE SET
    last_entry_id = CASE
        WHEN (split_part(EXCLUDED.last_entry_id, '-', 1)::bigint,
              split_part(EXCLUDED.last_entry_id, '-', 2)::bigint)
           > (split_part(t.last_entry_id, '-', 1)::bigint,
              split_part(t.last_entry_id, '-', 2)::bigint)
        THEN EXCLUDED.last_entry_id ELSE t.last_entry_id END,
    -- only the entries past the committed offset: a batch redelivered after a crash between
    -- COMMIT and XACK is applied again (to no effect) but not counted again
    entries_committed = t.entries_committed + (
        SELECT count(*) FROM batch b
        WHERE b.stream_name = t.stream_name
          AND (b.ms, b.seq) > (split_part(t.last_entry_id, '-', 1)::bigint,
                               split_part(t.last_entry_id, '-', 2)::bigint)),
    updated_at = now()
"""

ARCHIVE_ENTRIES = """
INSERT INTO paper_event_ledger (stream_name, entry_id, entry_ms, entry_seq, fields)
SELECT e.stream_name, e.entry_id, split_part(e.entry_id, '-', 1)::bigint,
       split_part(e.entry_id, '-', 2)::bigint, e.fields::jsonb
FROM unnest(%(stream)s::varchar[], %(entry_id)s::varchar[], %(fields)s::text[])
     AS e(stream_name, entry_id, fields)
ON CONFLICT (stream_name, entry_id) DO NOTHING
"""

SELECT_OFFSETS = """
SELECT stream_name, last_entry_id, entries_committed, updated_at
FROM paper_consumer_offsets WHERE group_name = %(group)s ORDER BY stream_name
"""

PING = "SELECT 1"

# Every worker connection holds this advisory lock in SHARED mode for its whole life; a replay
# (which rewrites history) takes it EXCLUSIVELY, so it refuses to run while a live worker is
# connected to the same database, and a worker starting during a replay waits for it to end.
WORKER_PRESENCE_LOCK_KEY = 0x7061706572_776B  # "paper-wk"
HOLD_WORKER_PRESENCE = "SELECT pg_advisory_lock_shared(%(key)s)"
CUSTOM_PLANS_ONLY = "SET plan_cache_mode = force_custom_plan"
BEGIN = "BEGIN"
COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"
# The exception, for the rest of one transaction: APPLY_STATS_SUMS and WRITE_STATS_FROM_SUMS
# touch only the per-date tables (a row a day), so one generic plan per connection serves every
# batch; planning the statistics step each time cost 0.7 ms a batch, more than running it
# (0.3 ms). CUSTOM_PLANS_AGAIN after them.
GENERIC_PLAN_NEXT = "SET LOCAL plan_cache_mode = force_generic_plan"
CUSTOM_PLANS_AGAIN = "SET LOCAL plan_cache_mode = force_custom_plan"
TRY_EXCLUSIVE_PRESENCE = "SELECT pg_try_advisory_lock(%(key)s) AS acquired"


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class BatchResult:
    """What one committed batch did. ``rejected`` entries were not applied (dead-letter them)."""

    orders_written: int = 0
    fills_inserted: int = 0
    fills_duplicate: int = 0
    positions_written: int = 0
    stat_dates: list[date] = field(default_factory=list)
    snapshots: int = 0
    closed_trips: list[accounting.ClosedTrip] = field(default_factory=list)
    rejected: list[tuple[ParsedEntry, str]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# JSON helpers: Decimals survive the round trip through jsonb exactly
# --------------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in JSON metadata")


def dumps(value: Any) -> str:
    """Canonical JSON for jsonb columns (sorted keys, Decimals as strings)."""
    return json.dumps(value, default=_json_default, sort_keys=True, ensure_ascii=False)


def loads(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


# --------------------------------------------------------------------------------------------
# Row mapping
# --------------------------------------------------------------------------------------------


def _order_from_row(row: dict[str, Any]) -> OrderState:
    return OrderState(
        order_id=row["order_id"],
        client_id=row["client_id"],
        symbol=row["symbol"],
        side=Side(row["side"]),
        order_type=OrderType(row["order_type"] or "MARKET"),
        quantity=row["quantity"],
        price=row["price"],
        filled_quantity=row["filled_quantity"]
        if row["filled_quantity"] is not None
        else Decimal(0),
        filled_price=row["filled_price"],
        status=OrderStatus(row["status"]),
        slippage_pct=row["slippage_pct"],
        fees_usdt=row["fees_usdt"] if row["fees_usdt"] is not None else Decimal(0),
        fee_type=row["fee_type"],
        created_at=row["created_at"],
        submitted_at=row["submitted_at"],
        filled_at=row["filled_at"],
        rejection_reason=row["rejection_reason"],
        error_message=row["error_message"],
        metadata=loads(row["metadata"]),
    )


def _array_literal(values: list[Any]) -> str | list[Any]:
    """``values`` as ONE PostgreSQL array literal (``{"a","b\\"c",NULL}``, ``{1.5,NULL}``), or
    the list itself when its elements are not all text, all finite Decimals, all ints or all
    aware datetimes (psycopg refuses a list mixing Decimals and ints: so would we).

    Why: psycopg dumps a list parameter element by element in Python, and escapes text elements
    with a regular expression; for the JSON metadata of 10,000 rows that is ~110 ms against
    ~4 ms for this literal (numbers ~4x, times ~2x; bench/replay.py spent 11 % there). The SQL
    casts the literal (``%(x)s::numeric[]``) exactly as it casts psycopg's array, element text
    being what psycopg itself sends: ``str()`` of a Decimal or int, ISO 8601 of a datetime
    (with its offset), the string. tests/integration/test_array_params.py checks that both
    give the same arrays, whatever the values."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if kinds <= {str}:
        return "{" + ",".join([_NULL if v is None else _quoted(v) for v in values]) + "}"
    if kinds in ({Decimal}, {int}) and all(v.is_finite() for v in values if type(v) is Decimal):
        return "{" + ",".join([_NULL if v is None else str(v) for v in values]) + "}"
    if kinds <= {datetime} and all(v is None or v.tzinfo is not None for v in values):
        return "{" + ",".join([_NULL if v is None else f'"{v.isoformat()}"' for v in values]) + "}"
    return values


_NULL = "NULL"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _array_params(params: dict[str, list[Any]]) -> dict[str, Any]:
    """Every list parameter of an ``unnest`` statement as an array literal (``_array_literal``)."""
    return {name: _array_literal(values) for name, values in params.items()}


_ORDER_COLUMNS = (
    "order_id", "client_id", "symbol", "side", "order_type", "quantity", "price",
    "filled_quantity", "filled_price", "status", "slippage_pct", "fees_usdt", "fee_type",
    "created_at", "submitted_at", "filled_at", "rejection_reason", "error_message",
)  # fmt: skip


def _order_params(orders: Iterable[OrderState]) -> dict[str, Any]:
    params: dict[str, list[Any]] = {name: [] for name in (*_ORDER_COLUMNS, "metadata")}
    for order in orders:
        for name in _ORDER_COLUMNS:
            value = getattr(order, name)
            params[name].append(value.value if hasattr(value, "value") else value)
        params["metadata"].append(dumps(order.metadata) if order.metadata else None)
    return _array_params(params)


def _fill_params(fills: Sequence[tuple[FillEvent, Side]]) -> dict[str, Any]:
    params: dict[str, list[Any]] = {
        name: []
        for name in (
            "fill_id", "order_id", "symbol", "quantity", "price", "fees_usdt", "fee_type",
            "filled_at", "metadata",
        )
    }  # fmt: skip
    for fill, side in fills:
        params["fill_id"].append(fill.fill_id)
        params["order_id"].append(fill.order_id)
        params["symbol"].append(fill.symbol)
        params["quantity"].append(fill.quantity)
        params["price"].append(fill.price)
        params["fees_usdt"].append(fill.fees_usdt)
        params["fee_type"].append(fill.fee_type.value if fill.fee_type else None)
        params["filled_at"].append(fill.timestamp)
        # paper_fills has no side column: keep it with the fill (flaw 5 in the ERD).
        params["metadata"].append(dumps({**fill.metadata, "side": side.value}))
    return _array_params(params)


def _position_from_row(row: dict[str, Any]) -> accounting.Position:
    return accounting.Position.from_row({**row, "metadata": loads(row["metadata"])})


_POSITION_PARAMS = {
    "symbol": "symbol", "quantity": "quantity", "avg_entry_price": "avg_entry_price",
    "current_price": "current_price", "unrealized": "unrealized_pnl_usdt",
    "realized": "realized_pnl_usdt", "cost_basis": "cost_basis_usdt",
    "market_value": "market_value_usdt", "entry_trades": "entry_trades",
    "exit_trades": "exit_trades", "opened_at": "opened_at", "closed_at": "closed_at",
}  # fmt: skip


def _position_params(positions: Iterable[accounting.Position]) -> dict[str, Any]:
    params: dict[str, list[Any]] = {name: [] for name in (*_POSITION_PARAMS, "metadata")}
    for position in positions:
        row = position.to_row()
        for param, column in _POSITION_PARAMS.items():
            params[param].append(row[column])
        params["metadata"].append(dumps(row["metadata"]))
    return _array_params(params)


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------

# A pooled connection used within this many seconds is handed out again without a ping.
RECENT_S = 2.0

_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)
_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError)


class _Pooled:
    """A small pool of the worker's connections (opened explicitly) and transactions over it:
    a connection problem is ``DatabaseUnavailableError``, data PostgreSQL refuses is
    ``refused`` (the class attribute)."""

    refused: type[Exception] = RejectedByDatabaseError

    def __init__(
        self,
        dsn: str,
        *,
        name: str,
        max_size: int,
        connect_timeout_s: float,
        custom_plans: bool = False,
    ) -> None:
        self._timeout = connect_timeout_s
        kwargs: dict[str, Any] = {
            "connect_timeout": max(1, round(connect_timeout_s)),
            "autocommit": False,
        }
        configure = _announce_worker
        if custom_plans:
            kwargs["prepare_threshold"] = 0
            configure = _announce_planning_worker
        # When each connection last finished a transaction (see ``_check_unless_recent``).
        self._last_used: weakref.WeakKeyDictionary[psycopg.Connection[Any], float] = (
            weakref.WeakKeyDictionary()
        )
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            open=False,
            kwargs=kwargs,
            check=self._check_unless_recent,
            configure=configure,
            name=name,
        )

    def _check_unless_recent(self, conn: psycopg.Connection[Any]) -> None:
        """Pool ``check``: ping a connection handed out again only if it has been idle for
        ``RECENT_S`` or more. A connection that finished a transaction a moment ago is alive
        unless the server went away since, and then the next statement fails like the ping
        would have (``DatabaseUnavailableError``, retried on a new connection, the broken one
        discarded). Under load this saves the ping's round trip on every batch."""
        last = self._last_used.get(conn)
        if last is not None and time.monotonic() - last < RECENT_S:
            return
        ConnectionPool.check_connection(conn)

    def open(self) -> None:
        """Open the pool without waiting; ``ping`` tells whether the server is there."""
        self._pool.open(wait=False)

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _transaction(
        self, *, pipeline: bool = False
    ) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """One transaction on a pooled connection. With ``pipeline`` it runs in pipeline
        mode, BEGIN and COMMIT included: a statement whose result is not read is sent without
        waiting for the previous one."""
        try:
            with _pooled_transaction(
                self._pool, self._timeout, self._last_used, pipeline=pipeline
            ) as conn:
                yield conn
        except _DATA_ERRORS as exc:
            raise self.refused(_describe(exc)) from exc
        except _TRANSIENT as exc:
            raise DatabaseUnavailableError(_describe(exc)) from exc

    def ping(self) -> None:
        with self._transaction() as conn:
            conn.execute(PING)


class PostgresStore(_Pooled):
    """Writes batches to PostgreSQL through a small connection pool (opened explicitly)."""

    def __init__(
        self,
        dsn: str,
        *,
        group: str,
        archive: bool = False,
        start_balance: Decimal | None = None,
        connect_timeout_s: float = 5.0,
    ) -> None:
        # Every statement is prepared on its first run (parsed and analysed once per
        # connection) but planned on every run with its actual parameters
        # (plan_cache_mode = force_custom_plan). A generic plan, PostgreSQL's default after
        # five runs, is chosen once, often while the tables are small (a scan of every fill
        # or order against the batch's id list), and its cost then grows with the tables: in
        # bench/latency.py the statistics statement then joining orders and fills went
        # 1.3 → 4.2 ms and SELECT_ORDERS_FOR_UPDATE 0.4 → 1.2 ms within a minute. Preparing
        # without generic plans saves the parsing: four 60-s runs of bench/latency.py
        # alternated with three without: p99 23.9–29.0 ms (mean 27.2) against 28.8–31.5 ms
        # (mean 30.2), write_batch 8.5–9.4 against 9.9 ms. The one exception is the
        # statistics step (GENERIC_PLAN_NEXT), which touches only the per-date tables.
        super().__init__(
            dsn,
            name="paper-consumer",
            max_size=2,
            connect_timeout_s=connect_timeout_s,
            custom_plans=True,
        )
        self._group = group
        self._start_balance = start_balance
        self._archive = archive

    def write_batch(self, items: Sequence[ParsedEntry], fence: Fence | None = None) -> BatchResult:
        """Apply ``items`` (validated, in stream order) in one transaction; see module doc.

        With a ``fence`` the transaction first locks the shard's lease row and raises
        ``LeaseLostError`` (nothing applied) unless ``fence`` still holds it: see ``Fence``."""
        result = BatchResult()
        if not items:
            return result
        # Pipeline mode: a statement whose result is not read is sent without waiting for
        # the previous one, and the Python work of the next overlaps the server's (about
        # half of the batch's statements, BEGIN and COMMIT too; bench/latency.py write_batch
        # 11.4 -> 9.9 ms per batch). A refusal still raises its own error at the next sync
        # (test_bad_input.py).
        with self._transaction(pipeline=True) as conn:
            if fence is not None:
                check_fence(conn, fence)
            _write(
                conn,
                items,
                result,
                group=self._group,
                archive=self._archive,
                start_balance=self._start_balance,
            )
        return result

    def tick(self, now: datetime) -> int:
        """Streams idle: take the snapshots whose boundaries the wall clock ``now`` crossed."""
        with self._transaction() as conn:
            # No clock row: no batch has run yet (the first one creates it), nothing to take.
            row = conn.execute(SELECT_CLOCK_FOR_UPDATE).fetchone()
            if row is None:
                return 0
            clock = conn.execute(SELECT_EVENT_CLOCK).fetchone()
            boundaries, rest = snapshots.idle_plan(clock["event_time"] if clock else None, now)
            if not boundaries:
                return 0
            created = _create_snapshot_rows(conn, boundaries, row["parts_since"], "wall_clock")
            _refresh_snapshots(conn, created, self._start_balance)
            conn.execute(SET_CLOCK, {"time": rest})
        return len(created)

    def snapshot_now(self, now: datetime) -> int:
        """Take a MANUAL snapshot at ``now`` (``paper-consumer snapshot``)."""
        with self._transaction() as conn:
            return _take_snapshot(conn, now, "MANUAL", self._start_balance, "manual")


@contextmanager
def _pooled_transaction(
    pool: ConnectionPool[Any],
    timeout: float,
    last_used: weakref.WeakKeyDictionary[psycopg.Connection[Any], float],
    *,
    pipeline: bool,
) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A pooled connection with dict rows, inside one transaction (errors left to the caller);
    the time it ended without an error is recorded in ``last_used``."""
    with pool.connection(timeout=timeout) as conn:
        conn.row_factory = dict_row
        with _pipelined(conn) if pipeline else conn.transaction():
            yield conn
        last_used[conn] = time.monotonic()


@contextmanager
def _pipelined(conn: psycopg.Connection[dict[str, Any]]) -> Iterator[None]:
    """One transaction in pipeline mode, its BEGIN and COMMIT sent by us in the pipeline
    (psycopg's own transaction waits for the server after BEGIN and again before COMMIT: two
    round trips a batch). A statement that fails raises at the next result read or at the
    final sync (the server skips the statements after it, COMMIT included); the transaction
    is then rolled back here, as it is for any other error."""
    conn.autocommit = True  # no implicit BEGIN from psycopg: ours is in the pipeline
    try:
        with conn.pipeline() as pipeline:
            conn.execute(BEGIN, prepare=False)
            try:
                yield
                # Sending COMMIT may read answers already in, and raise an earlier refusal.
                conn.execute(COMMIT, prepare=False)
            except BaseException:
                # Take the server's answers up to here (an aborted part raises again), so that
                # the pipeline ends cleanly on the ROLLBACK.
                with contextlib.suppress(psycopg.Error):
                    pipeline.sync()
                with contextlib.suppress(psycopg.Error):
                    conn.execute(ROLLBACK, prepare=False)
                raise
    except BaseException:
        # Refused at the final sync (COMMIT skipped), or the connection is gone.
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                conn.execute(ROLLBACK, prepare=False)
        raise
    finally:
        if not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.autocommit = False


def _announce_worker(conn: psycopg.Connection[Any]) -> None:
    """Pool ``configure`` hook: mark this connection as a live worker's (see the lock above)."""
    conn.execute(HOLD_WORKER_PRESENCE, {"key": WORKER_PRESENCE_LOCK_KEY})
    conn.commit()


def _announce_planning_worker(conn: psycopg.Connection[Any]) -> None:
    """``_announce_worker``, and plan every prepared statement with its actual parameters."""
    conn.execute(CUSTOM_PLANS_ONLY)
    _announce_worker(conn)


def _describe(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    constraint = getattr(diag, "constraint_name", None) if diag is not None else None
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{text} (constraint {constraint})" if constraint else text


@dataclass
class _StatsDelta:
    """What one batch changed that the daily statistics depend on (``daily_sums.py``).

    ``before`` holds, by the order's current id, the state each order row the batch writes (or
    deletes) had before the batch, as read FOR UPDATE the first time the batch touches it;
    ``created`` the ids of rows the batch inserted; ``fills`` the rows ``INSERT_FILLS``
    returned (the fills inserted now, with their stored amounts and fee %); ``pnl`` the cursors
    of ``INSERT_FILL_PNL`` (read at the end, so that pipeline mode need not wait for them).
    The order rows as they stand after the batch are read back by id (a deleted one is simply
    not found): every term comes from stored values."""

    before: dict[str, OrderState] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)
    fills: list[dict[str, Any]] = field(default_factory=list)
    pnl: list[psycopg.Cursor[dict[str, Any]]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.before or self.created or self.fills or self.pnl)

    def touch(self, order_id: str, stored: OrderState | None) -> None:
        """The row ``order_id`` (``stored`` before this statement, None if new) is written."""
        if order_id in self.before or order_id in self.created:
            return
        if stored is None:
            self.created.add(order_id)
        else:
            self.before[order_id] = stored

    def rekey(self, old: str, new: str, stored: OrderState) -> None:
        self.touch(old, stored)
        if old in self.before:
            self.before[new] = self.before.pop(old)
        else:
            self.created.discard(old)
            self.created.add(new)

    def read_orders(
        self, conn: psycopg.Connection[dict[str, Any]]
    ) -> psycopg.Cursor[dict[str, Any]] | None:
        """Send the read of the order rows as they stand now (after every write of the batch);
        its result is read by ``sums``."""
        ids = {*self.before, *self.created, *(f["order_id"] for f in self.fills)}
        if not ids:
            return None
        return conn.execute(SELECT_ORDERS_FOR_STATS, {"ids": sorted(ids)})

    def sums(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        orders: psycopg.Cursor[dict[str, Any]] | None,
    ) -> daily_sums.BatchSums:
        """The batch's signed terms by date: its orders now (+) and before (-), the fills and
        P&L rows it inserted (+), and the latency of older fills of orders it moved (+/-)."""
        now = {
            r["order_id"]: daily_sums.OrderRow(r["created_at"], r["status"], r["slippage_pct"])
            for r in (orders.fetchall() if orders is not None else [])
        }
        terms = daily_sums.BatchSums()
        for order_id in {*self.before, *self.created}:
            if order_id in now:
                terms.add_order(now[order_id], 1)
        was = {
            order_id: daily_sums.OrderRow(o.created_at, o.status.value, o.slippage_pct)
            for order_id, o in self.before.items()
        }
        for old_row in was.values():
            terms.add_order(old_row, -1)
        for fill in self.fills:
            order = now.get(fill["order_id"])
            if order is not None:  # the reference joins each fill to its order
                terms.add_fill(
                    fill["filled_at"], order.created_at, fill["volume"], fill["fees"],
                    fill["fee_pct"],
                )  # fmt: skip
        moved = {
            order_id: (was[order_id].created_at, now[order_id].created_at)
            for order_id in was
            if order_id in now and now[order_id].created_at != was[order_id].created_at
        }
        if moved:
            older = conn.execute(
                SELECT_OLDER_FILL_TIMES,
                {"ids": sorted(moved), "new_fill_ids": [f["fill_id"] for f in self.fills]},
            ).fetchall()
            for row in older:
                old, new = moved[row["order_id"]]
                terms.add_latency(row["filled_at"], new, 1)
                terms.add_latency(row["filled_at"], old, -1)
        for cursor in self.pnl:
            for row in cursor.fetchall():
                terms.add_pnl(row["filled_at"], row["realized_pnl_usdt"])
        return terms


def _sums_params(changed: dict[date, daily_sums.DaySums]) -> dict[str, Any]:
    params: dict[str, list[Any]] = {"stat_date": list(changed)}
    for column in daily_sums.COLUMNS:
        params[column] = [getattr(day, column) for day in changed.values()]
    return _array_params(params)


def _write(
    conn: psycopg.Connection[dict[str, Any]],
    items: Sequence[ParsedEntry],
    result: BatchResult,
    *,
    group: str,
    archive: bool,
    start_balance: Decimal | None = None,
) -> None:
    stat_dates: set[date] = set()
    delta = _StatsDelta()
    plan = _plan_snapshots(conn, items)
    for segment in plan.plan.segments:
        if segment.parts_before:
            parts = segment.parts_before
            conn.execute(
                WRITE_SNAPSHOT_PARTS,
                {
                    "symbol": [p.symbol for p in parts],
                    "after": [p.after for p in parts],
                    "until": [p.until for p in parts],
                },
            )
        if segment.items:
            fills, positions = _write_orders_and_fills(
                conn, segment.items, result, stat_dates, delta
            )
            _move_positions(
                conn, segment.items, fills, result, stat_dates, delta=delta, positions=positions
            )
    orders_now = delta.read_orders(conn)
    _finish_snapshots(conn, plan, result, start_balance)
    if stat_dates or not delta.empty:
        changed = delta.sums(conn, orders_now).changed()
        dates = sorted(stat_dates | set(changed))
        conn.execute(LOCK_STATS)
        conn.execute(GENERIC_PLAN_NEXT)
        if changed:
            conn.execute(APPLY_STATS_SUMS, _sums_params(changed))
        written = conn.execute(WRITE_STATS_FROM_SUMS, {"dates": dates}).fetchone()
        conn.execute(CUSTOM_PLANS_AGAIN)
        if written is None or written["later"]:
            conn.execute(REFRESH_CUMULATIVE_PNL, {"from": dates[0]})
        result.stat_dates = dates
    _advance_offsets(conn, [i.key for i in items], group)
    if archive:
        rejected_keys = {item.key for item, _ in result.rejected}
        accepted = [i for i in items if i.key not in rejected_keys]
        if accepted:
            conn.execute(
                ARCHIVE_ENTRIES,
                {
                    "stream": [i.key.stream for i in accepted],
                    "entry_id": [i.key.entry_id for i in accepted],
                    "fields": [dumps(i.fields) for i in accepted],
                },
            )


@dataclass
class _SnapshotPlan:
    """The batch's cut, and its lock of the global clock row: sent, its result read when
    first needed (pipeline mode: it comes back with the batch's next read)."""

    plan: snapshots.SymbolPlan[ParsedEntry]
    clock: psycopg.Cursor[dict[str, Any]]
    _row: dict[str, Any] | None = None

    @property
    def parts_since(self) -> datetime | None:
        if self._row is None:
            self._row = self.clock.fetchone()
            if self._row is None:
                raise SchemaNotReadyError("paper_pnl_clock: the clock row could not be created")
        since: datetime | None = self._row["parts_since"]
        return since


def _plan_snapshots(
    conn: psycopg.Connection[dict[str, Any]], items: Sequence[ParsedEntry]
) -> _SnapshotPlan:
    """Lock the batch's symbol clocks, cut the batch (``snapshots.plan_by_symbol``), then lock
    the global clock row: FOR UPDATE if the batch creates snapshot rows, else FOR SHARE.

    Why the final values are right whatever the order of concurrent batches (separate
    transactions, READ COMMITTED; docs/scaling.md "P&L snapshots"): a row B changes only when
    the state of a symbol s with clock_s < B changes (a crossing event first writes the part of
    s, the state before it, so crossing does not change B). (1) Two batches refresh the same
    row: each locks its rows FOR UPDATE after its own writes and before the statement that
    computes them; the second to get the lock computes after the first committed, so it sees
    both. (2) A batch creates row B while another changes some s with clock_s < B: creation
    holds the global row FOR UPDATE, every batch holds it FOR SHARE from before its writes to
    its commit, so one of them commits before the other starts writing: either the creator
    computes B seeing the change, or the changer finds B (committed) among the rows to refresh.
    """
    symbols = sorted({i.event.symbol for i in items if i.event.symbol is not None})
    clocks = {
        r["symbol"]: r["event_time"]
        for r in conn.execute(LOCK_SYMBOL_CLOCKS, {"symbols": symbols}).fetchall()
    }
    plan = snapshots.plan_by_symbol([(i, i.event.symbol, i.event.timestamp) for i in items], clocks)
    lock = SELECT_CLOCK_FOR_UPDATE if plan.boundaries else SELECT_CLOCK_FOR_SHARE
    # The row is created if missing (a no-op, lock-free, once it exists), so the lock below
    # always finds it and is taken before any write of the batch without waiting for it here.
    conn.execute(ENSURE_CLOCK_ROW)
    return _SnapshotPlan(plan, conn.execute(lock))


def _finish_snapshots(
    conn: psycopg.Connection[dict[str, Any]],
    planned: _SnapshotPlan,
    result: BatchResult,
    start_balance: Decimal | None,
) -> None:
    """After the batch's writes: advance the symbol clocks, create the crossed rows, and
    recompute every row the batch may have changed (B > ``changed_after``, and the new ones)."""
    plan = planned.plan
    if plan.clocks:
        conn.execute(
            SET_SYMBOL_CLOCKS, {"symbol": list(plan.clocks), "time": list(plan.clocks.values())}
        )
    created: list[int] = []
    if plan.boundaries:
        created = _create_snapshot_rows(conn, plan.boundaries, planned.parts_since, "event_time")
        result.snapshots += len(created)
    if plan.changed_after is None and not created:
        return
    locked = conn.execute(
        LOCK_SNAPSHOT_ROWS,
        {
            "after": plan.changed_after or datetime.max.replace(tzinfo=UTC),
            "created": created,
            "parts_since": planned.parts_since,
        },
    ).fetchall()
    _refresh_snapshots(conn, [r["snapshot_id"] for r in locked], start_balance)


def _create_snapshot_rows(
    conn: psycopg.Connection[dict[str, Any]],
    boundaries: Sequence[snapshots.Boundary],
    parts_since: datetime | None,
    source: str,
) -> list[int]:
    """Insert the rows not there yet (values to be computed by ``_refresh_snapshots``)."""
    cursor = conn.execute(
        CREATE_SNAPSHOT_ROWS,
        {
            "time": [b[0] for b in boundaries],
            "type": [b[1] for b in boundaries],
            "parts_since": parts_since,
            "source": source,
        },
    )
    return [r["snapshot_id"] for r in cursor.fetchall()]


def _refresh_snapshots(
    conn: psycopg.Connection[dict[str, Any]], ids: list[int], start_balance: Decimal | None
) -> None:
    if ids:
        conn.execute(REFRESH_SNAPSHOTS, {"ids": ids, "start_balance": start_balance})


def _take_snapshot(
    conn: psycopg.Connection[dict[str, Any]],
    moment: datetime,
    kind: snapshots.SnapshotType,
    start_balance: Decimal | None,
    source: str,
) -> int:
    """Insert one snapshot of the state as it stands; 1 if written, 0 if it existed."""
    cursor = conn.execute(
        INSERT_SNAPSHOT,
        {"time": moment, "type": kind, "start_balance": start_balance, "source": source},
    )
    return len(cursor.fetchall())


def _write_orders_and_fills(
    conn: psycopg.Connection[dict[str, Any]],
    items: Sequence[ParsedEntry],
    result: BatchResult,
    stat_dates: set[date],
    delta: _StatsDelta,
) -> tuple[dict[int, tuple[FillEvent, Side]], psycopg.Cursor[dict[str, Any]] | None]:
    """Steps 1 and 2. Returns each fill inserted now (a published fill, or one derived from a
    bot result) with its side, keyed by ``id()`` of the item that carried it; and, when there
    were fills, the cursor of step 3's position rows, locked in the same round trip as the
    fills' insert (the symbols of every fill and mark of ``items``: a few rows more than the
    fills inserted need, never fewer)."""
    order_ids = sorted(
        {i.event.order_id for i in items if isinstance(i.event, OrderEvent | FillEvent)}
    )
    client_ids = sorted(
        {
            i.event.client_id
            for i in items
            if isinstance(i.event, OrderRequestEvent | OrderResultEvent) and i.event.client_id
        }
    )
    if client_ids:
        params: dict[str, Any] = {"ids": order_ids, "client_ids": client_ids}
        rows = conn.execute(SELECT_ORDERS_AND_CLIENTS_FOR_UPDATE, params).fetchall()
    else:
        rows = conn.execute(SELECT_ORDERS_FOR_UPDATE, {"ids": order_ids}).fetchall()
    stored = {row["order_id"]: _order_from_row(row) for row in rows}
    # A placeholder's created_at can move to another date: the old date is touched too.
    stat_dates.update(daily_sums.utc_date(order.created_at) for order in stored.values())
    current: dict[str, OrderState] = dict(stored)
    fold = _fold_in_stream_order(items, current, result)

    # Stored bot request rows linked to their result: re-keyed, or merged into its row.
    rekeyed = {old: new for old, new in fold.moved.items() if new is not None}
    merged = sorted(old for old, new in fold.moved.items() if new is None)
    if rekeyed:
        olds = sorted(rekeyed)
        conn.execute(REKEY_ORDERS, {"old_ids": olds, "new_ids": [rekeyed[o] for o in olds]})
        for old, new in rekeyed.items():
            delta.rekey(old, new, stored[old])
            stored[new] = replace(stored.pop(old), order_id=new)
    if merged:
        conn.execute(DELETE_MERGED_REQUESTS, {"ids": merged})
        for old in merged:
            delta.touch(old, stored[old])
            del stored[old]

    changed = sorted(
        (o for oid, o in current.items() if stored.get(oid) != o), key=lambda o: o.order_id
    )
    if changed:
        conn.execute(UPSERT_ORDERS, _order_params(changed))
        result.orders_written += len(changed)
        stat_dates.update(daily_sums.utc_date(o.created_at) for o in changed)
        for order in changed:
            delta.touch(order.order_id, stored.get(order.order_id))

    if not fold.fills:
        return {}, None
    cursor = conn.execute(INSERT_FILLS, _fill_params([(f, s) for _, f, s in fold.fills]))
    symbols = {f.symbol for _, f, _ in fold.fills}
    symbols.update(i.event.symbol for i in items if isinstance(i.event, MarkEvent))
    positions = conn.execute(SELECT_POSITIONS_FOR_UPDATE, {"symbols": sorted(symbols)})
    rows = cursor.fetchall()
    inserted = {row["fill_id"] for row in rows}
    result.fills_inserted += len(inserted)
    result.fills_duplicate += len(fold.fills) - len(inserted)
    delta.fills.extend(rows)
    if fold.placeholder_ids:
        for order_id in fold.placeholder_ids:  # RESIZE_PLACEHOLDERS may move created_at
            delta.touch(order_id, stored.get(order_id))
        conn.execute(
            RESIZE_PLACEHOLDERS,
            {"ids": sorted(fold.placeholder_ids), "placeholder_key": PLACEHOLDER_KEY},
        )
    fills = {id(item): (fill, side) for item, fill, side in fold.fills if fill.fill_id in inserted}
    return fills, positions


@dataclass
class _Fold:
    """What one pass over a batch decided (see ``_fold_in_stream_order``)."""

    fills: list[tuple[ParsedEntry, FillEvent, Side]] = field(default_factory=list)
    placeholder_ids: set[str] = field(default_factory=set)
    # Stored rows that left their key: bot request rows re-keyed to their result's order id
    # (old -> new), or merged into the result's existing row (old -> None).
    moved: dict[str, str | None] = field(default_factory=dict)


class _Book:
    """The batch's orders by order id, with an index by client id kept in step."""

    def __init__(self, current: dict[str, OrderState]) -> None:
        self.rows = current
        self.stored = frozenset(current)
        self.by_client: dict[str, set[str]] = {}
        for state in current.values():
            self._index(state)

    def _index(self, state: OrderState) -> None:
        if state.client_id is not None:
            self.by_client.setdefault(state.client_id, set()).add(state.order_id)

    def put(self, state: OrderState) -> None:
        self.rows[state.order_id] = state
        self._index(state)

    def pop(self, order_id: str) -> OrderState:
        state = self.rows.pop(order_id)
        if state.client_id is not None:
            self.by_client.get(state.client_id, set()).discard(order_id)
        return state

    def request_row(self, client_id: str) -> OrderState | None:
        """The row still standing for the bot request ``client_id`` alone, if any."""
        state = self.rows.get(client_id)
        return state if state is not None and is_request_row(state) else None

    def for_client(self, client_id: str) -> OrderState | None:
        """The row a bot request with ``client_id`` belongs to: the row keyed by it, else the
        first (by order id) of the rows carrying it."""
        if client_id in self.rows:
            return self.rows[client_id]
        ids = sorted(self.by_client.get(client_id, ()))
        return self.rows[ids[0]] if ids else None


def _fold_in_stream_order(
    items: Sequence[ParsedEntry],
    current: dict[str, OrderState],
    result: BatchResult,
) -> _Fold:
    """Fold order events into ``current`` and resolve fills, one entry at a time in stream
    order, so every decision sees exactly what a batch ending just before it would have stored
    (the result does not depend on batch boundaries). Fills are de-duplicated inside the batch
    (first wins); a fill whose order is unknown gets a placeholder order. The bot's requests
    and results meet through their client id in either order, and a result derives one fill
    from the growth of its cumulative filled quantity (bot-dialect.md)."""
    seen: set[str] = set()
    fold = _Fold()
    book = _Book(current)
    for item in items:
        event = item.event
        if isinstance(event, OrderRequestEvent):
            _fold_request(book, event, item, result)
            continue
        if isinstance(event, OrderResultEvent):
            derived = _fold_result(book, event, item, result, fold)
            if derived is not None and derived.fill_id not in seen:
                seen.add(derived.fill_id)
                fold.fills.append((item, derived, derived.side or book.rows[event.order_id].side))
            continue
        if isinstance(event, OrderEvent):
            try:
                book.put(apply_order_event(current.get(event.order_id), event))
            except OrderEventRejectedError as exc:
                result.rejected.append((item, str(exc)))
            continue
        if not isinstance(event, FillEvent):
            continue
        if event.fill_id in seen:
            result.fills_duplicate += 1
            continue
        order = current.get(event.order_id)
        side = event.side or (order.side if order is not None else None)
        if side is None:
            result.rejected.append(
                (
                    item,
                    f"fill {event.fill_id!r} has no side and its order {event.order_id!r} is "
                    "unknown, so the position it moves cannot be determined",
                )
            )
            continue
        seen.add(event.fill_id)
        if order is None:
            book.put(placeholder_from_fill(event, side))
        if current[event.order_id].is_placeholder:
            fold.placeholder_ids.add(event.order_id)
        fold.fills.append((item, event, side))
    return fold


def _fold_request(
    book: _Book, event: OrderRequestEvent, item: ParsedEntry, result: BatchResult
) -> None:
    """A bot request: fills in the row its result already made (found by client id; the
    request time becomes its ``created_at``), else stands as a PENDING row under its client
    id."""
    client_id = event.client_id or event.order_id
    state = book.for_client(client_id)
    if state is not None and state.order_id != event.order_id:
        event = event.model_copy(update={"order_id": state.order_id, "status": None})
    try:
        book.put(apply_order_event(state, event))
    except OrderEventRejectedError as exc:  # pragma: no cover - a request has what a row needs
        result.rejected.append((item, str(exc)))


def _fold_result(
    book: _Book, event: OrderResultEvent, item: ParsedEntry, result: BatchResult, fold: _Fold
) -> FillEvent | None:
    """A bot result: links its request row (by client id) to its order id, folds the order
    event in, and returns the fill derived from the growth of ``filled_quantity``, if any."""
    state = book.rows.get(event.order_id)
    client_id = event.client_id
    request = (
        book.request_row(client_id)
        if client_id is not None and client_id != event.order_id
        else None
    )
    if request is not None and client_id is not None:
        book.pop(client_id)
        if client_id in book.stored and client_id not in fold.moved:
            fresh = state is None and event.order_id not in book.stored
            fold.moved[client_id] = event.order_id if fresh else None
        state = merge_request(state, request, event.order_id)
    try:
        after = apply_order_event(state, event)
    except OrderEventRejectedError as exc:
        if request is not None:  # not applied: the request row stays as it was
            book.put(request)
            fold.moved.pop(request.order_id, None)
        result.rejected.append((item, str(exc)))
        return None
    derived = derive_fill(state, after, event)
    if derived is None:
        book.put(after)
        return None
    fill, after = derived
    book.put(after)
    return fill


def _move_positions(
    conn: psycopg.Connection[dict[str, Any]],
    items: Sequence[ParsedEntry],
    new_fills: dict[int, tuple[FillEvent, Side]],
    result: BatchResult,
    stat_dates: set[date],
    *,
    delta: _StatsDelta,
    positions: psycopg.Cursor[dict[str, Any]] | None = None,
) -> None:
    """Step 3: apply the fills inserted now and the marks, interleaved in stream order
    (``positions``: the rows, already asked for; else they are read here)."""
    steps: list[tuple[FillEvent | MarkEvent, Side | None]] = []
    for i in items:
        if id(i) in new_fills:
            steps.append(new_fills[id(i)])
        elif isinstance(i.event, MarkEvent):
            steps.append((i.event, None))
    symbols = sorted({event.symbol for event, _ in steps})
    if not symbols:
        return
    if positions is None:
        positions = conn.execute(SELECT_POSITIONS_FOR_UPDATE, {"symbols": symbols})
    stored = {row["symbol"]: _position_from_row(row) for row in positions.fetchall()}
    current = dict(stored)
    trips: list[tuple[str, accounting.ClosedTrip]] = []
    effects: list[tuple[FillEvent, accounting.FillOutcome]] = []
    for event, side in steps:
        if isinstance(event, FillEvent) and side is not None:
            position = current.get(event.symbol) or accounting.new_position(event.symbol)
            outcome = accounting.apply_fill(position, accounting_fill(event, side))
            current[event.symbol] = outcome.position
            result.closed_trips.extend(outcome.closed_trips)
            trips.extend((event.fill_id, trip) for trip in outcome.closed_trips)
            effects.append((event, outcome))
            stat_dates.add(daily_sums.utc_date(event.timestamp))
        elif isinstance(event, MarkEvent) and event.symbol in current:
            # A mark for a symbol never traded has no position row to update.
            current[event.symbol] = accounting.apply_mark(
                current[event.symbol], event.price, event.timestamp
            )
    write = [p for sym, p in sorted(current.items()) if stored.get(sym) != p]
    if write:
        conn.execute(UPSERT_POSITIONS, _position_params(write))
        result.positions_written += len(write)
    if effects:
        pnl = conn.execute(
            INSERT_FILL_PNL,
            _array_params(
                {
                    "fill_id": [f.fill_id for f, _ in effects],
                    "symbol": [f.symbol for f, _ in effects],
                    "filled_at": [f.timestamp for f, _ in effects],
                    "realized": [o.realized_delta for _, o in effects],
                    "quantity": [o.position.quantity for _, o in effects],
                }
            ),
        )
        delta.pnl.append(pnl)
    if trips:
        conn.execute(INSERT_ROUND_TRIPS, _trip_params(trips))


def _trip_params(trips: Sequence[tuple[str, accounting.ClosedTrip]]) -> dict[str, Any]:
    return _array_params(
        {
            "fill_id": [fill_id for fill_id, _ in trips],
            "symbol": [t.symbol for _, t in trips],
            "direction": [t.direction for _, t in trips],
            "opened_at": [t.opened_at for _, t in trips],
            "closed_at": [t.closed_at for _, t in trips],
            "quantity": [t.quantity for _, t in trips],
            "max_quantity": [t.max_quantity for _, t in trips],
            "entry_avg_price": [t.entry_avg_price for _, t in trips],
            "exit_avg_price": [t.exit_avg_price for _, t in trips],
            "realized": [t.realized_pnl for _, t in trips],
            "fees": [t.fees for _, t in trips],
            "fills": [t.fills for _, t in trips],
            "reason": [t.reason for _, t in trips],
        }
    )


def accounting_fill(event: FillEvent, side: Side) -> accounting.Fill:
    """The accounting view of a stored fill event (its side resolved)."""
    return accounting.Fill(
        symbol=event.symbol,
        side=side.value,
        quantity=event.quantity,
        price=event.price,
        fee=event.fees_usdt,
        time=event.timestamp,
    )


def _advance_offsets(
    conn: psycopg.Connection[dict[str, Any]], keys: Sequence[EntryKey], group: str
) -> None:
    last: dict[str, EntryKey] = {}
    last_sort: dict[str, tuple[int, int]] = {}  # last[stream].sort_key, parsed once
    entry_ms: list[int] = []
    entry_seq: list[int] = []
    for key in keys:
        sort_key = key.sort_key
        if key.stream not in last or sort_key > last_sort[key.stream]:
            last[key.stream] = key
            last_sort[key.stream] = sort_key
        entry_ms.append(sort_key[0])
        entry_seq.append(sort_key[1])
    streams = sorted(last)
    conn.execute(
        ADVANCE_OFFSETS,
        {
            "group": group,
            "stream": streams,
            "last_id": [last[s].entry_id for s in streams],
            "entry_stream": [key.stream for key in keys],
            "entry_ms": entry_ms,
            "entry_seq": entry_seq,
        },
    )


# --------------------------------------------------------------------------------------------
# Replay (consumer/replay.py): the same `_write`, chunk after chunk, in ONE transaction
# --------------------------------------------------------------------------------------------

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


class ReplayTarget:
    """The database a replay rebuilds: one connection, one transaction, a presence lock.

    ``open()`` connects, takes the worker presence lock EXCLUSIVELY (refusing while any live
    worker — or another replay — is connected to this database), begins the transaction, and
    checks the paper tables are empty (or, with ``reset``, TRUNCATEs them inside it).
    ``write(items)`` runs the live worker's ``_write`` on one chunk under a savepoint; a chunk
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
        except _TRANSIENT as exc:
            raise DatabaseUnavailableError(_describe(exc)) from exc
        self._conn = conn
        try:
            self._prepare(conn)
        except _TRANSIENT as exc:
            self.close()
            raise DatabaseUnavailableError(_describe(exc)) from exc
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

    def write(self, items: Sequence[ParsedEntry]) -> list[BatchResult]:
        """Apply one chunk (in stream order) inside the replay transaction."""
        if self._conn is None:
            raise RuntimeError("ReplayTarget.write before open()")
        if not items:
            return []
        try:
            return self._write_or_split(self._conn, list(items))
        except _TRANSIENT as exc:
            raise DatabaseUnavailableError(_describe(exc)) from exc

    def _write_or_split(
        self, conn: psycopg.Connection[dict[str, Any]], items: list[ParsedEntry]
    ) -> list[BatchResult]:
        result = BatchResult()
        try:
            with conn.transaction():  # a savepoint inside the replay transaction
                _write(
                    conn,
                    items,
                    result,
                    group=self._group,
                    archive=False,
                    start_balance=self._start_balance,
                )
        except _DATA_ERRORS as exc:
            if len(items) == 1:
                reason = f"rejected by PostgreSQL: {_describe(exc)}"
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
        except _TRANSIENT as exc:
            raise DatabaseUnavailableError(_describe(exc)) from exc

    def close(self) -> None:
        """Roll back whatever was not committed, release the lock, disconnect."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            # A broken connection rolls back on the server by itself.
            with contextlib.suppress(*_TRANSIENT):
                conn.rollback()
            conn.close()


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
    except _TRANSIENT as exc:
        raise DatabaseUnavailableError(_describe(exc)) from exc
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
    except _TRANSIENT as exc:
        raise DatabaseUnavailableError(_describe(exc)) from exc


# --------------------------------------------------------------------------------------------
# Status queries (``paper-consumer status``): read-only, on a short-lived connection of their
# own, so a person's look does not take a pool connection nor count as a live worker.
# --------------------------------------------------------------------------------------------

SELECT_LAST_SNAPSHOT = """
SELECT snapshot_time, snapshot_type, total_pnl_usdt, realized_pnl_usdt, unrealized_pnl_usdt,
       total_trades, winning_trades, losing_trades, win_rate
FROM paper_pnl_snapshots
ORDER BY snapshot_time DESC, snapshot_id DESC
LIMIT 1
"""

SELECT_TOTAL_PNL = "SELECT get_paper_total_pnl() AS total_pnl_usdt"


def read_status(dsn: str, group: str, *, connect_timeout_s: float = 5.0) -> dict[str, Any]:
    """``offsets`` (committed per stream for ``group``), ``last_snapshot`` (a row or None) and
    ``total_pnl_usdt``. Raises ``DatabaseUnavailableError`` when PostgreSQL cannot be reached."""
    try:
        with psycopg.connect(
            dsn, row_factory=dict_row, connect_timeout=max(1, round(connect_timeout_s))
        ) as conn:
            offsets = conn.execute(SELECT_OFFSETS, {"group": group}).fetchall()
            snapshot = conn.execute(SELECT_LAST_SNAPSHOT).fetchone()
            total = conn.execute(SELECT_TOTAL_PNL).fetchone()
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"cannot connect to PostgreSQL: {_describe(exc)}") from exc
    except psycopg.Error as exc:
        raise SchemaNotReadyError(
            f"cannot read the status tables ({_describe(exc)}); run `paper-consumer migrate up`"
        ) from exc
    return {
        "offsets": offsets,
        "last_snapshot": snapshot,
        "total_pnl_usdt": total["total_pnl_usdt"] if total else None,
    }


# --------------------------------------------------------------------------------------------
# Analytics queries: `paper-consumer snapshot`, `report` (consumer/report.py) and `prune`
# (consumer/retention.py). Read-only except the prune DELETEs; run on short-lived connections of
# their own. Every window is `column >= %(since)s` with no upper bound.
# --------------------------------------------------------------------------------------------

SELECT_SNAPSHOT = """
SELECT snapshot_time, snapshot_type, total_pnl_usdt, realized_pnl_usdt, unrealized_pnl_usdt,
       balance_usdt, equity_usdt, total_trades, winning_trades, losing_trades, win_rate,
       total_volume_usdt, total_fees_usdt, symbol_pnl
FROM paper_pnl_snapshots
WHERE snapshot_time = %(time)s AND snapshot_type = %(type)s
"""

# Per symbol: P&L now (positions; unrealized of open positions only, as get_paper_total_pnl),
# realized P&L caused by fills in the window, closed round trips in the window, orders created
# in the window (fill rate as get_paper_fill_rate: FILLED, PARTIAL or PARTIALLY_FILLED), and
# volume and fees of the fills in the window.
_REPORT_PARTS = """
pos AS (
    SELECT {key} coalesce(sum(quantity), 0) AS position_quantity,
           coalesce(sum(realized_pnl_usdt), 0) AS realized_pnl_usdt,
           coalesce(sum(unrealized_pnl_usdt) FILTER (WHERE closed_at IS NULL), 0)
               AS unrealized_pnl_usdt
    FROM paper_positions {group}),
trips AS (
    SELECT {key} count(*) AS trades,
           count(*) FILTER (WHERE realized_pnl_usdt > 0) AS winning_trades,
           count(*) FILTER (WHERE realized_pnl_usdt < 0) AS losing_trades
    FROM paper_round_trips WHERE closed_at >= %(since)s {group}),
pnl AS (
    SELECT {key} coalesce(sum(realized_pnl_usdt), 0) AS window_realized_pnl_usdt
    FROM paper_fill_pnl WHERE filled_at >= %(since)s {group}),
orders AS (
    SELECT {key} count(*) AS orders,
           count(*) FILTER (WHERE status IN ('FILLED', 'PARTIAL', 'PARTIALLY_FILLED'))
               AS filled_orders,
           round(avg(slippage_pct), 6) AS avg_slippage_pct
    FROM paper_orders WHERE created_at >= %(since)s {group}),
fills AS (
    SELECT {key} count(*) AS fills, coalesce(sum(quantity * price), 0) AS volume_usdt,
           coalesce(sum(fees_usdt), 0) AS fees_usdt
    FROM paper_fills WHERE filled_at >= %(since)s {group})
"""

_REPORT_COLUMNS = """
       coalesce(pos.position_quantity, 0) AS position_quantity,
       coalesce(pos.realized_pnl_usdt, 0) AS realized_pnl_usdt,
       coalesce(pos.unrealized_pnl_usdt, 0) AS unrealized_pnl_usdt,
       coalesce(pos.realized_pnl_usdt, 0) + coalesce(pos.unrealized_pnl_usdt, 0)
           AS total_pnl_usdt,
       coalesce(pnl.window_realized_pnl_usdt, 0) AS window_realized_pnl_usdt,
       coalesce(trips.trades, 0) AS trades,
       coalesce(trips.winning_trades, 0) AS winning_trades,
       coalesce(trips.losing_trades, 0) AS losing_trades,
       round(trips.winning_trades::numeric / nullif(trips.trades, 0), 4) AS win_rate,
       coalesce(orders.orders, 0) AS orders,
       coalesce(orders.filled_orders, 0) AS filled_orders,
       round(orders.filled_orders::numeric / nullif(orders.orders, 0), 4) AS fill_rate,
       orders.avg_slippage_pct,
       coalesce(fills.fills, 0) AS fills,
       coalesce(fills.volume_usdt, 0) AS volume_usdt,
       coalesce(fills.fees_usdt, 0) AS fees_usdt
"""

REPORT_BY_SYMBOL = (
    "WITH "
    + _REPORT_PARTS.format(key="symbol,", group="GROUP BY symbol")
    + "SELECT symbol,"
    + _REPORT_COLUMNS
    + "FROM pos FULL JOIN trips USING (symbol) FULL JOIN pnl USING (symbol)"
    + " FULL JOIN orders USING (symbol) FULL JOIN fills USING (symbol)\nORDER BY symbol\n"
)

REPORT_TOTALS = (
    "WITH "
    + _REPORT_PARTS.format(key="", group="")
    + "SELECT get_paper_total_pnl() AS total_pnl_now_usdt,"
    + _REPORT_COLUMNS
    + "FROM pos, trips, pnl, orders, fills\n"
)

# One point per snapshot time (an HOURLY and a DAILY row at midnight hold the same state).
SELECT_PLOT_SNAPSHOTS = """
SELECT DISTINCT ON (snapshot_time) snapshot_time, snapshot_type, total_pnl_usdt,
       realized_pnl_usdt, unrealized_pnl_usdt, symbol_pnl
FROM paper_pnl_snapshots
WHERE snapshot_time >= %(since)s
ORDER BY snapshot_time, snapshot_type
"""

# Retention (`paper-consumer prune`; the rules are in sql/schema/paper_trading_erd.md). Each
# DELETE removes at most %(limit)s rows picked by ctid and is run in its own short transaction;
# for orders, SKIP LOCKED leaves rows a worker holds (its batch locks the orders it touches) to a
# later run.
# Old HOURLY snapshots: nothing is derived from snapshots; DAILY and MANUAL ones are kept.
_PRUNABLE_SNAPSHOTS = """
FROM paper_pnl_snapshots
WHERE snapshot_type = 'HOURLY' AND snapshot_time < %(cutoff)s
"""

# Orders that never had a fill and never will: created before the cutoff, in a final status
# without execution. Fills are never pruned: they are the record that keeps a redelivered fill
# from moving a position twice, and snapshots add volume and fees since start from them.
_PRUNABLE_ORDERS = """
FROM paper_orders AS o
WHERE o.created_at < %(cutoff)s
  AND o.status IN ('REJECTED', 'CANCELLED', 'FAILED')
  AND NOT EXISTS (SELECT 1 FROM paper_fills AS f WHERE f.order_id = o.order_id)
"""

# Snapshot parts (007) no row can need any more: a row B is created or recomputed only while
# some symbol's clock is below B, and clocks only grow, so rows at or before the smallest symbol
# clock are final (a symbol first seen later, with older events, no longer changes them). Prune
# makes that explicit: it raises parts_since to the horizon (least of cutoff and smallest clock;
# this also locks the clock row, like a batch that creates rows) and deletes the parts ending
# at or before it. Conservative under concurrent batches: clocks only grow.
_PARTS_HORIZON = """
SELECT least(%(cutoff)s::timestamptz, (SELECT min(event_time) FROM paper_symbol_clocks)) AS h
"""
COUNT_PRUNABLE_PARTS = (
    "SELECT count(*) AS n FROM paper_pnl_snapshot_parts WHERE until_time <= ("
    + _PARTS_HORIZON
    + ")"
)
PRUNE_SNAPSHOT_PARTS = (
    """
WITH horizon AS ("""
    + _PARTS_HORIZON
    + """),
frozen AS (
    UPDATE paper_pnl_clock c SET parts_since = horizon.h FROM horizon
    WHERE c.clock_id = 1 AND (c.parts_since IS NULL OR c.parts_since < horizon.h)
    RETURNING 1)
DELETE FROM paper_pnl_snapshot_parts WHERE ctid IN (
    SELECT p.ctid FROM paper_pnl_snapshot_parts p, horizon
    WHERE p.until_time <= horizon.h LIMIT %(limit)s)
"""
)

COUNT_PRUNABLE_SNAPSHOTS = "SELECT count(*) AS n" + _PRUNABLE_SNAPSHOTS
COUNT_PRUNABLE_ORDERS = "SELECT count(*) AS n" + _PRUNABLE_ORDERS

# Snapshots are only ever inserted, so nothing to skip; and FOR UPDATE would need UPDATE, which
# claire_user does not have on paper_pnl_snapshots.
PRUNE_SNAPSHOTS = (
    "DELETE FROM paper_pnl_snapshots WHERE ctid IN (SELECT ctid"
    + _PRUNABLE_SNAPSHOTS
    + "LIMIT %(limit)s)"
)
PRUNE_ORDERS = (
    "DELETE FROM paper_orders WHERE ctid IN (SELECT o.ctid"
    + _PRUNABLE_ORDERS
    + "LIMIT %(limit)s FOR UPDATE OF o SKIP LOCKED)"
)


# --------------------------------------------------------------------------------------------
# Shard leases (consumer/leases.py): who owns which shard, fenced in the batch transaction
# --------------------------------------------------------------------------------------------

# Take a shard that nobody holds (no row, released, or expired by PostgreSQL's clock). The epoch
# grows at every acquisition: it is the fencing token. A batch transaction of the previous owner
# holds the row FOR SHARE, so this waits for it to end, then re-checks the expiry.
ACQUIRE_LEASE = """
INSERT INTO paper_shard_leases AS l (group_name, shard, owner, epoch, acquired_at, heartbeat_at,
                                     expires_at)
VALUES (%(group)s, %(shard)s, %(owner)s, 1, clock_timestamp(), clock_timestamp(),
        clock_timestamp() + make_interval(secs => %(ttl_s)s))
ON CONFLICT (group_name, shard) DO UPDATE SET
    owner = EXCLUDED.owner, epoch = l.epoch + 1, acquired_at = clock_timestamp(),
    heartbeat_at = clock_timestamp(),
    expires_at = clock_timestamp() + make_interval(secs => %(ttl_s)s)
WHERE l.owner IS NULL OR l.expires_at <= clock_timestamp()
RETURNING epoch
"""

# Extend the leases still held (same owner and epoch, not expired); the rest were lost.
RENEW_LEASES = """
UPDATE paper_shard_leases AS l SET
    heartbeat_at = clock_timestamp(),
    expires_at = clock_timestamp() + make_interval(secs => %(ttl_s)s)
FROM unnest(%(shards)s::int[], %(epochs)s::bigint[]) AS h(shard, epoch)
WHERE l.group_name = %(group)s AND l.shard = h.shard AND l.epoch = h.epoch
  AND l.owner = %(owner)s AND l.expires_at > clock_timestamp()
RETURNING l.shard
"""

RELEASE_LEASE = """
UPDATE paper_shard_leases SET owner = NULL, expires_at = clock_timestamp()
WHERE group_name = %(group)s AND shard = %(shard)s AND owner = %(owner)s AND epoch = %(epoch)s
"""

# The fence: the first statement of a sharded batch. FOR SHARE keeps the row until COMMIT, so
# neither a takeover nor a renewal can change it while the batch is being written.
LOCK_LEASE_FOR_BATCH = """
SELECT expires_at > clock_timestamp() AS valid FROM paper_shard_leases
WHERE group_name = %(group)s AND shard = %(shard)s AND owner = %(owner)s AND epoch = %(epoch)s
FOR SHARE
"""

JOIN_MEMBERS = """
INSERT INTO paper_shard_members AS m (group_name, member, started_at, heartbeat_at, expires_at)
VALUES (%(group)s, %(member)s, clock_timestamp(), clock_timestamp(),
        clock_timestamp() + make_interval(secs => %(ttl_s)s))
ON CONFLICT (group_name, member) DO UPDATE SET
    heartbeat_at = EXCLUDED.heartbeat_at, expires_at = EXCLUDED.expires_at
"""

SELECT_LIVE_MEMBERS = """
SELECT member FROM paper_shard_members
WHERE group_name = %(group)s AND expires_at > clock_timestamp() ORDER BY member
"""

LEAVE_MEMBERS = """
DELETE FROM paper_shard_members WHERE group_name = %(group)s AND member = %(member)s
"""

SELECT_LEASES = """
SELECT shard, owner, epoch, acquired_at, heartbeat_at, expires_at,
       owner IS NOT NULL AND expires_at > clock_timestamp() AS live,
       extract(epoch FROM clock_timestamp() - heartbeat_at)::float8 AS heartbeat_age_s
FROM paper_shard_leases WHERE group_name = %(group)s ORDER BY shard
"""


@dataclass(frozen=True)
class Fence:
    """A lease as its holder knows it: a batch commits only while the row still says this."""

    group: str
    shard: int
    owner: str
    epoch: int

    def params(self) -> dict[str, Any]:
        return {"group": self.group, "shard": self.shard, "owner": self.owner, "epoch": self.epoch}


def check_fence(conn: psycopg.Connection[dict[str, Any]], fence: Fence) -> None:
    """Lock ``fence``'s lease row for the rest of the transaction, or raise ``LeaseLostError``."""
    row = conn.execute(LOCK_LEASE_FOR_BATCH, fence.params()).fetchone()
    if row is None or not row["valid"]:
        raise LeaseLostError(
            f"shard {fence.shard}: lease epoch {fence.epoch} of {fence.owner} is no longer held"
        )


class LeaseStore(_Pooled):
    """Membership and leases of one worker process (its own small pool, opened explicitly).
    Every failure here is ``DatabaseUnavailableError``: the runner retries it or lets the
    local leases run out."""

    refused = DatabaseUnavailableError

    def __init__(
        self, dsn: str, *, group: str, member: str, ttl_s: float, connect_timeout_s: float = 5.0
    ) -> None:
        super().__init__(
            dsn, name="paper-consumer-leases", max_size=1, connect_timeout_s=connect_timeout_s
        )
        self.group = group
        self.member = member
        self.ttl_s = ttl_s

    def heartbeat(self) -> list[str]:
        """Say this member is alive (for ``ttl_s``); return the live members, in name order."""
        with self._transaction() as conn:
            conn.execute(
                JOIN_MEMBERS, {"group": self.group, "member": self.member, "ttl_s": self.ttl_s}
            )
            rows = conn.execute(SELECT_LIVE_MEMBERS, {"group": self.group}).fetchall()
        return [row["member"] for row in rows]

    def leave(self) -> None:
        with self._transaction() as conn:
            conn.execute(LEAVE_MEMBERS, {"group": self.group, "member": self.member})

    def leases(self) -> list[dict[str, Any]]:
        with self._transaction() as conn:
            return conn.execute(SELECT_LEASES, {"group": self.group}).fetchall()

    def acquire(self, shard: int) -> Fence | None:
        """Take ``shard`` if nobody holds it; the new fence, or None."""
        params = {"group": self.group, "shard": shard, "owner": self.member, "ttl_s": self.ttl_s}
        with self._transaction() as conn:
            row = conn.execute(ACQUIRE_LEASE, params).fetchone()
        return None if row is None else Fence(self.group, shard, self.member, int(row["epoch"]))

    def renew(self, fences: Sequence[Fence]) -> set[int]:
        """Extend ``fences``; return the shards still held (the others are lost)."""
        if not fences:
            return set()
        params = {
            "group": self.group,
            "owner": self.member,
            "ttl_s": self.ttl_s,
            "shards": [f.shard for f in fences],
            "epochs": [f.epoch for f in fences],
        }
        with self._transaction() as conn:
            return {row["shard"] for row in conn.execute(RENEW_LEASES, params).fetchall()}

    def release(self, fence: Fence) -> None:
        """Give ``fence``'s shard up now (no waiting for the expiry)."""
        with self._transaction() as conn:
            conn.execute(RELEASE_LEASE, fence.params())


LEASES_PRESENT = "SELECT to_regclass('paper_shard_leases') IS NOT NULL AS present"


def read_leases(dsn: str, group: str, *, connect_timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Every shard lease of ``group`` (``status``); empty before migration 006."""
    try:
        with psycopg.connect(
            dsn, connect_timeout=max(1, round(connect_timeout_s)), row_factory=dict_row
        ) as conn:
            present = conn.execute(LEASES_PRESENT).fetchone()
            if not present or not present["present"]:
                return []
            return conn.execute(SELECT_LEASES, {"group": group}).fetchall()
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"cannot connect to PostgreSQL: {_describe(exc)}") from exc
