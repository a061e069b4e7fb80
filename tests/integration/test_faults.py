"""Faults against real servers: kills, shutdowns, network cuts, a dead consumer.

Every test publishes trades (orders and fills, several symbols, buys and sells with fees, so
positions flip and realized P&L is non-trivial) to real Redis, lets real workers write them into
real PostgreSQL while something goes wrong, and then checks the outcome against an independent
reference (``tests/support/reference.py``): every fill exactly once, positions equal to the
average-cost fold of the published fills in stream order, nothing left pending, no dead letters.
Nothing is mocked; the network faults come from a TCP proxy (``tests/support/proxy.py``).
Waits are polls on a condition with a deadline; the few sleeps only shape the scenario.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
import redis
from structlog.testing import capture_logs

from consumer.settings import Settings
from consumer.stream import RedisStream
from tests.support import reference
from tests.support.pipeline import worker_for
from tests.support.proxy import (
    TcpProxy,
    postgres_target,
    postgres_via,
    redis_target,
    redis_via,
)

pytestmark = pytest.mark.slow

T = TypeVar("T")
GROUP = "paper-consumer"
ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 20, tzinfo=UTC)

# symbol → (reference price, quantity step, price decimals)
MARKET = {
    "BTCUSDT": (Decimal(60000), Decimal("0.0001"), 2),
    "ETHUSDT": (Decimal(3000), Decimal("0.001"), 2),
    "SOLUSDT": (Decimal(150), Decimal("0.01"), 3),
    "XRPUSDT": (Decimal("0.6"), Decimal(1), 5),
}


# ------------------------------------------------------------------------------ the trades


class Trades:
    """Deterministic random trades, published as the bot would, remembered in stream order.

    One trade is an order event (FILLED) and one or two fills; now and then the order event
    comes after its fills, and now and then a fill is published twice (a publisher retry).
    """

    def __init__(self, seed: int, prefix: str) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - test data, not crypto
        self.prefix = prefix
        self.count = 0
        self.fills: list[reference.RefFill] = []  # fill stream order, duplicates included
        self.order_ids: list[str] = []
        self.order_of: dict[str, str] = {}  # fill id → order id
        self.entries = 0
        self.drift = {symbol: Decimal(1) for symbol in MARKET}

    def _one(self) -> list[tuple[str, dict[str, str]]]:
        rng = self.rng
        n = self.count
        self.count += 1
        symbol = rng.choice(sorted(MARKET))
        base, step, decimals = MARKET[symbol]
        self.drift[symbol] *= Decimal(str(round(rng.uniform(0.985, 1.015), 4)))
        price = (base * self.drift[symbol]).quantize(Decimal(1).scaleb(-decimals))
        units = rng.randint(1, 4000)
        side = rng.choice(("BUY", "SELL"))
        when = START + timedelta(seconds=97 * n)
        order_id = f"{self.prefix}-o{n}"
        parts = [units] if units < 3 or rng.random() < 0.7 else [units // 3, units - units // 3]
        fills = []
        for k, part in enumerate(parts):
            qty = step * part
            fee = (qty * price * Decimal("0.001")).quantize(reference.STEP, ROUND_HALF_EVEN)
            fills.append(
                {
                    "fill_id": f"{self.prefix}-f{n}-{k}",
                    "order_id": order_id,
                    "symbol": symbol,
                    "side": side,
                    "quantity": str(qty),
                    "price": str(price),
                    "fees_usdt": str(fee),
                    "fee_type": "TAKER",
                    "timestamp": (when + timedelta(milliseconds=10 * (k + 1))).isoformat(),
                }
            )
        total = step * units
        order = {
            "order_id": order_id,
            "symbol": symbol,
            "side": side,
            "order_type": "MARKET",
            "quantity": str(total),
            "status": "FILLED",
            "filled_quantity": str(total),
            "filled_price": str(price),
            "fees_usdt": str(sum(Decimal(f["fees_usdt"]) for f in fills)),
            "timestamp": when.isoformat(),
        }
        events = [("orders", order)] + [("fills", f) for f in fills]
        if rng.random() < 0.1:  # the fills arrive before their order
            events = events[1:] + events[:1]
        if rng.random() < 0.03:  # a publisher retry sends a fill again
            events.append(("fills", dict(fills[-1])))
        self.order_ids.append(order_id)
        return events

    def publish(
        self, client: redis.Redis, names: dict[str, str], trades: int, *, atomic: bool = False
    ) -> None:
        """XADD ``trades`` trades in one pipeline (executed in order: stream order); ``atomic``
        wraps it in MULTI/EXEC, so a reader blocked on the streams wakes up to all of them."""
        pipe = client.pipeline(transaction=atomic)
        for _ in range(trades):
            for kind, fields in self._one():
                pipe.xadd(names[f"{kind}_stream"], fields)
                self.entries += 1
                if kind == "fills":
                    self.order_of[fields["fill_id"]] = fields["order_id"]
                    self.fills.append(
                        reference.RefFill(
                            fill_id=fields["fill_id"],
                            symbol=fields["symbol"],
                            side=fields["side"],
                            quantity=Decimal(fields["quantity"]),
                            price=Decimal(fields["price"]),
                            fee=Decimal(fields["fees_usdt"]),
                        )
                    )
        pipe.execute()

    @property
    def fill_ids(self) -> set[str]:
        return {f.fill_id for f in self.fills}


class Publisher(threading.Thread):
    """Publishes a few trades every few milliseconds until ``stop()``."""

    def __init__(
        self, redis_url: str, trades: Trades, names: dict[str, str], per_tick: int = 3
    ) -> None:
        super().__init__(name="publisher", daemon=True)
        self.client = redis.Redis.from_url(redis_url, decode_responses=True)
        self.trades = trades
        self.names = names
        self.per_tick = per_tick
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                self.trades.publish(self.client, self.names, self.per_tick)
                self._halt.wait(0.01)
        finally:
            self.client.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)
        assert not self.is_alive(), "publisher did not stop"


# ------------------------------------------------------------------------------ polling


def wait_for(
    what: str,
    predicate: Callable[[], T],
    timeout: float,
    *,
    interval: float = 0.01,
    alive: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"worker exited ({alive.returncode}) while waiting for {what}{_tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}{_tail(log)}")
        time.sleep(interval)


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return "\nworker log tail:\n" + "\n".join(text)


# ------------------------------------------------------------------------------ state


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to this test's database, for polling and final checks."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


@dataclass
class Rig:
    """One test's servers: its database (URL and a connection), Redis, and stream names."""

    db: psycopg.Connection[Any]
    db_url: str
    redis_url: str
    client: redis.Redis
    names: dict[str, str]

    def unpack(self) -> tuple[Any, str, str, redis.Redis, dict[str, str]]:
        return self.db, self.db_url, self.redis_url, self.client, self.names


