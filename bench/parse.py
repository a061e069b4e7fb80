"""Reading and validation alone, without PostgreSQL: CPU per entry of a replay's first half.

    python bench/parse.py [--events 100000] [--repeat 5]

Publishes N synthetic events (``Publisher``, seed 4, 1 % malformed: the data of
bench/replay.py) into fresh streams, exports them to a .jsonl.gz archive, then times, best of
``--repeat`` passes over the archive: (1) ``replay.file_entries`` alone (gzip, JSON, shape checks,
order checks) and (2) the same plus ``worker.parse_raw`` on every entry (the contract and the
bot dialect, as the worker and replay validate). No database, so the numbers move little with
other load on the machine; they are process CPU seconds per entry.

Servers: PAPER_BENCH_REDIS_URL (default redis://127.0.0.1:6379/14; the streams are deleted).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consumer import events, replay
from consumer.logs import configure
from consumer.settings import Settings
from consumer.worker import dialect_options, parse_raw, stream_kinds

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REDIS_URL, Scratch, best_cpu_seconds, synthetic_archive


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    configure("json", "error")
    # Streams only: no database is touched, so no scratch databases are made.
    settings: Settings = Scratch().settings("postgresql://unused@127.0.0.1/unused")
    with synthetic_archive(settings, args.events) as (archive, exported):
        streams = settings.streams()
        kinds = stream_kinds(settings)
        options = dialect_options(settings)

        def read() -> None:
            for _ in replay.file_entries(archive, streams):
                pass

        def read_and_parse() -> None:
            for entry in replay.file_entries(archive, streams):
                with contextlib.suppress(events.InvalidEventError):
                    parse_raw(kinds, entry, options)

        n = exported.entries
        read_s = best_cpu_seconds(args.repeat, read)
        both_s = best_cpu_seconds(args.repeat, read_and_parse)
    print(f"redis: {REDIS_URL}")
    print(f"entries: {n}")
    print(f"read archive:          {read_s:.3f} s CPU = {read_s / n * 1e6:.2f} us/entry")
    print(f"read + validate:       {both_s:.3f} s CPU = {both_s / n * 1e6:.2f} us/entry")
    print(f"validate (difference): {(both_s - read_s) / n * 1e6:.2f} us/entry")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
