"""The twin's hosts over real SSH: every host and node answers paramiko (halab.hosts) and
the user's own OpenSSH client as that machine would; host keys are checked; the
hypervisors' qm/pct/virsh power their guests; exportfs -ra changes what the NFS server
exports; the facts table of the shipped inventory matches it. The session's twin."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from halab import host_facts
from halab.hosts import HostError, Hosts, SshHost
from halab.inventory import load_inventory
from halab.nfs import Endpoint, list_exports
from halab.power import Power, hypervisor_of
from halab.target import Target, load_target

from twinlab import TwinLab, eventually

pytestmark = [pytest.mark.twin, pytest.mark.slow]


@pytest.fixture
def target(twin: TwinLab) -> Target:
    return load_target(twin.dir / "target.yaml")


@pytest.fixture
def hosts(twin: TwinLab, target: Target) -> Iterator[Hosts]:
    with Hosts(load_inventory(twin.inventory), target, connect_timeout=5) as pool:
        yield pool


def ready(twin: TwinLab, node: str) -> bool:
    got = client.CoreV1Api(twin.api()).read_node(node)
    return any(c.type == "Ready" and c.status == "True" for c in got.status.conditions or [])


@pytest.fixture
def guests_back(twin: TwinLab, target: Target) -> Iterator[Power]:
    """Power for the test; every guest running and every node Ready again after it."""
    inv = load_inventory(twin.inventory)
    power = Power(inv, target)
    try:
        yield power
    finally:
        for node in inv.nodes:
            if hypervisor_of(inv, node.name) and power.state(node.name) != "running":
                power.on(node.name)
        for node in inv.nodes:
            eventually(lambda n=node.name: ready(twin, n), 90, f"{node.name} Ready again")
        power.hosts.close()


def test_every_host_and_node_answers_as_itself(twin: TwinLab, hosts: Hosts) -> None:
    inv = load_inventory(twin.inventory)
    for machine in host_facts.machines(inv):
        done = hosts[machine.name].run("hostname; uname -m; nproc", check=True)
        name, arch, cores = done.stdout.split()
        assert name == machine.name
        planned = machine.node
        if planned is not None:
            assert arch == {"amd64": "x86_64", "arm64": "aarch64"}[planned.arch]
            assert int(cores) == planned.cpu
        assert done.seconds > 0
    # A bare-metal node is its host: reached by either name.
    assert hosts["k3s-cp3"].run("hostname", check=True).stdout.strip() == "pi"


def test_the_users_openssh_client_reaches_every_machine(twin: TwinLab) -> None:
    config = twin.dir / "ssh_config"
    names = re.findall(r"^Host (.+)$", config.read_text(), re.M)
    every = [n for line in names for n in line.split()]
    assert {"proxmox", "unraid", "pi", "k3s-w1", "k3s-cp3"} <= set(every)
    for name in ("k3s-w1", "pi", "unraid"):
        done = subprocess.run(
            ["ssh", "-F", str(config), "-o", "BatchMode=yes", name, "uname -m; hostname"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        arch, hostname = done.stdout.split()
        assert arch == ("aarch64" if name == "pi" else "x86_64")
        assert hostname == name


def test_a_changed_host_key_is_refused_naming_both(
    twin: TwinLab, target: Target, tmp_path: Path
) -> None:
    address = str(target.addresses.map(load_inventory(twin.inventory).host("unraid").address))
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "impostor")],
        check=True,
    )
    kind, key = (tmp_path / "impostor.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    where = address if target.ssh.port == 22 else f"[{address}]:{target.ssh.port}"
    known.write_text(f"{where} {kind} {key}\n")
    settings = target.ssh.model_copy(update={"known_hosts": str(known), "config_file": ""})
    with pytest.raises(HostError) as caught:
        SshHost("unraid", address, settings, connect_timeout=5).run("true")

    def fingerprint(pub: Path) -> str:
        return subprocess.run(
            ["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True, check=True
        ).stdout.split()[1]

    message = str(caught.value)
    real = twin.dir / "ssh" / "host_keys" / "unraid_ed25519.pub"
    assert "has changed" in message and address in message
    assert fingerprint(real) in message and fingerprint(tmp_path / "impostor.pub") in message


def test_an_unknown_host_is_refused_with_the_key_it_offers(
    twin: TwinLab, target: Target, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    settings = target.ssh.model_copy(update={"known_hosts": str(empty), "config_file": ""})
    address = str(target.addresses.map(load_inventory(twin.inventory).host("pi").address))
    with pytest.raises(HostError, match=r"not in known_hosts.*SHA256:"):
        SshHost("pi", address, settings, connect_timeout=5).run("true")


def test_a_hung_host_times_out_naming_its_address(twin: TwinLab, target: Target) -> None:
    # A host that hangs: its TCP stack still accepts, nothing answers (sshd stopped).
    world = twin.dir / "hosts" / "unraid" / "nodes" / "k3s-w2" / "ssh"
    pid = int((world / "sshd.pid").read_text())
    address = str(target.addresses.map(load_inventory(twin.inventory).node("k3s-w2").address))
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(HostError, match=rf"{re.escape(address)}:\d+ did not answer within 2 s"):
            SshHost("k3s-w2", address, target.ssh, connect_timeout=2).run("true")
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_command_past_its_timeout_is_an_error(hosts: Hosts) -> None:
    with pytest.raises(HostError, match="did not finish within 1 s"):
        hosts["k3s-w1"].run("sleep 5", timeout=1)
    # The connection is still good for the next command.
    assert hosts["k3s-w1"].run("echo again", check=True).stdout == "again\n"


def test_streamed_output_arrives_line_by_line(hosts: Hosts) -> None:
    seen: list[str] = []
    done = hosts["k3s-w2"].run(
        "for i in 1 2 3; do echo line $i; done; echo oops >&2", stream=seen.append
    )
    assert seen == ["line 1", "line 2", "line 3"]
    assert done.stderr == "oops\n" and done.returncode == 0


def test_upload_with_mode_lands_in_that_machines_world(hosts: Hosts, tmp_path: Path) -> None:
    local = tmp_path / "hello.sh"
    local.write_text("#!/bin/sh\necho hello from $(hostname)\n")
    hosts["k3s-w3"].upload(local, "/tmp/halab-test/hello.sh", mode=0o750)
    done = hosts["k3s-w3"].run("stat -c %a /tmp/halab-test/hello.sh; /tmp/halab-test/hello.sh")
    assert done.stdout.split("\n")[:2] == ["750", "hello from k3s-w3"]
    # Another machine has its own /tmp.
    assert hosts["k3s-w1"].run("test -e /tmp/halab-test/hello.sh").returncode == 1


def test_qm_stop_takes_a_vm_down_and_qm_start_brings_it_back(
    twin: TwinLab, guests_back: Power, hosts: Hosts
) -> None:
    power = guests_back
    assert power.how("k3s-w1") == "ssh proxmox qm stop <id of k3s-w1>"
    listing = hosts["proxmox"].run(["qm", "list"], check=True).stdout
    assert re.search(r"^\s+\d+ k3s-w1\s+running\s+8192\s+40\.00 \d+", listing, re.M), listing
    assert "qm stop" in power.off("k3s-w1")
    assert power.state("k3s-w1") == "stopped"
    with pytest.raises(HostError, match="refused the connection"):
        SshHost("k3s-w1", hosts.address("k3s-w1"), hosts.target.ssh, 5).run("true")
    eventually(lambda: not ready(twin, "k3s-w1"), 60, "k3s-w1 NotReady after its grace period")
    power.on("k3s-w1")
    eventually(lambda: ready(twin, "k3s-w1"), 90, "k3s-w1 Ready again")
    vmid = re.search(r"^\s+(\d+) k3s-w1 ", listing, re.M)
    assert vmid is not None
    assert hosts["proxmox"].run(["qm", "status", vmid[1]]).stdout == "status: running\n"
    # Starting a running VM is refused as Proxmox refuses it.
    again = hosts["proxmox"].run(["qm", "start", vmid[1]])
    assert again.returncode == 255 and "already running" in again.stderr


def test_virsh_destroy_takes_a_vm_down_and_virsh_start_brings_it_back(
    twin: TwinLab, guests_back: Power, hosts: Hosts
) -> None:
    power = guests_back
    assert power.how("k3s-cp2") == "ssh unraid virsh destroy k3s-cp2"
    power.off("k3s-cp2")
    listing = hosts["unraid"].run(["virsh", "list", "--all"], check=True).stdout
    assert re.search(r"^ -\s+k3s-cp2\s+shut off$", listing, re.M), listing
    eventually(lambda: not ready(twin, "k3s-cp2"), 60, "k3s-cp2 NotReady")
    # The API stays up through the VIP: two of three etcd members remain.
    assert client.VersionApi(twin.api()).get_code().git_version
    power.on("k3s-cp2")
    eventually(lambda: ready(twin, "k3s-cp2"), 90, "k3s-cp2 Ready again")
    wrong = hosts["unraid"].run(["virsh", "start", "k3s-cp2"])
    assert wrong.returncode == 1 and "domain is already active" in wrong.stderr


def test_exportfs_ra_serves_what_etc_exports_says(twin: TwinLab, target: Target, hosts: Hosts,
                                                  tmp_path: Path) -> None:  # fmt: skip
    inv = load_inventory(twin.inventory)
    nfs = inv.storage.nfs
    assert nfs is not None
    server = hosts[nfs.host]
    original = server.read("/etc/exports")
    endpoint = Endpoint(
        str(target.addresses.map(inv.host(nfs.host).address)),
        target.nfs.nfs_port,
        target.nfs.mount_port,
    )
    node = hosts.address(inv.nodes[0].name)
    changed = tmp_path / "exports"
    changed.write_text(original + f"/mnt/user/halab-extra {inv.network.subnet}(rw,sync)\n")
    try:
        server.upload(changed, "/etc/exports", mode=0o644)
        server.run(["exportfs", "-ra"], check=True)
        eventually(
            lambda: "/mnt/user/halab-extra" in list_exports(endpoint, source=node),
            20,
            "the new export served",
        )
        listed = server.run(["exportfs", "-v"], check=True).stdout
        assert "/mnt/user/halab-extra" in listed and str(inv.network.subnet) in listed
    finally:
        restore = tmp_path / "original"
        restore.write_text(original)
        server.upload(restore, "/etc/exports", mode=0o644)
        server.run(["exportfs", "-ra"], check=True)
    eventually(
        lambda: "/mnt/user/halab-extra" not in list_exports(endpoint, source=node),
        20,
        "the export withdrawn again",
    )
    assert sorted(list_exports(endpoint, source=node)) == sorted(e.path for e in nfs.exports)


def test_services_answer_systemctl_as_the_twin_runs_them(twin: TwinLab, hosts: Hosts) -> None:
    done = hosts["k3s-w1"].run("systemctl is-active k3s-agent ssh; systemctl is-active k3s")
    assert done.stdout.split() == ["active", "active", "inactive"]
    assert done.returncode == 3  # the last call: one unit inactive, as systemctl exits
    assert hosts["unraid"].run("systemctl is-active nfs-server").stdout == "active\n"


def test_the_facts_table_of_the_shipped_inventory_matches_it(twin: TwinLab, target: Target) -> None:
    inv = load_inventory(twin.inventory)
    frame = host_facts.table(inv, target, host_facts.gather(inv, target))
    assert frame["reachable"].all()
    assert (frame["mismatches"] == "").all(), frame[["machine", "mismatches"]].to_string()
    pi = frame[frame["machine"] == "pi (k3s-cp3)"].iloc[0]
    assert pi["arch"] == "aarch64" and pi["os_disk"].endswith("(usb)")
    w3 = frame[frame["machine"] == "k3s-w3"].iloc[0]
    assert w3["dri"] == "card0, renderD128"
    assert set(frame["k3s"]) >= {inv.cluster.k3s_version}


def test_proxyjump_in_ssh_config_goes_through_the_jump_host(
    twin: TwinLab, target: Target, tmp_path: Path
) -> None:
    inv = load_inventory(twin.inventory)
    jump, behind = inv.hosts[0], inv.nodes[-1]
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host far-away\n  HostName {target.addresses.map(behind.address)}\n"
        f"  ProxyJump {jump.name}\n"
        f"Host {jump.name}\n  HostName {target.addresses.map(jump.address)}\n"
    )
    settings = target.ssh.model_copy(update={"config_file": str(config)})
    host = SshHost("far-away", "far-away", settings, connect_timeout=5)
    try:
        assert host.options()["proxyjump"] == jump.name
        expected = behind.host if behind.kind == "bare-metal" else behind.name
        assert host.run("hostname", check=True).stdout.strip() == expected
        assert host._jump is not None and host._jump.options()["hostname"] == str(
            target.addresses.map(jump.address)
        )
    finally:
        host.close()


def _docker_host(twin: TwinLab) -> tuple[str, list[str], list[int]]:
    inv = load_inventory(twin.inventory)
    apps = [a for a in inv.apps if a.kind == "docker"]
    assert apps, "the shipped inventory runs a Docker app"
    return apps[0].host, [a.name for a in apps if a.host == apps[0].host], apps[0].ports


def _listens(address: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((address, port)) == 0


def test_docker_compose_up_starts_the_rendered_services_and_down_stops_them(
    twin: TwinLab, hosts: Hosts, tmp_path: Path
) -> None:
    from halab.render.external import compose

    name, containers, ports = _docker_host(twin)
    host = hosts[name]
    local = tmp_path / "docker-compose.yml"
    local.write_text(compose(load_inventory(twin.inventory), name))
    remote = "/mnt/user/appdata/halab-test/docker-compose.yml"
    host.upload(local, remote, mode=0o644)
    try:
        up = host.run(["docker", "compose", "-f", remote, "up", "-d"], check=True)
        for container in containers:
            assert f" Container {container}  Started" in up.stderr
        listed = host.run(["docker", "ps", "--format", "{{.Names}} {{.State}}"], check=True)
        assert {f"{c} running" for c in containers} <= set(listed.stdout.splitlines())
        for port in ports:  # published on the host's own address, once the program listens
            eventually(lambda p=port: _listens(hosts.address(name), p), 30, f"port {port}")
        # The shipped Docker app is the ClusterPlex worker: the twin's stand-in runs it.
        eventually(
            lambda: (
                "Worker listening on port" in host.run(["docker", "logs", containers[0]]).stdout
            ),
            30,
            "the worker stand-in's start in `docker logs`",
        )
        again = host.run(["docker", "compose", "-f", remote, "up", "-d"], check=True)
        assert f" Container {containers[0]}  Running" in again.stderr
    finally:
        down = host.run(["docker", "compose", "-f", remote, "down"], check=True)
    assert f" Container {containers[0]}  Removed" in down.stderr
    assert host.run(["docker", "ps", "-a", "-q"], check=True).stdout.strip() == ""
    for port in ports:
        assert not _listens(hosts.address(name), port)
    missing = host.run(["docker", "logs", containers[0]])
    assert missing.returncode == 1 and "No such container" in missing.stderr


def test_a_compose_service_runs_with_its_environment_volumes_and_restart(
    twin: TwinLab, hosts: Hosts, tmp_path: Path
) -> None:
    name, _, _ = _docker_host(twin)
    host = hosts[name]
    local = tmp_path / "compose.yaml"
    local.write_text(
        "services:\n"
        "  probe:\n"
        "    image: busybox:1.36\n"
        "    restart: unless-stopped\n"
        '    environment: {GREETING: "${WHO:-nobody}"}\n'
        "    volumes: [/mnt/user/halab-probe:/data, ./conf:/conf:ro]\n"
        '    command: sh -c "echo $$GREETING >> /data/out; grep nameserver /etc/resolv.conf'
        ' > /data/dns; touch /conf/x || echo ro; exit 3"\n'
    )
    host.upload(local, "/mnt/user/appdata/probe/compose.yaml")
    here = "cd /mnt/user/appdata/probe && "
    try:
        host.run(here + "WHO=compose docker compose up -d", check=True)
        # Exit 3 each time, and unless-stopped starts it again (Docker's growing delay).
        eventually(
            lambda: (
                host.read("/mnt/user/halab-probe/out").splitlines()[:2] == ["compose", "compose"]
            ),
            30,
            "the container restarted by its policy",
        )
        logs = host.run(here + "docker compose logs --tail 1", check=True).stdout
        assert logs.strip() == "probe  | ro"  # the :ro volume refused the write
        # Names resolve through the home gateway, as the host's own resolv.conf says at
        # home: on the twin's loopback, never this machine's resolver.
        server = host.read("/mnt/user/halab-probe/dns").split()[1]
        assert ipaddress.ip_address(server) in ipaddress.ip_network("127.0.0.0/8"), server
    finally:
        host.run(here + "docker compose down", check=True)
        host.run("rm -rf /mnt/user/halab-probe /mnt/user/appdata/probe", check=True)
    assert "probe-probe-1" not in host.run(["docker", "ps", "-a"], check=True).stdout
