"""halab.seaweed_shell on `weed shell` text: which volumes are short of copies, read from
`volume.list` as SeaweedFS prints it (replication as a number, leading zeros dropped)."""

from __future__ import annotations

from halab.seaweed_shell import short_of_copies, volume_list


def _volume(vid: int, placement: int) -> str:
    return (
        f"        volume Id:{vid}, Size:1024, ReplicaPlacement:{placement}, Collection:, "
        "Version:3, FileCount:2, DeleteCount:0, DeletedByteCount:0, ReadOnly:false"
    )


def test_a_volume_with_fewer_copies_than_its_replication_is_short() -> None:
    servers = {
        "k3s-cp1:8080": [_volume(1, 2), _volume(2, 2), _volume(3, 0)],
        "k3s-w1:8080": [_volume(1, 2), _volume(2, 2), _volume(4, 1)],
        "k3s-w3:8080": [_volume(1, 2), _volume(4, 1)],
    }
    lines = ["Topology volumeSizeLimit:1024 MB", "  DataCenter dc1", "    Rack proxmox"]
    for server, volumes in servers.items():
        lines += [f"      DataNode {server}", *volumes]
    listed = volume_list("\n".join(lines))
    assert set(listed["replication"]) == {"002", "000", "001"}
    # 1: 002 on three servers; 3: 000 on one; 4: 001 on two. 2: 002 on two, one short.
    assert short_of_copies(listed) == [2]
    assert short_of_copies(volume_list("")) == []
