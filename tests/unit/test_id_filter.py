"""consumer.id_filter.IdFilter: never a false negative, few false positives, 2 bytes per id."""

from hypothesis import given
from hypothesis import strategies as st

from consumer.id_filter import IdFilter


def test_every_added_id_is_found_across_growth_and_few_others_are():
    ids = IdFilter(first_capacity=1000)
    added = [f"order-{n}" for n in range(50_000)]
    ids.update(added)
    assert all(ids.maybe(i) for i in added)
    assert ids.count == 50_000
    others = [f"other-{n}" for n in range(50_000)]
    false_positives = sum(ids.maybe(o) for o in others)
    assert false_positives < 1000  # under 2 % (each full slice adds ~0.25 %)
    assert ids.nbytes < 4 * 50_000  # grows by slices: ~2 bytes per id, at most twice that


def test_an_empty_filter_holds_nothing():
    ids = IdFilter()
    assert not ids.maybe("x")
    assert not ids.maybe("")


@given(st.sets(st.text(max_size=20), max_size=300), st.text(max_size=20))
def test_no_false_negatives(added: set[str], other: str):
    ids = IdFilter(first_capacity=16)
    ids.update(added)
    assert all(ids.maybe(i) for i in added)
    if other in added:
        assert ids.maybe(other)


@given(st.lists(st.text(max_size=12), max_size=200))
def test_the_written_out_probes_set_the_bits_of_the_double_hashing_formula(added: list[str]):
    ids = IdFilter(first_capacity=16)
    ids.update(added)
    expected: list[bytearray] = []
    capacity, remaining = 16, list(added)
    while remaining or not expected:
        bits, size = bytearray(capacity * 16 // 8 + 1), capacity * 16
        for text in remaining[:capacity]:
            h = hash(text)
            h1, h2 = h & 0xFFFFFFFF, ((h >> 32) & 0xFFFFFFFF) | 1
            for i in range(4):
                index = (h1 + i * h2) % size
                bits[index >> 3] |= 1 << (index & 7)
        expected.append(bits)
        remaining, capacity = remaining[capacity:], capacity * 2
    assert [s.bits for s in ids._slices] == expected
