"""The demo's view (consumer/demo.py): pure rendering, and the drain check on fakeredis."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import fakeredis

from consumer.demo import (
    STOP_HINT,
    DemoOptions,
    PositionLine,
    Summary,
    render_line,
    render_report,
    render_start,
    render_summary,
    streams_drained,
)
from consumer.publisher import Publisher, PublishStats


def summary(**changes) -> Summary:
    values = {
        "state": "publishing",
        "elapsed_s": 12.4,
        "published": PublishStats(orders=50, new_orders=12, fills=20, marks=28, malformed=2),
        "orders_committed": 12,
        "fills_committed": 19,
        "dead_letters": 2,
        "entries_per_s": 49.6,
        "total_pnl": D("-12.3456"),
        "positions": [
            PositionLine(
                "BTCUSDT",
                D("0.01230000"),
                D("60000.5"),
                D("60100"),
                D("-1.5"),
                D("1.23"),
                D("-0.27"),
            ),
            PositionLine("ETHUSDT", D("-2.00000000"), D("3000"), None, D("4"), D("0"), D("4")),
        ],
        "fill_rates": {"ETHUSDT": D("0.5"), "BTCUSDT": D("0.8333")},
    }
    return Summary(**(values | changes))


def test_summary_shows_every_figure():
    text = render_summary(summary())
    lines = text.splitlines()

    assert lines[0] == "paper-consumer demo — publishing, 12 s"
    assert (
        "published   100 events: 50 order events (12 orders), 20 fills, 28 marks, 2 malformed"
        in lines
    )
    assert "committed   12 orders, 19 fills in PostgreSQL" in lines
    assert "dead letters 2" in lines
    assert "throughput  50 entries/s" in lines
    assert "fill rate (7 days)  BTCUSDT 83.3%, ETHUSDT 50.0%" in lines
    assert lines[-1] == "total P&L  -12.35 USDT"


def test_the_first_line_says_how_to_stop_and_that_the_summary_follows():
    assert render_start(DemoOptions()) == (
        "paper-consumer demo: publishing until Ctrl-C, which stops it and then prints the summary"
    )
    assert render_start(DemoOptions(events=300)) == (
        "paper-consumer demo: publishing 300 events, then the summary"
        " (Ctrl-C stops it early and then prints the summary)"
    )
    live = render_summary(summary(), hint=STOP_HINT).splitlines()
    assert live[0] == (
        "paper-consumer demo — publishing, 12 s  (Ctrl-C stops it and then prints the summary)"
    )
    assert "Ctrl-C" not in render_summary(summary(state="final"))


def test_positions_form_an_aligned_table():
    lines = render_summary(summary()).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("symbol"))
    table = lines[header : header + 3]

    assert table[0].split() == [
        "symbol", "quantity", "avg", "entry", "price", "realized", "unrealized", "total", "P&L"
    ]  # fmt: skip
    assert table[1].split() == [
        "BTCUSDT",
        "0.0123",
        "60,000.50",
        "60,100.00",
        "-1.50",
        "1.23",
        "-0.27",
    ]
    assert table[2].split() == ["ETHUSDT", "-2", "3,000.00", "-", "4.00", "0.00", "4.00"]
    assert len({len(line) for line in table}) == 1  # right-aligned columns end together


def test_no_positions_yet():
    text = render_summary(summary(positions=[], fill_rates={}, total_pnl=D(0)))
    assert "no positions yet" in text
    assert "fill rate" not in text
    assert text.endswith("total P&L  0.00 USDT")


def test_one_line_form_and_final_report():
    assert render_line(summary()) == (
        "[  12.4s] publishing: published=100 orders=12 fills=19 dead_letters=2 entries/s=50 "
        "total_pnl=-12.35 USDT"
    )
    publisher = Publisher(
        fakeredis.FakeRedis(), orders_stream="o", fills_stream="f", marks_stream=None, seed=5,
        run_id="r9",
    )  # fmt: skip
    report = render_report(summary(state="final"), publisher, Path("/data"))
    assert report.startswith("paper-consumer demo — final")
    assert "total P&L  -12.35 USDT" in report
    assert report.endswith("seed 5, run r9; data kept in /data: run the demo again to resume")


def test_streams_drained_needs_every_entry_delivered_and_acknowledged():
    client = fakeredis.FakeRedis(decode_responses=True)
    assert not streams_drained(client, ["a", "b"], "g")  # no streams yet
    client.xadd("a", {"x": "1"})
    client.xgroup_create("a", "g", id="0", mkstream=True)
    client.xgroup_create("b", "g", id="0", mkstream=True)
    assert not streams_drained(client, ["a", "b"], "g")  # not delivered

    ((_, entries),) = client.xreadgroup("g", "c", {"a": ">"})
    assert not streams_drained(client, ["a", "b"], "g")  # delivered, not acknowledged
    client.xack("a", "g", entries[0][0])
    assert streams_drained(client, ["a", "b"], "g")
    assert not streams_drained(client, ["a", "b"], "other-group")
