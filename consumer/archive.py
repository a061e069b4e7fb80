"""Reading an ``export`` archive: its JSON lines as ``RawEntry``, in the worker's order.

``replay.file_entries`` opens the file and checks the range; this module owns the lines:

- ``archive_line`` reads one line. msgspec decodes the shape ``export`` writes
  (``{"stream": str, "id": str, "fields": {str: str}}``, other keys ignored) straight into
  typed values, in C. Whatever msgspec refuses (a wrong type, NaN, lone surrogates, broken
  JSON) is read the reference way (``json.loads`` and the checks below), which accepts it or
  refuses it with the message the reader always gave; so msgspec only ever ACCEPTS lines that
  ``json.loads`` reads to the same entry (tests/unit/test_replay_archive.py compares both over
  generated lines).
- ``entries`` turns the lines into entries in the worker's order: it refuses ids that go back
  (with the line number), puts entries that share an id in the configured stream order, skips
  (and counts) other streams and keeps to ``[lo, hi]``, in one pass.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from consumer.errors import ReplaySourceError
from consumer.records import EntryKey, RawEntry, not_text

__all__ = ["archive_line", "decode_line", "entries"]

_ID = re.compile(r"\d+(-\d+)?")
_STR_ONLY = frozenset({str})


class _Line(msgspec.Struct):
    """An archive line as ``export`` writes it."""

    stream: str
    id: str
    fields: dict[str, str]


_LINE = msgspec.json.Decoder(_Line)
# Refused by msgspec: read the reference way. RecursionError too, so that json.loads raises
# its own (the reference's) on a line nested too deeply.
_REFUSED = (msgspec.DecodeError, UnicodeEncodeError, RecursionError)


def decode_line(line: str) -> Any:
    """A line's JSON value, as the reference reader decodes it (``json.loads``)."""
    return json.loads(line)


def _shape_error(path: Path, number: int) -> ReplaySourceError:
    return ReplaySourceError(
        f'{path}:{number}: expected {{"stream": str, "id": "MS-SEQ", "fields": {{str: str}}}}'
    )


def _reference_line(path: Path, number: int, line: str) -> RawEntry:
    """The line read with ``json.loads`` and checked in Python: the reference, which decides
    (and words) whatever msgspec refused."""
    try:
        record = decode_line(line)
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
        raise _shape_error(path, number)
    key = EntryKey(record["stream"], record["id"])
    # Lone surrogates (bytes that were not UTF-8, which ``export`` writes as \udcXX escapes)
    # can only come from an escape: look only then.
    if "\\ud" in line or "\\uD" in line:
        return RawEntry(key, fields, not_utf8=not_text(fields))
    return RawEntry(key, fields)


# RawEntry and EntryKey built through their slots, as their dataclass __init__ sets them (half
# the time); if either gains a field, through __init__.
_new = object.__new__
_RAW_FIELDS = ("key", "fields", "deliveries", "not_utf8")
_KEY_FIELDS = ("stream", "entry_id")
_DIRECT = (
    tuple(f.name for f in dataclasses.fields(RawEntry)) == _RAW_FIELDS
    and tuple(f.name for f in dataclasses.fields(EntryKey)) == _KEY_FIELDS
    and not hasattr(RawEntry, "__post_init__")
    and not hasattr(EntryKey, "__post_init__")
)
_raw_slot = {n: RawEntry.__dict__[n].__set__ for n in _RAW_FIELDS} if _DIRECT else {}
_key_slot = {n: EntryKey.__dict__[n].__set__ for n in _KEY_FIELDS} if _DIRECT else {}


def _entry(stream: str, entry_id: str, fields: dict[str, str]) -> RawEntry:
    """``RawEntry(EntryKey(stream, entry_id), fields)``."""
    return RawEntry(EntryKey(stream, entry_id), fields)


