"""Start, stop, fail and recover the twin's hosts, and say how it is doing.

Each physical host is one process group (see host.py). The supervisor keeps their pids
in DIR/state.json, so `twin down` after a crashed test still finds and stops them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from halab.errors import StepError
from halab.inventory import Inventory, load_inventory
from halab.twin import cgroups
from halab.twin.etcd import EtcdClient, EtcdError
from halab.twin.gateway import GATEWAY, vty_dir
from halab.twin.gateway import RENDERED as RENDERED_BGP
from halab.twin.guests import descendants, kill_sandboxes, sandboxes_under
from halab.twin.host_control import query as query_control
from halab.twin.nfs_server import MOUNT_PORT, NFS_PORT
from halab.twin.ssh_world import SshFiles, has_docker, ssh_port, ssh_user
from halab.twin.ssh_world import facts_for as ssh_facts
from halab.twin.ssh_world import machines as ssh_machines
from halab.twin.ssh_world import prepare as prepare_ssh
from halab.twin.topology import TWIN_NETWORK, TwinTopology

API_PORT = 6443
CANNOT = {
    "gpu": "there is no GPU on this machine: the twin's GPU devices are placeholders",
    "internet": "the twin reaches only loopback: nothing is asked of GitHub or any other site",
}


class TwinError(StepError):
    pass


@dataclass(frozen=True)
class TwinPaths:
    dir: Path

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def target(self) -> Path:
        return self.dir / "target.yaml"

    def host_log(self, host: str) -> Path:
        return self.dir / "hosts" / host / "host.log"


def _alive(pid: int, directory: Path) -> bool:
    """True if pid is a twin host of this directory (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return b"halab.twin.host" in cmdline and str(directory).encode() in cmdline


def read_state(paths: TwinPaths) -> dict[str, Any]:
    if not paths.state.exists():
        return {}
    doc: dict[str, Any] = json.loads(paths.state.read_text())
    return doc


def _write_state(paths: TwinPaths, state: dict[str, Any]) -> None:
    paths.dir.mkdir(parents=True, exist_ok=True)
    tmp = paths.state.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(paths.state)


def running_hosts(paths: TwinPaths) -> dict[str, int]:
    state = read_state(paths)
    return {
        name: info["pid"]
        for name, info in state.get("hosts", {}).items()
        if info.get("pid") and _alive(info["pid"], paths.dir.resolve())
    }


def network_of(state: dict[str, Any]) -> IPv4Network:
    """The loopback /24 a twin's state says it runs on (older states: the default)."""
    return IPv4Network(state.get("network", str(TWIN_NETWORK)))


def _start_host(paths: TwinPaths, inventory: Path, host: str, network: IPv4Network) -> int:
    log = paths.host_log(host)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HALAB_NET_GUARD": "loopback", "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "halab.twin.host",
                "--inventory",
                str(inventory),
                "--dir",
                str(paths.dir.resolve()),
                "--host",
                host,
                "--network",
                str(network),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: "pull the plug" is one killpg
            env=env,
        )
    return proc.pid


def write_access_files(paths: TwinPaths, topology: TwinTopology, inv: Inventory) -> None:
    server = f"http://{topology.vip}:{API_PORT}"
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": f"{inv.cluster.name}-twin", "cluster": {"server": server}}],
        "users": [{"name": "twin-admin", "user": {}}],
        "contexts": [
            {
                "name": f"{inv.cluster.name}-twin",
                "context": {"cluster": f"{inv.cluster.name}-twin", "user": "twin-admin"},
            }
        ],
        "current-context": f"{inv.cluster.name}-twin",
    }
    paths.kubeconfig.write_text(json.dumps(kubeconfig, indent=2) + "\n")
    ssh = SshFiles(paths.dir)
    etcd = "".join(f"    - {m.client_url}\n" for m in topology.etcd)
    twin = f"{sys.executable} -m halab.cli twin --dir {paths.dir.resolve()}"
    paths.target.write_text(
        "# Written by `halab twin up`: how the kit reaches the twin.\n"
        "kind: twin\n"
        f"kubeconfig: {paths.kubeconfig.resolve()}\n"
        f"context: {inv.cluster.name}-twin\n"
        f"api_port: {API_PORT}\n"
        "# Every host and node answers SSH on its address (ssh -F ssh_config NAME ...).\n"
        "ssh:\n"
        f"  user: {ssh_user()}\n"
        f"  port: {ssh_port()}\n"
        f"  key_file: {ssh.client_key.resolve()}\n"
        f"  known_hosts: {ssh.known_hosts.resolve()}\n"
        f"  config_file: {ssh.config.resolve()}\n"
        "addresses:\n"
        f"  last_octet_on: {topology.network}\n"
        "etcd:\n"
        "  endpoints:\n"
        f"{etcd}"
        "# The NFS server's ports: clients never ask its portmapper (see nfs_server.py).\n"
        f"nfs: {{nfs_port: {NFS_PORT}, mount_port: {MOUNT_PORT}}}\n"
        "power:\n"
        f"  off: {twin} fail {{host}}\n"
        f"  on: {twin} recover {{host}}\n"
        "# What the twin cannot do: checks that need it skip with this reason.\n"
        "cannot:\n" + "".join(f"  {key}: {json.dumps(why)}\n" for key, why in CANNOT.items())
    )