@pytest.fixture
def rig(db, db_url, redis_url, redis_client, stream_names) -> Rig:
    return Rig(db, db_url, redis_url, redis_client, stream_names)


def fill_count(db: psycopg.Connection[Any]) -> int:
    return int(db.execute("SELECT count(*) FROM paper_fills").fetchone()[0])  # type: ignore[index]


def db_fill_ids(db: psycopg.Connection[Any]) -> list[str]:
    return [r[0] for r in db.execute("SELECT fill_id FROM paper_fills").fetchall()]


def db_positions(db: psycopg.Connection[Any]) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    rows = db.execute(
        "SELECT symbol, quantity, avg_entry_price, realized_pnl_usdt FROM paper_positions"
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def fills_summary(db: psycopg.Connection[Any]) -> dict[str, tuple[Any, ...]]:
    """Per symbol: fills stored, their signed quantity, and the position's trade counters
    (a wrong quantity with every fill stored once means a fill moved the position twice)."""
    rows = db.execute(
        "SELECT f.symbol, count(*), sum(CASE f.metadata->>'side' WHEN 'BUY' THEN f.quantity "
        "ELSE -f.quantity END), p.quantity, p.entry_trades, p.exit_trades "
        "FROM paper_fills f JOIN paper_positions p USING (symbol) "
        "GROUP BY f.symbol, p.quantity, p.entry_trades, p.exit_trades"
    ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def _id(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


def group_info(client: redis.Redis, stream: str) -> dict[str, Any]:
    for group in client.xinfo_groups(stream):  # type: ignore[union-attr]
        if group["name"] == GROUP:
            return group  # type: ignore[no-any-return]
    raise AssertionError(f"no group {GROUP} on {stream}")


def pending(client: redis.Redis, names: dict[str, str]) -> int:
    return sum(
        int(client.xpending(names[k], GROUP)["pending"])  # type: ignore[index]
        for k in ("orders_stream", "fills_stream")
    )


def drained(client: redis.Redis, names: dict[str, str]) -> bool:
    """Every entry of both streams delivered to the group, and nothing pending."""
    for key in ("orders_stream", "fills_stream"):
        last = client.xrevrange(names[key], count=1)
        if not last:
            continue
        info = group_info(client, names[key])
        if info["last-delivered-id"] != last[0][0] or int(info["pending"]) != 0:
            return False
    return True


def assert_final_state(
    db: psycopg.Connection[Any], client: redis.Redis, names: dict[str, str], trades: Trades
) -> None:
    """No loss, no double, positions as the reference, nothing pending, no dead letters."""
    ids = db_fill_ids(db)
    assert len(ids) == len(set(ids)) == len(trades.fill_ids)
    assert set(ids) == trades.fill_ids
    (orders,) = db.execute("SELECT count(*) FROM paper_orders").fetchone()  # type: ignore[misc]
    assert orders == len(trades.order_ids)
    want = reference.positions(trades.fills)
    got = db_positions(db)
    wrong = {s: (got.get(s), want[s]) for s in want if got.get(s) != want[s]}
    assert not wrong, (
        f"positions differ from the reference (got, want): {wrong}; "
        f"per symbol, the stored fills say: {fills_summary(db)}"
    )
    assert set(got) == set(want)
    assert pending(client, names) == 0
    assert drained(client, names)
    assert client.xlen(names["dlq_stream"]) == 0, client.xrange(names["dlq_stream"], count=3)


# ------------------------------------------------------------------------------ workers


def worker_env(db_url: str, redis_url: str, names: dict[str, str], **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PAPER_") and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        PAPER_ORDERS_STREAM=names["orders_stream"],
        PAPER_FILLS_STREAM=names["fills_stream"],
        PAPER_MARKS_STREAM=names["marks_stream"],
        PAPER_DLQ_STREAM=names["dlq_stream"],
        PAPER_CONSUMER_NAME="fault-worker",
        PAPER_METRICS_PORT="0",
        PAPER_BATCH_MAX_ENTRIES="50",
        PAPER_BATCH_MAX_WAIT_MS="20",
        PAPER_BLOCK_MS="100",
        PAPER_RETRY_INITIAL_MS="20",
        PAPER_RETRY_MAX_MS="500",
        PAPER_SHUTDOWN_GRACE_S="10",
        PAPER_LOG_FORMAT="json",
    )
    env.update(extra)
    return env


def start_worker(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "consumer", "run", *args],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )


def run_until_idle(env: dict[str, str], log: Path, timeout: float = 45) -> None:
    proc = start_worker(env, log, "--until-idle")
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"run --until-idle did not finish within {timeout} s{_tail(log)}")
    assert code == 0, f"run --until-idle exited with {code}{_tail(log)}"


def log_events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by SIGKILL
            continue
    return out


def fast_settings(
    database_url: str, redis_url: str, names: dict[str, str], consumer: str, **extra: Any
) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "consumer_name": consumer,
        "batch_max_entries": 50,
        "batch_max_wait_ms": 20,
        "block_ms": 100,
        "claim_idle_s": 1.0,
        "claim_interval_s": 0.2,
        "retry_initial_ms": 20,
        "retry_max_ms": 500,
        "shutdown_grace_s": 10.0,
        **names,
    }
    values.update(extra)
    return Settings(**values)