if _DIRECT:
    _set_stream, _set_entry_id = _key_slot["stream"], _key_slot["entry_id"]
    _set_key, _set_fields = _raw_slot["key"], _raw_slot["fields"]
    _set_deliveries, _set_not_utf8 = _raw_slot["deliveries"], _raw_slot["not_utf8"]

    def _entry(stream: str, entry_id: str, fields: dict[str, str]) -> RawEntry:
        """``RawEntry(EntryKey(stream, entry_id), fields)``, set slot by slot."""
        key = _new(EntryKey)
        _set_stream(key, stream)
        _set_entry_id(key, entry_id)
        entry = _new(RawEntry)
        _set_key(entry, key)
        _set_fields(entry, fields)
        _set_deliveries(entry, 1)
        _set_not_utf8(entry, None)
        return entry


def _read(path: Path, number: int, line: str) -> tuple[RawEntry, tuple[int, int]]:
    """The entry of one line and its id as (ms, seq), or ``ReplaySourceError``."""
    try:
        record = _LINE.decode(line)
    except _REFUSED:
        entry = _reference_line(path, number, line)
        ms, _, seq = entry.key.entry_id.partition("-")
        return entry, (int(ms), int(seq or 0))
    # _ID (\d+(-\d+)?, \d being Unicode category Nd, which is str.isdecimal) and its sort key
    # (records.parse_entry_id), in one go. msgspec refuses lone surrogates, so the entry is text.
    entry_id = record.id
    ms, dash, seq = entry_id.partition("-")
    if not (ms.isdecimal() and (seq.isdecimal() or not dash)):
        raise _shape_error(path, number)
    return _entry(record.stream, entry_id, record.fields), (int(ms), int(seq) if dash else 0)


def archive_line(path: Path, number: int, line: str) -> RawEntry:
    """The entry of one archive line, or ``ReplaySourceError`` naming ``path:number``."""
    return _read(path, number, line)[0]


def entries(
    path: Path,
    lines: Iterable[str],
    streams: Sequence[str],
    *,
    lo: tuple[int, int],
    hi: tuple[int, int],
    skipped: dict[str, int] | None,
) -> Iterator[RawEntry]:
    """The entries of ``streams`` in ``lines`` (an archive's) with ids in ``[lo, hi]``, in the
    worker's order (``merge.entry_order``: id, then the order of ``streams``).

    Lazy as the reader always was: an id's entries come once the next id's first line was read
    (or the file ended), so a bad or out-of-order line there raises before them; reading stops
    at the first id beyond ``hi``."""
    rank: Mapping[str, int] = {name: i for i, name in enumerate(streams)}
    previous = (-1, -1)
    group: list[RawEntry] = []
    wanted = True  # the group's id is in [lo, hi]

    for number, line in enumerate(lines, start=1):
        if line[:1] != "{" and not line.strip():
            continue
        entry, key = _read(path, number, line)
        if key == previous:
            group.append(entry)
            continue
        if key < previous:
            raise ReplaySourceError(
                f"{path}:{number}: id {entry.key.entry_id} comes after a later id; the "
                "archive is not in stream-id order (re-create it with `paper-consumer "
                "export`, which merges the streams)"
            )
        if wanted and group:
            if len(group) == 1 and group[0].key.stream in rank:  # the usual: one entry an id
                yield group[0]
            else:
                yield from _released(group, rank, skipped)
        if key > hi:
            return
        previous, group, wanted = key, [entry], key >= lo
    if wanted and group:
        yield from _released(group, rank, skipped)


def _released(
    group: list[RawEntry], rank: Mapping[str, int], skipped: dict[str, int] | None
) -> list[RawEntry]:
    """The entries of one id in the order of their streams (stable, as ``sorted`` by
    ``entry_order``, whose id part they share); other streams' are counted in ``skipped``."""
    if len(group) > 1:
        unranked = len(rank)
        group.sort(key=lambda entry: rank.get(entry.key.stream, unranked))
    released = [entry for entry in group if entry.key.stream in rank]
    if skipped is not None and len(released) < len(group):
        for entry in group:
            if entry.key.stream not in rank:
                skipped[entry.key.stream] = skipped.get(entry.key.stream, 0) + 1
    return released
