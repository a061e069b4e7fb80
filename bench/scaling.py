"""Scaling: 1, 2 and 4 workers in one consumer group; throughput and the final state.

    python bench/scaling.py [--events 50000] [--workers 1,2,4]

For each worker count k: a fresh migrated database and fresh streams receive the same backlog
(``Publisher``, seed 11, same start time and run id, so the same events with the same event
times; 1 % malformed), then k ``python -m consumer run --until-idle`` processes (consumer names
w1..wk, one group) drain it. Timed from the first start to the last exit. The final state of
every paper table (``tests/support/pipeline.SNAPSHOT_QUERIES``: ingestion timestamps and stream
ids left out) must equal the single-worker state.

What this measures today: sharding (issue 7) is not built. All k workers read the SAME streams;
the order gate in ``Worker._step`` never reads past entries pending at another consumer (fills
must move positions in stream order), so while one worker holds a batch the others wait (0.1 s
naps) — they take turns, and k > 1 cannot be faster than k = 1.
TODO(issue 7): publish into N sharded streams (e.g. by symbol), give each worker its shard set,
and rerun this script over the shards; the equality check stays as it is.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import UTC, datetime

import redis
from _common import machine, scratch, worker_env

from consumer.logs import configure
from consumer.publisher import Publisher
from tests.support.pipeline import snapshot


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    configure("json", "warning")
    print(f"machine: {machine()}")
    counts = [int(k) for k in args.workers.split(",")]
    results = []
    with scratch() as s:
        template = s.template()
        states = {}
        for k in counts:
            dsn = s.database(f"w{k}", template)
            settings = s.settings(dsn, tag=f"w{k}")
            client = redis.Redis.from_url(settings.redis_dsn())
            for name in settings.streams():
                client.xgroup_create(name, settings.group, id="0", mkstream=True)
            Publisher(
                client,
                orders_stream=settings.orders_stream,
                fills_stream=settings.fills_stream,
                marks_stream=settings.marks_stream,
                seed=args.seed,
                malformed_ratio=0.01,
                start=datetime(2099, 1, 1, tzinfo=UTC),
                run_id=f"scale{args.seed}",
            ).publish(args.events)
            started = time.perf_counter()
            procs = [
                subprocess.Popen(
                    [sys.executable, "-m", "consumer", "run", "--until-idle"],
                    env=worker_env(settings, PAPER_CONSUMER_NAME=f"w{i + 1}"),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for i in range(k)
            ]
            codes = [p.wait(1800) for p in procs]
            seconds = time.perf_counter() - started
            pending = sum(
                int(client.xpending(n, settings.group)["pending"]) for n in settings.streams()
            )
            client.close()
            states[k] = snapshot(dsn)
            row = {
                "workers": k,
                "seconds": round(seconds, 2),
                "entries_per_s": round(args.events / seconds),
                "exit_codes": codes,
                "pending_after": pending,
                "state_equals_1_worker": states[k] == states[counts[0]],
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    base = results[0]["entries_per_s"]
    for row in results:
        print(
            f"{row['workers']} worker(s): {row['entries_per_s']:>6} entries/s "
            f"({row['entries_per_s'] / base:.2f}x), state equal: {row['state_equals_1_worker']}"
        )
    print("result " + json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
