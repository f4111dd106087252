"""Where a cluster's partition leaders should be (pure planning)."""

from __future__ import annotations

from praxis.bus.placement import Group, Kind, Move, plan, spread

NODES = ("n0", "n1", "n2")
KINDS: tuple[Kind, ...] = ("stream", "records", "leases", "consumer")


def groups(leaders: dict[int, str], partitions: int = 3) -> list[Group]:
    return [
        Group(k, kind, f"S{k}", leaders.get(k, "n0"), NODES)
        for k in range(partitions)
        for kind in KINDS
    ]


def test_each_partition_is_led_by_its_own_node_with_all_its_groups() -> None:
    found = groups({0: "n0", 1: "n0", 2: "n0"})  # one node leads everything
    moves = plan(found)
    assert {(m.group.partition, m.to) for m in moves} == {(1, "n1"), (2, "n2")}
    assert len(moves) == 8  # partitions 1 and 2, each of their four groups
    assert spread(found) == {"n0": [0, 1, 2]}
    moved = [Group(g.partition, g.kind, g.name, f"n{g.partition}", g.peers) for g in found]
    assert plan(moved) == [] and spread(moved) == {"n0": [0], "n1": [1], "n2": [2]}


def test_more_partitions_than_nodes_go_round_and_a_lone_server_needs_nothing() -> None:
    found = groups({}, partitions=6)
    wanted = {m.group.partition: m.to for m in plan(found)}
    assert wanted == {1: "n1", 2: "n2", 4: "n1", 5: "n2"}  # 0 and 3 are on n0 already
    alone = [Group(0, "stream", "S0", None, ())]
    assert plan(alone) == []


def test_a_node_that_holds_no_replica_of_a_group_is_not_asked_to_lead_it() -> None:
    narrow = Group(1, "stream", "S1", "n0", ("n0", "n2"))  # R2 on n0 and n2 only
    other = Group(0, "stream", "S0", "n0", NODES)
    assert plan([narrow, other]) == []
    assert Move(narrow, "n1") not in plan([narrow, other])
