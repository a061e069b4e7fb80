"""Secrets never printed (issue 22.1): malformed URLs refused naming the variable, the password
forms of any URL found and scrubbed, log lines and tracebacks scrubbed, the CLI's last resort."""

from __future__ import annotations

import io
import json
import sys
import threading

import pytest
import structlog

from consumer import cli, logs, redact
from consumer.errors import ConfigError
from consumer.settings import Settings, check_database_url, check_redis_url

HEAD, TAIL = "pgHeadQ7", "PWtailZ9"


def _fail(exc: Exception) -> None:
    raise exc


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("DATABASE_URL", "REDIS_URL", "PAPER_DATABASE_URL", "PAPER_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fresh_secrets(monkeypatch):
    """This test's own registry of remembered secrets."""
    monkeypatch.setattr(redact, "_known", redact._Secrets())


@pytest.mark.parametrize(
    ("variable", "url", "says"),
    [
        ("DATABASE_URL", f"postgresql://u:{HEAD}%40{TAIL}@[::1/x", "IPv6"),
        ("DATABASE_URL", f"postgresql://u:{HEAD}@{TAIL}@127.0.0.1/x", "more than one '@'"),
        ("DATABASE_URL", f"postgresql://u:{HEAD}/{TAIL}@127.0.0.1/x", "before its '@'"),
        ("DATABASE_URL", f"postgresql://u:{HEAD}%zz{TAIL}@h/x", "percent-encoded"),
        ("DATABASE_URL", f"postgresql://u:{HEAD}@h/x?nosuch={TAIL}", "query parameter"),
        ("DATABASE_URL", f"mysql://u:{HEAD}@h/x", "postgresql://"),
        ("DATABASE_URL", f"host=h password={HEAD}{TAIL} stray", 'missing "="'),
        ("REDIS_URL", f"redis://:{HEAD}%40{TAIL}@[::1/0", "IPv6"),
        ("REDIS_URL", f"redis://:{HEAD}@{TAIL}@127.0.0.1:6379/15", "more than one '@'"),
        ("REDIS_URL", f"redis://:{HEAD}@h:{TAIL}/0", "port"),
        ("REDIS_URL", f"http://:{HEAD}@h/0", "redis://"),
    ],
)
def test_a_malformed_url_is_refused_naming_the_variable_never_quoting_it(
    monkeypatch, variable, url, says
):
    monkeypatch.setenv(variable, url)
    with pytest.raises(ConfigError) as refused:
        Settings()
    message = str(refused.value)
    assert message.startswith(variable)
    assert says in message
    assert HEAD not in message
    assert TAIL not in message
    # no chained driver message either (`from None`)
    assert refused.value.__cause__ is None
    assert refused.value.__context__ is None or refused.value.__suppress_context__


def test_the_variable_named_is_the_one_that_was_set(monkeypatch):
    monkeypatch.setenv("PAPER_REDIS_URL", "redis://h:port/0")
    with pytest.raises(ConfigError, match=r"^PAPER_REDIS_URL "):
        Settings()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p%40ss%2Fw@db:5432/x?sslmode=require",
        "postgres://u@/x?host=/var/run/postgresql",
        "postgresql:///x",
        "postgresql://h1:5432,h2:5433/x",
        "host=/tmp dbname=x user=u password='p w'",
        "",
    ],
)
def test_well_formed_database_urls_pass(url):
    check_database_url("DATABASE_URL", url)


@pytest.mark.parametrize(
    "url",
    ["redis://:p%40w@r:6380/3", "rediss://u:p@r:6380/1?ssl_cert_reqs=none", "unix:///tmp/r.sock",
     "redis://[::1]:6379/0", "redis://unused"],
)  # fmt: skip
def test_well_formed_redis_urls_pass(url):
    check_redis_url("REDIS_URL", url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # urllib's reading (up to the last '@') and libpq's (pieces between '@', '/', ...)
        (f"postgresql://u:{HEAD}@{TAIL}@h/x", {f"{HEAD}@{TAIL}", HEAD, TAIL}),
        (
            f"postgresql://u:{HEAD}%40{TAIL}@[::1/x",
            {f"{HEAD}%40{TAIL}", f"{HEAD}@{TAIL}", HEAD, TAIL},
        ),
        (f"postgresql://u:{HEAD}/{TAIL}@h/x", {f"{HEAD}/{TAIL}", HEAD, TAIL}),
        (f"postgresql://u@h/x?password={HEAD}&sslmode=require", {HEAD}),
        (f"host=h password='{HEAD} {TAIL}' user=u", {f"'{HEAD} {TAIL}'", f"{HEAD} {TAIL}"}),
        ("redis://h:6379/0", set()),
        ("postgresql://u:pw@h/x", set()),  # shorter than MIN_SECRET_LENGTH
    ],
)
def test_url_secrets_finds_every_form_of_the_password(url, expected):
    assert redact.url_secrets(url) == expected


