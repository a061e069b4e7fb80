"""Latency at a steady rate: XADD → COMMIT, p50 / p99 / max.

    python bench/latency.py [--rate 1000] [--seconds 60] [--batch-max-wait-ms N] [--sql-breakdown]

A publisher *process* (no GIL shared with the worker) sends ``--rate`` events/s for ``--seconds``
(``Publisher``, seed 9, orders + fills + marks, no malformed entries), one XADD each, on a fixed
schedule. Just before its XADD every event's ``timestamp`` is set to the wall-clock send time
(ISO-8601, microseconds); it is the event time the worker parses. The worker runs in this
process with the real ``PostgresStore`` wrapped by ``CommitClock``: right after ``write_batch``
returns (the transaction has COMMITted) it reads the wall clock once and records, for every
entry of the batch, ``commit_time - event.timestamp``. The first 2 s (warm-up) are left out.
Both processes share the host's clock (loopback only). Target: p99 <= 25 ms.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import redis
from _common import REDIS_URL, machine, print_breakdown, scratch, sql_breakdown

from consumer.db import PostgresStore
from consumer.fold import BatchResult
from consumer.logs import configure
from consumer.publisher import Publisher
from consumer.records import ParsedEntry
from consumer.stream import RedisStream
from consumer.worker import Worker


def _iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="microseconds")


def publish_steady(streams: tuple[str, str, str], rate: float, seconds: float, seed: int) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    publisher = Publisher(
        client,
        orders_stream=streams[0],
        fills_stream=streams[1],
        marks_stream=streams[2],
        seed=seed,
        malformed_ratio=0.0,
        run_id=f"lat{seed}{int(time.time())}",
    )
    total = int(rate * seconds)
    started = time.perf_counter()
    for i in range(total):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        entry = publisher.next_entry()
        fields = dict(entry.fields)
        if "data" in fields:
            body = json.loads(fields["data"])
            body["timestamp"] = _iso(time.time())
            fields["data"] = json.dumps(body, separators=(",", ":"))
        else:
            fields["timestamp"] = _iso(time.time())
        client.xadd(entry.stream, fields)
    client.close()


class CommitClock:
    """The real store; records XADD→COMMIT for each committed entry of each batch."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.samples: list[tuple[float, float]] = []  # (commit wall time, latency s)
        self.batches: list[int] = []
        self.store_s = 0.0  # time inside write_batch (the transaction, COMMIT included)

    def write_batch(self, items: Sequence[ParsedEntry]) -> BatchResult:
        started = time.perf_counter()
        result = self.store.write_batch(items)
        self.store_s += time.perf_counter() - started
        now = time.time()
        rejected = {id(item) for item, _ in result.rejected}
        self.batches.append(len(items))
        self.samples.extend(
            (now, now - i.event.timestamp.timestamp()) for i in items if id(i) not in rejected
        )
        return result

    def tick(self, now: datetime) -> int:
        return self.store.tick(now)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--batch-max-wait-ms", type=int, default=None, help="default: the worker's default"
    )
    parser.add_argument(
        "--batch-max-entries", type=int, default=None, help="default: the worker's default"
    )
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument(
        "--sql-breakdown", action="store_true", help="time each SQL statement of the worker"
    )
    args = parser.parse_args()
    configure("json", "warning")
    print(f"machine: {machine()}")
    with scratch() as s:
        dsn = s.database("latency", s.template())
        overrides = (
            {} if args.batch_max_wait_ms is None else {"batch_max_wait_ms": args.batch_max_wait_ms}
        )
        if args.batch_max_entries is not None:
            overrides["batch_max_entries"] = args.batch_max_entries
        settings = s.settings(dsn, **overrides)
        args.batch_max_wait_ms = settings.batch_max_wait_ms
        store = PostgresStore(dsn, group=settings.group)
        store.open()
        store.ping()
        clock = CommitClock(store)
        stream = RedisStream.from_settings(settings)
        stream.ensure_groups()
        worker = Worker(settings, clock, stream)  # type: ignore[arg-type]
        streams = (settings.orders_stream, settings.fills_stream, settings.marks_stream or "")
        proc = mp.get_context("spawn").Process(
            target=publish_steady, args=(streams, args.rate, args.seconds, args.seed)
        )

        def stop_when_done() -> None:
            proc.join()
            time.sleep(1.0)
            worker.stop()

        proc.start()
        threading.Thread(target=stop_when_done, daemon=True).start()
        breakdown = sql_breakdown() if args.sql_breakdown else None
        started = time.perf_counter()
        worker.run()
        wall_s = time.perf_counter() - started
        stream.close()
        store.close()

        t0 = clock.samples[0][0] if clock.samples else 0
        kept = [lat * 1000 for t, lat in clock.samples if t - t0 >= 2.0]
        result = {
            "rate": args.rate,
            "seconds": args.seconds,
            "batch_max_wait_ms": args.batch_max_wait_ms,
            "entries_measured": len(kept),
            "batches": len(clock.batches),
            "mean_batch": round(statistics.mean(clock.batches), 1) if clock.batches else 0,
            "p50_ms": round(pct(kept, 50), 2),
            "p99_ms": round(pct(kept, 99), 2),
            "max_ms": round(max(kept), 2),
        }
        print(
            f"{len(kept)} entries at {args.rate:.0f}/s, batch_max_wait_ms="
            f"{args.batch_max_wait_ms}: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
            f"max {result['max_ms']} ms (target p99 <= 25 ms); {result['batches']} batches, "
            f"mean {result['mean_batch']} entries"
        )
        windows: dict[int, list[float]] = {}
        for t, lat in clock.samples:
            windows.setdefault(int((t - t0) // 10), []).append(lat * 1000)
        result["p99_ms_per_10s"] = [round(pct(v, 99), 1) for _, v in sorted(windows.items())]
        print(f"p99 per 10 s window (the day's stats grow): {result['p99_ms_per_10s']}")
        batches = max(1, len(clock.batches))
        result["store_ms_per_batch"] = round(1000 * clock.store_s / batches, 2)
        print(
            f"per batch: {result['store_ms_per_batch']} ms in write_batch (transaction and "
            f"COMMIT), of a {1000 * wall_s / batches:.2f} ms cycle (read, validate, write, ack, "
            "idle waits)"
        )
        if breakdown is not None:
            print_breakdown(breakdown, wall_s, batches)
        print("result " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
