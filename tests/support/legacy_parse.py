"""FROZEN COPY, for tests/unit/test_parse_differential.py only: how an entry was decided before
issue 18, i.e. ``worker.parse_raw`` at 7355d98 composed of the frozen ``legacy_events`` and
``legacy_dialect``: the contract first, and the bot's dialect picked by catching
``UnsupportedDialectError``. Never edit it to follow the new code."""

from __future__ import annotations

from typing import Any

from tests.support import legacy_dialect as dialect
from tests.support import legacy_events as events


def parse_raw(
    kind: str, fields: Any, entry_id: Any, options: dialect.DialectOptions | None = None
) -> events.Event:
    """The old ``worker.parse_raw`` for an entry of ``kind`` (``kinds.get(stream, "order")``):
    the event, or ``InvalidEventError`` with the reason the dead-letter stream got."""
    try:
        return events.parse_entry(kind, fields, entry_id)  # type: ignore[arg-type]
    except events.UnsupportedDialectError as exc:
        return dialect.translate(exc, entry_id, options)