class InProcessWorker:
    """A real ``Worker`` running ``run()`` in a thread (so its logs can be captured).

    A context manager: leaving it stops the worker and closes its connections, also when the
    test failed half-way (``stop()`` may be called before, to check the exit code)."""

    def __init__(self, settings: Settings) -> None:
        self._ctx = worker_for(settings)
        self.worker = self._ctx.__enter__()
        self.result: list[int] = []
        self.errors: list[BaseException] = []
        self._closed = False
        self.thread = threading.Thread(target=self._run, name="worker", daemon=True)
        self.thread.start()

    def __enter__(self) -> InProcessWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._closed:
            self.worker.stop()
            self.thread.join(timeout=20)
            self._close()

    def _close(self) -> None:
        self._closed = True
        self._ctx.__exit__(None, None, None)

    def _run(self) -> None:
        try:
            self.result.append(self.worker.run())
        except BaseException as exc:  # reported by stop(), never lost in the thread
            self.errors.append(exc)

    def check(self) -> None:
        assert not self.errors, f"worker thread failed: {self.errors[0]!r}"
        assert self.thread.is_alive() or self.result, "worker thread ended"

    def stop(self) -> int:
        """Stop the worker; return what ``run()`` returned."""
        self.worker.stop()
        self.thread.join(timeout=20)
        try:
            assert not self.thread.is_alive(), "worker did not stop within 20 s"
            assert not self.errors, f"worker thread failed: {self.errors[0]!r}"
            return self.result[0]
        finally:
            self._close()


