"""The official kubernetes Python client, unmodified, against the twin's API servers."""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from twinlab import TwinLab, eventually

pytestmark = pytest.mark.twin


@pytest.fixture
def core(twin: TwinLab) -> client.CoreV1Api:
    return client.CoreV1Api(twin.api())


@pytest.fixture
def ns(twin: TwinLab) -> str:
    return twin.namespace()


def cm(name: str, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"app": "t", "n": name}}, "data": data}


def test_version_and_discovery(twin: TwinLab) -> None:
    api = twin.api()
    assert client.VersionApi(api).get_code().git_version == "v1.32.9+k3s1"
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "batch", "coordination.k8s.io", "apiextensions.k8s.io"} <= groups
    names = {r.name for r in client.CoreV1Api(api).get_api_resources().resources}
    assert {"pods", "pods/log", "pods/eviction", "nodes", "services"} <= names


def test_create_get_replace_and_stale_version(core: client.CoreV1Api, ns: str) -> None:
    made = core.create_namespaced_config_map(ns, cm("a", x="1"))
    assert made.metadata.uid and made.metadata.resource_version
    got = core.read_namespaced_config_map("a", ns)
    got.data["y"] = "2"
    newer = core.replace_namespaced_config_map("a", ns, got)
    assert int(newer.metadata.resource_version) > int(made.metadata.resource_version)
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_config_map("a", ns, got)  # got's version is old now
    assert stale.value.status == 409 and "modified" in stale.value.body
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map(ns, cm("a"))
    assert exists.value.status == 409 and "AlreadyExists" in exists.value.body
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("nope", ns)
    assert missing.value.status == 404 and '"reason":"NotFound"' in missing.value.body


def test_invalid_objects_are_422_naming_the_field(core: client.CoreV1Api, ns: str) -> None:
    with pytest.raises(ApiException) as bad:
        core.create_namespaced_pod(
            ns, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}
        )
    assert bad.value.status == 422
    assert "spec.containers[0].image" in bad.value.body
    with pytest.raises(ApiException) as bad_name:
        core.create_namespaced_config_map(ns, cm("Not_A_Name"))
    assert bad_name.value.status == 422 and "metadata.name" in bad_name.value.body
    with pytest.raises(ApiException) as no_ns:
        core.create_namespaced_config_map("no-such-namespace", cm("x"))
    assert no_ns.value.status == 404


def test_list_with_selectors_limit_and_continue(core: client.CoreV1Api, ns: str) -> None:
    for i in range(7):
        core.create_namespaced_config_map(ns, cm(f"c{i}", i=str(i)))
    labelled = core.list_namespaced_config_map(ns, label_selector="n in (c1,c2),app=t")
    assert sorted(c.metadata.name for c in labelled.items) == ["c1", "c2"]
    by_field = core.list_namespaced_config_map(ns, field_selector="metadata.name!=c0")
    assert len(by_field.items) == 6
    seen: list[str] = []
    token = None
    while True:
        page = core.list_namespaced_config_map(ns, limit=3, _continue=token)
        assert len(page.items) <= 3
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == [f"c{i}" for i in range(7)]


def test_watch_from_a_resource_version(core: client.CoreV1Api, ns: str) -> None:
    rv = core.list_namespaced_config_map(ns).metadata.resource_version

    def churn() -> None:
        # No wait for the watch to open: it starts from rv, so it sees these either way.
        core.create_namespaced_config_map(ns, cm("w"))
        core.patch_namespaced_config_map("w", ns, {"data": {"k": "v"}})
        core.delete_namespaced_config_map("w", ns)

    threading.Thread(target=churn, daemon=True).start()
    events = []
    stream = watch.Watch()
    for event in stream.stream(
        core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=10
    ):
        events.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            stream.stop()
    assert events == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def watch_lines(twin: TwinLab, url: str) -> list[dict[str, Any]]:
    """Every event line of a raw watch until the server ends it (timeoutSeconds)."""
    host = twin.api().configuration.host
    with urllib.request.urlopen(host + url, timeout=30) as resp:
        return [json.loads(line) for line in resp if line.strip()]


def test_watch_bookmarks_when_asked(twin: TwinLab, core: client.CoreV1Api, ns: str) -> None:
    rv = int(core.list_namespaced_config_map(ns).metadata.resource_version)
    other = twin.namespace()  # changes elsewhere move the bookmarks' revision on
    core.create_namespaced_config_map(other, cm("elsewhere"))
    base = f"/api/v1/namespaces/{ns}/configmaps?watch=true&resourceVersion={rv}&timeoutSeconds=4"
    events = watch_lines(twin, base + "&allowWatchBookmarks=true")
    assert events and {e["type"] for e in events} == {"BOOKMARK"}
    revisions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert revisions == sorted(revisions) and revisions[-1] > rv
    assert events[0]["object"]["kind"] == "ConfigMap"
    # Without allowWatchBookmarks, a quiet watch stays silent, as the real server's does.
    assert watch_lines(twin, base) == []


