"""Events, as controllers and kubelets record them for `kubectl describe`."""

from __future__ import annotations

import time
from typing import Any


def event_body(
    obj: dict[str, Any], reason: str, message: str, kind: str = "Normal", source: str = ""
) -> dict[str, Any]:
    """A core/v1 Event about obj (namespace `default` for a cluster-scoped object)."""
    meta = obj["metadata"]
    ns = meta.get("namespace") or "default"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": ns},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta["name"],
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": source or "halab-twin"},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "reportingComponent": source or "halab-twin",
    }
