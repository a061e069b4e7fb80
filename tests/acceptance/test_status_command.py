"""``paper-consumer status`` as a person (text) and a machine (``--format json``) runs it."""

from __future__ import annotations

import json

from tests.acceptance.test_cli import cli, stream_env


def test_status_shows_lag_pending_dead_letters_offsets_and_pnl(db_url, redis_url, stream_names):
    env = {**stream_env(redis_url, stream_names), "DATABASE_URL": db_url}
    before = cli("status", env=env)
    assert before.returncode == 0, before.stderr
    assert "no such stream" in before.stdout
    assert "committed offsets (PostgreSQL)\n  none yet" in before.stdout

    published = cli(
        "publish", "--events", "120", "--seed", "5", "--malformed-ratio", "0.05", env=env
    )
    assert published.returncode == 0, published.stderr
    assert cli("run", "--until-idle", env=env).returncode == 0

    machine = cli("status", "--format", "json", env=env)
    assert machine.returncode == 0, machine.stderr
    status = json.loads(machine.stdout)
    assert [s["stream"] for s in status["streams"]] == [
        stream_names["orders_stream"],
        stream_names["fills_stream"],
        stream_names["marks_stream"],
    ]
    for stream in status["streams"]:
        assert stream["group"] is True
        assert stream["pending"] == 0
        assert stream["lag"] == 0
        assert [c["name"] for c in stream["consumers"]] == ["acceptance"]
    dead = status["dead_letters"]
    assert dead["stream"] == stream_names["dlq_stream"]
    assert dead["length"] > 0
    assert 0 < len(dead["newest"]) <= 3
    assert all(letter["error"] for letter in dead["newest"])
    assert {o["stream_name"] for o in status["offsets"]} <= set(stream_names.values())
    assert sum(o["entries_committed"] for o in status["offsets"]) > 0
    assert status["total_pnl_usdt"] is not None

    person = cli("status", env=env)
    assert person.returncode == 0, person.stderr
    assert f"dead letters ({stream_names['dlq_stream']}): {dead['length']}" in person.stdout
    assert "consumer acceptance" in person.stdout
    assert "total P&L now:" in person.stdout


def test_status_reports_an_unreachable_server_without_the_password(redis_url, stream_names):
    env = {
        **stream_env(redis_url, stream_names),
        "DATABASE_URL": "postgresql://claire_user:st4tus-pw@127.0.0.1:1/x?connect_timeout=2",
    }
    result = cli("status", env=env)
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL" in result.stderr
    assert "st4tus-pw" not in result.stdout + result.stderr
