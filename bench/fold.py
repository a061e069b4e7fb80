"""The accounting fold alone, without PostgreSQL or parsing: CPU per entry of the fold's part.

    python bench/fold.py [--events 100000] [--chunk-size 5000] [--repeat 5]

Publishes N synthetic events (``Publisher``, seed 4, 1 % malformed: the data of
bench/replay.py) into fresh streams, exports them to a .jsonl.gz archive, reads and validates
every entry once (``replay.file_entries``, ``worker.parse_raw``), then times, best of
``--repeat`` passes over the parsed entries in chunks of ``--chunk-size``:

1. bulk: one ``Fold`` for the whole history, each chunk's ``Fold.apply`` and
   ``BulkBook.add_step`` (what ``db/bulk.py`` runs per chunk, snapshot planning aside);
2. live terms: the same steps' ``FoldStep.stat_terms`` and ``symbol_totals`` (what
   ``db/batch.py`` adds per step), timed over the steps of one pass.

No database, so the numbers move little with other load on the machine; they are process CPU
seconds per entry. Which modules run compiled (mypyc, ``make compiled``) is printed first.

Servers: PAPER_BENCH_REDIS_URL (default redis://127.0.0.1:6379/14; the streams are deleted).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consumer import accounting, bulk_fold, daily_sums, events, fold, orders, replay, step_terms
from consumer.bulk_fold import BulkBook
from consumer.fold import BatchResult, Fold, FoldStep
from consumer.logs import configure
from consumer.records import ParsedEntry
from consumer.settings import Settings
from consumer.worker import dialect_options, parse_raw, stream_kinds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REDIS_URL, Scratch, best_cpu_seconds, synthetic_archive

MODULES = (accounting, orders, fold, step_terms, daily_sums, bulk_fold)


def _bulk(items: list[ParsedEntry], chunk: int) -> list[FoldStep]:
    folded, book = Fold({}, {}, set()), BulkBook()
    steps = []
    for start in range(0, len(items), chunk):
        step = folded.apply(items[start : start + chunk], BatchResult())
        book.add_step(step)
        steps.append(step)
    return steps


def _terms(steps: list[FoldStep]) -> None:
    for step in steps:
        step.stat_terms()
        step.symbol_totals()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--chunk-size", type=int, default=replay.DEFAULT_CHUNK_SIZE)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    configure("json", "error")
    for module in MODULES:
        kind = "compiled" if not str(module.__file__).endswith(".py") else "pure"
        print(f"{module.__name__}: {kind} ({Path(str(module.__file__)).name})")
    # Streams only: no database is touched, so no scratch databases are made.
    settings: Settings = Scratch().settings("postgresql://unused@127.0.0.1/unused")
    items: list[ParsedEntry] = []
    with synthetic_archive(settings, args.events) as (archive, _):
        kinds, options = stream_kinds(settings), dialect_options(settings)
        for entry in replay.file_entries(archive, settings.streams()):
            with contextlib.suppress(events.InvalidEventError):
                items.append(ParsedEntry(entry, parse_raw(kinds, entry, options)))
    bulk_s = best_cpu_seconds(args.repeat, lambda: _bulk(items, args.chunk_size))
    steps = _bulk(items, args.chunk_size)
    terms_s = best_cpu_seconds(args.repeat, lambda: _terms(steps))
    n = len(items)
    print(f"redis: {REDIS_URL}")
    print(f"entries folded: {n} (chunks of {args.chunk_size}, best of {args.repeat})")
    print(f"bulk fold (apply + add_step): {bulk_s:.3f} s CPU = {bulk_s / n * 1e6:.2f} us/entry")
    print(f"live terms (stat_terms + symbol_totals): {terms_s / n * 1e6:.2f} us/entry")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
