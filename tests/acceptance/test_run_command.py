"""``paper-consumer run`` as a user starts it: schema check, --migrate, JSON logs, no secrets."""

from __future__ import annotations

import json

import psycopg

from tests.acceptance.test_cli import cli, stream_env
from tests.support.pipeline import publish, rows


def _with_password(dsn: str) -> str:
    """The same database, with a password in the conninfo (trust auth ignores it)."""
    return psycopg.conninfo.make_conninfo(dsn, password="hunter2-secret")  # noqa: S106 - a fake


def test_run_refuses_an_unmigrated_database_with_a_clear_message(
    empty_db_url, redis_url, stream_names
):
    env = {"DATABASE_URL": _with_password(empty_db_url), **stream_env(redis_url, stream_names)}
    result = cli("run", "--until-idle", env=env)
    assert result.returncode == 1
    assert "migrate up" in result.stderr
    assert "hunter2-secret" not in result.stderr + result.stdout


def test_run_with_migrate_migrates_then_consumes_and_logs_json(
    empty_db_url, redis_url, stream_names, redis_client
):
    publish(redis_client, stream_names["fills_stream"], {
        "fill_id": "f1", "order_id": "o1", "symbol": "BTCUSDT", "side": "BUY",
        "quantity": "1", "price": "100"})  # fmt: skip
    publish(redis_client, stream_names["fills_stream"], {"fill_id": "bad", "quantity": "x"})
    env = {"DATABASE_URL": _with_password(empty_db_url), **stream_env(redis_url, stream_names)}
    result = cli("run", "--migrate", "--until-idle", env=env)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "migration_applied"
    assert "worker_started" in names
    assert "worker_stopped" in names
    assert names[-1] == "shard_runner_stopped"
    (batch,) = [e for e in events if e["event"] == "batch_committed"]
    assert (batch["entries"], batch["fills"], batch["dead_lettered"]) == (2, 1, 1)
    assert batch["level"] == "info"
    (letter,) = [e for e in events if e["event"] == "entry_dead_lettered"]
    assert letter["stream"] == stream_names["fills_stream"]
    assert letter["level"] == "warning"
    assert "hunter2-secret" not in result.stderr + result.stdout
    assert [r["fill_id"] for r in rows(empty_db_url, "SELECT fill_id FROM paper_fills")] == ["f1"]


def test_unreachable_database_error_shows_no_password(redis_url, stream_names):
    env = {
        "DATABASE_URL": "postgresql://claire_user:hunter2-secret@127.0.0.1:1/x?connect_timeout=2",
        **stream_env(redis_url, stream_names),
    }
    result = cli("run", "--until-idle", env=env)
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL" in result.stderr
    assert "hunter2-secret" not in result.stderr + result.stdout