def count_events(logs: list[dict[str, Any]], name: str) -> int:
    return sum(1 for e in list(logs) if e.get("event") == name)


# ------------------------------------------------------------------------------ 1. SIGKILL


def test_sigkill_mid_batch_repeatedly_loses_and_doubles_nothing(rig, tmp_path):
    db, db_url, redis_url, redis_client, stream_names = rig.unpack()
    trades = Trades(seed=11, prefix="k")
    trades.publish(redis_client, stream_names, 1300)
    assert trades.entries >= 2900
    total = len(trades.fill_ids)
    log = tmp_path / "worker.log"
    # A kill between COMMIT and XACK redelivers a batch: the default delivery limit stays (a
    # redelivered entry past it is tried, consumer/trials.py, not dead-lettered). A
    # killed worker keeps its lease until it expires, and its successor waits for that: a
    # short TTL keeps the five restarts from costing 10 s each (the default).
    env = worker_env(db_url, redis_url, stream_names, PAPER_LEASE_TTL_S="3")
    rng = random.Random(7)  # noqa: S311 - kill timing, not crypto
    kills = 5
    for i in range(1, kills + 1):
        proc = start_worker(env, log)
        try:
            # Kill at a random point of a random batch, after some more fills are committed.
            target = total * i // (kills + 2) + rng.randint(-total // 30, total // 30)
            wait_for(
                f"{target} fills committed before kill {i}",
                lambda t=target: fill_count(db) >= t,
                30,
                interval=0.005,
                alive=proc,
                log=log,
            )
            time.sleep(rng.uniform(0, 0.04))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
    assert fill_count(db) < total, "the worker finished before the last kill: publish more"

    run_until_idle(env, log)

    assert_final_state(db, redis_client, stream_names, trades)
    events = log_events(log)
    assert sum(1 for e in events if e.get("event") == "worker_started") == kills + 1


# ------------------------------------------------------------------------------ 2. SIGTERM


