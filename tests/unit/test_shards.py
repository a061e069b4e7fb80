"""The shard function (with the test vectors of docs/scaling.md), shard keys and their cluster
slots, where a publisher sends an entry, and the balance rule."""

from __future__ import annotations

import json
import time
import zlib

import pytest
from redis.crc import key_slot

from consumer.errors import ConfigError, LeaseLostError
from consumer.leases import LocalLease, heartbeat_interval_s, read_guard_s
from consumer.settings import Settings
from consumer.shards import (
    LeaseView,
    all_shard_streams,
    entry_symbol,
    fair_share,
    plan_balance,
    shard_key,
    shard_of,
    shard_settings,
    stream_for,
)
from consumer.stream import check_cluster_layout, slot_of

# docs/scaling.md "Shard function": CRC-32 (IEEE) of the upper-cased UTF-8 symbol, then mod N.
VECTORS = [
    # symbol, crc32, shard of 4, of 8, of 16
    ("BTCUSDT", 0xAC8EA3C3, 3, 3, 3),
    ("ETHUSDT", 0x1EF9AC5C, 0, 4, 12),
    ("SOLUSDT", 0x86665130, 0, 0, 0),
    ("BNBUSDT", 0x33A3AB8E, 2, 6, 14),
    ("XRPUSDT", 0x9E396E0C, 0, 4, 12),
    ("DOGEUSDT", 0x92C28B96, 2, 6, 6),
]


@pytest.mark.parametrize(("symbol", "crc", "of4", "of8", "of16"), VECTORS)
def test_shard_function_vectors(symbol, crc, of4, of8, of16):
    assert zlib.crc32(symbol.encode("utf-8")) == crc
    assert [crc % n for n in (4, 8, 16)] == [of4, of8, of16]
    assert [shard_of(symbol, n) for n in (4, 8, 16)] == [of4, of8, of16]
    assert shard_of(symbol, 1) == 0


def test_shard_function_normalises_like_the_event_parser():
    assert shard_of(" btcusdt ", 16) == shard_of("BTCUSDT", 16) == 3
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("BTCUSDT", 0)


def test_a_shards_keys_share_one_cluster_slot_and_the_names_follow_the_settings():
    settings = Settings(shards=8, results_stream="stream.order_results")
    for shard in range(8):
        mine = shard_settings(settings, shard)
        keys = [*mine.streams(), mine.dlq_stream]
        assert keys == [
            f"stream.orders.{{{shard}}}",
            f"stream.fills.{{{shard}}}",
            f"stream.order_results.{{{shard}}}",
            f"stream.market_data.{{{shard}}}",
            f"stream.paper_dlq.{{{shard}}}",
        ]
        assert {key_slot(k.encode()) for k in keys} == {key_slot(str(shard).encode())}
    assert len(all_shard_streams(settings)) == 8 * 4
    assert shard_key("stream.fills", 3) == "stream.fills.{3}"


def test_the_cluster_layout_check_accepts_shards_and_one_tag_and_refuses_default_names():
    sharded = Settings(shards=8, results_stream="stream.order_results")
    parts = [shard_settings(sharded, k) for k in range(8)]
    check_cluster_layout([[*p.streams(), p.dlq_stream] for p in parts])  # no error
    tagged = ["{paper}.orders", "{paper}.fills", "{paper}.market_data", "{paper}.dlq"]
    check_cluster_layout([tagged])
    plain = Settings()
    assert slot_of("stream.orders") != slot_of("stream.fills")
    with pytest.raises(ConfigError, match=r"stream\.orders \(slot \d+\).*PAPER_SHARDS>=1"):
        check_cluster_layout([[*plain.streams(), plain.dlq_stream]])
    with pytest.raises(ConfigError, match="hash slot"):
        check_cluster_layout([["{a}.orders", "{a}.fills", "{b}.dlq"]])


def test_the_cluster_setting_is_read_from_the_environment(monkeypatch):
    assert Settings().redis_cluster is False
    monkeypatch.setenv("PAPER_REDIS_CLUSTER", "true")
    assert Settings().redis_cluster is True


def test_marks_disabled_stay_disabled_in_a_shard():
    assert shard_settings(Settings(marks_stream=None), 2).marks_stream is None


def test_where_a_publisher_sends_an_entry():
    flat = {"symbol": "ethusdt", "side": "BUY"}
    envelope = {"data": json.dumps({"symbol": "ETHUSDT", "order_id": "o1"})}
    assert entry_symbol(flat) == "ethusdt"
    assert stream_for("stream.fills", flat, 8) == "stream.fills.{4}"
    assert stream_for("stream.fills", envelope, 8) == "stream.fills.{4}"
    assert stream_for("stream.fills", flat, 0) == "stream.fills"
    for nameless in ({"data": "{not json"}, {"data": "[1]"}, {"price": "1"}, {"symbol": " "}):
        assert entry_symbol(nameless) is None
        assert stream_for("stream.fills", nameless, 8) == "stream.fills.{0}"


@pytest.mark.parametrize("shards", [1, 3, 8, 16])
@pytest.mark.parametrize("workers", [1, 2, 3, 4, 7])
def test_fair_shares_add_up_to_the_shards(shards, workers):
    members = [f"w{i}" for i in range(workers)]
    shares = [fair_share(shards, members, m) for m in members]
    assert sum(shares) == shards
    assert max(shares) - min(shares) <= 1


def _views(owners: dict[int, str]) -> list[LeaseView]:
    return [LeaseView(k, owner, True) for k, owner in owners.items()]


def test_a_worker_below_its_share_takes_free_shards_only():
    members = ["a", "b"]
    acquire, release = plan_balance(8, members, "b", _views({0: "a", 1: "a", 4: "a"}), [])
    assert release == []
    assert len(acquire) == 4
    assert not {0, 1, 4} & set(acquire)
    assert acquire[0] == 5  # b starts half-way round, so a and b do not race for shard 0


def test_a_worker_above_its_share_gives_up_its_highest_shards():
    owners = dict.fromkeys(range(8), "a")
    acquire, release = plan_balance(8, ["a", "b", "c", "d"], "a", _views(owners), list(range(8)))
    assert (acquire, release) == ([], [2, 3, 4, 5, 6, 7])


def test_expired_leases_are_free_and_a_member_always_counts_itself():
    views = [LeaseView(k, "dead", False) for k in range(4)]
    acquire, release = plan_balance(4, [], "me", views, [])
    assert (sorted(acquire), release) == ([0, 1, 2, 3], [])


def test_the_local_lease_stops_reads_before_the_server_expiry():
    ttl = 3.0
    assert heartbeat_interval_s(ttl) == 1.0
    assert 0 < read_guard_s(ttl) < heartbeat_interval_s(ttl)
    lease = LocalLease(time.monotonic() + 0.5)
    assert 0 < lease.check(1) <= 0.5
    lease.revoke()
    with pytest.raises(LeaseLostError, match="shard 1"):
        lease.check(1)
