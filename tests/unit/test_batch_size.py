"""consumer/batch_size.py: the adaptive batch limit (issue 20). Pure: no time passes."""

from __future__ import annotations

from consumer.batch_size import BatchSizer, entry_bytes, mean_entry_bytes, time_budget_s
from consumer.records import EntryKey, RawEntry
from consumer.settings import Settings


def sizer(floor: int = 100, cap: int = 1600, max_bytes: int = 10**9, budget_s: float = 1.0):
    return BatchSizer(floor=floor, cap=cap, max_bytes=max_bytes, budget_s=budget_s)


def grow(s: BatchSizer, times: int) -> list[int]:
    return [s.after(full=True, seconds=0.01, mean_bytes=100) for _ in range(times)]


def test_it_starts_small_doubles_while_reads_come_back_full_up_to_the_cap():
    s = sizer()
    assert s.limit == 100
    assert grow(s, 6) == [200, 400, 800, 1600, 1600, 1600]


def test_it_halves_back_to_the_floor_when_reads_come_back_short():
    s = sizer()
    grow(s, 4)
    shrunk = [s.after(full=False, seconds=0.01, mean_bytes=100) for _ in range(6)]
    assert shrunk == [800, 400, 200, 100, 100, 100]


def test_time_bounds_it_no_growth_past_half_the_budget_halving_past_the_budget():
    s = sizer()
    grow(s, 2)  # 400
    assert s.after(full=True, seconds=0.6, mean_bytes=100) == 400  # doubled would not fit
    assert s.after(full=True, seconds=0.5, mean_bytes=100) == 800  # doubled fits exactly
    assert s.after(full=True, seconds=1.2, mean_bytes=100) == 400  # too slow, though behind


def test_bytes_bound_it_by_the_last_batchs_mean_entry_size():
    s = sizer(max_bytes=100_000)
    assert grow(s, 5)[-1] == 1000  # 100 bytes each: 1,000 entries fit, not 1,600
    assert s.after(full=True, seconds=0.01, mean_bytes=50_000) == 2  # huge entries
    assert s.after(full=True, seconds=0.01, mean_bytes=10**9) == 1  # never 0


def test_a_maximum_below_the_minimum_pins_the_size():
    s = sizer(floor=1000, cap=10)
    assert s.limit == 10
    assert grow(s, 2) == [10, 10]
    assert s.after(full=False, seconds=5.0, mean_bytes=100) == 10


def test_from_settings_and_the_lease_bounding_the_time_budget():
    s = Settings(database_url="postgresql://u/db", redis_url="redis://u")
    made = BatchSizer.from_settings(s)
    assert (made.floor, made.cap, made.max_bytes) == (1000, 20_000, 16 * 1024 * 1024)
    assert time_budget_s(s) == 1.0
    short_lease = s.model_copy(update={"lease_ttl_s": 2.0})
    assert time_budget_s(short_lease) == 0.4


def test_entry_bytes_count_names_and_values_and_the_mean_samples_evenly():
    one = RawEntry(EntryKey("s", "1-0"), {"ab": "cde", "f": ""})
    assert entry_bytes(one) == 6
    small = [RawEntry(EntryKey("s", f"{n}-0"), {"k": "v"}) for n in range(1000)]
    big = [RawEntry(EntryKey("s", f"{n}-1"), {"k": "v" * 99}) for n in range(1000)]
    assert 45 <= mean_entry_bytes(small + big) <= 57  # the true mean: 51
    assert mean_entry_bytes(big) == 100.0
    assert mean_entry_bytes([]) == 0.0
