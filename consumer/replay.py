"""``paper-consumer replay`` and ``export``: rebuild the paper tables from history.

A replay gives exactly the rows the live worker produced from the same entries, because it IS
the live worker's logic, only without a consumer group:

- entries are ordered as the worker orders a batch (``merge.entry_order``: stream id, then the
  configured stream order orders < fills < marks) and parsed by ``parse.parse`` with the
  worker's stream → kind mapping (as ``worker.parse_raw`` does);
- they are written by the live writer's ``write_rows`` (``db.ReplayTarget``) in chunks of
  ``chunk_size`` entries, all inside ONE transaction on one connection: an interrupted replay
  (error, Ctrl-C, lost connection) leaves the previous state exactly as it was; a chunk that
  PostgreSQL rejects is split like the worker splits a batch;
- the fold's results do not depend on batch boundaries (see ``fold.py``), so one global pass
  in stream order equals the worker's many batches.

That is the ``batches`` engine (``--engine batches``). The default engine, ``bulk``
(identical rows: tests/integration/test_bulk_replay.py and the replay-identical tests run both),
runs the same fold over the whole history in one pass, COPYs the rows (orders and fills as soon
as they are final, from a writer thread, so reading and folding overlap the COPY) and derives
snapshots and statistics set-based in SQL, in the same transaction (``db/bulk.py``); a row
PostgreSQL refuses fails the whole bulk replay instead of being set aside.

Invalid entries are counted and listed (log events ``replay_entry_invalid`` and the summary), never
written to Redis: a replay has no side effects outside the target database.

Sources, each an iterator of ``RawEntry`` already in the worker's order with constant memory:

- ``redis``: XRANGE pages of each configured stream (``stream.read_range``), merged with a heap.
  No consumer group is read or changed.
- ``file``: an archive written by ``export`` (JSON Lines, gzip when the name ends in ``.gz``).
  The exporter writes entries merged in id order; the reader VERIFIES that ids never go back
  (an out-of-order file is refused with its line number, rather than sorted per chunk, which
  would silently differ from live when disorder crosses a chunk) and puts entries that share an
  id in the configured stream order itself, so an export made with another ``--stream`` order
  still replays as live. Entries of streams that are not configured are skipped and counted.
- ``ledger``: ``paper_event_ledger`` (written by ``run --archive``) of the configured database,
  ordered by (entry_ms, entry_seq, stream order) through a server-side cursor.

The target must be empty (``--reset`` TRUNCATEs the paper tables inside the same transaction) and
no live worker may be connected to it (the worker presence advisory lock, taken exclusively).
"""

from __future__ import annotations

import gzip
import heapq
import io
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, Protocol, TextIO

from tqdm import tqdm

from consumer import archive, db, dialect, events, migrations, stream
from consumer.collector import fewer_collections, paused
from consumer.errors import ReplaySourceError
from consumer.fold import BatchResult
from consumer.logs import get_logger
from consumer.merge import entry_order
from consumer.parse import Rejection, parse
from consumer.records import ParsedEntry, RawEntry
from consumer.settings import Settings
from consumer.shards import shard_settings
from consumer.worker import dialect_options, stream_kinds

Source = Literal["redis", "file", "ledger"]
Engine = Literal["batches", "bulk"]
ENGINES: tuple[Engine, ...] = ("batches", "bulk")
DEFAULT_ENGINE: Engine = "bulk"

DEFAULT_CHUNK_SIZE = 10_000
PROGRESS_LOG_INTERVAL_S = 5.0
TTY_REDRAW_INTERVAL_S = 0.2
_MAX_ID_PART = 2**63 - 1  # BIGINT, the ledger's entry_ms / entry_seq type
_ID = re.compile(r"\d+(-\d+)?")

log = get_logger(component="replay")


# --------------------------------------------------------------------------------------------
# Ranges
# --------------------------------------------------------------------------------------------


def check_bound(text: str) -> str:
    """``-``, ``+``, ``MS`` or ``MS-SEQ`` (what XRANGE accepts, without exclusive ranges)."""
    if text in ("-", "+") or _ID.fullmatch(text):
        return text
    raise ReplaySourceError(
        f"stream id bound {text!r}: give -, +, MS or MS-SEQ (e.g. 1700000000000-0)"
    )