@pytest.mark.usefixtures("fresh_secrets")
def test_scrub_removes_remembered_urls_and_passwords():
    url = f"postgresql://u:{HEAD}%40{TAIL}@[::1/x"
    redact.remember_url(url)
    redact.remember("plain-pw/with@")
    text = (
        f"in URI: \"{url}\"; host '{TAIL}@127.0.0.1'; decoded {HEAD}@{TAIL}; "
        "plain-pw/with@ and plain-pw%2Fwith%40"
    )
    scrubbed = redact.scrub(text)
    assert scrubbed == (
        "in URI: \"<unparseable url>\"; host '***@127.0.0.1'; decoded ***; *** and ***"
    )
    # URLs given to one call only are scrubbed in that call and not remembered
    other = "redis://:otherSecret1@r:6379/0"
    assert redact.scrub(f"at {other} otherSecret1", other) == "at redis://:***@r:6379/0 ***"
    assert redact.scrub("otherSecret1") == "otherSecret1"


@pytest.mark.usefixtures("fresh_secrets")
def test_settings_register_every_secret_they_hold(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:{HEAD}@db/x")
    monkeypatch.setenv("REDIS_URL", f"redis://:{TAIL}@r:6380/1")
    monkeypatch.setenv("POSTGRES_PASSWORD", "pg-var-pw")
    monkeypatch.setenv("REDIS_PASSWORD", "redis var pw")
    Settings().register_secrets()
    text = redact.scrub(f"{HEAD} {TAIL} pg-var-pw redis var pw redis%20var%20pw")
    assert text == "*** *** *** *** ***"


@pytest.mark.usefixtures("fresh_secrets")
def test_log_lines_and_their_tracebacks_are_scrubbed():
    redact.remember_url(f"postgresql://u:{HEAD}@db/x")
    out = io.StringIO()
    logs.configure("json", "info", stream=out)
    try:
        log = structlog.get_logger()
        log.error("failed", error=f"no host {HEAD}", hosts=[f"{HEAD}@db"], extra={"k": HEAD})
        try:
            _fail(RuntimeError(f"cannot connect with {HEAD}"))
        except RuntimeError:
            log.exception("crashed")
    finally:
        structlog.reset_defaults()
    assert HEAD not in out.getvalue()
    failed, crashed = (json.loads(line) for line in out.getvalue().splitlines())
    assert (failed["error"], failed["hosts"], failed["extra"]) == ("no host ***", ["***@db"],
                                                                 {"k": "***"})  # fmt: skip
    assert "RuntimeError: cannot connect with ***" in crashed["exception"]


@pytest.mark.usefixtures("fresh_secrets")
def test_console_tracebacks_are_scrubbed_too():
    redact.remember(HEAD)
    out = io.StringIO()
    logs.configure("console", "info", stream=out)
    try:
        try:
            _fail(RuntimeError(f"cannot connect with {HEAD}"))
        except RuntimeError:
            structlog.get_logger().exception("crashed")
    finally:
        structlog.reset_defaults()
    assert "cannot connect with ***" in out.getvalue()
    assert HEAD not in out.getvalue()


@pytest.mark.usefixtures("fresh_secrets")
def test_uncaught_exceptions_print_scrubbed_tracebacks(capsys):
    redact.remember(HEAD)
    try:
        _fail(ValueError(f"bad {HEAD}"))
    except ValueError as exc:
        redact._excepthook(type(exc), exc, exc.__traceback__)

    def crash() -> None:
        raise ValueError(f"thread {HEAD}")

    previous = threading.excepthook
    redact.install_excepthooks()
    try:
        thread = threading.Thread(target=crash, name="t-crash")
        thread.start()
        thread.join()
    finally:
        threading.excepthook = previous
        sys.excepthook = sys.__excepthook__
    err = capsys.readouterr().err
    assert "ValueError: bad ***" in err
    assert "Exception in thread t-crash" in err
    assert "ValueError: thread ***" in err
    assert HEAD not in err


@pytest.mark.usefixtures("fresh_secrets")
def test_an_exception_nobody_translated_is_one_scrubbed_error(monkeypatch, capsys):
    """The CLI's last resort: a driver error holding the URL is an event and a line, exit 1."""
    url = f"postgresql://u:{HEAD}@db.invalid/x"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")

    def explode(_args, settings):
        raise RuntimeError(f"driver said: {settings.database_dsn()}\nsecond line {HEAD}")

    monkeypatch.setattr(cli, "_cmd_report", explode)
    try:
        assert cli.main(["--log-format", "json", "report"]) == cli.EXIT_ERROR
    finally:
        structlog.reset_defaults()
        sys.excepthook = sys.__excepthook__
        threading.excepthook = threading.__excepthook__
    captured = capsys.readouterr()
    assert HEAD not in captured.out + captured.err
    event, line = captured.err.splitlines()[0], captured.err.splitlines()[-1]
    assert json.loads(event)["event"] == "command_crashed"
    assert (
        "RuntimeError: driver said: postgresql://u:***@db.invalid/x"
        in json.loads(event)["exception"]
    )
    assert line == "paper-consumer: unexpected error: RuntimeError: driver said: " + (
        "postgresql://u:***@db.invalid/x"
    )
