"""Configuration from the environment (ours and the bot's names); structured, secret-free logs."""

from __future__ import annotations

import json

import pytest
import structlog
from structlog.testing import capture_logs

from consumer import logs
from consumer.errors import ConfigError
from consumer.settings import Settings, redact_url

BOT_ENV = {
    "POSTGRES_HOST": "cdb_postgres",
    "POSTGRES_PORT": "5433",
    "POSTGRES_DB": "claire_de_binare",
    "POSTGRES_USER": "claire_user",
    "REDIS_HOST": "cdb_redis",
    "REDIS_PORT": "6380",
    "REDIS_DB": "2",
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("DATABASE_URL", "REDIS_URL", "PAPER_DATABASE_URL", "PAPER_REDIS_URL",
                 *BOT_ENV, "POSTGRES_PASSWORD", "REDIS_PASSWORD", "POSTGRES_PASSWORD_FILE",
                 "REDIS_PASSWORD_FILE", "POSTGRES_SSLMODE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def test_urls_win_over_parts(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db/x")
    monkeypatch.setenv("REDIS_URL", "rediss://:p@r:6380/1")
    monkeypatch.setenv("POSTGRES_HOST", "ignored")
    s = Settings()
    assert s.database_dsn() == "postgresql://u:p@db/x"
    assert s.redis_dsn() == "rediss://:p@r:6380/1"


def test_the_bots_variable_names_build_the_urls(monkeypatch):
    for name, value in BOT_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POSTGRES_PASSWORD", "p@ss/word")
    monkeypatch.setenv("REDIS_PASSWORD", "r:pw")
    monkeypatch.setenv("POSTGRES_SSLMODE", "require")
    s = Settings()
    assert s.database_dsn() == (
        "postgresql://claire_user:p%40ss%2Fword@cdb_postgres:5433/claire_de_binare?sslmode=require"
    )
    assert s.redis_dsn() == "redis://:r%3Apw@cdb_redis:6380/2"


def test_secrets_from_files(monkeypatch, tmp_path):
    (tmp_path / "pg").write_text("from-file\n")
    (tmp_path / "redis").write_text("redis-file")
    monkeypatch.setenv("POSTGRES_HOST", "db")
    monkeypatch.setenv("POSTGRES_PASSWORD_FILE", str(tmp_path / "pg"))
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(tmp_path / "redis"))
    s = Settings()
    assert ":from-file@" in s.database_dsn()
    assert ":redis-file@" in s.redis_dsn()


def test_unreadable_secret_file_names_the_file_not_the_content(monkeypatch, tmp_path):
    monkeypatch.setenv("POSTGRES_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="missing"):
        Settings()


def test_no_database_configured_is_a_clear_error():
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        Settings().database_dsn()


def test_settings_repr_hides_passwords(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:topsecret@db/x")
    monkeypatch.setenv("POSTGRES_PASSWORD", "topsecret2")
    text = repr(Settings()) + str(Settings().model_dump())
    assert "topsecret" not in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("unix:///tmp/r.sock", "unix:///tmp/r.sock"),
        ("host=/tmp/pg dbname=x password=pw user=u", "host=/tmp/pg dbname=x password=*** user=u"),
        ("host=h password='p w\\'x' user=u", "host=h password=*** user=u"),
        (
            "postgresql://u@h/db?password=pw&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_stream_units_and_order():
    s = Settings(marks_stream="")
    assert s.streams() == ["stream.orders", "stream.fills"]
    assert Settings().streams() == ["stream.orders", "stream.fills", "stream.market_data"]
    assert Settings().batch_max_wait_ms == 0


@pytest.mark.parametrize(
    "given",
    [
        {},
        {"marks_stream": "", "shards": 4, "redis_cluster": True, "results_stream": "r.x"},
        {"orders_stream": "o.{t}", "fills_stream": "f.{t}", "marks_stream": None, "group": "g2"},
    ],
)
def test_a_child_started_with_child_environ_reads_the_same_names(monkeypatch, given):
    parent = Settings(
        database_url="postgresql://u:s3cret@db:5433/x",
        redis_url="redis://:pw@r:6380/3",
        consumer_name="parent-1",
        **given,
    )
    for name, value in parent.child_environ().items():
        monkeypatch.setenv(name, value)
    child = Settings()
    for field in ("orders_stream", "fills_stream", "dlq_stream", "group", "consumer_name",
                  "shards", "redis_cluster"):  # fmt: skip
        assert getattr(child, field) == getattr(parent, field), field
    assert child.streams() == parent.streams()  # an unset marks/results stream stays unset
    assert child.database_dsn() == "postgresql://u:s3cret@db:5433/x"
    assert child.redis_dsn() == "redis://:pw@r:6380/3"


def test_json_logs_off_a_terminal_and_secret_fields_masked(capsys):
    logs.configure("json", "info")
    try:
        structlog.get_logger().info("hello", password="pw", batch=3)  # noqa: S106 - masked
        structlog.get_logger().debug("hidden")
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines == [
        {"event": "hello", "password": "***", "batch": 3, "level": "info",
         "timestamp": lines[0]["timestamp"]}
    ]  # fmt: skip
    assert lines[0]["timestamp"].endswith("Z")


def test_log_events_are_captured_as_fields():
    with capture_logs() as captured:
        logs.get_logger(component="x").warning("entry_dead_lettered", entry_id="1-0")
    assert captured == [
        {"component": "x", "entry_id": "1-0", "event": "entry_dead_lettered",
         "log_level": "warning"}
    ]  # fmt: skip
