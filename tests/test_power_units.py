"""Which hypervisor powers which node, read from the inventory alone."""

from __future__ import annotations

from typing import Any

import pytest

from halab.inventory.loader import inventory_from_data
from halab.power import PowerError, _guest_id, hypervisor_of

from twinlab import OTHER_SHAPE

QM_LIST = """      VMID NAME                 STATUS     MEM(MB)    BOOTDISK(GB) PID
       100 k3s-cp1              running    4096              40.00 5987
       104 k3s-w1               stopped    8192              40.00 0
"""
PCT_LIST = """VMID       Status     Lock         Name
102        running                 k3s-w3
"""


def test_each_guest_has_its_hypervisors_tool(data: dict[str, Any]) -> None:
    inv = inventory_from_data(data)
    tools = {n.name: hypervisor_of(inv, n.name) for n in inv.nodes}
    assert {k: (v.tool, v.host) if v else None for k, v in tools.items()} == {
        "k3s-cp1": ("qm", "proxmox"),
        "k3s-w1": ("qm", "proxmox"),
        "k3s-w3": ("pct", "proxmox"),
        "k3s-cp2": ("virsh", "unraid"),
        "k3s-w2": ("virsh", "unraid"),
        "k3s-cp3": None,  # bare metal: the target's power commands switch it
    }


def test_the_other_shape_too() -> None:
    from halab.inventory import load_inventory

    inv = load_inventory(OTHER_SHAPE)
    jade = hypervisor_of(inv, "worker-jade")
    assert jade is not None and (jade.tool, jade.host) == ("pct", "boreas")
    assert hypervisor_of(inv, "cyclops") is None


def test_an_lxc_outside_proxmox_is_refused(data: dict[str, Any]) -> None:
    node = next(n for n in data["nodes"] if n["name"] == "k3s-w2")
    node["kind"] = "lxc-privileged"
    with pytest.raises(PowerError, match="LXC containers through Proxmox's pct only"):
        hypervisor_of(inventory_from_data(data), "k3s-w2")


def test_ids_are_read_from_the_listing() -> None:
    assert _guest_id(QM_LIST, "qm", "k3s-w1", "proxmox") == "104"
    assert _guest_id(PCT_LIST, "pct", "k3s-w3", "proxmox") == "102"
    with pytest.raises(
        PowerError, match=r"no VM named k3s-w9 \(`qm list` there lists: k3s-cp1, k3s-w1\)"
    ):
        _guest_id(QM_LIST, "qm", "k3s-w9", "proxmox")
