"""Units of the twin's image catalogue, cluster DNS and quantities (no twin needed; the
twin tests run them for real)."""

from __future__ import annotations

from typing import Any

import dns.message
import dns.rcode

from halab.inventory.quantity import parse_quantity
from halab.twin.api.proxy import split_target
from halab.twin.client import Client, Informer
from halab.twin.dns import Records, answer, resolv_conf
from halab.twin.images import seaweedfs
from halab.twin.images.catalogue import program_for
from halab.twin.topology import parse_twin_network


def test_binary_quantities_parse() -> None:
    # "Ki" was read as nothing, so every node's memory was 0 and no pod with a memory
    # request could be scheduled.
    assert parse_quantity("4194304Ki") == 4 * 2**30
    assert parse_quantity("64Mi") == 64 * 2**20
    assert parse_quantity("1k") == 1000 and parse_quantity("500m") * 2 == 1


def test_the_seaweedfs_image_runs_weed_as_its_entrypoint_would() -> None:
    program = program_for(
        {"image": "chrislusf/seaweedfs:4.44", "args": ["master", "-ip=m", "-volumeSizeLimitMB=64"]}
    )
    assert program.kind == "process" and program.runs.startswith("real weed ")
    assert program.argv == [
        seaweedfs.BINARY_IN_SANDBOX,
        "master",
        "-mdir=/data",
        "-volumePreallocate",
        "-volumeSizeLimitMB=1024",
        "-ip=m",
        "-volumeSizeLimitMB=64",  # last wins, as Go's flag package does
    ]
    volume = program_for({"image": "chrislusf/seaweedfs", "args": ["volume", "-max=7"]})
    assert volume.argv[1:] == ["volume", "-dir=/data", "-max=7"]
    explicit = program_for(
        {"image": "chrislusf/seaweedfs", "command": ["/usr/bin/weed"], "args": ["shell"]}
    )
    assert explicit.argv == [seaweedfs.BINARY_IN_SANDBOX, "shell"]
    assert program.files[seaweedfs.BINARY_IN_SANDBOX].name == "weed"


def test_other_images() -> None:
    assert program_for({"image": "busybox:1.36"}).argv == ["sh"]
    plex = program_for({"image": "ghcr.io/linuxserver/plex:latest"}).listening_on("127.42.0.8")
    assert plex.kind == "process" and plex.runs.startswith("stand-in: Plex Media Server")
    assert plex.argv[-3:] == ["halab.twin.images.plex.server", "--listen", "127.42.0.8"]
    assert "dockermod" not in plex.runs
    mods = "ghcr.io/pabloromeo/clusterplex_dockermod:latest"
    with_mod = program_for(
        {"image": "lscr.io/linuxserver/plex", "env": [{"name": "DOCKER_MODS", "value": mods}]}
    )
    assert "ClusterPlex PMS dockermod" in with_mod.runs
    worker_mod = [
        {"name": "DOCKER_MODS", "value": "ghcr.io/pabloromeo/clusterplex_worker_dockermod"}
    ]
    worker = program_for({"image": "ghcr.io/linuxserver/plex:latest", "env": worker_mod})
    assert worker.runs.startswith("stand-in: ClusterPlex worker")
    assert program_for({"image": "nginx:1.27"}).kind == "placeholder"
    sonarr = program_for({"image": "ghcr.io/linuxserver/sonarr:latest"}).listening_on("127.42.0.9")
    assert sonarr.kind == "process" and sonarr.runs.startswith("stand-in: Sonarr")
    assert sonarr.argv[-3:] == ["halab.twin.images.sonarr", "--listen", "127.42.0.9"]


def _informer(items: list[dict[str, Any]]) -> Informer:
    informer = Informer(Client(["http://127.0.0.1:9"]), "/unused")
    informer.items = {Informer.key(o): o for o in items}
    return informer


def _records() -> Records:
    services = _informer(
        [
            {"metadata": {"namespace": "sw", "name": "m"}, "spec": {"clusterIP": "None"}},
            {"metadata": {"namespace": "sw", "name": "web"}, "spec": {"clusterIP": "10.43.1.2"}},
        ]
    )
    endpoints = _informer(
        [
            {
                "metadata": {"namespace": "sw", "name": "m"},
                "subsets": [{"addresses": [{"ip": "127.42.11.2", "hostname": "m-0"}]}],
            },
            {
                "metadata": {"namespace": "sw", "name": "web"},
                "subsets": [{"addresses": [{"ip": "127.42.12.5"}, {"ip": "10.0.0.9"}]}],
            },
        ]
    )
    return Records(services, endpoints)


def _ask(name: str, kind: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, kind)
    wire = answer(_records(), query.to_wire())
    assert wire is not None
    return dns.message.from_wire(wire)


def test_cluster_names_resolve_to_loopback_only() -> None:
    reply = _ask("m.sw.svc.cluster.local")
    assert [r.to_text() for r in reply.answer[0]] == ["127.42.11.2"]
    assert [r.to_text() for r in _ask("m-0.m.sw.svc.cluster.local").answer[0]] == ["127.42.11.2"]
    # A ClusterIP Service answers with its endpoints: 10.43.x is not on this machine, and
    # an endpoint off loopback is never handed out.
    assert [r.to_text() for r in _ask("web.sw.svc.cluster.local").answer[0]] == ["127.42.12.5"]
    assert _ask("m.sw.svc.cluster.local", "AAAA").answer == []
    for outside in ("example.com", "nope.sw.svc.cluster.local", "m-9.m.sw.svc.cluster.local"):
        assert _ask(outside).rcode() == dns.rcode.NXDOMAIN, outside
    assert answer(_records(), b"not dns") is None


def test_resolv_conf_and_targets() -> None:
    text = resolv_conf("media", "127.42.0.10")
    assert text.splitlines() == [
        "search media.svc.cluster.local svc.cluster.local cluster.local",
        "nameserver 127.42.0.10",
        "options ndots:5",
    ]
    assert split_target("https:filer:8888") == ("https", "filer", "8888")
    assert split_target("filer:http") == ("", "filer", "http")
    assert split_target("filer") == ("", "filer", "")


def test_twin_networks_stay_on_loopback() -> None:
    assert str(parse_twin_network("127.78.0.0/24")) == "127.78.0.0/24"
    for bad in ("10.0.0.0/24", "127.78.0.0/16", "127.30.0.0/24", "nonsense"):
        try:
            parse_twin_network(bad)
        except ValueError as exc:
            assert str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")
