"""The twin's API rules as functions: patches, selectors, apply ownership, protobuf,
admission defaults, taint eviction. No processes needed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from halab.twin.api import admission, protobuf
from halab.twin.api.apply import fields_of, from_fields_v1, merge_applied, to_fields_v1
from halab.twin.api.patch import json_patch, merge_patch, strategic_merge
from halab.twin.api.resources import Registry
from halab.twin.api.selectors import field_matcher, label_matcher
from halab.twin.api.status import ApiError
from halab.twin.api.tables import age, table
from halab.twin.controllers.nodelifecycle import (
    eviction_due,
    may_taint_no_execute,
    zone_key,
    zone_state,
)


def labelled(**labels: str) -> dict[str, Any]:
    return {"metadata": {"labels": labels}}


@pytest.mark.parametrize(
    ("selector", "labels", "want"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web,tier!=db", {"app": "web", "tier": "db"}, False),
        ("env in (prod, staging)", {"env": "staging"}, True),
        ("env notin (prod)", {}, True),
        ("gpu", {"gpu": "true"}, True),
        ("!gpu", {"gpu": "true"}, False),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], want: bool) -> None:
    assert label_matcher(selector)(labelled(**labels)) is want


def test_bad_selector_is_a_400() -> None:
    with pytest.raises(ApiError) as bad:
        label_matcher("a in b")
    assert bad.value.code == 400
    pod = {"spec": {"nodeName": "k3s-w1"}, "status": {"phase": "Running"}}
    assert field_matcher("spec.nodeName=k3s-w1,status.phase!=Failed")(pod)


def test_merge_patch_deletes_with_null() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None}, "e": 4}) == {
        "a": 1,
        "b": {"d": 3},
        "e": 4,
    }


def test_strategic_merge_uses_merge_keys_and_directives() -> None:
    live = {
        "containers": [
            {"name": "a", "image": "x", "env": [{"name": "K", "value": "1"}]},
            {"name": "b", "image": "y"},
        ],
        "tolerations": [{"key": "t"}],
        "finalizers": ["f1"],
    }
    patch = {
        "containers": [
            {"name": "a", "env": [{"name": "J", "value": "2"}]},
            {"name": "b", "$patch": "delete"},
        ],
        "tolerations": [{"key": "u"}],  # no merge key: the list is replaced
        "finalizers": ["f2"],  # merged as a set
        "$setElementOrder/containers": [{"name": "a"}],
    }
    out = strategic_merge(live, patch)
    assert out["containers"] == [
        {
            "name": "a",
            "image": "x",
            "env": [{"name": "K", "value": "1"}, {"name": "J", "value": "2"}],
        }
    ]
    assert out["tolerations"] == [{"key": "u"}] and out["finalizers"] == ["f1", "f2"]


def test_json_patch_operations_and_failures() -> None:
    doc = {"a": [1, 2], "b": {"c": 1}}
    ops = [
        {"op": "add", "path": "/a/-", "value": 3},
        {"op": "move", "from": "/b/c", "path": "/d"},
        {"op": "test", "path": "/d", "value": 1},
        {"op": "replace", "path": "/a/0", "value": 0},
    ]
    assert json_patch(doc, ops) == {"a": [0, 2, 3], "b": {}, "d": 1}
    assert doc == {"a": [1, 2], "b": {"c": 1}}  # the input is left alone
    with pytest.raises(ApiError) as failed:
        json_patch(doc, [{"op": "remove", "path": "/nope"}])
    assert failed.value.code == 422


def test_apply_field_sets_round_trip_and_conflict() -> None:
    applied = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"x": "1"}},
        "data": {"a": "1"},
    }
    paths = fields_of(applied)
    assert ("f:data", "f:a") in paths and ("f:metadata", "f:labels", "f:x") in paths
    assert ("f:metadata", "f:name") not in paths
    assert from_fields_v1(to_fields_v1(paths)) == paths
    live = merge_applied({"metadata": {"name": "c"}}, applied, "one", force=False)
    with pytest.raises(ApiError) as conflict:
        merge_applied(live, {**applied, "data": {"a": "2"}}, "two", force=False)
    assert conflict.value.code == 409 and "one" in conflict.value.message
    # The same value is shared ownership, not a conflict.
    shared = merge_applied(live, applied, "two", force=False)
    assert {m["manager"] for m in shared["metadata"]["managedFields"]} == {"one", "two"}


def test_keyed_list_items_are_owned_by_key() -> None:
    pod = {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}
    assert ("f:spec", "f:containers", 'k:{"name":"web"}', "f:image") in fields_of(pod)


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_protobuf_eviction_as_kubectl_drain_sends_it() -> None:
    meta = _field(1, b"web-1") + _field(3, b"default")
    options = _varint(1 << 3) + _varint(30)  # gracePeriodSeconds = 30
    eviction = _field(1, meta) + _field(2, options)
    type_meta = _field(1, b"policy/v1") + _field(2, b"Eviction")
    body = protobuf.MAGIC + _field(1, type_meta) + _field(2, eviction)
    doc = protobuf.decode(body)
    assert doc["metadata"] == {"name": "web-1", "namespace": "default"}
    assert doc["deleteOptions"] == {"gracePeriodSeconds": 30}
    other = protobuf.MAGIC + _field(1, _field(1, b"v1") + _field(2, b"ConfigMap"))
    with pytest.raises(ApiError) as unknown:
        protobuf.decode(other)
    assert unknown.value.code == 415 and "JSON" in unknown.value.message


def test_pod_admission_defaults_and_toleration_seconds() -> None:
    res = Registry.builtin().find("", "v1", "pods")
    assert res is not None
    pod = admission.admit_create(
        res,
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        "default",
        admission.Tolerations(not_ready_s=30, unreachable_s=20),
    )
    assert pod["spec"]["restartPolicy"] == "Always"
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Always"  # no tag means latest
    seconds = {t["key"]: t["tolerationSeconds"] for t in pod["spec"]["tolerations"]}
    assert seconds == {"node.kubernetes.io/not-ready": 30, "node.kubernetes.io/unreachable": 20}
    with pytest.raises(ApiError) as bad:
        admission.admit_create(
            res, {"metadata": {"name": "q"}, "spec": {}}, "default", admission.Tolerations()
        )
    assert (
        bad.value.code == 422
        and bad.value.details
        and bad.value.details["causes"][0]["field"] == "spec.containers"
    )


def test_taint_eviction_waits_for_toleration_seconds() -> None:
    taint = {
        "key": "node.kubernetes.io/unreachable",
        "effect": "NoExecute",
        "timeAdded": "2026-01-01T00:00:00Z",
    }
    added = 1767225600.0
    tolerating = {
        "spec": {
            "tolerations": [
                {
                    "key": taint["key"],
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 30,
                }
            ]
        }
    }
    assert not eviction_due(tolerating, [taint], added + 29)
    assert eviction_due(tolerating, [taint], added + 30)
    forever = {"spec": {"tolerations": [{"operator": "Exists"}]}}
    assert not eviction_due(forever, [taint], added + 10_000)
    assert eviction_due({"spec": {}}, [taint], added)


def test_tables_and_ages() -> None:
    assert age("2026-01-01T00:00:00Z", datetime(2026, 1, 1, 0, 1, 5, tzinfo=UTC)) == "65s"
    assert age("2026-01-01T00:00:00Z", datetime(2026, 1, 1, 5, 30, 0, tzinfo=UTC)) == "5h30m"
    doc = table(
        "Node",
        [
            {
                "metadata": {"name": "n"},
                "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]},
                "spec": {"unschedulable": True},
            }
        ],
        {},
    )
    assert doc["rows"][0]["cells"][1] == "NotReady,SchedulingDisabled"


@pytest.mark.parametrize(
    ("ready", "not_ready", "state"),
    [
        (6, 0, "Normal"),
        (3, 3, "Normal"),  # half of six is under the 0.55 threshold
        (2, 4, "PartialDisruption"),
        (1, 2, "Normal"),  # two not-ready nodes are never a partial disruption
        (0, 2, "FullDisruption"),
    ],
)
def test_zone_states_as_the_node_lifecycle_controller_judges(
    ready: int, not_ready: int, state: str
) -> None:
    assert zone_state(ready, not_ready) == state


def test_no_execute_taints_stop_in_a_disrupted_small_zone_and_everywhere_down() -> None:
    assert may_taint_no_execute("Normal", 6, everywhere_full=False)
    assert not may_taint_no_execute("PartialDisruption", 6, everywhere_full=False)
    assert may_taint_no_execute("PartialDisruption", 80, everywhere_full=False)
    assert may_taint_no_execute("FullDisruption", 6, everywhere_full=False)  # one zone of many
    assert not may_taint_no_execute("FullDisruption", 6, everywhere_full=True)


def test_zones_come_from_the_topology_labels() -> None:
    assert zone_key({"metadata": {"labels": {}}}) == ""
    zoned = {"metadata": {"labels": {"topology.kubernetes.io/zone": "shelf-1"}}}
    assert zone_key(zoned) == ":\x00:shelf-1"
