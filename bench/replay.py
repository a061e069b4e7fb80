"""Replay speed against the raw COPY rate of the same rows (issue 4: target ratio >= 0.6).

    python bench/replay.py [--events 100000] [--chunk-size 5000] [--engine bulk] [--profile]
                           [--check-tables]

1. publishes N synthetic events (``consumer.publisher.Publisher``, fixed seed) into fresh streams;
2. exports them to a .jsonl.gz archive (``replay.export``);
3. replays the archive into an empty migrated database (``replay.replay``, one transaction,
   ``--engine bulk`` (default) or ``batches``); with ``--check-tables`` it replays it again with
   the other engine into a third database and compares every replayed table (row count and an
   md5 of the history columns, rows sorted; exit status 1 when one differs);
4. copies every paper-table row that replay produced (orders, fills, positions, fill P&L,
   round trips, statistics, snapshots: ``_common.COPIED``, as ``bench/throughput.py`` does)
   into another empty migrated database (indexes and constraints in place) with COPY FROM
   STDIN, in one transaction: the raw-COPY baseline for the same rows;
5. prints both times and ``ratio = copy_seconds / replay_seconds`` (the replay's row rate as a
   share of COPY's). Until 2026-11-26 the baseline held only the orders, fills and positions
   (the tables the seed's writers produce); that ratio is printed too, for comparison with the
   older numbers in docs/benchmarks.md.

Servers: PAPER_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/postgres, a
superuser maintenance database: scratch databases are created and dropped) and
PAPER_BENCH_REDIS_URL (default redis://127.0.0.1:6379/14; the bench's streams are deleted).
``--profile`` runs the replay under pyinstrument (``pip install pyinstrument``) and writes
bench/replay-profile.txt.
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

from consumer import replay
from consumer.db.replay_target import REPLAY_TABLES, SELECT_HISTORY_COLUMNS
from consumer.logs import configure

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import COPIED, copy_ceiling, scratch, synthetic_archive


class PeakRss:
    """The largest resident set size of this process while it runs (sampled every 50 ms with
    psutil, else ru_maxrss: the process's peak, publishing and export included)."""

    def __init__(self) -> None:
        self.peak = 0
        self.start = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        try:
            import psutil  # noqa: PLC0415 - optional, bench only

            self._process: object | None = psutil.Process()
        except ImportError:
            self._process = None

    def _rss(self) -> int:
        if self._process is None:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return int(self._process.memory_info().rss)  # type: ignore[attr-defined]

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakRss:
        self.start = self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def table_digests(dsn: str) -> dict[str, tuple[int, str]]:
    """Every replayed table's row count and an md5 of its history columns, rows sorted."""
    out: dict[str, tuple[int, str]] = {}
    with psycopg.connect(dsn) as conn:
        for table in REPLAY_TABLES:
            columns = [r[0] for r in conn.execute(SELECT_HISTORY_COLUMNS, {"table": table})]
            listed = ", ".join(f"{c}::text" for c in columns)
            row = conn.execute(
                "SELECT count(*), coalesce(md5(string_agg(r::text, E'\\n' ORDER BY r::text)), '')"
                f" FROM (SELECT {listed} FROM {table}) r"
            ).fetchone()
            assert row is not None
            out[table] = (int(row[0]), str(row[1]))
    return out


# The baseline of the numbers before 2026-11-26: the three tables the seed's writers produce.
SEED_TABLES = ("paper_orders", "paper_fills", "paper_positions")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--chunk-size", type=int, default=replay.DEFAULT_CHUNK_SIZE)
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--engine", choices=replay.ENGINES, default=replay.DEFAULT_ENGINE)
    parser.add_argument(
        "--no-copy-baseline", action="store_true", help="skip the raw COPY (long runs: RSS only)"
    )
    parser.add_argument(
        "--check-tables",
        action="store_true",
        help="replay the archive again with the other engine and compare every table",
    )
    args = parser.parse_args()
    configure("json", "warning")

    with scratch() as s:
        template = s.template()
        replay_db = s.database("replay", template)
        copy_db = s.database("copy", template)
        settings = s.settings(replay_db)
        with synthetic_archive(settings, args.events, seed=args.seed) as (archive, _):
            spec = replay.SourceSpec("file", archive)
            if args.profile:
                from pyinstrument import Profiler  # noqa: PLC0415 - optional, bench only

                profiler = Profiler()
                profiler.start()
            cpu_started = time.process_time()
            with PeakRss() as rss:
                summary = replay.replay(
                    settings,
                    spec,
                    target_dsn=replay_db,
                    chunk_size=args.chunk_size,
                    engine=args.engine,
                )
            cpu_s = time.process_time() - cpu_started
            if args.profile:
                profiler.stop()
                out = Path(__file__).with_name("replay-profile.txt")
                out.write_text(profiler.output_text(unicode=False, color=False))
                print(f"profile written to {out}")
            if args.check_tables:
                other = next(e for e in replay.ENGINES if e != args.engine)
                check_db = s.database("check", template)
                replay.replay(settings, spec, target_dsn=check_db, engine=other)
                mine, theirs = table_digests(replay_db), table_digests(check_db)
                differing = [t for t in REPLAY_TABLES if mine[t] != theirs[t]]
                rows_checked = sum(n for n, _ in mine.values())
                verdict = "IDENTICAL" if not differing else f"DIFFERENT: {', '.join(differing)}"
                print(
                    f"tables vs engine={other}: {verdict} ({rows_checked} rows, {len(mine)} tables)"
                )
                if differing:
                    return 1
        print(f"engine={args.engine} {summary.describe()}")

        mib = 1 << 20
        memory = (
            f"replay RSS: peak {rss.peak / mib:.0f} MiB (before it {rss.start / mib:.0f} MiB; "
            f"process peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)"
        )
        if args.no_copy_baseline:
            cpu_us = cpu_s / summary.entries * 1e6
            print(f"replay process CPU: {cpu_s:.3f} s = {cpu_us:.1f} us/entry")
            print(memory)
            return 0
        seed_db = s.database("copyseed", template)
        seed_s, _ = copy_ceiling(replay_db, seed_db, {t: COPIED[t] for t in SEED_TABLES})
        copy_s, counts = copy_ceiling(replay_db, copy_db)
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
        print(
            f"(older baseline, {', '.join(SEED_TABLES)} only: COPY {seed_s:.3f} s, "
            f"ratio {seed_s / summary.seconds:.3f})"
        )
        # CPU seconds of this process (parsing, folding, psycopg): what load from others
        # on a shared machine changes least; PostgreSQL's own work is not in it.
        print(f"replay process CPU: {cpu_s:.3f} s = {cpu_s / summary.entries * 1e6:.1f} us/entry")
        print(memory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