def test_patches_merge_strategic_and_json(twin: TwinLab, ns: str) -> None:
    core = client.CoreV1Api(twin.api())
    core.create_namespaced_config_map(ns, cm("p", a="1", b="2"))
    merged = core.patch_namespaced_config_map("p", ns, {"data": {"b": None, "c": "3"}})
    assert merged.data == {"a": "1", "c": "3"}
    patched = core.patch_namespaced_config_map(
        "p", ns, [{"op": "replace", "path": "/data/a", "value": "9"}]
    )
    assert patched.data["a"] == "9"
    with pytest.raises(ApiException) as failed_test:
        core.patch_namespaced_config_map("p", ns, [{"op": "test", "path": "/data/a", "value": "0"}])
    assert failed_test.value.status == 422
    # Strategic merge: containers merge by name instead of replacing the list.
    apps = client.AppsV1Api(twin.api())
    apps.create_namespaced_deployment(ns, deployment("d", replicas=0))
    apps.patch_namespaced_deployment(
        "d",
        ns,
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "side", "image": "busybox:1.36"}]}}
            }
        },
    )
    containers = apps.read_namespaced_deployment("d", ns).spec.template.spec.containers
    assert [c.name for c in containers] == ["web", "side"]


def deployment(name: str, replicas: int = 1, image: str = "nginx:1.27") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "web", "image": image, "ports": [{"containerPort": 80}]}
                    ]
                },
            },
        },
    }


def test_server_side_apply_conflicts_and_force(twin: TwinLab, ns: str) -> None:
    api = twin.api()
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ssa", "namespace": ns},
        "data": {"a": "1", "b": "2"},
    }

    core = client.CoreV1Api(api)

    def apply(doc: dict[str, Any], manager: str, force: bool = False) -> Any:
        return core.patch_namespaced_config_map(
            "ssa",
            ns,
            doc,
            field_manager=manager,
            force=force,
            _content_type="application/apply-patch+yaml",
        )

    apply(body, "one")
    # Dropping a field from one's own config removes it.
    after = apply({**body, "data": {"a": "1"}}, "one")
    assert after.data == {"a": "1"}
    with pytest.raises(ApiException) as conflict:
        apply({**body, "data": {"a": "other"}}, "two")
    assert conflict.value.status == 409 and 'conflict with \\"one\\"' in conflict.value.body
    forced = apply({**body, "data": {"a": "other"}}, "two", force=True)
    assert forced.data["a"] == "other"
    managers = {m.manager for m in forced.metadata.managed_fields}
    assert managers == {"two"}


def test_status_subresource_keeps_spec_and_status_apart(twin: TwinLab, ns: str) -> None:
    apps = client.AppsV1Api(twin.api())
    made = apps.create_namespaced_deployment(ns, deployment("s", replicas=0))
    made.status = client.V1DeploymentStatus(replicas=42)
    made.spec.replicas = 0
    apps.replace_namespaced_deployment("s", ns, made)
    assert (apps.read_namespaced_deployment("s", ns).status.replicas or 0) != 42


def test_custom_resources(twin: TwinLab, ns: str) -> None:
    api = twin.api()
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    custom = client.CustomObjectsApi(api)

    def made() -> Any:
        return custom.create_namespaced_custom_object(
            "example.com",
            "v1",
            ns,
            "widgets",
            {
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"name": "w1"},
                "spec": {"size": 3},
            },
        )

    # Every API server learns the new kind through its own watch of the CRDs.
    eventually(made, 10, "a custom object can be created")
    listed = custom.list_namespaced_custom_object("example.com", "v1", ns, "widgets")
    assert [i["spec"]["size"] for i in listed["items"]] == [3]


def test_delete_propagation(twin: TwinLab, ns: str) -> None:
    apps = client.AppsV1Api(twin.api())
    apps.create_namespaced_deployment(ns, deployment("gc", replicas=1))
    eventually(lambda: apps.list_namespaced_replica_set(ns).items, 20, "the ReplicaSet exists")
    apps.delete_namespaced_deployment("gc", ns, propagation_policy="Background")
    eventually(
        lambda: not apps.list_namespaced_replica_set(ns).items, 20, "the ReplicaSet is collected"
    )
    apps.create_namespaced_deployment(ns, deployment("orphan", replicas=0))
    eventually(lambda: apps.list_namespaced_replica_set(ns).items, 20, "the ReplicaSet exists")
    apps.delete_namespaced_deployment("orphan", ns, propagation_policy="Orphan")
    rs = eventually(
        lambda: [
            r for r in apps.list_namespaced_replica_set(ns).items if not r.metadata.owner_references
        ],
        20,
        "the ReplicaSet is orphaned, not deleted",
    )
    assert rs[0].metadata.name.startswith("orphan-")
    with pytest.raises(ApiException):
        apps.read_namespaced_deployment("orphan", ns)


