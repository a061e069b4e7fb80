"""Throughput: the worker end to end vs the naive pattern vs a raw COPY of the same rows.

    python bench/throughput.py [--events 100000] [--naive-events 20000] [--batch N]
                               [--profile pyinstrument]

In one run, on the same published data (``Publisher``, seed 6, order and fill events only, no
malformed entries; event times start 2099-01-01):

(a) **worker**: the backlog is published first (XADD complete), then an in-process ``Worker``
    (``PostgresStore`` + ``RedisStream``, exactly what ``paper-consumer run --until-idle`` builds)
    drains it: orders, fills, positions, round trips, per-fill P&L, stats, snapshots, offsets
    committed and every entry acknowledged. Timed from ``run`` to the acknowledgement of the
    last batch (an ``Observer`` hook); ``run`` itself returns ~``PAPER_BLOCK_MS`` later, after
    one blocking read of the empty streams tells it they are idle.
(b) **naive**: the straightforward pattern of the seed's integration snippet, on the first
    ``--naive-events`` entries of the same streams (in publish order): per order event one
    INSERT (ON CONFLICT DO NOTHING) then one UPDATE, COMMIT; per fill one INSERT and one position
    UPDATE (upsert adding the signed quantity), COMMIT; parsing with ``json`` only. Its rate is
    entries per second on that prefix.
(c) **ceiling**: COPY FROM STDIN of every row (a) produced (all paper tables) into an empty,
    migrated database — indexes, constraints and triggers in place — in one transaction.

Ratios: a/b = entries/s of (a) over entries/s of (b) (target >= 30); a/c = COPY seconds over
worker seconds for the same rows (target >= 0.5). ``--profile pyinstrument`` writes
``bench/throughput-profile.txt`` for the worker run (py-spy: run this script under
``py-spy record``). ``--sql-breakdown`` prints the wall time of each of the worker's SQL
statements (by its constant's name in ``consumer/db/``), with the last batch's cost.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import redis
from _common import copy_ceiling, machine, print_breakdown, scratch, sql_breakdown, table_counts

from consumer.db import PostgresStore
from consumer.logs import configure
from consumer.observer import Observer
from consumer.publisher import Publisher
from consumer.settings import Settings
from consumer.stream import RedisStream, read_range
from consumer.worker import Worker


def publish(
    client: redis.Redis, settings: Settings, events: int, seed: int, start: datetime
) -> Any:
    return Publisher(
        client,
        orders_stream=settings.orders_stream,
        fills_stream=settings.fills_stream,
        marks_stream=None,
        seed=seed,
        malformed_ratio=0.0,
        start=start,
        run_id=f"tp{seed}",
    ).publish(events)


class LastAck(Observer):
    """Remembers when the last batch was committed and acknowledged."""

    at = 0.0

    def batch_committed(self, *args: Any) -> None:
        self.at = time.perf_counter()


def run_worker(settings: Settings, profile: str | None) -> tuple[float, float, Worker]:
    store = PostgresStore(settings.database_dsn(), group=settings.group)
    store.open()
    stream = RedisStream.from_settings(settings)
    last_ack = LastAck()
    worker = Worker(settings, store, stream, last_ack)
    store.ping()  # the pool's first connection is made before the clock starts
    profiler = None
    if profile == "pyinstrument":
        from pyinstrument import Profiler  # noqa: PLC0415 - optional, bench extra

        profiler = Profiler(interval=0.0005)
        profiler.start()
    try:
        started = time.perf_counter()
        code = worker.run(until_idle=True)
        seconds = time.perf_counter() - started
        drained = last_ack.at - started
    finally:
        if profiler is not None:
            profiler.stop()
            out = __file__.replace("throughput.py", "throughput-profile.txt")
            with open(out, "w") as fh:
                fh.write(profiler.output_text(unicode=False, color=False, show_all=False))
            print(f"profile written to {out}")
        stream.close()
        store.close()
    assert code == 0, code
    return drained, seconds, worker


# -- (b) the naive pattern: written plainly, as the seed's integration snippet did -------------

NAIVE_INSERT_ORDER = """
INSERT INTO paper_orders (order_id, client_id, symbol, side, order_type, quantity, price,
                          status, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (order_id) DO NOTHING
"""
NAIVE_UPDATE_ORDER = """
UPDATE paper_orders SET status = %s, filled_quantity = coalesce(%s, filled_quantity),
       filled_price = coalesce(%s, filled_price), fees_usdt = coalesce(%s, fees_usdt),
       slippage_pct = coalesce(%s, slippage_pct), updated_at = now()
WHERE order_id = %s
"""
NAIVE_INSERT_FILL = """
INSERT INTO paper_fills (fill_id, order_id, symbol, quantity, price, fees_usdt, fee_type,
                         filled_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (fill_id) DO NOTHING
"""
NAIVE_UPDATE_POSITION = """
INSERT INTO paper_positions (symbol, quantity, avg_entry_price, cost_basis_usdt, opened_at,
                             updated_at)
VALUES (%s, %s, %s, 0, %s, now())
ON CONFLICT (symbol) DO UPDATE SET quantity = paper_positions.quantity + EXCLUDED.quantity,
                                   updated_at = now()
"""


def run_naive(settings: Settings, limit: int) -> tuple[float, int]:
    client = redis.Redis.from_url(settings.redis_dsn())
    started = time.perf_counter()
    entries = []
    for name in settings.streams():
        for entry in read_range(client, settings.redis_dsn(), name):
            fields: dict[str, Any] = dict(entry.fields)
            if "data" in fields:
                fields = json.loads(fields["data"])
            entries.append((fields["timestamp"], name == settings.orders_stream, fields))
    # Publish order: ids of two streams are not comparable within one millisecond (each stream
    # numbers its own sequence), and a fill before its order would break the foreign key.
    entries.sort(key=lambda e: e[0])
    entries = entries[:limit]
    with psycopg.connect(settings.database_dsn()) as conn:
        for _, is_order, fields in entries:
            g = fields.get
            if is_order:
                conn.execute(
                    NAIVE_INSERT_ORDER,
                    (
                        g("order_id"),
                        g("client_id"),
                        g("symbol"),
                        g("side"),
                        g("order_type"),
                        g("quantity"),
                        g("price"),
                        g("status"),
                        g("timestamp"),
                    ),
                )
                conn.execute(
                    NAIVE_UPDATE_ORDER,
                    (
                        g("status"),
                        g("filled_quantity"),
                        g("filled_price"),
                        g("fees_usdt"),
                        g("slippage_pct"),
                        g("order_id"),
                    ),
                )
            else:
                conn.execute(
                    NAIVE_INSERT_FILL,
                    (
                        g("fill_id"),
                        g("order_id"),
                        g("symbol"),
                        g("quantity"),
                        g("price"),
                        g("fees_usdt"),
                        g("fee_type"),
                        g("timestamp"),
                    ),
                )
                signed = Decimal(g("quantity")) * (1 if g("side") == "BUY" else -1)
                conn.execute(
                    NAIVE_UPDATE_POSITION, (g("symbol"), signed, g("price"), g("timestamp"))
                )
            conn.commit()
    seconds = time.perf_counter() - started
    client.close()
    return seconds, len(entries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--naive-events", type=int, default=20_000)
    parser.add_argument(
        "--batch", type=int, default=None, help="PAPER_BATCH_MAX_ENTRIES (default: the worker's)"
    )
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument(
        "--start",
        type=datetime.fromisoformat,
        default=datetime(2099, 1, 1, tzinfo=UTC),
        help="event time of the first event (ISO-8601); ~680,000 events per day of event time",
    )
    parser.add_argument("--profile", choices=["pyinstrument"], default=None)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument(
        "--sql-breakdown", action="store_true", help="time each SQL statement of the worker"
    )
    args = parser.parse_args()
    configure("json", "warning")
    print(f"machine: {machine()}")
    with scratch() as s:
        template = s.template()
        worker_db = s.database("worker", template)
        naive_db = s.database("naive", template)
        copy_db = s.database("copy", template)
        sizes = {} if args.batch is None else {"batch_max_entries": args.batch}
        settings = s.settings(worker_db, marks_stream="", **sizes)
        client = redis.Redis.from_url(settings.redis_dsn())
        stats = publish(client, settings, args.events, args.seed, args.start)
        print(f"published: {stats.describe()}")

        breakdown = sql_breakdown() if args.sql_breakdown else None
        worker_s, returned_s, worker = run_worker(settings, args.profile)
        if breakdown is not None:
            print_breakdown(breakdown, worker_s)
        pending = sum(
            int(client.xpending(st, settings.group)["pending"]) for st in settings.streams()
        )
        counts = table_counts(worker_db)
        rows = sum(counts.values())
        a_rate = args.events / worker_s
        print(
            f"(a) worker: {args.events} entries drained (last commit + XACK) in {worker_s:.2f} s "
            f"= {a_rate:,.0f} entries/s (run returned after {returned_s:.2f} s: the idle check "
            f"blocks PAPER_BLOCK_MS on the empty streams); "
            f"{worker.totals.batches} batches; pending after: {pending}; rows {counts}"
        )
        result: dict[str, Any] = {
            "events": args.events,
            "worker_s": round(worker_s, 3),
            "worker_entries_per_s": round(a_rate),
            "rows": rows,
        }
        if not args.skip_naive:
            naive_settings = Settings(**{**settings.model_dump(), "database_url": naive_db})
            naive_s, naive_n = run_naive(naive_settings, args.naive_events)
            b_rate = naive_n / naive_s
            print(f"(b) naive: {naive_n} entries in {naive_s:.2f} s = {b_rate:,.0f} entries/s")
            result |= {
                "naive_entries": naive_n,
                "naive_s": round(naive_s, 3),
                "naive_entries_per_s": round(b_rate),
                "a_over_b": round(a_rate / b_rate, 2),
            }
        copy_s, copied = copy_ceiling(worker_db, copy_db)
        print(
            f"(c) COPY: {sum(copied.values())} rows in {copy_s:.3f} s = "
            f"{sum(copied.values()) / copy_s:,.0f} rows/s"
        )
        result |= {"copy_s": round(copy_s, 3), "a_over_c": round(copy_s / worker_s, 3)}
        if "a_over_b" in result:
            print(f"a/b = {result['a_over_b']:.1f} (target >= 30)")
        print(f"a/c = {result['a_over_c']:.3f} (target >= 0.5)")
        print("result " + json.dumps(result))
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
