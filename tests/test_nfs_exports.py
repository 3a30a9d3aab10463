"""Phase 3's comparison of the NFS server's /etc/exports with the rendered one: the
parsing, and the check over SSH against a real sshd (the server's file is a file on it)."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from halab.context import Context
from halab.exports_file import differences, parse
from halab.inventory import load_inventory
from halab.phases.nfs_exports import check_server_exports
from halab.render.external import exports
from halab.target import AddressMap, SshSettings, Target

import sshd

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "params" / "cluster.yaml"


def test_exports_parse_as_exportfs_reads_them() -> None:
    text = (
        "# comment\n/mnt/user/media 192.168.1.0/24(ro,sync) 10.0.0.5(rw)\n\n"
        '"/mnt/user/tv shows" 192.168.1.0/24(ro)  # trailing\n/a \\\n  host(rw,sync)\n'
    )
    assert parse(text) == {
        "/mnt/user/media": {
            "192.168.1.0/24": frozenset({"ro", "sync"}),
            "10.0.0.5": frozenset({"rw"}),
        },
        "/mnt/user/tv shows": {"192.168.1.0/24": frozenset({"ro"})},
        "/a": {"host": frozenset({"rw", "sync"})},
    }


def test_differences_name_the_line_and_ignore_option_order() -> None:
    rendered = "/m 192.168.1.0/24(ro,sync)\n/t 192.168.1.0/24(rw,sync)\n"
    same = "/t 192.168.1.0/24(sync,rw)\n/m 192.168.1.0/24(sync,ro)\n/other *(rw)\n"
    assert differences(rendered, same) == ([], ["/other"])
    wrong, _ = differences(rendered, "/m 192.168.1.0/24(rw,sync)\n")
    assert wrong == [
        "/m 192.168.1.0/24: the server has (rw,sync), the render (ro,sync)",
        "/t 192.168.1.0/24(rw,sync) is not exported",
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sshd.Sshd]:
    if why := sshd.available():
        pytest.skip(why)
    found = sshd.start(tmp_path_factory.mktemp("sshd"), "127.77.0.229")
    yield found
    sshd.stop(found)


def _ctx(server: sshd.Sshd, tmp_path: Path) -> Context:
    inv = load_inventory(CLUSTER_YAML)
    assert inv.storage.nfs is not None
    nfs_host = inv.host(inv.storage.nfs.host).address
    target = Target(
        kind="cluster",
        ssh=SshSettings(
            user=server.user, port=server.port, key_file=str(server.key_file),
            known_hosts=str(server.known_hosts), config_file="/nonexistent",
        ),
        addresses=AddressMap(explicit={nfs_host: IPv4Address("127.77.0.229")}),
    )  # fmt: skip
    return Context(inv, CLUSTER_YAML, target, tmp_path, False)


def test_the_servers_file_over_ssh(server: sshd.Sshd, tmp_path: Path) -> None:
    ctx = _ctx(server, tmp_path)
    good = tmp_path / "exports"
    good.write_text(exports(ctx.inventory) + "/mnt/user/backups 192.168.1.5(rw)\n")
    check = check_server_exports(ctx, str(good))
    assert check.status == "pass", check.detail
    assert "also exports /mnt/user/backups" in check.detail
    # The plan's media export made read-write on the server: named, with the fix.
    good.write_text(exports(ctx.inventory).replace("(ro,", "(rw,"))
    check = check_server_exports(ctx, str(good))
    assert check.status == "fail" and "/mnt/user/media 192.168.1.0/24" in check.detail
    assert "exportfs -ra" in check.detail
    missing = check_server_exports(ctx, str(tmp_path / "nope"))
    assert missing.status == "fail" and "No such file" in missing.detail


def test_a_target_without_ssh_skips_with_its_reason(tmp_path: Path) -> None:
    inv = load_inventory(CLUSTER_YAML)
    target = Target(kind="twin", cannot={"ssh": "no SSH on these hosts"})
    check = check_server_exports(Context(inv, CLUSTER_YAML, target, tmp_path, False))
    assert check.status == "skip" and check.detail == "no SSH on these hosts"
