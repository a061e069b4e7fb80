"""Scaling: 1, 2 and 4 workers in one consumer group; throughput and the final state.

    python bench/scaling.py [--events 50000] [--workers 1,2,4] [--shards 8]

For each worker count k: a fresh migrated database and fresh streams receive the same backlog
(``Publisher``, seed 11, same start time and run id, so the same events with the same event
times; 1 % malformed), then k ``python -m consumer run --until-idle`` processes (consumer names
w1..wk, one group) drain it. Timed from the first start to the moment every stream's group lag
and pending count are 0 (polled every 50 ms: "drained"), and to the last exit (which adds the
burst mode's idle detection). The final state of every paper table
(``tests/support/pipeline.SNAPSHOT_QUERIES``: ingestion timestamps and stream ids left out) must
equal the single-worker state.

Unsharded (``--shards 0``, the default): all k workers read the SAME streams; the order gate in
``Worker._step`` never reads past entries pending at another consumer (fills must move positions
in stream order), so while one worker holds a batch the others wait — they take turns.

Sharded (``--shards N``): the publisher sends each event to its symbol's shard
(``stream.*.{k}``, ``consumer/shards.py``) and the k processes run with ``PAPER_SHARDS=N``
(``PAPER_LEASE_TTL_S=3``: a process waits one heartbeat, 1 s, before taking shards, so that
processes started together share them). The reference is then ONE worker on the same events
unsharded, published separately. Two checks per run:

- ``state_equals_replay``: every column of every paper table, P&L snapshots included, equals a
  one-pass ``replay`` of the run's OWN streams (XRANGE of every shard stream, merged in id order)
  into a fresh database — the workers applied each symbol's entries exactly in stream order;
- ``state_equals_1_worker``: every paper table but the snapshots equals the reference. Snapshots
  cannot be compared across two publications of the same events: entry ids are per stream, so
  an order, a fill and a mark XADDed in the same millisecond to different streams are ordered
  by their per-stream sequence numbers, which differ between publications (docs/scaling.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import redis
from _common import machine, scratch, worker_env

from consumer.logs import configure
from consumer.publisher import DEFAULT_SYMBOLS, Publisher
from consumer.replay import SourceSpec, replay
from consumer.shards import all_shard_streams
from tests.support.pipeline import snapshot

# Enough symbols for the shards to get some each (the default three would leave most empty).
SHARDED_SYMBOLS = (*DEFAULT_SYMBOLS, "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT",
                   "DOTUSDT", "LINKUSDT", "LTCUSDT", "TRXUSDT", "ATOMUSDT", "NEARUSDT",
                   "APTUSDT", "ARBUSDT")  # fmt: skip


def _drained(client: redis.Redis, streams: list[str], group: str) -> bool:
    """Every entry delivered to the group and acknowledged (committed or dead-lettered)."""
    pipe = client.pipeline(transaction=False)
    for name in streams:
        pipe.xinfo_groups(name)
    for groups in pipe.execute():
        mine = [g for g in groups if g["name"] in (group, group.encode())]
        if not mine or mine[0]["lag"] != 0 or mine[0]["pending"] != 0:
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--shards", type=int, default=0, help="0: unsharded streams")
    parser.add_argument("--symbols", type=int, default=0, help="default: 3, or 16 with --shards")
    args = parser.parse_args()
    configure("json", "warning")
    print(f"machine: {machine()}")
    counts = [int(k) for k in args.workers.split(",")]
    symbols = SHARDED_SYMBOLS if args.shards else DEFAULT_SYMBOLS
    if args.symbols:
        symbols = SHARDED_SYMBOLS[: args.symbols]
    results = []
    with scratch() as s:
        template = s.template()
        states = {}
        runs = [(k, args.shards) for k in counts]
        if args.shards:
            runs.insert(0, (1, 0))  # the reference: one worker, unsharded, same events
        for k, shards in runs:
            label = f"w{k}s{shards}"
            dsn = s.database(label, template)
            settings = s.settings(dsn, tag=label, shards=shards)
            streams = all_shard_streams(settings) if shards else settings.streams()
            client = redis.Redis.from_url(settings.redis_dsn())
            for name in streams:
                client.xgroup_create(name, settings.group, id="0", mkstream=True)
            Publisher.for_settings(
                client,
                settings,
                seed=args.seed,
                malformed_ratio=0.01,
                start=datetime(2099, 1, 1, tzinfo=UTC),
                run_id=f"scale{args.seed}",
                symbols=symbols,
                shards=shards,
                # Hours of event time, not monotone across symbols: snapshots are compared too.
                time_step_ms=(1000, 9000),
                symbol_lag={s: timedelta(minutes=7 * n) for n, s in enumerate(symbols)},
            ).publish(args.events)
            started = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "consumer", "run", "--until-idle"],
                    env=worker_env(
                        settings,
                        PAPER_CONSUMER_NAME=f"w{i + 1}",
                        PAPER_SHARDS=str(shards),
                        PAPER_LEASE_TTL_S="3",
                    ),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for i in range(k)
            ]
            drained_s = None
            while any(p.poll() is None for p in procs):
                if drained_s is None and _drained(client, streams, settings.group):
                    drained_s = time.perf_counter() - started
                time.sleep(0.05)
            codes = [p.wait(1800) for p in procs]
            seconds = time.perf_counter() - started
            drained_s = seconds if drained_s is None else drained_s
            pending = sum(int(client.xpending(n, settings.group)["pending"]) for n in streams)
            client.close()
            state = snapshot(dsn)
            replayed = s.database(f"{label}r", template)
            replay(settings, SourceSpec("redis"), target_dsn=replayed)
            equals_replay = snapshot(replayed) == state
            state.pop("snapshots")  # not comparable across publications (module docstring)
            states[(k, shards)] = state
            row = {
                "workers": k,
                "shards": shards,
                "seconds": round(seconds, 2),
                "entries_per_s": round(args.events / seconds),
                "drained_s": round(drained_s, 2),
                "drained_entries_per_s": round(args.events / drained_s),
                "exit_codes": codes,
                "pending_after": pending,
                "state_equals_replay": equals_replay,
                "state_equals_1_worker": state == states[runs[0]],
                "differing_tables": sorted(t for t in state if state[t] != states[runs[0]][t]),
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    base = results[0]["entries_per_s"]
    for row in results:
        print(
            f"{row['workers']} worker(s), {row['shards']} shards: "
            f"{row['drained_entries_per_s']:>6} entries/s drained in {row['drained_s']} s, "
            f"{row['entries_per_s']:>6} entries/s to the last exit "
            f"({row['entries_per_s'] / base:.2f}x), equals its replay: "
            f"{row['state_equals_replay']}, equals 1 worker: {row['state_equals_1_worker']}"
        )
    print("result " + json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
