"""The small value types that travel between the stream, the worker and the store.

``RawEntry`` is one Redis stream entry as read (stream, id, fields, delivery count);
``ParsedEntry`` pairs it with the validated event. Keeping them here, free of redis and psycopg,
lets every layer and the test twins share them.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumer.events import Event


def parse_entry_id(entry_id: str) -> tuple[int, int]:
    """``"1700000000000-3"`` → ``(1700000000000, 3)``; raises ``ValueError`` when malformed."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True, slots=True)
class EntryKey:
    """Where an entry lives: its stream and its id."""

    stream: str
    entry_id: str

    @property
    def sort_key(self) -> tuple[int, int]:
        return parse_entry_id(self.entry_id)


@dataclass(frozen=True, slots=True)
class RawEntry:
    """An entry as read from Redis. ``deliveries`` is 1 unless it was delivered before."""

    key: EntryKey
    fields: dict[str, str]
    deliveries: int = 1


@dataclass(frozen=True, slots=True)
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
