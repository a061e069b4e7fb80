"""``paper-consumer run`` configured as in the bot's compose: POSTGRES_*/REDIS_* names, secrets
mounted as files (``POSTGRES_PASSWORD_FILE``, ``REDIS_PASSWORD_FILE``), the bot's own messages."""

from __future__ import annotations

import json
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from tests.acceptance.test_cli import cli, stream_env
from tests.support.bot import T0, request, result
from tests.support.pipeline import publish, rows


def _bot_env(db_url: str, secret_dir: Path) -> dict[str, str]:
    info = conninfo_to_dict(db_url)
    password = str(info.get("password") or "file-only-secret-3x4")  # trust auth ignores a fake
    secret = secret_dir / "postgres_password"
    secret.write_text(password + "\n", encoding="utf-8")
    return {
        "POSTGRES_HOST": str(info.get("host") or "127.0.0.1"),
        "POSTGRES_PORT": str(info.get("port") or 5432),
        "POSTGRES_DB": str(info["dbname"]),
        "POSTGRES_USER": str(info.get("user") or "postgres"),
        "POSTGRES_PASSWORD_FILE": str(secret),
    }


def test_run_with_the_bots_env_names_and_a_password_file(
    db_url, redis_url, stream_names, redis_client, tmp_path
):
    publish(redis_client, stream_names["orders_stream"], request("BTCUSDT-1", ts=T0))
    publish(redis_client, stream_names["fills_stream"],
            result("MOCK_00000042", client_id="BTCUSDT-1", price="84000.0", ts=T0 + 1))  # fmt: skip
    env = {**stream_env(redis_url, stream_names), **_bot_env(db_url, tmp_path)}
    run = cli("--log-format", "json", "run", "--until-idle", env=env)
    assert run.returncode == 0, run.stderr
    secret = (tmp_path / "postgres_password").read_text(encoding="utf-8").strip()
    assert secret not in run.stdout + run.stderr
    events = [json.loads(line) for line in run.stderr.splitlines()]
    assert "worker_started" in [e["event"] for e in events]
    (order,) = rows(db_url, "SELECT order_id, client_id, status FROM paper_orders")
    assert order == {"order_id": "MOCK_00000042", "client_id": "BTCUSDT-1", "status": "FILLED"}
    (fill,) = rows(db_url, "SELECT fill_id FROM paper_fills")
    assert fill["fill_id"] == "MOCK_00000042:0.01"


def test_an_unreadable_password_file_is_named_never_read_out(
    db_url, redis_url, stream_names, tmp_path
):
    env = {**stream_env(redis_url, stream_names), **_bot_env(db_url, tmp_path)}
    env.pop("REDIS_URL")
    env |= {"REDIS_HOST": "127.0.0.1", "REDIS_PASSWORD_FILE": str(tmp_path / "missing")}
    run = cli("run", "--until-idle", env=env)
    assert run.returncode != 0
    assert f"cannot read secret file {str(tmp_path / 'missing')!r}" in run.stderr
