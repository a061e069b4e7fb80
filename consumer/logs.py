"""Structured logging, configured in exactly one place.

JSON lines when stderr is not a terminal (containers, CI, files), colourful key=value output on
one. Everything logs through ``structlog.get_logger()``; tests capture events with
``structlog.testing.capture_logs`` and assert on fields, never on formatted text. psycopg's own
loggers come through structlog too (``driver_logs.py``). Every value written, tracebacks
included, is passed through ``redact.scrub`` last: no line carries a registered secret.
"""

from __future__ import annotations

import io
import logging
import sys
from typing import Any, TextIO

import structlog

from consumer import redact
from consumer.driver_logs import route_driver_logs
from consumer.settings import LogFormat

_SECRET_KEYS = frozenset({"password", "dsn", "database_url", "redis_url", "secret", "token"})


def _drop_secrets(_: Any, __: str, event_dict: structlog.typing.EventDict) -> Any:
    """Last line of defence: a field whose name suggests a secret is never written out."""
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "***"
    return event_dict


def configure(
    log_format: LogFormat = "auto", level: str = "info", *, stream: TextIO | None = None
) -> None:
    """Set up structlog for the process. Safe to call more than once.

    Lines go to ``stream`` (default stderr); ``demo`` sends them to a file so they do not
    clobber its live view. ``auto`` means JSON unless ``stream`` is a terminal.
    """
    out = stream if stream is not None else sys.stderr
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    use_json = log_format == "json" or (log_format == "auto" and not out.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(exception_formatter=_scrubbed_traceback)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_secrets,
            structlog.processors.format_exc_info if use_json else _passthrough,
            _scrub_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    route_driver_logs()


def _scrub_secrets(_: Any, __: str, event_dict: structlog.typing.EventDict) -> Any:
    """Every string value (the event, an error, a formatted traceback; also inside lists and
    dicts) without a secret."""
    for key, value in event_dict.items():
        event_dict[key] = _scrubbed(value)
    return event_dict


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return redact.scrub(value)
    if isinstance(value, list | tuple):
        return [_scrubbed(item) for item in value]
    if isinstance(value, dict):
        return {key: _scrubbed(item) for key, item in value.items()}
    return value


def _scrubbed_traceback(out: TextIO, exc_info: structlog.typing.ExcInfo) -> None:
    """The console renderer's traceback: plain (no local variables, which may hold a URL),
    scrubbed."""
    text = io.StringIO()
    structlog.dev.plain_traceback(text, exc_info)
    out.write(redact.scrub(text.getvalue()))


def _passthrough(_: Any, __: str, event_dict: structlog.typing.EventDict) -> Any:
    return event_dict


def get_logger(**initial: Any) -> Any:
    """A bound logger; ``initial`` key/values are attached to every line it writes."""
    return structlog.get_logger(**initial)
