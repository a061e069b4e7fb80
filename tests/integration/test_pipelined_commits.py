"""Pipelined commits against real Redis and PostgreSQL (worker.py, committer.py).

The same backlog — trades with fills before their orders, publisher retries, invalid entries —
drained with ``pipeline_commits`` on and off gives identical tables and the same dead letters.
(A PostgreSQL or Redis cut mid-run is in test_faults.py, both ways.)
"""

from __future__ import annotations

import uuid

from consumer.settings import Settings
from tests.integration.test_faults import Trades
from tests.support.pipeline import dead_letters, rows, run_until_idle, snapshot


def _names() -> dict[str, str]:
    prefix = f"p{uuid.uuid4().hex[:10]}"
    return {
        "orders_stream": f"{prefix}.orders",
        "fills_stream": f"{prefix}.fills",
        "marks_stream": f"{prefix}.market_data",
        "dlq_stream": f"{prefix}.dlq",
    }


def _backlog(client, names: dict[str, str]) -> None:
    """The same entries at the same ids every time: one id per entry across the streams, so
    stream order (id, then the stream's rank on a tie) is the publishing order in both runs."""
    trades = Trades(seed=20, prefix="pc")
    ids = iter(range(1, 10**6))
    pipe = client.pipeline(transaction=False)
    for part in range(4):
        for _ in range(150):
            for kind, fields in trades._one():
                pipe.xadd(names[f"{kind}_stream"], fields, id=f"{next(ids)}-0")
        pipe.xadd(names["fills_stream"], {"fill_id": f"bad-{part}", "quantity": "x"},
                  id=f"{next(ids)}-0")  # fmt: skip
        pipe.xadd(names["orders_stream"], {"data": "{not json"}, id=f"{next(ids)}-0")
    pipe.execute()


def test_a_backlog_drained_pipelined_or_not_gives_identical_tables(
    redis_client, redis_url, make_database
):
    states, letters, batches = {}, {}, {}
    for pipelined in (True, False):
        names = _names()
        try:
            _backlog(redis_client, names)
            settings = Settings(
                database_url=make_database(),
                redis_url=redis_url,
                consumer_name="pipe" if pipelined else "seq",
                pipeline_commits=pipelined,
                batch_min_entries=40,
                batch_max_entries=160,
                batch_max_wait_ms=0,
                block_ms=50,
                **names,
            )
            worker = run_until_idle(settings)
            batches[pipelined] = worker.totals.batches
            states[pipelined] = snapshot(settings.database_dsn())
            letters[pipelined] = sorted(
                (d["source_stream"].split(".")[-1], d["error"])
                for d in dead_letters(redis_client, names["dlq_stream"])
            )
            (offsets,) = rows(
                settings.database_dsn(), "SELECT count(*) AS n FROM paper_consumer_offsets"
            )
            assert offsets["n"] == 2
            for stream in (names["orders_stream"], names["fills_stream"]):
                assert redis_client.xpending(stream, settings.group)["pending"] == 0
        finally:
            redis_client.delete(*names.values())
    assert batches[True] > 5  # many batches: the pipeline had something to overlap
    assert len(letters[True]) == 8
    assert letters[True] == letters[False]
    assert states[True]["fills"], "nothing was stored"
    assert states[True] == states[False]