def ports_in_use(topology: TwinTopology, nfs_address: str | None = None) -> list[str]:
    """Twin addresses something else already listens on (another twin, most likely)."""
    import socket

    wanted = [(str(topology.vip), API_PORT)]
    for member in topology.etcd:
        wanted += [(str(member.address), p) for p in (2379, 2380, API_PORT)]
    wanted += [(str(a), 10250) for a in topology.nodes.values()]
    wanted += [(str(a), ssh_port()) for a in {*topology.nodes.values(), *topology.hosts.values()}]
    if nfs_address is not None:
        wanted += [(nfs_address, NFS_PORT), (nfs_address, MOUNT_PORT)]
    busy = []
    for address, port in wanted:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError:
                busy.append(f"{address}:{port}")
    return busy


def _listens(address: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _get(url: str, timeout: float = 2.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
        return doc


def nodes_ready(vip_url: str) -> dict[str, bool]:
    doc = _get(f"{vip_url}/api/v1/nodes")
    out = {}
    for node in doc.get("items", []):
        conds = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        out[node["metadata"]["name"]] = conds.get("Ready") == "True"
    return out


def pods_running(vip_url: str) -> list[dict[str, str]]:
    """Every pod with what the twin runs for each of its containers (real program,
    stand-in or placeholder, with its version), as the image catalogue decides."""
    from halab.twin.images.catalogue import describe

    doc = _get(f"{vip_url}/api/v1/pods")
    return [
        {
            "pod": f"{pod['metadata']['namespace']}/{pod['metadata']['name']}",
            "node": pod.get("spec", {}).get("nodeName") or "-",
            "phase": pod.get("status", {}).get("phase", ""),
            "runs": "; ".join(describe(c) for c in pod.get("spec", {}).get("containers") or []),
        }
        for pod in doc.get("items", [])
    ]


def wait_ready(
    paths: TwinPaths, inv: Inventory, topology: TwinTopology, timeout: float, say: Any = None
) -> None:
    url = f"http://{topology.vip}:{API_PORT}"
    want = {n.name for n in inv.nodes}
    sshd = {m.name: m.address for m in ssh_machines(inv, paths.dir.resolve(), topology.network)}
    deadline = time.monotonic() + timeout
    last = "the API does not answer through the VIP yet"
    shown = ""
    while time.monotonic() < deadline:
        try:
            ready = nodes_ready(url)
            missing = sorted(n for n in want if not ready.get(n))
            silent = sorted(name for name, a in sshd.items() if not _listens(a, ssh_port()))
            if not missing and not silent:
                return
            last = (
                f"nodes not Ready yet: {', '.join(missing)}"
                if missing
                else f"no SSH yet on {', '.join(silent)}"
            )
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = f"the API does not answer through the VIP {url} yet ({exc})"
        progress = last.split(" (")[0]  # the reason stays for the error, not every line
        if say is not None and progress != shown:
            say(f"waiting: {progress}")
            shown = progress
        time.sleep(0.3)
    raise TwinError(
        f"the twin did not come up in {timeout:.0f} s: {last}; see {paths.dir}/hosts/*/host.log"
    )


def up(
    inventory: Path,
    directory: Path,
    timeout: float = 90.0,
    say: Any = None,
    network: IPv4Network = TWIN_NETWORK,
    media: tuple[float, int] = (2.0, 180),
    fresh: bool = False,
) -> bool:
    """Start the twin on `network` (a loopback /24); False (and nothing done) when it
    already runs. `media` sizes the NFS host's media library: seconds a clip, height.
    `fresh` starts from empty disks (etcd, SeaweedFS, NFS) rather than the last run's."""
    paths = TwinPaths(directory)
    inv = load_inventory(inventory)
    alive = running_hosts(paths)
    if fresh and alive:
        raise TwinError(f"the twin in {directory} runs: stop it (`halab twin down`) to start fresh")
    if fresh:
        _wipe(paths)
    previous = read_state(paths)
    if alive and network_of(previous) != network:
        raise TwinError(
            f"the twin in {directory} runs on {network_of(previous)}, not {network}: "
            "stop it first (`halab twin down`) or leave --network out"
        )
    topology = TwinTopology.from_inventory(inv, directory.resolve(), network)
    if alive and len(alive) == len(previous.get("hosts", {})):
        return False
    if not alive:
        nfs = inv.storage.nfs
        busy = ports_in_use(topology, str(topology.hosts[nfs.host]) if nfs else None)
        if busy:
            raise TwinError(
                f"{', '.join(busy[:4])}{' ...' if len(busy) > 4 else ''} already in use: another "
                f"twin runs on {network}; stop it with `halab twin --dir DIR down`, or start "
                "this one beside it on another loopback network (--network 127.78.0.0/24)"
            )
    state = previous or {"hosts": {}}
    state["inventory"] = str(inventory.resolve())
    state["network"] = str(network)
    state["started"] = time.time()
    _seed_media(inv, paths, topology, media)
    prepare_ssh(inv, paths.dir.resolve(), network)
    if inv.storage.nfs is not None:
        from halab.render import external

        nfs_dir = paths.dir / "hosts" / inv.storage.nfs.host / "nfs"
        nfs_dir.mkdir(parents=True, exist_ok=True)
        (nfs_dir / "exports.rendered").write_text(external.exports(inv))
    names = [h.name for h in inv.hosts]
    if topology.gateway is not None:
        from halab.render import external

        # The gateway loads what the kit renders for it (its own process would spend
        # seconds importing the renderer).
        frr_dir = paths.dir / "hosts" / GATEWAY / "frr"
        frr_dir.mkdir(parents=True, exist_ok=True)
        (frr_dir / RENDERED_BGP).write_text(external.gateway_bgp(inv))
        names.append(GATEWAY)
    for name in names:
        if name in alive:
            continue
        state["hosts"][name] = {
            "pid": _start_host(paths, inventory.resolve(), name, network),
            "state": "up",
        }
    _write_state(paths, state)
    write_access_files(paths, topology, inv)
    try:
        wait_ready(paths, inv, topology, timeout, say)
    except TwinError:
        down(directory)
        raise
    return True


def _wipe(paths: TwinPaths) -> None:
    """Forget a stopped twin's disks and state; the clip cache stays (it is only a cache)."""
    import shutil

    left = mounts_under_dir(paths.dir)
    if left:
        raise TwinError(f"{left[0]} is still mounted: run `halab twin down` first")
    for name in ("hosts", "state.json", "kubeconfig", "target.yaml"):
        where = paths.dir / name
        if where.is_dir():
            shutil.rmtree(where)
        else:
            where.unlink(missing_ok=True)


def mounts_under_dir(directory: Path) -> list[str]:
    from halab.twin.kubelet.csi import mounts_under

    return mounts_under(directory) if directory.exists() else []


def _seed_media(
    inv: Inventory, paths: TwinPaths, topology: TwinTopology, media: tuple[float, int]
) -> None:
    """The media library on the NFS host's read-only exports (the first export when none
    is read-only), made before the host serves them."""
    from halab.twin.media import seed

    nfs = inv.storage.nfs
    if nfs is None:
        return
    exports = [e for e in nfs.exports if e.read_only] or nfs.exports[:1]
    host_dir = paths.dir / "hosts" / nfs.host
    for export in exports:
        seed(
            host_dir / "root" / export.path.lstrip("/"),
            paths.dir / "media-cache",
            host_dir / "nfs" / f"library-{export.name}.json",
            *media,
        )


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(proc.name))
    return found


def _wait_gone(pid: int, directory: Path, timeout: float) -> bool:
    """Until the host and every process of its group (its etcd) are gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid, directory) and not _group_members(pid):
            _reap(pid)
            return True
        time.sleep(0.05)
    return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def down(directory: Path) -> list[str]:
    paths = TwinPaths(directory)
    state = read_state(paths)
    stopped = []
    for name, info in state.get("hosts", {}).items():
        pid = info.get("pid")
        below = descendants(pid) if pid and _alive(pid, directory.resolve()) else []
        if pid and _alive(pid, directory.resolve()):
            _kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, directory.resolve(), 8.0):
                _kill(pid, signal.SIGKILL)
                _wait_gone(pid, directory.resolve(), 5.0)
            stopped.append(name)
        # Whatever is left in the group (an etcd that outlived its host) goes too.
        if pid:
            _kill(pid, signal.SIGKILL)
        _kill_all(below)
        info["state"] = "down"
        info["pid"] = None
    cgroups.kill(cgroups.machine_group(directory))
    _kill_sandboxes(directory.resolve())
    _unmount_left(directory)
    if state:
        _write_state(paths, state)
    return stopped


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _unmount_left(under: Path) -> None:
    # A SIGKILLed weed mount leaves its FUSE mount behind ("Transport endpoint is not
    # connected"); a real host loses it with its reboot, so the twin drops it here.
    from halab.twin.kubelet.csi import lazy_unmount, mounts_under

    for point in mounts_under(under):
        lazy_unmount(point)


def sandboxes(directory: Path) -> list[int]:
    """Pod processes of this twin still running: their bubblewrap sandboxes name the
    twin's directory on their command line."""
    return sandboxes_under(directory)


def _kill_sandboxes(directory: Path) -> None:
    # Pods run in sessions of their own and die with their host through bubblewrap's
    # --die-with-parent; a sandbox started as its host went down can miss that, so down
    # makes sure. Killing the sandbox kills everything in its PID namespace.
    kill_sandboxes([directory], quiet=0.5)


def _host(paths: TwinPaths, host: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The state file and the entry of one host in it, or an error naming the hosts."""
    state = read_state(paths)
    info = state.get("hosts", {}).get(host)
    if info is None:
        known = ", ".join(sorted(state.get("hosts", {}))) or "none (is the twin up?)"
        raise TwinError(f"no twin host named {host!r}; hosts: {known}")
    return state, info


def fail(directory: Path, host: str) -> None:
    paths = TwinPaths(directory)
    state, info = _host(paths, host)
    pid = info.get("pid")
    if not pid or not _alive(pid, directory.resolve()):
        raise TwinError(
            f"twin host {host} is not running (recover it with `halab twin recover {host}`)"
        )
    group = cgroups.machine_group(directory, host)
    cgroups.step_out(group)  # a poweroff over SSH is run from inside the host
    below = descendants(pid)  # its SSH sessions and pods live in sessions of their own
    # Every process of the host at once, like pulling the plug: its cgroup where there
    # is one, and its process group and descendants in any case.
    cgroups.kill(group)
    _kill(pid, signal.SIGKILL)
    _kill_all(below)
    # A pod started while the host was being read, or whose parent died first, still
    # names the host's directory: found by that.
    kill_sandboxes([directory.resolve() / "hosts" / host], quiet=0.5)
    _wait_gone(pid, directory.resolve(), 5.0)
    _unmount_left(directory / "hosts" / host)
    info["state"], info["pid"] = "failed", None
    _write_state(paths, state)


def recover(directory: Path, host: str) -> None:
    paths = TwinPaths(directory)
    state, info = _host(paths, host)
    if info.get("pid") and _alive(info["pid"], directory.resolve()):
        return
    info["pid"] = _start_host(paths, Path(state["inventory"]), host, network_of(state))
    info["state"] = "up"
    _write_state(paths, state)


def _gateway_status(paths: TwinPaths, address: str, up: bool) -> dict[str, Any]:
    """The gateway's real FRR: its BGP sessions, as `vtysh` on the gateway shows them."""
    found: dict[str, Any] = {"address": address, "up": up, "established": 0, "peers": 0}
    if not up:
        return found
    vty = vty_dir(paths.dir / "hosts" / GATEWAY / "frr")
    with contextlib.suppress(OSError, ValueError, subprocess.SubprocessError):
        done = subprocess.run(
            ["vtysh", "--vty_socket", str(vty), "-c", "show bgp summary json"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        peers = json.loads(done.stdout or "{}").get("ipv4Unicast", {}).get("peers", {})
        found["peers"] = len(peers)
        found["established"] = sum(1 for p in peers.values() if p.get("state") == "Established")
    return found


def status(directory: Path) -> dict[str, Any]:
    paths = TwinPaths(directory)
    state = read_state(paths)
    if not state:
        return {"running": False, "hosts": {}}
    inv = load_inventory(state["inventory"])
    topology = TwinTopology.from_inventory(inv, directory.resolve(), network_of(state))
    alive = running_hosts(paths)
    out: dict[str, Any] = {
        "running": bool(alive),
        "hosts": {
            h: {
                "state": "up" if h in alive else info.get("state", "down"),
                "pid": alive.get(h),
                # the host process and its etcd member (pod processes have their own groups)
                "processes": len(_group_members(alive[h])) if h in alive else 0,
            }
            for h, info in state.get("hosts", {}).items()
        },
        "vip": str(topology.vip),
    }
    nfs = inv.storage.nfs
    if nfs is not None:
        out["nfs"] = {
            "host": nfs.host,
            "address": str(topology.hosts[nfs.host]),
            "up": nfs.host in alive,
            "exports": [f"{e.path} ({'ro' if e.read_only else 'rw'})" for e in nfs.exports],
        }
    out["ssh"] = {}
    for machine in ssh_machines(inv, directory.resolve(), topology.network):
        facts = ssh_facts(inv, machine, topology.network)
        out["ssh"][machine.name] = {
            "address": f"{machine.address}:{ssh_port()}",
            "up": machine.host in alive and _listens(machine.address, ssh_port()),
            # What this machine cannot tell, so the twin answers with the inventory's word.
            "from_inventory": facts["from_inventory"],
        }
    out["guests"] = {}
    for host in alive:
        with contextlib.suppress(OSError, ValueError):
            rows = query_control(directory.resolve(), host, "/guests")
            out["guests"].update(
                {
                    g["name"]: {"host": host, "id": g["vmid"], "kind": g["kind"],
                                "running": g["running"]}
                    for g in rows
                }
            )  # fmt: skip
    out["docker"] = {}
    for host in alive:
        if not has_docker(inv, host):
            continue
        with contextlib.suppress(OSError, ValueError):
            rows = query_control(directory.resolve(), host, "/docker/containers?all=1")
            out["docker"].update(
                {
                    c["Name"]: {"host": host, "image": c["Image"], "status": c["Status"],
                                "runs": c["Runs"]}
                    for c in rows
                }
            )  # fmt: skip
    out["services"] = (
        f"ClusterIPs on {topology.service_network} (k3s: 10.43.0.0/16), where the twin's "
        "kube-proxy listens; MetalLB's pools and requested addresses moved onto "
        f"{topology.network} by their last octet"
    )
    if topology.gateway is not None:
        out["gateway"] = _gateway_status(paths, str(topology.gateway), GATEWAY in alive)
    endpoints = [m.client_url for m in topology.etcd if m.host in alive]
    out["etcd"] = {
        "members": [m.name for m in topology.etcd],
        "up": [m.name for m in topology.etcd if m.host in alive],
        "leader": None,
    }
    if endpoints:
        etcd = EtcdClient(endpoints, timeout=1.0)
        with contextlib.suppress(EtcdError):
            out["etcd"]["leader"] = etcd.leader()
        with contextlib.suppress(EtcdError, KeyError, ValueError):
            # Each API server reads its own member: members that disagree split the view.
            out["etcd"]["divergence"] = etcd.divergence()
    url = f"http://{topology.vip}:{API_PORT}"
    try:
        lease = _get(
            f"{url}/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/plndr-cp-lock", 1.0
        )
        out["vip_holder"] = lease.get("spec", {}).get("holderIdentity")
        out["nodes"] = nodes_ready(url)
        out["pods"] = pods_running(url)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        out["vip_holder"] = None
        out["api_error"] = str(exc)
    return out
