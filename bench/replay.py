"""Replay speed against the raw COPY rate of the same rows (issue 4: target ratio >= 0.6).

    python bench/replay.py [--events 100000] [--chunk-size 5000] [--profile]

1. publishes N synthetic events (``consumer.publisher.Publisher``, fixed seed) into fresh streams;
2. exports them to a .jsonl.gz archive (``replay.export``);
3. replays the archive into an empty migrated database (``replay.replay``, one transaction);
4. copies the paper_orders, paper_fills and paper_positions rows that replay produced into
   another empty migrated database (indexes and constraints in place) with COPY FROM STDIN,
   in one transaction: the raw-COPY baseline for the same rows;
5. prints both times and ``ratio = copy_seconds / replay_seconds`` (the replay's row rate as a
   share of COPY's).

Servers: PAPER_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres, a
superuser maintenance database: scratch databases are created and dropped) and
PAPER_BENCH_REDIS_URL (default redis://127.0.0.1:6379/14; the bench's streams are deleted).
``--profile`` runs the replay under pyinstrument (``pip install pyinstrument``) and writes
bench/replay-profile.txt.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consumer import migrations, replay
from consumer.logs import configure
from consumer.publisher import Publisher
from consumer.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import COPIED, copy_ceiling

# The ceiling compares with the rows of the three tables the seed's writers produce.
CEILING_TABLES = ("paper_orders", "paper_fills", "paper_positions")


def _database(server: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(server, autocommit=True) as conn:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(query)
    return make_conninfo(server, dbname=name)


def _drop(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--chunk-size", type=int, default=replay.DEFAULT_CHUNK_SIZE)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    server = os.environ.get(
        "PAPER_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    redis_url = os.environ.get("PAPER_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    configure("json", "warning")
    run = uuid.uuid4().hex[:8]
    template = f"paper_bench_tpl_{run}"
    names = [template, f"paper_bench_replay_{run}", f"paper_bench_copy_{run}"]
    prefix = f"bench{run}"
    settings = Settings(
        database_url="postgresql://unused@127.0.0.1/unused",
        redis_url=redis_url,
        orders_stream=f"{prefix}.orders",
        fills_stream=f"{prefix}.fills",
        marks_stream=f"{prefix}.market_data",
        dlq_stream=f"{prefix}.dlq",
    )
    client = redis.Redis.from_url(redis_url)
    try:
        migrations.upgrade(_database(server, template))
        replay_db = _database(server, names[1], template)
        copy_db = _database(server, names[2], template)

        started = time.perf_counter()
        Publisher(
            client,
            orders_stream=settings.orders_stream,
            fills_stream=settings.fills_stream,
            marks_stream=settings.marks_stream,
            seed=args.seed,
            malformed_ratio=0.01,
            start=datetime(2099, 1, 1, tzinfo=UTC),
            run_id=f"bench{args.seed}",
        ).publish(args.events)
        print(f"published {args.events} events in {time.perf_counter() - started:.1f} s")

        with tempfile.TemporaryDirectory() as folder:
            archive = Path(folder) / "bench.jsonl.gz"
            exported = replay.export(redis_url, settings.streams(), archive)
            print(f"export: {exported.entries} entries in {exported.seconds:.2f} s")
            spec = replay.SourceSpec("file", archive)
            if args.profile:
                from pyinstrument import Profiler  # noqa: PLC0415 - optional, bench only

                profiler = Profiler()
                profiler.start()
            cpu_started = time.process_time()
            summary = replay.replay(
                settings, spec, target_dsn=replay_db, chunk_size=args.chunk_size
            )
            cpu_s = time.process_time() - cpu_started
            if args.profile:
                profiler.stop()
                out = Path(__file__).with_name("replay-profile.txt")
                out.write_text(profiler.output_text(unicode=False, color=False))
                print(f"profile written to {out}")
        print(summary.describe())

        copy_s, counts = copy_ceiling(replay_db, copy_db, {t: COPIED[t] for t in CEILING_TABLES})
        rows = sum(counts.values())
        print(
            f"COPY baseline: {rows} rows ({', '.join(f'{t}={n}' for t, n in counts.items())}) "
            f"in {copy_s:.3f} s = {rows / copy_s:,.0f} rows/s"
        )
        print(
            f"replay: same rows in {summary.seconds:.3f} s = {rows / summary.seconds:,.0f} rows/s "
            f"({summary.entries_per_s:,.0f} entries/s)"
        )
        print(f"ratio replay/COPY = {copy_s / summary.seconds:.3f} (target >= 0.6)")
        # CPU seconds of this process (parsing, folding, psycopg): what load from others
        # on a shared machine changes least; PostgreSQL's own work is not in it.
        print(f"replay process CPU: {cpu_s:.3f} s = {cpu_s / summary.entries * 1e6:.1f} us/entry")
    finally:
        client.delete(*settings.streams(), settings.dlq_stream)
        client.close()
        for name in reversed(names):
            _drop(server, name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
