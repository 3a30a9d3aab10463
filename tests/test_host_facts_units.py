"""The facts table's reading of what machines answer (real tools' output formats) and its
comparison with the inventory."""

from __future__ import annotations

import json
from typing import Any

from halab.host_facts import SECTIONS, Facts, machines, sections
from halab.inventory.loader import inventory_from_data
from halab.target import AddressMap, Target

TARGET = Target(kind="cluster")  # addresses as the inventory has them
GIB = 1024**3
# lsblk -J -b as util-linux prints it: partitions under their disk, no transport for SD.
USB_SSD = {
    "blockdevices": [
        {"name": "sda", "size": 64 * GIB, "type": "disk", "tran": "usb", "mountpoint": None,
         "children": [
             {"name": "sda1", "size": GIB // 2, "type": "part", "mountpoint": "/boot/firmware"},
             {"name": "sda2", "size": 63 * GIB, "type": "part", "mountpoint": "/"}]}
    ]
}  # fmt: skip
SD_CARD = {
    "blockdevices": [
        {"name": "mmcblk0", "size": 32 * GIB, "type": "disk", "tran": None, "mountpoint": None,
         "children": [{"name": "mmcblk0p2", "size": 31 * GIB, "type": "part", "mountpoint": "/"}]}
    ]
}  # fmt: skip


def answers(**over: str) -> str:
    base = {
        "hostname": "pi",
        "arch": "aarch64",
        "os": 'PRETTY_NAME="Ubuntu 22.04.4 LTS"\nID=ubuntu\nVERSION_ID="22.04"',
        "cores": "4",
        "memory": str(int(3.8 * 1024**3)),
        "disks": json.dumps(USB_SSD),
        "dri": "",
        "k3s": "",
        "pve": "",
        "ip": json.dumps([{"ifname": "eth0", "addr_info": [{"local": "192.168.1.30"}]}]),
    }
    base.update(over)
    return "\n".join(f"@@{k}\n{base[k]}" for k in SECTIONS)


def pi_row(data: dict[str, Any], text: str) -> dict[str, Any]:
    inv = inventory_from_data(data)
    pi = next(m for m in machines(inv) if m.name == "pi")
    return Facts(pi, True, answers=sections(text)).row(inv, TARGET)


def test_a_prepared_pi_matches(data: dict[str, Any]) -> None:
    row = pi_row(data, answers())
    assert row["mismatches"] == "", row
    assert row["os_disk"] == "sda 64 GiB (usb)" and row["k3s"] == "not installed"


def test_an_sd_card_and_a_wrong_address_are_mismatches(data: dict[str, Any]) -> None:
    disks = json.dumps(SD_CARD)
    ip = json.dumps([{"ifname": "eth0", "addr_info": [{"local": "192.168.1.77"}]}])
    row = pi_row(data, answers(disks=disks, ip=ip, arch="armv7l"))
    found = row["mismatches"].split("; ")
    assert "address: not 192.168.1.30 (ip addr: 192.168.1.77)" in found
    assert "arch: armv7l, planned aarch64" in found
    assert "os disk: 32 GiB, planned 64" in found
    assert "os disk is sd-card, planned usb-ssd" in found


def test_a_target_map_is_applied_to_the_expected_address(data: dict[str, Any]) -> None:
    inv = inventory_from_data(data)
    mapped = Target(kind="cluster", addresses=AddressMap(explicit={"192.168.1.30": "10.9.9.30"}))
    pi = next(m for m in machines(inv) if m.name == "pi")
    ip = json.dumps([{"ifname": "eth0", "addr_info": [{"local": "10.9.9.30"}]}])
    row = Facts(pi, True, answers=sections(answers(ip=ip))).row(inv, mapped)
    assert row["mismatches"] == "" and row["address"] == "10.9.9.30"


def test_an_unreachable_machine_says_why(data: dict[str, Any]) -> None:
    inv = inventory_from_data(data)
    w1 = next(m for m in machines(inv) if m.name == "k3s-w1")
    row = Facts(w1, False, "k3s-w1: 192.168.1.12:22 did not answer within 10 s").row(inv, TARGET)
    assert not row["reachable"] and "did not answer" in row["mismatches"]