def bound_key(text: str, *, upper: bool) -> tuple[int, int]:
    """The (ms, seq) a bound stands for, as XRANGE reads it (``MS`` alone: the whole ms)."""
    check_bound(text)
    if text == "-":
        return (0, 0)
    if text == "+":
        return (_MAX_ID_PART, _MAX_ID_PART)
    ms, _, seq = text.partition("-")
    return (int(ms), int(seq) if seq else (_MAX_ID_PART if upper else 0))


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def _merged(streams: Sequence[str], per_stream: Iterable[Iterator[RawEntry]]) -> Iterator[RawEntry]:
    """Merge id-ordered iterators of ``streams`` into the worker's order (heap, lazy)."""
    return heapq.merge(*per_stream, key=entry_order(streams))


def redis_entries(
    url: str,
    streams: Sequence[str],
    *,
    start: str = "-",
    end: str = "+",
    page_size: int = stream.RANGE_PAGE_SIZE,
    cluster: bool = False,
) -> Iterator[RawEntry]:
    """Entries of ``streams`` in ``[start, end]`` from Redis (a Redis Cluster when
    ``cluster``), merged in the worker's order."""
    client = stream.connect(url, cluster=cluster)
    try:
        yield from _merged(
            streams,
            (
                stream.read_range(client, url, name, start=start, end=end, page_size=page_size)
                for name in streams
            ),
        )
    finally:
        client.close()


def redis_total(url: str, streams: Sequence[str], *, cluster: bool = False) -> int:
    client = stream.connect(url, cluster=cluster)
    try:
        return sum(stream.stream_length(client, url, name) for name in streams)
    finally:
        client.close()


def _open_text(path: Path, mode: Literal["rt", "wt"]) -> TextIO:
    if path.name.endswith(".gz"):
        # compresslevel 6: gzip's own default; 9 costs about 3x the time for ~2 % less.
        return gzip.open(path, mode, encoding="utf-8", compresslevel=6)
    return open(path, mode, encoding="utf-8")


def _decode_line(line: str) -> Any:
    """A line's JSON value, as ``json.loads`` gives it (``archive.decode_line``: what the reader
    falls back on for the lines msgspec refuses)."""
    return archive.decode_line(line)


def _archive_line(path: Path, number: int, line: str) -> RawEntry:
    """The entry of one archive line, or ``ReplaySourceError`` (``archive.archive_line``)."""
    return archive.archive_line(path, number, line)


def file_entries(
    path: Path,
    streams: Sequence[str],
    *,
    start: str = "-",
    end: str = "+",
    skipped: dict[str, int] | None = None,
) -> Iterator[RawEntry]:
    """Entries of ``streams`` in ``[start, end]`` from an ``export`` archive, in the worker's
    order. Refuses (``ReplaySourceError``) a file whose ids go back; entries of other streams
    are counted in ``skipped`` (by stream) and left out. The lines: ``archive.entries``."""
    lo, hi = bound_key(start, upper=False), bound_key(end, upper=True)
    if not path.is_file():
        raise ReplaySourceError(f"{path}: no such archive file")
    with _open_text(path, "rt") as handle:
        yield from archive.entries(path, handle, streams, lo=lo, hi=hi, skipped=skipped)


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


@dataclass
class ExportSummary:
    path: Path
    entries: int = 0
    by_stream: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def describe(self) -> str:
        streams = " ".join(f"{name}={count}" for name, count in sorted(self.by_stream.items()))
        return (
            f"exported entries={self.entries} {streams} seconds={self.seconds:.2f} to {self.path}"
        )


