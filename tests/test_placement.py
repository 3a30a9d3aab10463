"""SeaweedFS placement against hand-worked cases: every code of reference/seaweedfs.md §1."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from halab.plan.placement import (
    PlacementError,
    Topology,
    VolumeServer,
    _max_sets,
    find_slots,
    grow_until_full,
    slots_for,
    worst_copies_on,
)
from halab.replication import ReplicationCodeError, parse_replication


def servers(layout: dict[str, dict[str, int]], slots: int = 8) -> list[VolumeServer]:
    """layout: {dc: {rack: number of servers}}; every server on its own host."""
    out = []
    for dc, racks in layout.items():
        for rack, count in racks.items():
            for i in range(count):
                name = f"{dc}-{rack}-s{i}"
                out.append(VolumeServer(name, name, dc, rack, slots))
    return out


def place(layout: dict[str, dict[str, int]], code: str) -> list[str]:
    return find_slots(Topology.build(servers(layout)), parse_replication(code))


def refusal(layout: dict[str, dict[str, int]], code: str) -> str:
    with pytest.raises(PlacementError) as info:
        place(layout, code)
    return str(info.value)


def test_parse_like_seaweedfs() -> None:
    assert str(parse_replication("")) == "000"
    assert str(parse_replication("1")) == "001"
    assert str(parse_replication("10")) == "010"
    assert parse_replication("032").copies == 6
    assert parse_replication("255").copies == 13
    with pytest.raises(ReplicationCodeError, match="unexpected replication type: 300"):
        parse_replication("300")
    with pytest.raises(ReplicationCodeError, match="unknown replication type"):
        parse_replication("0-1")


# code, smallest topology that works, a topology one short of it, SeaweedFS's refusal.
CASES = [
    ("000", {"dc": {"r": 1}}, {}, "Not enough data nodes found!"),
    (
        "001",
        {"dc": {"r": 2}},
        {"dc": {"r": 1}},
        "No matching data node found! \ndc:Only has 0 racks with more than 2 free data nodes, "
        "not enough for 1.",
    ),
    (
        "002",
        {"dc": {"r": 3}},
        {"dc": {"r": 2}},
        "No matching data node found! \ndc:Only has 0 racks with more than 3 free data nodes, "
        "not enough for 1.",
    ),
    (
        "010",
        {"dc": {"r1": 1, "r2": 1}},
        {"dc": {"r1": 2}},
        "No matching data node found! \ndc:Only has 1 racks, not enough for 2.",
    ),
    (
        "011",
        {"dc": {"r1": 2, "r2": 2}},
        {"dc": {"r1": 1, "r2": 1, "r3": 1}},
        "No matching data node found! \ndc:Only has 0 racks with more than 2 free data nodes, "
        "not enough for 2.",
    ),
    (
        "020",
        {"dc": {"r1": 1, "r2": 1, "r3": 1}},
        {"dc": {"r1": 1, "r2": 1}},
        "No matching data node found! \ndc:Only has 2 racks, not enough for 3.",
    ),
    ("100", {"a": {"r": 1}, "b": {"r": 1}}, {"a": {"r": 2}}, "Not enough data nodes found!"),
    (
        "110",
        {"a": {"r1": 1, "r2": 1}, "b": {"r": 1}},
        {"a": {"r1": 1}, "b": {"r1": 1}},
        "No matching data node found! \na:Only has 1 racks, not enough for 2.\n"
        "b:Only has 1 racks, not enough for 2.",
    ),
    (
        "200",
        {"a": {"r": 1}, "b": {"r": 1}, "c": {"r": 1}},
        {"a": {"r": 1}, "b": {"r": 1}},
        "Not enough data nodes found!",
    ),
    (
        "032",
        {"dc": {f"r{i}": 3 for i in range(4)}},
        {"dc": {f"r{i}": 3 for i in range(3)}},
        "No matching data node found! \ndc:Only has 3 racks, not enough for 4.",
    ),
]


@pytest.mark.parametrize("code,fits,short,reason", CASES, ids=[c[0] for c in CASES])
def test_reference_table(
    code: str, fits: dict[str, dict[str, int]], short: dict[str, dict[str, int]], reason: str
) -> None:
    chosen = place(fits, code)
    assert len(chosen) == len(set(chosen)) == parse_replication(code).copies
    assert refusal(short, code) == reason


def test_011_needs_four_servers_not_three() -> None:
    assert "Only has 1 racks with more than 2 free data nodes, not enough for 2." in refusal(
        {"dc": {"r1": 2, "r2": 1}}, "011"
    )


def test_032_with_three_racks_of_any_size() -> None:
    assert refusal({"dc": {"r1": 6, "r2": 6, "r3": 6}}, "032").endswith(
        "Only has 3 racks, not enough for 4."
    )


def test_empty_racks_still_count_but_have_no_free_server() -> None:
    # Three racks, one of them dead: SeaweedFS still counts it, then finds it has no server.
    topo = Topology.build(servers({"dc": {"r1": 1, "r2": 1, "r3": 1}}), down_hosts={"dc-r3-s0"})
    with pytest.raises(PlacementError, match="Only has 2 racks with more than 1 free data nodes"):
        find_slots(topo, parse_replication("020"))


def test_slots_from_disk_and_limit() -> None:
    assert slots_for(100, 1000) == 102
    assert slots_for(10, 1000) == 10
    assert slots_for(10, 30720) == 1  # SeaweedFS 4.31+ floors at one slot
    assert slots_for(0, 1000) == 0


def test_growth_stops_at_the_smallest_rack() -> None:
    # 020 over three racks: the rack with 10 slots bounds the whole cluster.
    layout = [
        VolumeServer("a", "a", "dc", "ra", 100),
        VolumeServer("b", "b", "dc", "rb", 100),
        VolumeServer("c", "c", "dc", "rc", 10),
    ]
    assert grow_until_full(Topology.build(layout), parse_replication("020")) == 10


def test_worst_copies_on_one_host() -> None:
    # Three servers of one rack on host "px", two on "ur": 002 can put all three on px.
    layout = [
        VolumeServer(n, h, "dc", "rack", 8)
        for n, h in [("cp1", "px"), ("w1", "px"), ("w3", "px"), ("cp2", "ur"), ("w2", "ur")]
    ]
    topo = Topology.build(layout)
    rp = parse_replication("002")
    assert worst_copies_on(topo, rp, {"px"}) == 3
    assert worst_copies_on(topo, rp, {"ur"}) == 2


@settings(max_examples=60, deadline=None)
@given(
    caps=st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=6),
    level=st.sampled_from(["001", "002", "010", "020"]),
)
def test_closed_form_equals_growing_one_volume_at_a_time(caps: list[int], level: str) -> None:
    rp = parse_replication(level)
    if rp.same_rack:
        layout = [VolumeServer(f"s{i}", f"s{i}", "dc", "r", c) for i, c in enumerate(caps)]
    else:
        layout = [VolumeServer(f"s{i}", f"s{i}", "dc", f"r{i}", c) for i, c in enumerate(caps)]
    topo = Topology.build(layout)
    one_by_one = 0
    while True:
        try:
            topo.take(find_slots(topo, rp))
        except PlacementError:
            break
        one_by_one += 1
    assert grow_until_full(Topology.build(layout), rp) == one_by_one
    assert _max_sets([c for c in caps], rp.copies) == one_by_one or one_by_one == 0