def test_sigterm_under_load_acks_exactly_what_it_committed(rig, tmp_path):
    db, db_url, redis_url, redis_client, stream_names = rig.unpack()
    trades = Trades(seed=22, prefix="t")
    log = tmp_path / "worker.log"
    env = worker_env(db_url, redis_url, stream_names)
    publisher = Publisher(redis_url, trades, stream_names)
    proc = start_worker(env, log)
    publisher.start()
    try:
        wait_for(
            "fills committed under load", lambda: fill_count(db) >= 300, 30, alive=proc, log=log
        )
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=10 + 5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker ignored SIGTERM beyond its grace period{_tail(log)}")
    finally:
        publisher.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, f"exit code {code}{_tail(log)}"
    assert any(e.get("event") == "worker_stopped" for e in log_events(log))

    # Acked == committed. Every entry up to the group's last-delivered id was read; those not
    # pending any more were acknowledged, and exactly their fills are stored. Entries still
    # pending were read ahead but not applied (held back to keep cross-stream order): none of
    # them may be committed; a restart drains them first.
    read_fills: set[str] = set()
    read_orders: set[str] = set()
    for key, into, field in (
        ("fills_stream", read_fills, "fill_id"),
        ("orders_stream", read_orders, "order_id"),
    ):
        stream = stream_names[key]
        last = group_info(redis_client, stream)["last-delivered-id"]
        held = {
            row["message_id"]
            for row in redis_client.xpending_range(stream, GROUP, "-", "+", 100_000)
        }
        acked = [(i, f) for i, f in redis_client.xrange(stream, max=last) if i not in held]
        into.update(fields[field] for _, fields in acked)
        if held:
            assert min(_id(i) for i in held) > max(_id(i) for i, _ in acked), "acked past held"
        (offset,) = db.execute(
            "SELECT last_entry_id FROM paper_consumer_offsets WHERE stream_name = %s", (stream,)
        ).fetchone()  # type: ignore[misc]
        assert offset == acked[-1][0], f"{key}: committed up to {offset}, acked {acked[-1][0]}"
    assert read_fills, "nothing was read before SIGTERM"
    assert redis_client.xlen(stream_names["fills_stream"]) > len(read_fills), "no backlog left"
    stored = db_fill_ids(db)
    assert len(stored) == len(set(stored))
    assert set(stored) == read_fills
    stored_orders = {r[0] for r in db.execute("SELECT order_id FROM paper_orders").fetchall()}
    assert read_orders <= stored_orders
    # An order stored without its own entry acked is a placeholder made by an acked fill.
    assert stored_orders <= read_orders | {trades.order_of[f] for f in read_fills}

    run_until_idle(env, log)
    assert_final_state(db, redis_client, stream_names, trades)


# ------------------------------------------------------------------------------ 3. PostgreSQL cut


def _outage(rig: Rig, proxy: TcpProxy, settings: Settings, trades: Trades, server: str) -> Any:
    """Run a worker under continuous publishing; cut ``proxy`` for ~3 s once it is busy (and
    until the worker has noticed), restore it, and wait until everything is committed.
    Returns the captured log events."""
    with capture_logs() as logs, InProcessWorker(settings) as worker:
        publisher = Publisher(rig.redis_url, trades, rig.names)
        publisher.start()
        try:
            wait_for("fills committed", lambda: fill_count(rig.db) >= 200, 30)
            worker.check()
            proxy.cut()
            cut_at = time.monotonic()
            wait_for(
                f"{server}_unavailable", lambda: count_events(logs, f"{server}_unavailable"), 15
            )
            time.sleep(max(0.0, 3 - (time.monotonic() - cut_at)))  # the outage lasts ~3 s
            proxy.restore()
            at_restore = fill_count(rig.db)
            wait_for("writes after restore", lambda: fill_count(rig.db) > at_restore + 100, 30)
        finally:
            publisher.stop()
        wait_for("everything committed", lambda: drained(rig.client, rig.names), 40)
        assert worker.stop() == 0
    return logs


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "sequential"])
def test_postgres_unreachable_mid_run_then_back(rig, pipelined):
    trades = Trades(seed=33, prefix="p")
    with TcpProxy(postgres_target(rig.db_url)) as proxy:
        settings = fast_settings(
            postgres_via(rig.db_url, proxy), rig.redis_url, rig.names, "pg",
            pipeline_commits=pipelined,
        )  # fmt: skip
        logs = _outage(rig, proxy, settings, trades, "postgres")
    assert proxy.refused > 0, "the cut never refused a connection"
    # One line per state change, not one per retry.
    assert count_events(logs, "postgres_unavailable") == 1, _outage_events(logs)
    assert count_events(logs, "postgres_available") == 1, _outage_events(logs)
    assert_final_state(rig.db, rig.client, rig.names, trades)