def export(
    url: str,
    streams: Sequence[str],
    out: Path,
    *,
    start: str = "-",
    end: str = "+",
    page_size: int = stream.RANGE_PAGE_SIZE,
    cluster: bool = False,
) -> ExportSummary:
    """Write ``streams``' entries in ``[start, end]`` to ``out`` (JSON Lines, gzip for ``.gz``),
    merged in (id, given stream order), one page per stream in memory at a time. The file
    appears under its name only when complete (written to ``<out>.partial``, then renamed)."""
    check_bound(start)
    check_bound(end)
    started = time.perf_counter()
    summary = ExportSummary(out)
    partial = out.with_name(out.name + ".partial")
    # Keep the .gz suffix meaningful for _open_text: compress by the final name.
    try:
        raw: IO[bytes] = open(partial, "wb")  # noqa: SIM115 - closed in the finally below
        with raw:
            handle: TextIO
            if out.name.endswith(".gz"):
                handle = io.TextIOWrapper(
                    gzip.GzipFile(filename=out.name, mode="wb", fileobj=raw, compresslevel=6),
                    encoding="utf-8",
                )
            else:
                handle = io.TextIOWrapper(raw, encoding="utf-8")
            with handle:
                for entry in redis_entries(
                    url, streams, start=start, end=end, page_size=page_size, cluster=cluster
                ):
                    record = {"stream": entry.key.stream, "id": entry.key.entry_id}
                    handle.write(
                        json.dumps(
                            {**record, "fields": entry.fields},
                            # Bytes that were not UTF-8 (lone surrogates) as \udcXX escapes:
                            # the reader gives them back, and replay dead-letters the entry.
                            ensure_ascii=entry.not_utf8 is not None,
                            separators=(",", ":"),
                        )
                    )
                    handle.write("\n")
                    summary.entries += 1
                    summary.by_stream[entry.key.stream] = (
                        summary.by_stream.get(entry.key.stream, 0) + 1
                    )
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    summary.seconds = time.perf_counter() - started
    log.info(
        "export_finished", path=str(out), entries=summary.entries, seconds=round(summary.seconds, 3)
    )
    return summary


# --------------------------------------------------------------------------------------------
# Progress: a tqdm bar on a terminal, periodic structured log lines elsewhere
# --------------------------------------------------------------------------------------------


class Progress:
    """Counts entries. On a terminal: a tqdm bar on ``out`` (entries, rate, ETA when the total
    is known; redrawn at most every 0.2 s). Elsewhere (a pipe, a log collector): a structured
    ``replay_progress`` log line every 5 s (entries, total, entries_per_s, eta_s), no bar."""

    def __init__(
        self, total: int | None, *, out: TextIO | None = None, tty: bool | None = None
    ) -> None:
        self.total = total
        self.done = 0
        self._out = out if out is not None else sys.stderr
        self._tty = self._out.isatty() if tty is None else tty
        self._started = time.monotonic()
        self._last = self._started
        self._bar: tqdm[Any] | None = None
        if self._tty:
            self._bar = tqdm(
                total=total,
                file=self._out,
                desc="replay",
                unit=" entries",
                unit_scale=True,
                mininterval=TTY_REDRAW_INTERVAL_S,
                dynamic_ncols=True,
                leave=True,
            )

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self._last >= PROGRESS_LOG_INTERVAL_S:
            self._last = now
            self._log(now)

    def _log(self, now: float) -> None:
        elapsed = now - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta_s: float | None = None
        if self.total and rate > 0:
            eta_s = max(0.0, (self.total - self.done) / rate)
        log.info(
            "replay_progress",
            entries=self.done,
            total=self.total,
            entries_per_s=round(rate),
            eta_s=None if eta_s is None else round(eta_s, 1),
        )

    def finish(self) -> None:
        """The bar's last state, left on the terminal (a no-op elsewhere)."""
        self.close()

    def close(self) -> None:
        """Stop drawing (idempotent; also on an interrupted replay, so the terminal is left on a
        fresh line)."""
        if self._bar is not None:
            bar, self._bar = self._bar, None
            bar.close()


# --------------------------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------------------------


