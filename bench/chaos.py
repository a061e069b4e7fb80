"""Fault drills: SIGKILLs, a PostgreSQL outage, a Redis cut and fuzzed entries in one run.

    python bench/chaos.py [--events 200000] [--kills 20] [--fuzz 10000] [--rate 3000]

One worker process (``python -m consumer run``, consumer name ``chaos-1``) reaches PostgreSQL and
Redis through two TCP proxies (``tests/support/proxy.py``: real servers, only the link fails;
the shared servers are never stopped). A publisher thread XADDs ``--events`` valid events
(``Publisher``, seed 10, orders + fills + marks) at ``--rate`` per second, with ``--fuzz``
malformed entries spread among them. During the run:

- ``--kills`` SIGKILLs of the worker at random moments, each followed by an immediate restart
  under the same consumer name (it drains its own pending entries first);
- PostgreSQL "stopped and restarted": its proxy is cut (every connection closed, new ones
  refused) for ``--outage-s`` seconds at 40 % of the run, then restored;
- Redis connection cut: the same for the Redis proxy at 70 % of the run.

After publishing ends and the group has drained (nothing undelivered, nothing pending), the
database is compared with an independent reference of the published *valid* events
(``tests/support/reference.py`` for positions; fill ids, order ids and each order's last
published status from the publisher's own record), and the dead-letter stream with the fuzzed
entries' ids.

Fuzzed entries are invalid by construction (a broken required value, a bad JSON envelope, an
unknown type, a missing id, an out-of-range time, random noise ...); each is also checked with
the worker's own ``parse_raw`` (bot-dialect translation included) before it is sent, so none
can be accepted by accident.

Report: published (valid + fuzzed), committed (valid entries whose effect is in the database),
dead-lettered (fuzzed / valid), lost (valid fills + orders missing, must be 0), doubled (a fill
applied twice shows as a position differing from the reference, a stats volume above the
reference, or an entry dead-lettered twice; must be 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import string
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import redis
from _common import ROOT, machine, scratch, worker_env

from consumer import events
from consumer.logs import configure
from consumer.publisher import Publisher
from consumer.records import EntryKey, RawEntry
from consumer.worker import parse_raw

try:  # the bot-dialect translation (issue 9), where the tree has it
    from consumer.worker import dialect_options
except ImportError:  # pragma: no cover - older trees: bot messages are plain dead letters
    dialect_options = None  # type: ignore[assignment]
from tests.support import reference
from tests.support.proxy import (
    TcpProxy,
    postgres_target,
    postgres_via,
    redis_target,
    redis_via,
)

BAD_NUMBERS = [
    "-1",
    "0",
    "abc",
    "NaN",
    "Infinity",
    "1e400",
    "99999999999",
    "1_000",
    "0x10",
    "١٢",
    "--5",
    "1,5",
    "0.000000001",
    " ",
    "",
    "[1]",
    "true",
]
BAD_TIMES = ["1970-01-01T00:00:00Z", "2200-01-01", "yesterday", "1e30", "-5", "2099-13-45"]


def _noise(rng: random.Random, n: int = 12) -> str:
    alphabet = string.printable + "éß漢\x00\u202e🙂"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, n)))


def fuzz_entry(
    rng: random.Random, streams: tuple[str, str, str], n: int
) -> tuple[str, dict[str, str]]:
    """One malformed entry (stream, fields)."""
    kind = rng.randrange(8)
    orders, fills, marks = streams
    fill = {
        "fill_id": f"fz-{n}",
        "order_id": f"fz-o{n}",
        "symbol": "BTCUSDT",
        "side": "BUY",
        "quantity": "0.01",
        "price": "60000",
        "fees_usdt": "0.6",
        "fee_type": "TAKER",
        "timestamp": "2099-01-01T00:00:00Z",
    }
    order = {
        "order_id": f"fz-o{n}",
        "symbol": "ETHUSDT",
        "side": "SELL",
        "quantity": "1",
        "status": "PENDING",
        "timestamp": "2099-01-01T00:00:00Z",
    }
    mark = {"symbol": "SOLUSDT", "price": "150", "timestamp": "2099-01-01T00:00:00Z"}
    if kind == 0:  # a required amount broken
        fill[rng.choice(["quantity", "price"])] = rng.choice(BAD_NUMBERS)
        stream, fields = fills, fill
    elif kind == 1:  # an order amount broken (given, so it must be valid)
        order[rng.choice(["quantity", "price", "filled_quantity"])] = rng.choice(
            [b for b in BAD_NUMBERS if b.strip()]
        )
        stream, fields = orders, order
    elif kind == 2:  # a bad time
        target = rng.choice([fill, order, mark])
        target["timestamp"] = rng.choice(BAD_TIMES)
        stream = {id(fill): fills, id(order): orders, id(mark): marks}[id(target)]
        fields = target
    elif kind == 3:  # a broken JSON envelope
        stream = rng.choice(streams)
        fields = {
            "data": rng.choice(
                [
                    "{not json",
                    "[1,2]",
                    '{"a":1,"a":2}',
                    "null",
                    "7",
                    '{"price": NaN}',
                    "{" * 5000,
                    _noise(rng),
                ]
            )
        }
    elif kind == 4:  # an unknown or dialect type
        stream = rng.choice(streams)
        fields = {**fill, "type": rng.choice(["bogus", "FILL!", "order-result", _noise(rng)])}
        if fields["type"].strip().lower() in (
            "fill",
            "order",
            "order_update",
            "mark",
            "price",
            "",
            "order_result",
        ):
            fields["type"] = "bogus"
    elif kind == 5:  # a missing id / symbol
        stream = rng.choice(streams)
        fields = {_noise(rng, 6) or "x": _noise(rng) for _ in range(rng.randint(1, 5))}
        fields.pop("order_id", None), fields.pop("fill_id", None), fields.pop("symbol", None)
    elif kind == 6:  # a bad symbol or side or enum
        fill[rng.choice(["symbol", "side", "fee_type"])] = rng.choice(
            ["btc-usdt", "B", "X" * 30, "HOLD", "🙂", "MAKERZ", "long short"]
        )
        stream, fields = fills, fill
    else:  # an overfilled order or an over-long id
        if rng.random() < 0.5:
            order |= {"quantity": "1", "filled_quantity": "2"}
        else:
            order["order_id"] = "o" * 101
        stream, fields = orders, order
    if rng.random() < 0.3:
        fields = {**fields, f"noise_{rng.randrange(99)}": _noise(rng)}
    return stream, fields


class Run:
    """The publisher thread and its record of what was published."""

    def __init__(self, client: redis.Redis, settings: Any, args: argparse.Namespace) -> None:
        self.client = client
        self.args = args
        self.streams = (settings.orders_stream, settings.fills_stream, settings.marks_stream)
        self.kinds = {
            settings.orders_stream: "order",
            settings.fills_stream: "fill",
            settings.marks_stream: "mark",
        }
        self.publisher = Publisher(
            client,
            orders_stream=self.streams[0],
            fills_stream=self.streams[1],
            marks_stream=self.streams[2],
            seed=args.seed,
            malformed_ratio=0.0,
            start=datetime(2099, 1, 1, tzinfo=UTC),
            run_id=f"chaos{args.seed}",
        )
        self.rng = random.Random(args.seed)
        self.options = dialect_options(settings) if dialect_options else None
        self.valid: list[tuple[str, dict[str, str]]] = []
        self.fuzz_ids: set[tuple[str, str]] = set()
        self.done = threading.Event()
        self.published = 0

    def fuzz(self, n: int) -> tuple[str, dict[str, str]]:
        while True:
            stream, fields = fuzz_entry(self.rng, self.streams, n)  # type: ignore[arg-type]
            entry = RawEntry(EntryKey(stream, "4070908800000-0"), fields)
            try:  # the worker's own parsing, bot-dialect translation included
                args = (self.options,) if self.options is not None else ()
                parse_raw(self.kinds, entry, *args)  # type: ignore[arg-type]
            except events.InvalidEventError:
                return stream, fields

    def publish(self) -> None:
        total = self.args.events + self.args.fuzz
        fuzz_at = set(self.rng.sample(range(total), self.args.fuzz))
        started = time.perf_counter()
        chunk = 100
        for base in range(0, total, chunk):
            due = started + base / self.args.rate
            if (delay := due - time.perf_counter()) > 0:
                time.sleep(delay)
            pipe = self.client.pipeline(transaction=False)
            sent: list[tuple[str, dict[str, str], bool]] = []
            for i in range(base, min(base + chunk, total)):
                if i in fuzz_at:
                    stream, fields = self.fuzz(i)
                    sent.append((stream, fields, True))
                else:
                    entry = self.publisher.next_entry()
                    sent.append((entry.stream, dict(entry.fields), False))
                pipe.xadd(sent[-1][0], sent[-1][1])  # type: ignore[arg-type]
            ids = pipe.execute()
            for (stream, fields, fuzzed), entry_id in zip(sent, ids, strict=True):
                if fuzzed:
                    self.fuzz_ids.add((stream, entry_id.decode()))
                else:
                    self.valid.append((stream, fields))
            self.published += len(sent)
        self.done.set()


def expected(run: Run) -> dict[str, Any]:
    fills: list[reference.RefFill] = []
    last_status: dict[str, str] = {}
    for stream, raw in run.valid:
        fields = json.loads(raw["data"]) if "data" in raw else raw
        if stream == run.streams[1]:
            fills.append(
                reference.RefFill(
                    fields["fill_id"],
                    fields["symbol"],
                    fields["side"],
                    Decimal(fields["quantity"]),
                    Decimal(fields["price"]),
                    Decimal(fields["fees_usdt"]),
                )
            )
        elif stream == run.streams[0]:
            last_status[fields["order_id"]] = fields["status"]
    volume = sum((f.quantity * f.price for f in fills), Decimal(0))
    return {"fills": fills, "status": last_status, "volume": volume}


def verify(dsn: str, client: redis.Redis, run: Run, dlq: str) -> dict[str, Any]:
    want = expected(run)
    with psycopg.connect(dsn) as conn:
        fill_ids = {r[0] for r in conn.execute("SELECT fill_id FROM paper_fills")}
        statuses = dict(conn.execute("SELECT order_id, status FROM paper_orders").fetchall())
        positions = {
            r[0]: (r[1], r[2], r[3])
            for r in conn.execute(
                "SELECT symbol, quantity, avg_entry_price, realized_pnl_usdt FROM paper_positions"
            )
        }
        volume = conn.execute(
            "SELECT coalesce(sum(total_volume_usdt), 0) FROM paper_trading_stats"
        ).fetchone()[0]  # type: ignore[index]
        fill_pnl = conn.execute("SELECT count(*) FROM paper_fill_pnl").fetchone()[0]  # type: ignore[index]
        offsets = conn.execute(
            "SELECT coalesce(sum(entries_committed), 0) FROM paper_consumer_offsets"
        ).fetchone()[0]  # type: ignore[index]
    ref_fill_ids = {f.fill_id for f in want["fills"]}
    ref_positions = reference.positions(want["fills"])
    dead = [(f[b"source_stream"].decode(), f[b"source_id"].decode()) for _, f in client.xrange(dlq)]
    dead_set = set(dead)
    wrong_status = sum(1 for o, s in want["status"].items() if statuses.get(o) != s)
    wrong_positions = sorted(s for s in ref_positions if positions.get(s) != ref_positions[s])
    lost = len(ref_fill_ids - fill_ids) + len(set(want["status"]) - set(statuses))
    doubled = (
        len(wrong_positions)
        + (1 if volume > want["volume"] else 0)
        + (len(dead) - len(dead_set))
        + (1 if fill_pnl != len(fill_ids) else 0)
    )
    committed_valid = len(run.valid) - len(dead_set - run.fuzz_ids)
    missing = sorted(run.fuzz_ids - dead_set)[:3]
    for stream, entry_id in missing:
        print("not dead-lettered:", stream, entry_id, client.xrange(stream, entry_id, entry_id))
    return {
        "published": run.published,
        "published_valid": len(run.valid),
        "published_fuzzed": len(run.fuzz_ids),
        "committed_valid": committed_valid,
        "offsets_entries_committed": int(offsets),
        "dead_lettered": len(dead),
        "dead_lettered_fuzzed": len(dead_set & run.fuzz_ids),
        "dead_lettered_valid": len(dead_set - run.fuzz_ids),
        "fuzzed_not_dead_lettered": len(run.fuzz_ids - dead_set),
        "lost": lost,
        "doubled": doubled,
        "extra_fills": len(fill_ids - ref_fill_ids),
        "orders_wrong_status": wrong_status,
        "positions_differing": wrong_positions,
        "stats_volume_equal": Decimal(volume) == want["volume"],
        # each committed entry counted once, however often a kill made it delivered again
        "offsets_count_each_once": int(offsets) == committed_valid,
    }


def drained(client: redis.Redis, streams: list[str], group: str) -> bool:
    for name in streams:
        last = client.xrevrange(name, count=1)
        if not last:
            continue
        info = [g for g in client.xinfo_groups(name) if g["name"].decode() == group]
        if not info or info[0]["last-delivered-id"] != last[0][0] or int(info[0]["pending"]):
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--fuzz", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=3000, help="entries/s published")
    parser.add_argument("--outage-s", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--timeout-s", type=float, default=900)
    parser.add_argument(
        "--worker-log-level", default="warning", help="the worker's PAPER_LOG_LEVEL (info to debug)"
    )
    args = parser.parse_args()
    configure("json", "warning")
    print(f"machine: {machine()}", flush=True)
    rng = random.Random(args.seed + 1)
    with scratch() as s:
        dsn = s.database("chaos", s.template())
        settings = s.settings(dsn, consumer_name="chaos-1")
        client = redis.Redis.from_url(settings.redis_dsn())
        pg_proxy = TcpProxy(postgres_target(dsn)).start()
        redis_proxy = TcpProxy(redis_target(settings.redis_dsn())).start()
        env = worker_env(
            settings,
            DATABASE_URL=postgres_via(dsn, pg_proxy),
            REDIS_URL=redis_via(settings.redis_dsn(), redis_proxy),
            PAPER_RETRY_MAX_MS="1000",
            PAPER_BLOCK_MS="200",
            PAPER_LOG_LEVEL=args.worker_log_level,
        )
        log_path = ROOT / "bench" / "chaos-worker.log"
        log = open(log_path, "w")  # noqa: SIM115

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "consumer", "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        for name in settings.streams():  # the group exists before the first entry
            with contextlib.suppress(redis.ResponseError):
                client.xgroup_create(name, settings.group, id="0", mkstream=True)
        run = Run(client, settings, args)
        duration = (args.events + args.fuzz) / args.rate
        kill_at = sorted(rng.uniform(0.02, 0.98) * duration for _ in range(args.kills))
        faults = [(t, "kill") for t in kill_at]
        faults += [(0.4 * duration, "postgres"), (0.7 * duration, "redis")]
        faults.sort()
        proc = start()
        publisher = threading.Thread(target=run.publish, daemon=True)
        started = time.monotonic()
        publisher.start()
        kills = 0
        try:
            for when, fault in faults:
                if (delay := started + when - time.monotonic()) > 0:
                    time.sleep(delay)
                if fault == "kill":
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    proc = start()
                else:
                    proxy = pg_proxy if fault == "postgres" else redis_proxy
                    print(
                        f"{time.monotonic() - started:6.1f} s: cut {fault} for {args.outage_s} s",
                        flush=True,
                    )
                    proxy.cut()
                    time.sleep(args.outage_s)
                    proxy.restore()
            print(f"{time.monotonic() - started:6.1f} s: {kills} SIGKILLs done", flush=True)
            run.done.wait()
            print(f"{time.monotonic() - started:6.1f} s: published {run.published}", flush=True)
            deadline = time.monotonic() + args.timeout_s
            while not drained(client, settings.streams(), settings.group):
                if time.monotonic() > deadline:
                    raise SystemExit("timed out waiting for the group to drain")
                if proc.poll() is not None:
                    raise SystemExit(f"worker exited ({proc.returncode}); see {log_path}")
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            print(f"{elapsed:6.1f} s: drained", flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            pg_proxy.close()
            redis_proxy.close()
        result = verify(dsn, client, run, settings.dlq_stream)
        result |= {
            "sigkills": kills,
            "postgres_cut_s": args.outage_s,
            "redis_cut_s": args.outage_s,
            "seconds": round(elapsed, 1),
        }
        client.close()
        for key, value in result.items():
            print(f"{key:28s} {value}")
        ok = (
            result["lost"] == 0
            and result["doubled"] == 0
            and result["fuzzed_not_dead_lettered"] == 0
            and result["dead_lettered_valid"] == 0
            and result["orders_wrong_status"] == 0
            and result["extra_fills"] == 0
            and result["offsets_count_each_once"]
        )
        print("PASS" if ok else "FAIL")
        print("result " + json.dumps(result, default=str))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(ROOT)))
    raise SystemExit(main())
