"""Phases ask the inventory what they are about, against the session's twin: nodes the
rollout has not brought in skip, nodes the cluster lacks fail at once, labels are set
idempotently, API errors read as sentences, every check is timed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from halab.context import open_context
from halab.explain import explain
from halab.inventory.yaml_source import read_yaml
from halab.phases import phase1, phase6
from halab.phases.cluster_checks import CHECK_NAMESPACE, LiveNodes

from helpers import write_yaml
from twinlab import TwinLab

pytestmark = pytest.mark.twin


def test_api_errors_read_as_sentences(twin: TwinLab) -> None:
    with pytest.raises(ApiException) as missing:
        client.CoreV1Api(twin.api()).read_node("k3s-w9")
    assert explain(missing.value) == "node k3s-w9 not found (404)"
    with pytest.raises(ApiException) as conflict:
        client.CoreV1Api(twin.api()).create_namespace({"metadata": {"name": "default"}})
    text = explain(conflict.value)
    assert text.startswith("the API refused (409 Conflict): ") and "already exists" in text
    assert "HTTP response headers" not in text


def test_a_refused_connection_names_the_address(tmp_path: Path) -> None:
    conf = client.Configuration()
    conf.host = "http://127.0.0.1:9"  # discard: nothing listens
    conf.retries = 0
    with pytest.raises(Exception) as refused:
        client.CoreV1Api(client.ApiClient(conf)).list_node()
    text = explain(refused.value)
    assert text.startswith("the API at 127.0.0.1:9 did not answer: "), text
    assert "refused" in text


def _inventory_with(twin: TwinLab, tmp_path: Path, extra_phase1: str) -> Path:
    """The twin's inventory with one more phase-1 node that the twin does not run."""
    data: dict[str, Any] = copy.deepcopy(read_yaml(twin.inventory).data)
    ghost = copy.deepcopy(next(n for n in data["nodes"] if n["name"] == "k3s-w2"))
    ghost.update(name=extra_phase1, address="192.168.1.23")
    data["nodes"].append(ghost)
    next(s for s in data["rollout"] if s["phase"] == 1)["nodes"].append(extra_phase1)
    return write_yaml(tmp_path / "with-ghost.yaml", data)


def test_a_node_the_cluster_lacks_fails_at_once(twin: TwinLab, tmp_path: Path) -> None:
    inventory = _inventory_with(twin, tmp_path, "k3s-w4")
    ctx = open_context(inventory, target=twin.dir / "target.yaml", run_dir=tmp_path)
    api = twin.api()
    checks = {c.id: c for c in phase1.check_test_pods(ctx, api)}
    ghost = checks["test-pod-k3s-w4"]
    assert ghost.status == "fail" and "not registered" in ghost.detail, ghost.detail
    assert checks["test-pod-k3s-w1"].status == "pass", checks["test-pod-k3s-w1"].detail
    pods = client.CoreV1Api(api).list_namespaced_pod(CHECK_NAMESPACE).items
    assert not [p for p in pods if "k3s-w4" in p.metadata.name]  # none was even tried
    ready = {c.id: c for c in phase1.check_ready(ctx, api)}
    assert ready["ready-k3s-w4"].status == "fail"


def test_a_node_not_yet_brought_in_is_skipped(twin: TwinLab, tmp_path: Path) -> None:
    ctx = open_context(twin.inventory, target=twin.dir / "target.yaml", run_dir=tmp_path)
    live = LiveNodes(twin.api())
    later = live.scope(ctx, "k3s-w3", phase=1).ready()  # w3 joins in phase 7
    assert later == ("skip", "k3s-w3 joins in phase 7 (the inventory's rollout), after phase 1")
    unknown = live.scope(ctx, "k3s-w9", phase=1).ready()
    assert unknown[0] == "fail" and "not in the inventory" in unknown[1]
    assert [n.name for n in phase1.nodes(ctx)] == ["k3s-w1", "k3s-w2"]
    assert list(phase6.scope(ctx)["node"]) == ["k3s-cp1", "k3s-cp2", "k3s-cp3"]


def test_labelling_is_idempotent(twin: TwinLab, tmp_path: Path) -> None:
    ctx = open_context(twin.inventory, target=twin.dir / "target.yaml", run_dir=tmp_path)
    api = twin.api()
    core = client.CoreV1Api(api)
    core.patch_node("k3s-w1", {"metadata": {"labels": {"role": None}}})
    checks = {c.id: c for c in phase1.check_labels(ctx, api)}
    assert checks["labels-k3s-w1"].status == "fail"
    assert "kubectl label nodes k3s-w1 role=primary" in checks["labels-k3s-w1"].detail
    dry = {c.step: c for c in phase1.label_nodes(ctx, api, dry_run=True)}
    assert dry["label k3s-w1"].dry_run and "role" not in (
        core.read_node("k3s-w1").metadata.labels or {}
    )
    first = {c.step: c for c in phase1.label_nodes(ctx, api)}
    assert first["label k3s-w1"].changed and not first["label k3s-w2"].changed
    again = phase1.label_nodes(ctx, api)
    assert not any(c.changed for c in again)
    checks = {c.id: c for c in phase1.check_labels(ctx, api)}
    assert checks["labels-k3s-w1"].status == "pass"


def test_every_live_check_is_timed(twin: TwinLab, tmp_path: Path) -> None:
    ctx = open_context(twin.inventory, target=twin.dir / "target.yaml", run_dir=tmp_path)
    api = twin.api()
    found, members = phase6.checks(ctx, api)
    # No MetalLB yet (phase 7 delivers it): the gateway's sessions are not asked for.
    (bgp,) = [c for c in found if c.id == "bgp-joined-6"]
    assert bgp.status == "skip" and "phase 7 delivers it" in bgp.detail, bgp
    found = [c for c in found if c is not bgp]
    found += phase1.check_ready(ctx, api) + phase1.check_test_pods(ctx, api)
    assert all(c.status == "pass" for c in found), [(c.id, c.detail) for c in found]
    assert all(c.seconds > 0 for c in found), [(c.id, c.seconds) for c in found]
    assert {c.title for c in found} >= {
        "3 control-plane nodes Ready",
        "etcd has 3 members and one leader",
    }
    assert len(members) == 3