def test_eviction_honours_disruption_budgets(twin: TwinLab, ns: str) -> None:
    api = twin.api()
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, deployment("pdb", replicas=2))
    client.PolicyV1Api(api).create_namespaced_pod_disruption_budget(
        ns,
        {
            "metadata": {"name": "pdb"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "pdb"}}},
        },
    )
    pods = eventually(
        lambda: (
            [
                p
                for p in core.list_namespaced_pod(ns).items
                if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            ][:2]
            if len(core.list_namespaced_pod(ns).items) == 2
            else None
        ),
        30,
        "two ready pods",
    )
    name = pods[0].metadata.name
    eviction = {"metadata": {"name": name, "namespace": ns}}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod_eviction(name, ns, eviction)
    assert refused.value.status == 429 and "disruption budget" in refused.value.body
    client.PolicyV1Api(api).delete_namespaced_pod_disruption_budget("pdb", ns)
    core.create_namespaced_pod_eviction(name, ns, eviction)


def test_pod_logs_from_a_real_process(twin: TwinLab, ns: str) -> None:
    core = client.CoreV1Api(twin.api())
    core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": "echo"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "c",
                        "image": "busybox:1.36",
                        "command": ["sh", "-c", "echo hello from $HOSTNAME; exit 3"],
                    }
                ],
            },
        },
    )
    pod = eventually(
        lambda: (p := core.read_namespaced_pod("echo", ns)).status.phase == "Failed" and p,
        30,
        "the pod ran and failed",
    )
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 3 and terminated.reason == "Error"
    assert core.read_namespaced_pod_log("echo", ns) == "hello from echo\n"


def test_method_not_allowed_and_unknown_paths(twin: TwinLab) -> None:
    import json
    import urllib.error
    import urllib.request

    vip = "http://127.77.0.100:6443"
    request = urllib.request.Request(
        f"{vip}/api/v1/namespaces/default/configmaps", method="PUT", data=b"{}"
    )
    with pytest.raises(urllib.error.HTTPError) as not_allowed:
        urllib.request.urlopen(request, timeout=5)
    assert not_allowed.value.code == 405
    assert json.loads(not_allowed.value.read())["reason"] == "MethodNotAllowed"
    with pytest.raises(urllib.error.HTTPError) as unknown:
        urllib.request.urlopen(f"{vip}/apis/nosuch.example.com/v1/things", timeout=5)
    assert unknown.value.code == 404


def test_a_deleted_namespace_terminates_refuses_content_then_goes(twin: TwinLab) -> None:
    core = client.CoreV1Api(twin.api())
    ns = twin.namespace()
    held = {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    core.create_namespaced_config_map(ns, held)
    core.create_namespaced_config_map(ns, cm("free"))
    core.delete_namespace(ns)
    assert core.read_namespace(ns).status.phase == "Terminating"
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_config_map(ns, cm("late"))
    assert refused.value.status == 403 and "being terminated" in refused.value.body
    eventually(
        lambda: [c.metadata.name for c in core.list_namespaced_config_map(ns).items] == ["held"],
        20,
        "everything without a finalizer is gone",
    )
    core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})

    def gone() -> bool:
        try:
            core.read_namespace(ns)
        except ApiException as exc:
            return exc.status == 404
        return False

    eventually(gone, 30, "the namespace goes once its last finalizer is removed")


def test_init_containers_run_first_and_share_volumes(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": "init"},
            "spec": {
                "restartPolicy": "Never",
                "volumes": [{"name": "work", "emptyDir": {}}],
                "initContainers": [
                    {
                        "name": "prepare",
                        "image": "busybox:1.36",
                        "command": ["sh", "-c", "echo prepared > /work/flag; echo init ran"],
                        "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                    }
                ],
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox:1.36",
                        "command": ["cat", "/work/flag"],
                        "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                    }
                ],
            },
        },
    )
    pod = eventually(
        lambda: (p := core.read_namespaced_pod("init", ns)).status.phase == "Succeeded" and p,
        30,
        "the pod ran its init container, then its container",
    )
    assert pod.status.init_container_statuses[0].state.terminated.exit_code == 0
    assert core.read_namespaced_pod_log("init", ns, container="main") == "prepared\n"
    assert core.read_namespaced_pod_log("init", ns, container="prepare") == "init ran\n"


def test_concurrent_patches_all_land_and_a_stale_version_is_refused(
    core: client.CoreV1Api, ns: str
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    made = core.create_namespaced_config_map(ns, cm("busy"))

    def patch(i: int) -> None:
        core.patch_namespaced_config_map("busy", ns, {"data": {f"k{i}": str(i)}})

    # Patches without a resourceVersion apply to the latest object, however many race.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(patch, range(24)))
    assert len(core.read_namespaced_config_map("busy", ns).data) == 24
    stale = {"metadata": {"resourceVersion": made.metadata.resource_version}, "data": {"x": "1"}}
    with pytest.raises(ApiException) as refused:
        core.patch_namespaced_config_map("busy", ns, stale)
    assert refused.value.status == 409
