"""Soak: N events through a real ``paper-consumer run`` process; memory and rate over time.

    python bench/soak.py [--events 10000000] [--max-minutes 0] [--interval 5]

A publisher thread (``Publisher``, seed 8, 1 % malformed, marks on, event time from
2099-01-01 advancing 5-250 ms per event, so a day of event time is ~680,000 events) keeps a
backlog of at most ``--backlog`` undelivered entries ahead of the worker, and trims from the
streams what the group has delivered and acknowledged (XTRIM MINID), so Redis stays small. The
worker is ``python -m consumer run`` (a separate process, default settings, logs at warning).
Every ``--interval`` seconds the script samples the worker's resident memory (psutil) and the
entries committed (``paper_consumer_offsets``), and prints the rate of that interval.
"committed" counts entries committed to PostgreSQL plus those dead-lettered (XINFO STREAM
entries-added of the dead-letter stream). It stops at N such entries, or after
``--max-minutes`` (then reports how many it ran).
Verdict (the first three samples are start-up): RSS max < 200 MB, and the mean rate of the last
quarter of the samples is not below 80 % of the first quarter's. The summary also gives the
share of samples with no backlog (the rate then is the publisher's, ~6,000/s) and the size of
each paper table at the end.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import psutil
import psycopg
import redis
from _common import ROOT, machine, scratch, worker_env

from consumer.logs import configure
from consumer.publisher import Publisher


def committed(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT coalesce(sum(entries_committed), 0) FROM paper_consumer_offsets")
        return int(row.fetchone()[0])  # type: ignore[index]


def table_sizes(dsn: str) -> dict[str, float]:
    """MB on disk (heap, indexes, TOAST) of each paper table: what grows in a soak."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT relname, pg_total_relation_size(relid) FROM pg_stat_user_tables "
            "WHERE relname LIKE 'paper%%' ORDER BY 2 DESC"
        ).fetchall()
    return {name: round(size / 2**20, 1) for name, size in rows if size >= 2**20}


def trim_delivered(client: redis.Redis, streams: list[str], group: str) -> int:
    """XTRIM MINID each stream to its oldest entry still pending (or last delivered)."""
    lag = 0
    for name in streams:
        try:
            groups = client.xinfo_groups(name)
        except redis.ResponseError:
            continue
        mine = [g for g in groups if g["name"].decode() == group]
        if not mine:
            continue
        lag += int(mine[0].get("lag") or 0)
        floor = mine[0]["last-delivered-id"].decode()
        summary = client.xpending(name, group)
        if summary["pending"]:
            floor = summary["min"].decode()
        client.xtrim(name, minid=floor, approximate=True)
    return lag


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--max-minutes", type=float, default=0.0, help="0: no limit")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--backlog", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--json-out", default=None, help="write the samples here")
    args = parser.parse_args()
    configure("json", "warning")
    print(f"machine: {machine()}", flush=True)
    with scratch() as s:
        dsn = s.database("soak", s.template())
        settings = s.settings(dsn)
        client = redis.Redis.from_url(settings.redis_dsn())
        publisher = Publisher.for_settings(
            client,
            settings,
            seed=args.seed,
            malformed_ratio=0.01,
            start=datetime(2099, 1, 1, tzinfo=UTC),
            run_id=f"soak{args.seed}",
        )
        lag = [0]
        stop = threading.Event()

        def feed() -> None:
            published = 0
            while published < args.events and not stop.is_set():
                if lag[0] > args.backlog:
                    time.sleep(0.05)
                    continue
                chunk = min(10_000, args.events - published)
                publisher.publish(chunk)
                published += chunk
                lag[0] += chunk

        log = open(ROOT / "bench" / "soak-worker.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "consumer", "run"],
            env=worker_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        ps = psutil.Process(proc.pid)
        samples = []
        started = time.monotonic()
        last_t, last_n = started, 0
        print("   t_s  committed  entries/s  rss_MB  backlog", flush=True)
        try:
            while True:
                time.sleep(args.interval)
                if proc.poll() is not None:
                    raise SystemExit(f"worker exited with {proc.returncode}; see soak-worker.log")
                lag[0] = trim_delivered(client, settings.streams(), settings.group)
                client.xtrim(settings.dlq_stream, maxlen=10_000, approximate=True)
                try:
                    dead = int(client.xinfo_stream(settings.dlq_stream)["entries-added"])
                except redis.ResponseError:
                    dead = 0
                now, n = time.monotonic(), committed(dsn) + dead
                rss = ps.memory_info().rss / 2**20
                rate = (n - last_n) / (now - last_t)
                samples.append(
                    {
                        "t": round(now - started, 1),
                        "committed": n,
                        "rate": round(rate),
                        "rss_mb": round(rss, 1),
                        "lag": lag[0],
                    }
                )
                print(
                    f"{now - started:6.0f} {n:10d} {rate:10.0f} {rss:7.1f} {lag[0]:8d}", flush=True
                )
                last_t, last_n = now, n
                if n >= args.events:
                    break
                if args.max_minutes and now - started >= args.max_minutes * 60:
                    print(f"time limit reached at {n} committed events", flush=True)
                    break
        finally:
            stop.set()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            client.close()
        warm = samples[3:] or samples  # the first three samples: start-up
        quarter = max(1, len(warm) // 4)
        first = statistics.mean(x["rate"] for x in warm[:quarter])
        last = statistics.mean(x["rate"] for x in warm[-quarter:])
        rss_max = max(x["rss_mb"] for x in warm)
        summary = {
            "events_committed": samples[-1]["committed"],
            "seconds": samples[-1]["t"],
            "mean_rate": round(samples[-1]["committed"] / samples[-1]["t"]),
            "rss_min_mb": min(x["rss_mb"] for x in warm),
            "rss_max_mb": rss_max,
            "rate_first_quarter": round(first),
            "rate_last_quarter": round(last),
            "memory_flat": rss_max < 200,
            "no_decay": last >= 0.8 * first,
            # Samples with no backlog: the worker kept up and the rate is the publisher's.
            "publisher_bound_share": round(sum(1 for x in warm if x["lag"] == 0) / len(warm), 2),
            "table_mb": table_sizes(dsn),
        }
        print("summary " + json.dumps(summary), flush=True)
        if args.json_out:
            with open(args.json_out, "w") as fh:
                json.dump({"summary": summary, "samples": samples}, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