def _outage_events(logs: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in logs if str(e.get("event", "")).endswith("available")]


# ------------------------------------------------------------------------------ 4. Redis cut


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "sequential"])
def test_redis_connection_cut_mid_run_then_back(rig, pipelined):
    trades = Trades(seed=44, prefix="r")
    with TcpProxy(redis_target(rig.redis_url)) as proxy:
        settings = fast_settings(
            rig.db_url, redis_via(rig.redis_url, proxy), rig.names, "redis",
            pipeline_commits=pipelined,
        )  # fmt: skip
        logs = _outage(rig, proxy, settings, trades, "redis")
    assert count_events(logs, "redis_unavailable") == 1, _outage_events(logs)
    assert count_events(logs, "redis_available") == 1, _outage_events(logs)
    assert_final_state(rig.db, rig.client, rig.names, trades)


def test_redis_read_reply_lost_in_flight_keeps_stream_order(rig):
    """XREADGROUP ran on the server (the entries are now pending for this consumer) but the
    reply was lost with the connection. The worker must still apply those entries before the
    ones published after them: positions depend on stream order."""
    db, names = rig.db, rig.names
    trades = Trades(seed=66, prefix="l")
    with TcpProxy(redis_target(rig.redis_url)) as proxy, capture_logs():
        settings = fast_settings(rig.db_url, redis_via(rig.redis_url, proxy), names, "lost-reply")
        with InProcessWorker(settings) as worker:
            wait_for("the worker reading its streams", lambda: proxy.accepted > 0, 10)
            trades.publish(rig.client, names, 5)
            wait_for("the first trades committed", lambda: fill_count(db) > 0, 10)
            # Lose the first reply that carries fills (a read of the fill stream's entries).
            proxy.drop_next_reply(containing=names["fills_stream"].encode())
            trades.publish(rig.client, names, 20, atomic=True)
            wait_for("the reply with the entries lost", proxy.reply_dropped.is_set, 10)
            lost = rig.client.xpending(names["fills_stream"], GROUP)["pending"]
            assert lost > 0, "the lost read left no fill pending"
            trades.publish(rig.client, names, 20)
            wait_for("everything committed", lambda: drained(rig.client, names), 30)
            assert worker.stop() == 0
    assert_final_state(db, rig.client, names, trades)


# ------------------------------------------------------------------------------ 5. dead consumer


def test_entries_of_a_dead_consumer_are_reclaimed_by_another(rig):
    db, db_url, redis_url, redis_client, stream_names = rig.unpack()
    trades = Trades(seed=55, prefix="c")
    trades.publish(redis_client, stream_names, 300)
    settings_b = fast_settings(db_url, redis_url, stream_names, "consumer-b")
    # Consumer A reads a batch and dies before committing or acknowledging anything.
    a = RedisStream(
        redis_url,
        streams=settings_b.streams(),
        group=settings_b.group,
        consumer="consumer-a",
        dlq_stream=settings_b.dlq_stream,
    )
    a.ensure_groups()
    taken = a.read(count=40, block_ms=None, pending=False)
    a.close()
    assert len(taken) >= 40
    assert pending(redis_client, stream_names) == len(taken)

    with capture_logs() as logs, worker_for(settings_b) as worker_b:
        started = time.monotonic()
        assert worker_b.run(until_idle=True) == 0
        took = time.monotonic() - started
    assert took >= settings_b.claim_idle_s  # nothing was taken from A before it was idle
    reclaimed = [e for e in logs if e.get("event") == "entries_reclaimed"]
    assert sum(e["count"] for e in reclaimed) == len(taken)
    for key in ("orders_stream", "fills_stream"):
        assert (
            redis_client.xpending_range(
                stream_names[key], GROUP, min="-", max="+", count=10, consumername="consumer-a"
            )
            == []
        )
    assert_final_state(db, redis_client, stream_names, trades)
