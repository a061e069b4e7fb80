"""Transport security: Redis over TLS (``rediss://``) and PostgreSQL ``sslmode`` pass-through.

Redis: a throwaway CA signs a certificate for 127.0.0.1, a real ``redis-server`` listens on TLS
only (``--port 0``) with a password, and a real worker consumes from it with the CA given in the
URL (``?ssl_ca_certs=…&ssl_cert_reqs=required``, which redis-py's ``from_url`` understands). With
an unrelated CA the handshake must fail as ``RedisUnavailableError``, password redacted.

PostgreSQL: the test servers have no TLS, so ``sslmode=disable`` must work and, over TCP,
``sslmode=require`` must be refused by libpq, which proves the setting reaches the connection.
"""

from __future__ import annotations

import psycopg
import pytest
import redis
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from consumer.errors import RedisUnavailableError
from consumer.settings import Settings
from consumer.stream import RedisStream
from tests.support.pipeline import publish, rows, run_until_idle
from tests.support.tls import make_certs, tls_redis, tls_url

PASSWORD = "pw-secret"  # noqa: S105 - a throwaway password for a throwaway server


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("tls-certs"))


@pytest.fixture(scope="module")
def tls_port(tmp_path_factory, tls_files):
    with tls_redis(tmp_path_factory.mktemp("tls-redis"), tls_files, password=PASSWORD) as port:
        yield port


def _publish_two_trades(client: redis.Redis, settings: Settings) -> None:
    orders, fills = settings.orders_stream, settings.fills_stream
    publish(client, orders, {"order_id": "o1", "symbol": "BTCUSDT", "side": "BUY",
                             "quantity": "2", "status": "SUBMITTED"})  # fmt: skip
    publish(client, fills, {"fill_id": "f1", "order_id": "o1", "symbol": "BTCUSDT",
                            "side": "BUY", "quantity": "2", "price": "100"})  # fmt: skip
    publish(client, orders, {"order_id": "o2", "symbol": "BTCUSDT", "side": "SELL",
                             "quantity": "1", "status": "SUBMITTED"})  # fmt: skip
    publish(client, fills, {"fill_id": "f2", "order_id": "o2", "symbol": "BTCUSDT",
                            "side": "SELL", "quantity": "1", "price": "120"})  # fmt: skip


def _assert_two_trades_landed(db_url: str) -> None:
    counts = rows(
        db_url,
        "SELECT (SELECT count(*) FROM paper_orders) AS orders,"
        " (SELECT count(*) FROM paper_fills) AS fills",
    )[0]
    assert counts == {"orders": 2, "fills": 2}
    (position,) = rows(db_url, "SELECT quantity, realized_pnl_usdt FROM paper_positions")
    assert (position["quantity"], position["realized_pnl_usdt"]) == (1, 20)


# --- Redis over TLS -------------------------------------------------------------------------


@pytest.mark.slow
def test_the_worker_consumes_over_rediss_with_a_verified_certificate(
    tls_port, tls_files, db_url, settings: Settings
):
    url = tls_url(tls_port, tls_files.ca, password=PASSWORD)
    over_tls = settings.model_copy(update={"redis_url": SecretStr(url)})
    publisher = redis.Redis.from_url(url)
    try:
        conn_kwargs = publisher.connection_pool.connection_kwargs
        assert publisher.connection_pool.connection_class is redis.SSLConnection
        assert conn_kwargs["ssl_ca_certs"] == str(tls_files.ca)
        _publish_two_trades(publisher, over_tls)

        worker = run_until_idle(over_tls)

        assert worker.totals.fills == 2
        _assert_two_trades_landed(db_url)
        # Consumed and acknowledged on the TLS server: nothing left pending for the group.
        for stream in (over_tls.orders_stream, over_tls.fills_stream):
            assert publisher.xpending(stream, over_tls.group)["pending"] == 0
    finally:
        publisher.close()


@pytest.mark.slow
def test_a_certificate_from_an_unknown_ca_is_refused_without_leaking_the_password(
    tls_port, tls_files
):
    url = tls_url(tls_port, tls_files.other_ca, password=PASSWORD)
    stream = RedisStream(url, streams=["tls.orders"], group="g", consumer="c", dlq_stream="tls.dlq")
    try:
        with pytest.raises(RedisUnavailableError) as caught:
            stream.ensure_groups()
    finally:
        stream.close()
    message = str(caught.value)
    assert "certificate verify failed" in message.lower()
    assert f"rediss://:***@127.0.0.1:{tls_port}/0" in message
    assert PASSWORD not in message
    assert PASSWORD not in repr(caught.value)


@pytest.mark.slow
def test_plain_redis_to_the_tls_port_is_refused(tls_port):
    stream = RedisStream(
        f"redis://:{PASSWORD}@127.0.0.1:{tls_port}/0",
        streams=["tls.orders"],
        group="g",
        consumer="c",
        dlq_stream="tls.dlq",
        socket_timeout_s=2.0,
    )
    try:
        with pytest.raises(RedisUnavailableError) as caught:
            stream.ensure_groups()
    finally:
        stream.close()
    assert PASSWORD not in str(caught.value)


# --- PostgreSQL sslmode ---------------------------------------------------------------------


def _over_tcp(dsn: str) -> bool:
    host = conninfo_to_dict(dsn).get("host") or ""
    return bool(host) and not str(host).startswith("/")


def test_sslmode_disable_in_database_url_reaches_a_working_worker(
    db_url, settings: Settings, redis_client
):
    url = make_conninfo(db_url, sslmode="disable")
    no_tls = settings.model_copy(update={"database_url": SecretStr(url)})
    assert "sslmode=disable" in no_tls.database_dsn()
    _publish_two_trades(redis_client, no_tls)

    worker = run_until_idle(no_tls)

    assert worker.totals.fills == 2
    _assert_two_trades_landed(db_url)
    with psycopg.connect(no_tls.database_dsn()) as conn:
        assert not conn.pgconn.ssl_in_use


def test_postgres_sslmode_from_the_bots_variables_is_passed_to_libpq(db_url):
    """POSTGRES_SSLMODE lands in the DSN libpq sees: ``disable`` connects; ``require`` is
    refused by a server without TLS (over TCP; libpq never uses TLS on a Unix socket)."""
    parts = conninfo_to_dict(db_url)

    def dsn(sslmode: str) -> str:
        return Settings(
            postgres_host=str(parts.get("host") or "127.0.0.1"),
            postgres_port=int(parts.get("port") or 5432),
            postgres_db=str(parts["dbname"]),
            postgres_user=str(parts.get("user") or "postgres"),
            postgres_password=SecretStr(str(parts["password"])) if parts.get("password") else None,
            postgres_sslmode=sslmode,
        ).database_dsn()

    with psycopg.connect(dsn("disable")) as conn:
        assert conn.info.parameter_status("ssl") in {None, "off"}
        assert not conn.pgconn.ssl_in_use
        server_has_tls = conn.execute("SHOW ssl").fetchone()[0] == "on"
    if not _over_tcp(db_url):
        return  # a Unix socket: sslmode has nothing to negotiate
    if server_has_tls:
        with psycopg.connect(dsn("require")) as conn:
            assert conn.pgconn.ssl_in_use
    else:
        with pytest.raises(psycopg.OperationalError, match="SSL"):
            psycopg.connect(dsn("require"), connect_timeout=5)
