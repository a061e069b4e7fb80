"""Secrets out of everything the program writes: the one place that knows where a password
hides in a connection string and takes it out of a text.

- ``redact_url(url)``: a URL (or libpq ``key=value`` string) with its password masked, for a
  log line or a message that names the server.
- ``url_secrets(url)``: every form of the password a URL holds, *however malformed* the URL is
  (libpq and urllib cut a URL with an unescaped ``@`` in different places, so either may print a
  piece of the password as a host, a port or a database name).
- ``remember_url`` / ``remember``: the process's secrets (the CLI registers the settings' URLs
  and passwords once); ``scrub(text)`` then removes each from any text: log events
  (``logs.py``), error messages and tracebacks (``cli.py``; ``install_excepthooks`` covers an
  exception nobody caught, in any thread).
"""

from __future__ import annotations

import re
import sys
import threading
import traceback
from collections.abc import Iterable
from types import TracebackType
from urllib.parse import quote, unquote, urlsplit, urlunsplit

MASK = "***"
# Shorter pieces are not worth garbling every message for (a piece of a password is only
# cut out of a malformed URL, which settings.py refuses before anything connects).
MIN_SECRET_LENGTH = 3

_CONNINFO_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_PASSWORD_VALUE = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'|[^&#\s]+)", re.IGNORECASE)
# Where libpq or urllib may end the user info or the host of a malformed URL.
_URL_DELIMITERS = re.compile(r"[@/?#]")


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe to log).

    Handles URLs (``scheme://user:pw@host/…``, and ``?password=`` in the query) and libpq
    key/value strings (``host=… password=…``).
    """
    if "://" not in url:
        return _CONNINFO_PASSWORD.sub(r"\1***", url)
    masked = _QUERY_PASSWORD.sub(r"\1***", url)
    try:
        parts = urlsplit(masked)
        password = parts.password
    except ValueError:
        return "<unparseable url>"
    if password is None:
        return masked
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{user}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def url_secrets(url: str) -> set[str]:
    """Every string in ``url`` that is, or may be read as a piece of, its password.

    The password is taken generously: everything between the first ``:`` after ``scheme://``
    and the LAST ``@`` (urllib's reading), then also each piece of it between ``@``, ``/``,
    ``?`` and ``#`` (libpq ends the user info at the first ``@``), raw and percent-decoded.
    Plus ``password=`` values of a query or a key/value string.
    """
    found: set[str] = set()
    if "://" in url:
        rest = url.split("://", 1)[1]
        if "@" in rest:
            userinfo = rest[: rest.rfind("@")]
            if ":" in userinfo:
                password = userinfo.partition(":")[2]
                for form in (password, unquote(password)):
                    found.add(form)
                    found.update(_URL_DELIMITERS.split(form))
    for match in _PASSWORD_VALUE.finditer(url):
        value = match.group(1)
        found.update((value, unquote(value)))
        if value.startswith("'") and value.endswith("'") and len(value) >= 2:
            found.add(value[1:-1].replace("\\'", "'").replace("\\\\", "\\"))
    return {value for value in found if len(value) >= MIN_SECRET_LENGTH}


class _Secrets:
    """The secrets of this process (thread-safe; only ever grows)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._urls: set[str] = set()
        self._values: set[str] = set()

    def add(self, urls: Iterable[str] = (), values: Iterable[str] = ()) -> None:
        with self._lock:
            self._urls.update(urls)
            self._values.update(value for value in values if len(value) >= MIN_SECRET_LENGTH)

    def snapshot(self) -> tuple[frozenset[str], frozenset[str]]:
        with self._lock:
            return frozenset(self._urls), frozenset(self._values)


_known = _Secrets()


def remember_url(url: str) -> None:
    """Register a connection string: ``scrub`` masks it whole and every password form in it."""
    _known.add(urls=[url], values=url_secrets(url))


def remember(secret: str) -> None:
    """Register a plain secret (a password from a variable or a file), also percent-encoded,
    as ``Settings`` puts it into the URLs it builds."""
    _known.add(values=[secret, quote(secret, safe="")])


def scrub(text: str, *urls: str) -> str:
    """``text`` without any remembered secret, nor any secret of ``urls`` (a URL is replaced
    whole by its ``redact_url`` form first, then every password form by ``***``)."""
    known_urls, known_values = _known.snapshot()
    all_urls = set(urls) | known_urls
    if not all_urls and not known_values:
        return text
    values = set(known_values)
    for url in sorted(all_urls, key=len, reverse=True):
        if url and url in text:
            text = text.replace(url, redact_url(url))
        if url in urls:
            values |= url_secrets(url)
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


def format_exception(exc: BaseException) -> str:
    """The traceback Python would print for ``exc`` (chained causes included), scrubbed."""
    return scrub("".join(traceback.format_exception(exc)))


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    sys.stderr.write(scrub("".join(traceback.format_exception(kind, exc, tb))))


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
    sys.stderr.write(scrub(f"Exception in thread {name}:\n{text}"))


def install_excepthooks() -> None:
    """Route every uncaught exception's traceback (main thread and others) through ``scrub``."""
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
