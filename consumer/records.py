"""The small value types that travel between the stream, the worker and the store.

``RawEntry`` is one Redis stream entry as read (stream, id, fields, delivery count);
``ParsedEntry`` pairs it with the validated event; ``StreamPosition`` is what Redis tells of a
stream and the consumer group on it (``losses.py`` reads data loss from it). Keeping them here,
free of redis and psycopg, lets every layer and the test twins share them.

Fields that are not UTF-8 are never decoded lossily (two ids differing only in such bytes would
become one): ``decode_fields`` decodes them with ``surrogateescape`` (each byte that is not
UTF-8 becomes one lone surrogate, so nothing collides and the bytes can be restored) and
describes them in ``RawEntry.not_utf8``, the reason the worker and replay dead-letter the entry
with. The fast path (``stream.py``: a strict decode of every field) never comes here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from consumer.events import Event
from consumer.values import immutable


def parse_entry_id(entry_id: str) -> tuple[int, int]:
    """``"1700000000000-3"`` → ``(1700000000000, 3)``; raises ``ValueError`` when malformed."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@immutable
class EntryKey:
    """Where an entry lives: its stream and its id."""

    stream: str
    entry_id: str

    @property
    def sort_key(self) -> tuple[int, int]:
        return parse_entry_id(self.entry_id)


@immutable
class RawEntry:
    """An entry as read from Redis. ``deliveries`` is 1 unless it was delivered before.
    ``not_utf8``: which fields were not UTF-8 (their bytes escaped), None for text; such an
    entry's ``fields`` hold those bytes as lone surrogates (``decode_fields``)."""

    key: EntryKey
    fields: dict[str, str]
    deliveries: int = 1
    not_utf8: str | None = None


SHOWN_BYTES = 80
"""How many bytes of a field that is not UTF-8 its description shows."""


def _shown(raw: bytes) -> str:
    if len(raw) <= SHOWN_BYTES:
        return repr(raw)
    return f"{raw[:SHOWN_BYTES]!r}… ({len(raw)} bytes)"


def _why_not_text(name: bytes, value: bytes) -> str | None:
    """``name``/``value`` described when either is not UTF-8, else None."""
    try:
        text = name.decode()
    except UnicodeDecodeError:
        return f"field name {_shown(name)} is not valid UTF-8"
    try:
        value.decode()
    except UnicodeDecodeError:
        return f"field {text!r} is not valid UTF-8: {_shown(value)}"
    return None


def decode_fields(fields: Mapping[bytes | str, bytes | str]) -> tuple[dict[str, str], str | None]:
    """Fields as text without losing a byte, and what in them was not UTF-8 (None: all was).
    Bytes that are not UTF-8 become lone surrogates (``surrogateescape``): distinct bytes stay
    distinct, and ``restore_bytes`` gives them back. ``str`` values pass through."""
    text: dict[str, str] = {}
    problems: list[str] = []
    for name, value in fields.items():
        raw_name = name if isinstance(name, bytes) else str(name).encode()
        raw_value = value if isinstance(value, bytes) else str(value).encode()
        problem = _why_not_text(raw_name, raw_value)
        if problem is not None:
            problems.append(problem)
        text[raw_name.decode("utf-8", "surrogateescape")] = raw_value.decode(
            "utf-8", "surrogateescape"
        )
    return text, "; ".join(problems) or None


def not_text(fields: Mapping[str, str]) -> str | None:
    """What in already-decoded ``fields`` is not Unicode text (lone surrogates: bytes that
    were not UTF-8, as ``decode_fields`` or a JSON ``\\udcff`` escape leaves them), described as
    ``decode_fields`` does; None when every name and value is text."""
    problems = []
    for name, value in fields.items():
        if not (_is_text(name) and _is_text(value)):
            problem = _why_not_text(restore_bytes(name), restore_bytes(value))
            problems.append(problem or f"field {name!r} is not valid Unicode text")
    return "; ".join(problems) or None


def _is_text(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def restore_bytes(text: str) -> bytes:
    """The bytes ``decode_fields`` read ``text`` from (lone surrogates that no byte gives,
    from elsewhere, are written backslash-escaped)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """One stream and the consumer group on it, as Redis (>= 7) tells in one MULTI of XINFO
    STREAM and XINFO GROUPS: the stream's ``length``, ``entries_added`` (ever), ``first_id``
    (None: empty), ``last_id`` (last-generated-id) and ``max_deleted_id``; the group's
    ``last_delivered_id``, ``entries_read`` and ``lag`` (None where Redis cannot count them;
    Redis 6.2 has none of these counters: None, and ``max_deleted_id`` 0-0).
    ``exists``/``group``: whether the stream / our group is there at all."""

    stream: str
    exists: bool = False
    length: int = 0
    entries_added: int | None = None
    first_id: str | None = None
    last_id: str = "0-0"
    max_deleted_id: str = "0-0"
    group: bool = False
    last_delivered_id: str = "0-0"
    entries_read: int | None = None
    lag: int | None = None


@immutable
class ParsedEntry:
    """An entry that passed validation, with the event it carries."""

    raw: RawEntry
    event: Event

    @property
    def key(self) -> EntryKey:
        return self.raw.key

    @property
    def fields(self) -> dict[str, str]:
        return self.raw.fields
