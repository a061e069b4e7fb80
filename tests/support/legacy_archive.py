"""FROZEN COPY, for tests/unit/test_shapes.py only: how an archive was read before
consumer/archive.py (issues 19/20), i.e. ``replay._archive_line`` and ``replay.file_entries`` at
4effa72, verbatim but for the names, with ``json.loads`` where it tried orjson first (which
tests/unit/test_replay_archive.py proved reads every line alike). Never edit it to follow the
new code."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator, Sequence
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, TextIO

from consumer.errors import ReplaySourceError
from consumer.merge import entry_order
from consumer.records import EntryKey, RawEntry, not_text
from consumer.replay import bound_key

_ID = re.compile(r"\d+(-\d+)?")


def _open_text(path: Path, mode: Literal["rt", "wt"]) -> TextIO:
    if path.name.endswith(".gz"):
        return gzip.open(path, mode, encoding="utf-8", compresslevel=6)
    return open(path, mode, encoding="utf-8")


def _decode_line(line: str) -> Any:
    return json.loads(line)


_STR_ONLY = frozenset({str})


def _archive_line(path: Path, number: int, line: str) -> RawEntry:
    try:
        record = _decode_line(line)
    except json.JSONDecodeError as exc:
        raise ReplaySourceError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
    fields = record.get("fields") if isinstance(record, dict) else None
    if not (
        isinstance(record, dict)
        and isinstance(record.get("stream"), str)
        and isinstance(record.get("id"), str)
        and _ID.fullmatch(record["id"])
        and isinstance(fields, dict)
        # Exact types: a decoder gives plain str for JSON strings (map/set: no Python loop).
        and set(map(type, fields)) <= _STR_ONLY
        and set(map(type, fields.values())) <= _STR_ONLY
    ):
        raise ReplaySourceError(
            f'{path}:{number}: expected {{"stream": str, "id": "MS-SEQ", "fields": {{str: str}}}}'
        )
    key = EntryKey(record["stream"], record["id"])
    # Lone surrogates (bytes that were not UTF-8, which ``export`` writes as \udcXX escapes)
    # can only come from an escape, and orjson refuses them: look only then.
    if "\\ud" in line or "\\uD" in line:
        return RawEntry(key, fields, not_utf8=not_text(fields))
    return RawEntry(key, fields)


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
    are counted in ``skipped`` (by stream) and left out."""
    lo, hi = bound_key(start, upper=False), bound_key(end, upper=True)
    wanted = set(streams)
    order = entry_order(streams)
    if not path.is_file():
        raise ReplaySourceError(f"{path}: no such archive file")

    def keyed() -> Iterator[tuple[tuple[int, int], RawEntry]]:
        previous = (-1, -1)
        with _open_text(path, "rt") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                entry = _archive_line(path, number, line)
                key = entry.key.sort_key
                if key < previous:
                    raise ReplaySourceError(
                        f"{path}:{number}: id {entry.key.entry_id} comes after a later id; the "
                        "archive is not in stream-id order (re-create it with `paper-consumer "
                        "export`, which merges the streams)"
                    )
                previous = key
                yield key, entry

    for key, same_id in groupby(keyed(), key=itemgetter(0)):
        if key < lo:
            continue
        if key > hi:
            return
        group = [entry for _, entry in same_id]
        for entry in sorted(group, key=order) if len(group) > 1 else group:
            if entry.key.stream in wanted:
                yield entry
            elif skipped is not None:
                skipped[entry.key.stream] = skipped.get(entry.key.stream, 0) + 1
