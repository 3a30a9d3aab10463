"""Kubernetes' protobuf envelope, decoded for the few kinds kubectl sends that way.

kubectl's typed clients post protobuf (`kubectl create namespace`, the evictions of
`kubectl drain`) and do not fall back to JSON on a 415. The twin has no generated
schemas, so it decodes these messages from their field numbers in k8s.io/api's
generated.proto; any other kind gets a 415 that says to send JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from halab.twin.api.status import ApiError

MAGIC = b"k8s\x00"
Fields = dict[int, list[Any]]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> Fields:
    """Wire-format fields by number: varints as int, length-delimited as bytes."""
    out: Fields = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def _str(f: Fields, n: int) -> str | None:
    return f[n][-1].decode() if n in f else None


def _strs(f: Fields, n: int) -> list[str]:
    return [v.decode() for v in f.get(n, [])]


def _map(f: Fields, n: int) -> dict[str, str]:
    out = {}
    for entry in f.get(n, []):
        kv = fields(entry)
        out[_str(kv, 1) or ""] = _str(kv, 2) or ""
    return out


def object_meta(data: bytes) -> dict[str, Any]:
    f = fields(data)
    meta: dict[str, Any] = {}
    for n, key in (
        (1, "name"),
        (2, "generateName"),
        (3, "namespace"),
        (5, "uid"),
        (6, "resourceVersion"),
    ):
        value = _str(f, n)
        if value:
            meta[key] = value
    if 11 in f:
        meta["labels"] = _map(f, 11)
    if 12 in f:
        meta["annotations"] = _map(f, 12)
    if 14 in f:
        meta["finalizers"] = _strs(f, 14)
    return meta


def delete_options(data: bytes) -> dict[str, Any]:
    f = fields(data)
    opts: dict[str, Any] = {}
    if 1 in f:
        value = f[1][-1]
        opts["gracePeriodSeconds"] = value - (1 << 64) if value >= 1 << 63 else value
    if 2 in f:
        pre = fields(f[2][-1])
        opts["preconditions"] = {
            k: v for k, v in (("uid", _str(pre, 1)), ("resourceVersion", _str(pre, 2))) if v
        }
    if 3 in f:
        opts["orphanDependents"] = bool(f[3][-1])
    if 4 in f:
        opts["propagationPolicy"] = _str(f, 4)
    if 5 in f:
        opts["dryRun"] = _strs(f, 5)
    return opts


def _namespace(f: Fields) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": object_meta(f[1][-1]) if 1 in f else {}}
    if 2 in f:
        obj["spec"] = {"finalizers": _strs(fields(f[2][-1]), 1)}
    return obj


def _eviction(f: Fields) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": object_meta(f[1][-1]) if 1 in f else {}}
    if 2 in f:
        obj["deleteOptions"] = delete_options(f[2][-1])
    return obj


DECODERS: dict[tuple[str, str], Callable[[Fields], dict[str, Any]]] = {
    ("v1", "Namespace"): _namespace,
    ("policy/v1", "Eviction"): _eviction,
    ("policy/v1beta1", "Eviction"): _eviction,
    ("v1", "DeleteOptions"): lambda f: {},
}


def decode(body: bytes) -> dict[str, Any]:
    if not body.startswith(MAGIC):
        raise ApiError(400, "a protobuf body must start with the k8s envelope")
    try:
        unknown = fields(body[len(MAGIC) :])
        type_meta = fields(unknown[1][-1]) if 1 in unknown else {}
        api_version, kind = _str(type_meta, 1) or "", _str(type_meta, 2) or ""
        raw = unknown[2][-1] if 2 in unknown else b""
    except (ValueError, KeyError, IndexError) as exc:
        raise ApiError(400, f"the protobuf body cannot be read: {exc}") from None
    decoder = DECODERS.get((api_version, kind))
    if decoder is None:
        raise ApiError(
            415,
            f"the twin's API server reads {api_version}/{kind} as JSON only; send "
            "application/json (for kubectl: `kubectl apply -f` or `kubectl create -f`)",
        )
    try:
        obj = decoder(fields(raw))
    except (ValueError, KeyError, IndexError) as exc:
        raise ApiError(400, f"the protobuf {kind} cannot be read: {exc}") from None
    return {"apiVersion": api_version, "kind": kind, **obj}
