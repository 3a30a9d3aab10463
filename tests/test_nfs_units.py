"""The NFS pieces that need no server: the twin's ganesha config from the inventory's
exports, the rendered claims per namespace, the twin's address map for NFS servers, the
mount.nfs wording of failures, and what the connector says without a mount port."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from halab.errors import TargetError
from halab.inventory import inventory_from_data
from halab.nfs import Endpoint, NfsError, connection
from halab.render import storage
from halab.target import load_target
from halab.twin.kubelet.nfs import twin_mapper
from halab.twin.kubelet.nfs_fuse import mount_nfs_says
from halab.twin.nfs_server import ganesha_conf, spec_for

from helpers import write_yaml


def test_ganesha_serves_each_export_as_etc_exports_says(data: dict[str, Any]) -> None:
    data["storage"]["nfs"]["exports"].append(
        {"name": "open", "path": "/mnt/user/open", "options": ["rw", "insecure", "all_squash"],
         "mount_path": "/open"}
    )  # fmt: skip
    inv = inventory_from_data(data)
    spec = spec_for(inv, Path("/d/root"), Path("/d/nfs"), IPv4Network("127.70.0.0/24"))
    assert spec.address == "127.70.0.29" and spec.clients == "127.70.0.0/24"
    conf = ganesha_conf(inv, spec)
    blocks = {b.split("Pseudo = ")[1].split(";")[0]: b for b in conf.split("EXPORT {")[1:]}
    media, transcode, opened = (blocks[p] for p in ("/mnt/user/media", "/mnt/user/transcode",
                                                    "/mnt/user/open"))  # fmt: skip
    assert "Path = /d/root/mnt/user/media;" in media
    assert "Clients = 127.70.0.0/24; Access_Type = RO;" in media
    assert "Access_Type = RW;" in transcode and "Squash = No_Root_Squash" in transcode
    # `secure` is the default of /etc/exports: a reserved client port, unless `insecure`.
    assert "PrivilegedPort = true" in media and "PrivilegedPort = false" in opened
    assert "Squash = All_Squash" in opened
    # The plan's NFS host is Unraid: a squashed client becomes nobody:users (99:100).
    assert "Anonymous_Uid = 99; Anonymous_Gid = 100;" in media and spec.unraid
    assert "Bind_addr = 127.70.0.29" in conf and "MNT_Port = 20048" in conf


def test_each_namespace_mounting_an_export_gets_its_own_pv(data: dict[str, Any]) -> None:
    plan = inventory_from_data(data)
    assert storage.nfs_claims(plan) == [
        ("media", "media", "nfs-media"),
        ("transcode", "media", "nfs-transcode"),
    ]
    sonarr = next(a for a in data["apps"] if a["name"] == "sonarr")
    sonarr["namespace"] = "arr"
    claims = storage.nfs_claims(inventory_from_data(data))
    assert ("media", "arr", "nfs-media-arr") in claims
    assert ("media", "media", "nfs-media-media") in claims
    objs = storage.nfs(inventory_from_data(data))
    pv = next(o for o in objs if o["metadata"]["name"] == "nfs-media-arr")
    assert pv["spec"]["claimRef"] == {"namespace": "arr", "name": "media"}
    assert pv["spec"]["nfs"]["readOnly"] is True


def test_the_twin_maps_nfs_servers_of_the_inventory_subnet_only() -> None:
    to_twin = twin_mapper(IPv4Address("192.168.1.0"), 24, IPv4Address("127.77.0.0"))
    assert to_twin("192.168.1.29") == "127.77.0.29"
    assert to_twin("127.0.0.5") == "127.0.0.5"
    assert to_twin("10.0.0.9") is None  # off the inventory's network: never reached
    assert to_twin("unraid.lan") is None


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("Mount error: access denied", "mount.nfs: access denied by server while mounting"),
        ("cannot connect: [Errno 111] 127.77.0.29:2049: Connection refused",
         "mount.nfs: Connection refused"),
        ("mount deadline exceeded", "mount.nfs: Connection timed out"),
    ],
)  # fmt: skip
def test_mount_failures_read_as_mount_nfs_words_them(said: str, expected: str) -> None:
    assert mount_nfs_says("192.168.1.29:/mnt/user/x", NfsError("nfs://x", said)).startswith(
        expected
    )


def test_no_mount_port_is_an_error_naming_the_fix() -> None:
    with (
        pytest.raises(NfsError, match=r"nfs.mount_port.*rpcinfo -p"),
        connection(Endpoint("127.0.0.9"), "/x"),
    ):
        pass


def test_target_nfs_ports_are_validated(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "t.yaml", {"kind": "cluster", "nfs": {"mount_port": 0}})
    with pytest.raises(TargetError, match=r"nfs\.mount_port"):
        load_target(path)
    good = write_yaml(tmp_path / "g.yaml", {"kind": "cluster", "nfs": {"mount_port": 20048}})
    assert load_target(good).nfs.mount_port == 20048