@dataclass
class ReplaySummary:
    """What a replay did. ``invalid`` and ``rejected`` list (stream, id, reason)."""

    source: str
    entries: int = 0
    order_events: int = 0
    fill_events: int = 0
    mark_events: int = 0
    fills_inserted: int = 0
    duplicate_fills: int = 0
    invalid: list[tuple[str, str, str]] = field(default_factory=list)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    seconds: float = 0.0

    @property
    def dead_lettered(self) -> int:
        """Entries the live worker would have dead-lettered (invalid or rejected)."""
        return len(self.invalid) + len(self.rejected)

    @property
    def entries_per_s(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        """One line of ``key=value`` pairs (stable: scripts parse it)."""
        return (
            f"replayed source={self.source} entries={self.entries} orders={self.order_events} "
            f"fills={self.fill_events} fills_inserted={self.fills_inserted} "
            f"marks={self.mark_events} duplicate_fills={self.duplicate_fills} "
            f"dead_lettered={self.dead_lettered} invalid={len(self.invalid)} "
            f"rejected={len(self.rejected)} skipped={sum(self.skipped.values())} "
            f"seconds={self.seconds:.2f} entries_per_s={self.entries_per_s:.0f}"
        )


@dataclass(frozen=True)
class SourceSpec:
    """Where a replay reads from: ``kind`` and, for ``file``, ``path``."""

    kind: Source = "redis"
    path: Path | None = None
    start: str = "-"
    end: str = "+"


def layout(settings: Settings) -> tuple[list[str], dict[str, events.EventKind]]:
    """The streams a replay reads and each one's kind: the configured streams, or with
    ``PAPER_SHARDS`` every shard's (merged in id order, each symbol's order is its shard's)."""
    parts = [shard_settings(settings, k) for k in range(settings.shards)] or [settings]
    kinds = {name: kind for part in parts for name, kind in stream_kinds(part).items()}
    return [name for part in parts for name in part.streams()], kinds


def open_source(
    settings: Settings, spec: SourceSpec, *, skipped: dict[str, int]
) -> tuple[Iterator[RawEntry], int | None]:
    """The entries of ``spec`` in the worker's order, and how many there are when cheap to know."""
    streams, _ = layout(settings)
    check_bound(spec.start)
    check_bound(spec.end)
    if spec.kind == "redis":
        url = settings.redis_dsn()
        full = spec.start == "-" and spec.end == "+"
        cluster = settings.redis_cluster
        total = redis_total(url, streams, cluster=cluster) if full else None
        entries = redis_entries(url, streams, start=spec.start, end=spec.end, cluster=cluster)
        return entries, total
    if spec.kind == "file":
        if spec.path is None:
            raise ReplaySourceError("--source file needs --file PATH (an archive from `export`)")
        if not spec.path.is_file():
            raise ReplaySourceError(f"{spec.path}: no such archive file")
        entries = file_entries(spec.path, streams, start=spec.start, end=spec.end, skipped=skipped)
        return entries, None
    lo, hi = bound_key(spec.start, upper=False), bound_key(spec.end, upper=True)
    dsn = settings.database_dsn()
    return db.read_ledger(dsn, streams, lo, hi), db.count_ledger(dsn, streams, lo, hi)


def replay(
    settings: Settings,
    spec: SourceSpec,
    *,
    target_dsn: str | None = None,
    reset: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress_out: TextIO | None = None,
    wrap_source: Callable[[Iterator[RawEntry]], Iterator[RawEntry]] | None = None,
    engine: Engine = DEFAULT_ENGINE,
) -> ReplaySummary:
    """Rebuild the paper tables of ``target_dsn`` (default: the configured database) from
    ``spec``; see the module docstring. ``wrap_source`` lets tests interpose on the entries.
    ``engine``: ``bulk`` (the default: one in-memory fold, COPY of the rows, statistics and
    snapshots in SQL: ``db/bulk.py``) or ``batches`` (the live batch writer per chunk)."""
    if engine not in ENGINES:
        raise ValueError(f"replay engine {engine!r}: choose one of {', '.join(ENGINES)}")
    dsn = target_dsn or settings.database_dsn()
    migrations.verify(dsn)
    summary = ReplaySummary(source=spec.kind if spec.kind != "file" else f"file:{spec.path}")
    target = db.ReplayTarget(
        dsn, group=settings.group, reset=reset, start_balance=settings.start_balance_usdt
    )
    target.open()  # refuses here, before any reading, when a worker is connected or rows exist
    progress: Progress | None = None
    bulk: db.BulkWriter | None = None
    try:
        entries, total = open_source(settings, spec, skipped=summary.skipped)
        if wrap_source is not None:
            entries = wrap_source(entries)
        progress = Progress(total, out=progress_out)
        log.info("replay_started", source=summary.source, total=total, reset=reset, engine=engine)
        started = time.perf_counter()
        writer: Writer = target
        if engine == "bulk":
            bulk = db.BulkWriter(
                target.connection, group=settings.group, start_balance=settings.start_balance_usdt
            )
            writer = bulk
        with fewer_collections():
            _run(settings, entries, writer, summary, progress, chunk_size=chunk_size)
            if bulk is not None:
                bulk.finish()
        target.commit()
        summary.seconds = time.perf_counter() - started
        progress.finish()
    except KeyboardInterrupt:
        # Ctrl-C: nothing was committed; close() below rolls the transaction back.
        if progress is not None:
            progress.close()
        log.warning("replay_interrupted", entries=summary.entries, rolled_back=True)
        raise
    finally:
        if bulk is not None:
            bulk.close()  # the writer thread stops before the rollback (or after the commit)
        if progress is not None:
            progress.close()
        target.close()
    for name, count in sorted(summary.skipped.items()):
        log.warning("replay_stream_skipped", stream=name, entries=count)
    log.info(
        "replay_finished",
        source=summary.source,
        entries=summary.entries,
        orders=summary.order_events,
        fills=summary.fill_events,
        fills_inserted=summary.fills_inserted,
        dead_lettered=summary.dead_lettered,
        seconds=round(summary.seconds, 3),
        entries_per_s=round(summary.entries_per_s),
    )
    return summary


class Writer(Protocol):
    """What ``_run`` writes chunks to: ``db.ReplayTarget`` (batches) or ``db.BulkWriter``."""

    def write(self, items: Sequence[ParsedEntry]) -> list[BatchResult]: ...


def _run(
    settings: Settings,
    entries: Iterator[RawEntry],
    target: Writer,
    summary: ReplaySummary,
    progress: Progress,
    *,
    chunk_size: int,
) -> None:
    _, kinds = layout(settings)
    options = dialect_options(settings)
    more = True
    while more:
        with paused():  # a chunk's entries are garbage once written: see collector
            more = _chunk(
                entries,
                target,
                summary=summary,
                progress=progress,
                kinds=kinds,
                options=options,
                chunk_size=chunk_size,
            )


def _chunk(
    entries: Iterator[RawEntry],
    target: Writer,
    *,
    summary: ReplaySummary,
    progress: Progress,
    kinds: Mapping[str, events.EventKind],
    options: dialect.DialectOptions,
    chunk_size: int,
) -> bool:
    """Parse entries until ``chunk_size`` of them are valid (or the source ends) and write
    them; whether the source may hold more."""
    chunk: list[ParsedEntry] = []
    for entry in entries:
        summary.entries += 1
        if entry.not_utf8 is not None:  # as the worker's poison check
            _invalid(summary, entry, entry.not_utf8)
            continue
        event = parse(
            kinds.get(entry.key.stream, "order"), entry.fields, entry.key.entry_id, options
        )
        if isinstance(event, Rejection):
            _invalid(summary, entry, event.reason)
            continue
        if isinstance(event, events.OrderEvent):
            summary.order_events += 1
        elif isinstance(event, events.FillEvent):
            summary.fill_events += 1
        else:
            summary.mark_events += 1
        chunk.append(ParsedEntry(entry, event))
        if len(chunk) >= chunk_size:
            _flush(target, chunk, summary, progress)
            return True
    if chunk:
        _flush(target, chunk, summary, progress)
    return False


def _invalid(summary: ReplaySummary, entry: RawEntry, reason: str) -> None:
    summary.invalid.append((entry.key.stream, entry.key.entry_id, reason))
    log.warning(
        "replay_entry_invalid", stream=entry.key.stream, entry_id=entry.key.entry_id, reason=reason
    )


def _flush(
    target: Writer,
    chunk: list[ParsedEntry],
    summary: ReplaySummary,
    progress: Progress,
) -> None:
    for result in target.write(chunk):
        summary.fills_inserted += result.fills_inserted
        summary.duplicate_fills += result.fills_duplicate
        for item, reason in result.rejected:
            summary.rejected.append((item.key.stream, item.key.entry_id, reason))
            log.warning(
                "replay_entry_rejected",
                stream=item.key.stream,
                entry_id=item.key.entry_id,
                reason=reason,
            )
    summary.chunks += 1
    progress.advance(len(chunk))


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_ENGINE",
    "ENGINES",
    "Engine",
    "ExportSummary",
    "Progress",
    "ReplaySummary",
    "SourceSpec",
    "bound_key",
    "check_bound",
    "export",
    "file_entries",
    "open_source",
    "redis_entries",
    "replay",
]
