"""The rendered GitOps tree and external configs: structure, placement, validation, drift."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from halab.inventory import load_inventory
from halab.render import render
from halab.render.validate import RenderError, validate_object, validate_tree
from halab.render.yamltext import dump_all, load_all

from conftest import CLUSTER_YAML
from helpers import corrected, halab_cli, load


@pytest.fixture(scope="module")
def plan_files() -> dict[str, str]:
    return render(load_inventory(CLUSTER_YAML))


@pytest.fixture(scope="module")
def fixed_files(plan_data: dict[str, Any]) -> dict[str, str]:
    return render(load(corrected(plan_data)))


def docs(files: dict[str, str], path: str) -> list[dict[str, Any]]:
    return load_all(files[path])


def find(files: dict[str, str], kind: str, name: str) -> dict[str, Any]:
    for path, text in files.items():
        if path.endswith((".yaml", ".yml")) and not path.startswith("external/k3s"):
            for doc in load_all(text):
                if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
                    return doc
    raise AssertionError(f"no {kind} {name}")


def test_tree_layout(plan_files: dict[str, str]) -> None:
    expected = {
        "clusters/homelab/flux-system/gotk-sync.yaml",
        "clusters/homelab/apps.yaml",
        "infrastructure/controllers/kube-vip.yaml",
        "infrastructure/controllers/metallb.yaml",
        "infrastructure/controllers/intel-gpu-plugin.yaml",
        "infrastructure/configs/metallb-config.yaml",
        "storage/seaweedfs.yaml",
        "storage/csi.yaml",
        "storage/nfs.yaml",
        "apps/media/plex.yaml",
        "apps/media/clusterplex-orchestrator.yaml",
        "apps/media/clusterplex-worker.yaml",
        "apps/media/sonarr.yaml",
        "external/unraid/docker-compose.yml",
        "external/unraid/clusterplex-worker-unraid.xml",
        "external/unraid/exports",
        "external/udm/frr-bgp.conf",
        "external/proxmox/k3s-w3.lxc.conf",
        "external/k3s/install-k3s-cp1.sh",
    }
    assert expected <= set(plan_files)
    assert validate_tree(plan_files, "1.32") is None


def test_flux_layers_in_order(plan_files: dict[str, str]) -> None:
    order = {}
    for name in ("infrastructure-controllers", "infrastructure-configs", "storage", "apps"):
        (ks,) = docs(plan_files, f"clusters/homelab/{name}.yaml")
        assert ks["spec"]["prune"] is True and ks["spec"]["wait"] is True
        order[name] = [d["name"] for d in ks["spec"].get("dependsOn", [])]
    assert order == {
        "infrastructure-controllers": [],
        "infrastructure-configs": ["infrastructure-controllers"],
        "storage": ["infrastructure-configs"],
        "apps": ["storage"],
    }
    source = find(plan_files, "GitRepository", "flux-system")
    assert source["spec"]["ref"] == {"branch": "v2"}


def test_kube_vip_on_control_plane_only(plan_files: dict[str, str]) -> None:
    ds = find(plan_files, "DaemonSet", "kube-vip-ds")
    terms = ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == ["k3s-cp1", "k3s-cp2", "k3s-cp3"]
    env = {
        e["name"]: e.get("value") for e in ds["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["address"] == "192.168.1.100" and env["svc_enable"] == "false"
    assert env["vip_leaseduration"] == "5" and env["vip_leasename"] == "plndr-cp-lock"


def test_metallb_resources(plan_files: dict[str, str]) -> None:
    assert find(plan_files, "IPAddressPool", "default")["spec"]["addresses"] == [
        "192.168.1.150-192.168.1.200"
    ]
    peer = find(plan_files, "BGPPeer", "gateway")
    assert peer["apiVersion"] == "metallb.io/v1beta2" and peer["spec"]["peerASN"] == 64512


def test_gateway_bgp_config_is_valid_frr_with_every_node(
    tmp_path: Path, plan_files: dict[str, str]
) -> None:
    """The plan's "update UDM BGP config for new node IPs" as a file FRR itself accepts."""
    vtysh = shutil.which("vtysh")
    assert vtysh is not None, "vtysh is missing: `make system` installs Debian's frr"
    inv = load_inventory(CLUSTER_YAML)
    text = plan_files["external/udm/frr-bgp.conf"]
    assert f"router bgp {inv.network.metallb.bgp.peer_asn}" in text  # type: ignore[union-attr]
    for node in inv.nodes:
        assert f" neighbor {node.address} peer-group K8S" in text, node.name
    assert "no bgp ebgp-requires-policy" in text
    # The lab-only lines the twin adds on loopback never reach the user's gateway.
    assert "allow-martian-nexthop" not in text and "update-source" not in text
    good = tmp_path / "frr-bgp.conf"
    good.write_text(text)
    checked = subprocess.run([vtysh, "-C", "-f", str(good)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    bad = tmp_path / "bad.conf"
    bad.write_text(text.replace(" neighbor K8S activate", " neighbour K8S activate"))
    refused = subprocess.run([vtysh, "-C", "-f", str(bad)], capture_output=True, text=True)
    assert refused.returncode != 0 and "Unknown command" in refused.stdout + refused.stderr
    # The speakers tolerate every taint, or a tainted node would have no session.
    release = find(plan_files, "HelmRelease", "metallb")
    tolerations = release["spec"]["values"]["speaker"]["tolerations"]
    assert {"operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_l2_mode_renders_no_gateway_config(plan_data: dict[str, Any]) -> None:
    data = corrected(plan_data)
    data["network"]["metallb"] = {"mode": "l2", "pool": data["network"]["metallb"]["pool"]}
    files = render(load(data))
    assert "external/udm/frr-bgp.conf" not in files
    assert find(files, "L2Advertisement", "default")["spec"]["ipAddressPools"] == ["default"]


def test_worker_only_on_gpu_nodes(fixed_files: dict[str, str]) -> None:
    worker = find(fixed_files, "Deployment", "clusterplex-worker")["spec"]["template"]["spec"]
    assert worker["nodeSelector"] == {"gpu": "true"}
    assert {"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"} in worker[
        "tolerations"
    ]
    assert worker["containers"][0]["resources"]["limits"] == {"gpu.intel.com/i915": 1}
    plugin = find(fixed_files, "DaemonSet", "intel-gpu-plugin")["spec"]["template"]["spec"]
    values = plugin["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"][0]["values"]
    assert values == ["k3s-w3"]


def test_orchestrator_single_replica_pinned_address(fixed_files: dict[str, str]) -> None:
    orch = find(fixed_files, "Deployment", "clusterplex-orchestrator")
    assert orch["spec"]["replicas"] == 1 and orch["spec"]["strategy"] == {"type": "Recreate"}
    probe = orch["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"] == {"path": "/health", "port": 3500}
    svc = find(fixed_files, "Service", "clusterplex-orchestrator")
    assert svc["spec"]["type"] == "LoadBalancer"
    ip = svc["metadata"]["annotations"]["metallb.io/loadBalancerIPs"]
    assert (
        f"ORCHESTRATOR_URL: http://{ip}:3500" in fixed_files["external/unraid/docker-compose.yml"]
    )


def test_every_loadbalancer_service_is_pinned_apart(fixed_files: dict[str, str]) -> None:
    """Pinning the orchestrator alone let PMS, created beside it, take its address."""
    pinned = {}
    for path in fixed_files:
        if path.startswith("apps/") and path.endswith(".yaml"):
            for d in docs(fixed_files, path):
                if d.get("kind") == "Service" and d["spec"]["type"] == "LoadBalancer":
                    pinned[d["metadata"]["name"]] = d["metadata"]["annotations"][
                        "metallb.io/loadBalancerIPs"
                    ]
    assert {"plex", "clusterplex-orchestrator"} <= set(pinned)
    assert len(set(pinned.values())) == len(pinned), pinned
    assert pinned["clusterplex-orchestrator"] == "192.168.1.150"  # the pool's first


def test_seaweedfs_masters_odd_and_racks_per_host(fixed_files: dict[str, str]) -> None:
    masters = [
        d
        for d in docs(fixed_files, "storage/seaweedfs.yaml")
        if d["kind"] == "StatefulSet" and "-master-" in d["metadata"]["name"]
    ]
    assert len(masters) == 3
    args = masters[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    peers = next(a for a in args if a.startswith("-peers="))
    assert peers.count(":9333") == 3 and "-defaultReplication=010" in args
    volume = find(fixed_files, "StatefulSet", "seaweedfs-volume-k3s-w3")["spec"]["template"]
    assert "-rack=proxmox" in volume["spec"]["containers"][0]["args"]
    assert {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"} in volume["spec"][
        "tolerations"
    ]  # storage runs on the tainted GPU node too
    assert find(fixed_files, "StorageClass", "seaweedfs-ha")["parameters"] == {"replication": "010"}


def test_nfs_media_is_read_only(plan_files: dict[str, str]) -> None:
    pv = find(plan_files, "PersistentVolume", "nfs-media")["spec"]
    assert pv["accessModes"] == ["ReadOnlyMany"] and pv["nfs"]["readOnly"] is True
    assert pv["nfs"]["server"] == "192.168.1.29"
    assert "/mnt/user/media 192.168.1.0/24(ro," in plan_files["external/unraid/exports"]


def test_install_scripts(plan_files: dict[str, str], plan_data: dict[str, Any]) -> None:
    first = plan_files["external/k3s/install-k3s-cp1.sh"]
    assert "cluster-init: true" in first and "tls-san:" in first and "- servicelb" in first
    cp2 = plan_files["external/k3s/install-k3s-cp2.sh"]
    assert "server: https://192.168.1.100:6443" in cp2 and "cluster-init" not in cp2
    agent = plan_files["external/k3s/install-k3s-w3.sh"]
    assert "sh -s - agent" in agent and "tls-san" not in agent
    assert "- gpu=true:NoSchedule" in agent and "- role=gpu-worker" in agent
    assert all('"${K3S_TOKEN:?' in t for p, t in plan_files.items() if p.endswith(".sh"))
    data = copy.deepcopy(plan_data)
    data["nodes"][1]["labels"]["node-role.kubernetes.io/worker"] = "true"
    w1 = render(load(data))["external/k3s/install-k3s-w1.sh"]
    config = w1.split("HALAB_EOF")[1]
    assert "node-role.kubernetes.io/worker" not in config  # k3s would refuse to start
    assert "kubectl label node k3s-w1 node-role.kubernetes.io/worker=true" in w1


def test_lxc_config(plan_files: dict[str, str]) -> None:
    conf = plan_files["external/proxmox/k3s-w3.lxc.conf"]
    for line in (
        "lxc.cgroup2.devices.allow: c 226:* rwm",
        "lxc.apparmor.profile: unconfined",
        "lxc.mount.entry: /dev/dri dev/dri none bind,optional,create=dir",
        "lxc.mount.entry: /dev/kmsg dev/kmsg none defaults,bind,create=file",
    ):
        assert line in conf


def test_validation_catches_broken_objects(plan_files: dict[str, str]) -> None:
    broken = dict(plan_files)
    objs = docs(plan_files, "apps/media/sonarr.yaml")
    deployment = next(d for d in objs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    broken["apps/media/sonarr.yaml"] = dump_all(objs)
    peer = docs(plan_files, "infrastructure/configs/metallb-config.yaml")
    peer[1]["spec"]["peerASN"] = "64512"
    broken["infrastructure/configs/metallb-config.yaml"] = dump_all(peer)
    broken["external/unraid/docker-compose.yml"] = plan_files[
        "external/unraid/docker-compose.yml"
    ].replace("unless-stopped", "sometimes")
    broken["apps/media/kustomization.yaml"] += "- ghost.yaml\n"
    with pytest.raises(RenderError) as info:
        validate_tree(broken, "1.32")
    text = str(info.value)
    assert "apps/media/sonarr.yaml: document 2 (Deployment sonarr)" in text
    assert "imagePullPolice" in text
    assert "spec.peerASN: '64512' is not of type 'integer'" in text
    assert "'sometimes' is not one of" in text
    assert "resource ghost.yaml is not in the tree" in text


def test_unknown_kinds_are_not_waved_through() -> None:
    assert validate_object(
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}, "1.32.0"
    ) == ["no schema for Widget example.com/v1: the kit cannot check it"]


def test_render_refuses_an_unplaceable_replication(plan_data: dict[str, Any]) -> None:
    data = copy.deepcopy(plan_data)
    data["storage"]["seaweedfs"].update(replication="032", racks="host")
    with pytest.raises(RenderError, match="Only has 3 racks, not enough for 4"):
        render(load(data))


def test_deterministic_across_processes() -> None:
    code = (
        "import json,sys;from halab.inventory import load_inventory;"
        "from halab.render import render;from halab.render.files import digest;"
        f"f=render(load_inventory({str(CLUSTER_YAML)!r}));"
        "print(json.dumps({p: digest(t) for p, t in f.items()}))"
    )
    runs = [
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
        ).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1] and len(json.loads(runs[0])) > 20


def test_cli_render_check_and_json(tmp_path: Path) -> None:
    out = tmp_path / "repo"
    first = halab_cli("render", str(CLUSTER_YAML), "--out", str(out))
    assert first.returncode == 0 and " 0 unchanged, 0 removed" in first.stdout, first.stderr
    again = halab_cli("render", str(CLUSTER_YAML), "--out", str(out))
    assert " 0 written" in again.stdout
    assert halab_cli("render", "--out", str(out), "--check").returncode == 0
    (out / "storage" / "csi.yaml").write_text("drifted\n")
    (out / "apps" / "media" / "stale.yaml").write_text("old\n")
    drift = halab_cli("render", "--out", str(out), "--check")
    assert drift.returncode == 1
    assert "changed: storage/csi.yaml" in drift.stdout and "+++ storage/csi.yaml" in drift.stdout
    assert "not rendered any more: apps/media/stale.yaml" in drift.stdout
    listing = json.loads(halab_cli("render", "--out", str(out), "--json").stdout)
    assert {"path", "sha256", "bytes"} <= set(listing[0])
    assert os.access(out / "external/k3s/install-k3s-cp1.sh", os.X_OK)


def _kubectl() -> str | None:
    beside = Path(sys.executable).with_name("kubectl")
    if beside.exists():
        return str(beside)
    return shutil.which("kubectl")


def test_every_kustomization_builds(tmp_path: Path, plan_files: dict[str, str]) -> None:
    kubectl = _kubectl()
    if kubectl is None:
        pytest.skip("no kubectl (make setup installs one: tools/install-kubectl.py)")
    for path, text in plan_files.items():
        target = tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    folders = sorted({str(Path(p).parent) for p in plan_files if p.endswith("/kustomization.yaml")})
    assert "apps" in folders and "storage" in folders
    for folder in folders:
        built = subprocess.run(
            [kubectl, "kustomize", str(tmp_path / folder)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert built.returncode == 0, f"{folder}: {built.stderr}"
        rendered = sum(
            len(load_all(t))
            for p, t in plan_files.items()
            if p.startswith(f"{folder}/") and not p.endswith("kustomization.yaml")
        )
        assert len(load_all(built.stdout)) == rendered, folder


def test_compose_file_passes_docker_compose(tmp_path: Path, plan_files: dict[str, str]) -> None:
    """docker-compose validates against the Compose schema without a Docker engine."""
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    good = tmp_path / "docker-compose.yml"
    good.write_text(plan_files["external/unraid/docker-compose.yml"])
    checked = subprocess.run(
        [tool, "-f", str(good), "config", "-q"], capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stderr
    bad = tmp_path / "bad.yml"
    bad.write_text(good.read_text().replace("    devices:", "    devicez:"))
    refused = subprocess.run(
        [tool, "-f", str(bad), "config", "-q"], capture_output=True, text=True, timeout=120
    )
    assert refused.returncode != 0 and "devicez" in refused.stderr


def test_plex_init_sets_the_transcoder_temp_dir(tmp_path: Path, plan_files: dict[str, str]) -> None:
    plex = find(plan_files, "Deployment", "plex")["spec"]["template"]["spec"]
    (init,) = plex["initContainers"]
    script = init["command"][2]
    prefs = tmp_path / "Preferences.xml"
    local = script.replace(
        "/config/Library/Application Support/Plex Media Server/Preferences.xml", str(prefs)
    )
    old = '<Preferences MachineIdentifier="x" TranscoderTempDirectory="/tmp/old"/>'
    none = '<Preferences MachineIdentifier="x"/>'
    cases = {
        old: old.replace("/tmp/old", "/transcode"),
        none: '<Preferences TranscoderTempDirectory="/transcode" MachineIdentifier="x"/>',
    }
    for before, after in cases.items():
        prefs.write_text(before)
        subprocess.run(["sh", "-c", local], check=True)
        assert prefs.read_text() == after
    prefs.unlink()
    subprocess.run(["sh", "-c", local], check=True)  # first start: nothing to edit yet
    assert not prefs.exists()


def test_timing_flags_reach_the_servers(plan_data: dict[str, Any]) -> None:
    data = copy.deepcopy(plan_data)
    data["cluster"]["timing"].update(
        node_monitor_grace_period_s=20,
        default_not_ready_toleration_s=30,
        default_unreachable_toleration_s=30,
    )
    files = render(load(data))
    server = files["external/k3s/install-k3s-cp2.sh"]
    assert "- node-monitor-grace-period=20s" in server
    assert "- default-unreachable-toleration-seconds=30" in server
    assert "node-monitor-grace-period" not in files["external/k3s/install-k3s-w1.sh"]
