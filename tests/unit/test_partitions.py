"""Which partition holds a session: a pure function of its id and the bus's two numbers."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from praxis.bus.partitions import (
    MAX_PARTITIONS,
    PartitionError,
    Partitions,
    fnv1a_32,
    named,
    share,
)
from praxis.schemas import new_id

TOKENS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def test_the_hash_is_fnv1a_32() -> None:
    # The published FNV-1a test vectors (and so NATS's own partition() transform).
    assert fnv1a_32(b"") == 0x811C9DC5
    assert fnv1a_32(b"a") == 0xE40C292C
    assert fnv1a_32(b"foobar") == 0xBF9CF968


def test_one_partition_makes_the_ids_it_always_made_and_holds_every_id() -> None:
    one = Partitions("PRAXIS")
    sid = one.new_session_id()
    assert named(sid) is None and len(sid) == len(new_id("ses"))
    assert {one.of(x) for x in (sid, "fixed-id", "ses_0192f3a4b5c6d7e8f9a0b1c2-p0")} == {0}
    assert one.stream(0) == "PRAXIS"


def test_ids_made_with_several_partitions_name_one_and_spread_over_all() -> None:
    parts = Partitions("PRAXIS", 3, 3)
    made = [parts.new_session_id() for _ in range(600)]
    assert all(named(sid) == parts.of(sid) for sid in made)
    counts = Counter(parts.of(sid) for sid in made)
    assert set(counts) == {0, 1, 2} and min(counts.values()) > 120
    assert [parts.stream(k) for k in parts.all()] == ["PRAXIS", "PRAXIS_1", "PRAXIS_2"]


def test_chosen_ids_are_hashed_over_the_first_partitions() -> None:
    parts = Partitions("PRAXIS", 6, 3)
    ids = [f"customer-{i}" for i in range(3000)]
    counts = Counter(parts.of(x) for x in ids)
    assert set(counts) == {0, 1, 2}  # never 3-5: those came later
    assert min(counts.values()) > 900
    assert parts.of("customer-7") == fnv1a_32(b"customer-7") % 3


@given(st.lists(TOKENS.filter(bool), max_size=20), st.integers(1, MAX_PARTITIONS))
def test_growing_moves_no_session(chosen: list[str], grown: int) -> None:
    before = Partitions("PRAXIS", 2, 2)
    after = Partitions("PRAXIS", max(2, grown), 2)
    made = [before.new_session_id() for _ in range(10)]
    for sid in [*chosen, *made]:
        assert after.of(sid) == before.of(sid)


def test_an_id_naming_a_partition_the_bus_lacks_is_refused() -> None:
    sid = "ses_0192f3a4b5c6d7e8f9a0b1c2-p7"
    with pytest.raises(PartitionError, match="names partition 7; this deployment has 3"):
        Partitions("PRAXIS", 3, 3).of(sid)
    assert Partitions("PRAXIS", 8, 3).of(sid) == 7


def test_the_partitioning_reads_from_the_streams_metadata() -> None:
    assert Partitions.from_metadata("PRAXIS", None) == Partitions("PRAXIS", 1, 1)
    kept = Partitions("P", 5, 2)
    assert Partitions.from_metadata("P", {**kept.metadata(), "_nats.ver": "2.12"}) == kept
    with pytest.raises(ValueError, match="unreadable"):
        Partitions.from_metadata("P", {"praxis_partitions": "three"})
    for count, hashed in ((0, 0), (2, 3), (MAX_PARTITIONS + 1, 1)):
        with pytest.raises(ValueError, match="partitions: need"):
            Partitions("P", count, hashed)


def test_workers_share_the_partitions_out_one_worker_each() -> None:
    live = ["wrk_b", "wrk_a", "wrk_c"]
    taken = {me: share(6, live, me) for me in live}
    assert taken == {"wrk_a": [0, 3], "wrk_b": [1, 4], "wrk_c": [2, 5]}
    assert share(6, [], "wrk_a") == list(range(6))  # alone (or before it knows the others)
    assert share(1, live, "wrk_c") == [0]  # one partition: every worker takes it
    more = [f"wrk_{i}" for i in range(5)]
    assert [share(3, more, me) for me in more] == [[0], [1], [2], [0], [1]]  # doubled up
    uneven = {me: share(3, ["wrk_a", "wrk_b"], me) for me in ("wrk_a", "wrk_b")}
    assert uneven == {"wrk_a": [0, 2], "wrk_b": [1]}
