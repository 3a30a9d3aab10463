"""What an experiment watches while it lasts: probes sampled in threads of their own, at
half a second by default, each sample kept (time, lane, ok, what was seen, and the facts
the timeline reads).

A probe is a function returning samples for one or more lanes: the API through the VIP,
each node's Ready condition and taints, each followed app's pods, Sonarr's HTTP API
through its Service, SeaweedFS read and write of probe files. A probe that cannot ask
(the API is down, so nodes cannot be listed) returns nothing: a gap, never a guess.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from halab.explain import explain


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    lane: str
    ok: bool
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)


ProbeFn = Callable[[], list[Sample]]


def _now() -> float:
    return time.monotonic()


def one(lane: str, call: Callable[[], str]) -> ProbeFn:
    """A probe of one lane: ok when `call` returns (its text is the detail), down with
    the error's words when it raises."""

    def probe() -> list[Sample]:
        try:
            return [Sample(_now(), lane, True, call())]
        except Exception as exc:  # a failed probe is a sample, not an error
            return [Sample(_now(), lane, False, explain(exc)[:200])]

    return probe


def api_probe(api: Any) -> ProbeFn:
    from kubernetes import client

    version = client.VersionApi(api)
    return one("API via VIP", lambda: str(version.get_code(_request_timeout=1.5).git_version))


def api_read_probe(api: Any) -> ProbeFn:
    """A read of the API (one namespace listed), which etcd must answer: what the plan's
    "read-only mode" would keep working while the control plane has no quorum."""
    from kubernetes import client

    core = client.CoreV1Api(api)

    def read() -> str:
        listed = core.list_namespace(limit=1, _request_timeout=1.5)
        return f"read answered (resourceVersion {listed.metadata.resource_version})"

    return one("API read", read)


def nodes_probe(api: Any, names: list[str]) -> ProbeFn:
    """Per node: fine when Ready and schedulable; its taints kept (a gap while the API
    does not answer)."""
    from kubernetes import client

    core = client.CoreV1Api(api)

    def probe() -> list[Sample]:
        try:
            nodes = {n.metadata.name: n for n in core.list_node(_request_timeout=1.5).items}
        except Exception:  # the API lane shows why
            return []
        at = _now()
        out = []
        for name in names:
            node = nodes.get(name)
            if node is None:
                out.append(Sample(at, f"node {name}", False, "not registered"))
                continue
            ready = next(
                (c.status for c in node.status.conditions or [] if c.type == "Ready"), "Unknown"
            )
            taints = [f"{t.key}:{t.effect}" for t in node.spec.taints or []]
            cordoned = bool(node.spec.unschedulable)
            detail = "Ready" if ready == "True" else f"Ready={ready}"
            if cordoned:
                detail += ", cordoned"
            out.append(
                Sample(
                    at,
                    f"node {name}",
                    ready == "True" and not cordoned,
                    detail + (f" ({', '.join(taints)})" if taints else ""),
                    {"ready": ready, "taints": taints, "cordoned": cordoned},
                )
            )
        return out

    return probe


def pods_probe(api: Any, app: str, namespace: str) -> ProbeFn:
    """An app's pods: ok while one is Ready; the facts list every pod (name, uid, node,
    phase, ready, deleting), so the timeline sees evictions and replacements."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    selector = f"app.kubernetes.io/name={app}"

    def probe() -> list[Sample]:
        try:
            found = core.list_namespaced_pod(
                namespace, label_selector=selector, _request_timeout=1.5
            ).items
        except Exception:
            return []
        pods = [
            {
                "name": p.metadata.name,
                "uid": p.metadata.uid,
                "node": p.spec.node_name or "",
                "phase": p.status.phase,
                "ready": any(
                    c.type == "Ready" and c.status == "True" for c in p.status.conditions or []
                ),
                "deleting": p.metadata.deletion_timestamp is not None,
            }
            for p in found
        ]
        ok = any(p["ready"] and not p["deleting"] for p in pods)
        detail = "; ".join(
            f"{p['name']}: {'Terminating' if p['deleting'] else p['phase']}"
            f"{' Ready' if p['ready'] else ''} on {p['node'] or '(unscheduled)'}"
            for p in pods
        )
        return [Sample(_now(), f"pod {app}", ok, detail or "no pod", {"pods": pods})]

    return probe


def attachment_probe(api: Any, app: str, namespace: str) -> ProbeFn:
    """Where the app's claims are attached (VolumeAttachments of their PVs): ok while each
    is attached; the facts name the node, so the timeline sees a volume move."""
    from kubernetes import client

    core, storage = client.CoreV1Api(api), client.StorageV1Api(api)
    selector = f"app.kubernetes.io/name={app}"
    pvs: dict[str, str] = {}  # claim -> PV, found once bound

    def probe() -> list[Sample]:
        try:
            if not pvs:
                for pod in core.list_namespaced_pod(
                    namespace, label_selector=selector, _request_timeout=1.5
                ).items:
                    for vol in pod.spec.volumes or []:
                        claim = vol.persistent_volume_claim
                        if claim is None or claim.claim_name in pvs:
                            continue
                        pvc = core.read_namespaced_persistent_volume_claim(
                            claim.claim_name, namespace, _request_timeout=1.5
                        )
                        if pvc.spec.volume_name:
                            pvs[claim.claim_name] = pvc.spec.volume_name
            attachments = storage.list_volume_attachment(_request_timeout=1.5).items
        except Exception:
            return []
        by_pv = {a.spec.source.persistent_volume_name: a for a in attachments}
        at = _now()
        out = []
        for claim, pv in sorted(pvs.items()):
            va = by_pv.get(pv)
            if va is None:  # NFS and other unattached claims have none at all
                continue
            attached = bool(va.status and va.status.attached)
            node = va.spec.node_name
            detail = f"{claim}: {'attached to' if attached else 'attaching to'} {node}"
            if va.metadata.deletion_timestamp is not None:
                detail += " (detaching)"
            out.append(
                Sample(at, f"volume {claim}", attached and va.metadata.deletion_timestamp is None,
                       detail, {"node": node, "attached": attached, "claim": claim})
            )  # fmt: skip
        return out

    return probe


@dataclass
class FileSet:
    """Probe files written through SeaweedFS before a fault, with their checksums."""

    directory: str
    sums: dict[str, str] = field(default_factory=dict)  # path -> sha256


def write_file_set(sw: Any, experiment: str, count: int = 4, size: int = 64 * 1024) -> FileSet:
    import os

    files = FileSet(f"/halab-experiments/{experiment}-{uuid.uuid4().hex[:6]}")
    for i in range(count):
        data = os.urandom(size)
        path = f"{files.directory}/probe-{i}.bin"
        sw.put(path, data)
        files.sums[path] = hashlib.sha256(data).hexdigest()
    return files


def read_any(sw: Any, path: str, filers: list[str]) -> bytes:
    """The file through the first filer that gives it."""
    errors = []
    for filer in filers:
        try:
            return bytes(sw.get(path, filer=filer))
        except Exception as exc:
            errors.append(f"{filer}: {explain(exc)[:120]}")
    raise RuntimeError("; ".join(errors) or "no filer")


def seaweed_read_probe(sw: Any, files: FileSet) -> ProbeFn:
    """One of the probe files in turn, read through any filer, its checksum compared."""
    paths = sorted(files.sums)
    turn = [0]

    def read() -> str:
        path = paths[turn[0] % len(paths)]
        turn[0] += 1
        got = hashlib.sha256(read_any(sw, path, sw.filers)).hexdigest()
        if got != files.sums[path]:
            raise RuntimeError(f"{path} read back with another checksum ({got[:12]})")
        return f"{path.rsplit('/', 1)[-1]} read with its checksum"

    return one("SeaweedFS read", read)


def seaweed_write_probe(sw: Any, files: FileSet) -> ProbeFn:
    """A small new file through the first filer that takes it (as a client of the filers'
    Service would), then deleted again."""
    count = [0]

    def write() -> str:
        count[0] += 1
        path = f"{files.directory}/write-{count[0]}.txt"
        errors = []
        for filer in sw.filers:
            try:
                sw.put(path, f"sample {count[0]}\n".encode(), filer=filer)
            except Exception as exc:
                errors.append(f"{filer}: {explain(exc)[:120]}")
                continue
            sw.delete(path, filer=filer)
            return f"wrote and deleted {path.rsplit('/', 1)[-1]} through {filer}"
        raise RuntimeError("; ".join(errors) or "no filer")

    return one("SeaweedFS write", write)


def nfs_read_probe(endpoint: Any, export: str, source: str, lane: str) -> ProbeFn:
    """The export listed and a file read, as a client from `source` (halab.nfs)."""
    from halab.nfs import probe

    def read() -> str:
        got = probe(endpoint, export, source, timeout=1.5)
        if not got.ok:
            raise RuntimeError(got.error or "not readable")
        return f"{export}: {got.listed} entries, read from {source}"

    return one(lane, read)


class Repeated:
    """A probe whose question takes longer than a sampling period (a ClusterPlex job keeps
    its worker 5 s): asked back to back in a thread of its own, and sampled each period
    with how the last one ended; down once the one in flight is `late_s` old unanswered.
    Its first sample waits for its first answer (at most `late_s`), so the lane is known
    from the first round like any other."""

    def __init__(
        self, lane: str, call: Callable[[], str], late_s: float, every: float = 0.5
    ) -> None:
        self.lane = lane
        self.call = call
        self.late_s = late_s
        self.every = every  # at most one question a period: a refusal comes back at once
        self._lock = threading.Lock()
        self._last: tuple[bool, str] | None = None
        self._asked_at: float | None = None  # when the question in flight was asked
        self._answered = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _ask(self) -> None:
        while not self._stop.is_set():
            asked = _now()
            with self._lock:
                self._asked_at = asked
            try:
                said = (True, self.call())
            except Exception as exc:  # a failed question is a sample, not an error
                said = (False, explain(exc)[:200])
            with self._lock:
                self._last, self._asked_at = said, None
            self._answered.set()
            self._stop.wait(max(0.0, self.every - (_now() - asked)))

    def __call__(self) -> list[Sample]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._ask, daemon=True)
            self._thread.start()
            self._answered.wait(self.late_s)
        at = _now()
        with self._lock:
            last = self._last
            waiting = 0.0 if self._asked_at is None else at - self._asked_at
        if waiting > self.late_s:
            said = f"asked {waiting:.0f} s ago, no answer yet"
            return [Sample(at, self.lane, False, said, {"waiting s": round(waiting, 1)})]
        if last is None:
            return []
        ok, detail = last
        return [Sample(at, self.lane, ok, detail, {"waiting s": round(waiting, 1)})]

    def stop(self) -> None:
        """No question asked after the one in flight (which ends by its own timeout)."""
        self._stop.set()


class Watch:
    """Every probe in its own thread, sampling until stopped; each sample kept."""

    def __init__(self, probes: list[ProbeFn], every: float = 0.5) -> None:
        self.probes = probes
        self.every = every
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._asked = threading.Semaphore(0)  # released once per probe's first round

    def _loop(self, probe: ProbeFn) -> None:
        first = True
        while not self._stop.is_set():
            started = _now()
            got = probe()
            with self._lock:
                self.samples.extend(got)
            if first:
                first = False
                self._asked.release()
            self._stop.wait(max(0.0, self.every - (_now() - started)))

    def wait_first_round(self, timeout: float) -> bool:
        """Until every probe has asked once (answered or not), so the lanes it gives are
        known; False when one is still asking after `timeout`."""
        deadline = _now() + timeout
        return all(self._asked.acquire(timeout=max(0.0, deadline - _now())) for _ in self.probes)

    def start(self) -> Watch:
        for probe in self.probes:
            thread = threading.Thread(target=self._loop, args=(probe,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for probe in self.probes:
            if isinstance(probe, Repeated):
                probe.stop()
        for thread in self._threads:
            thread.join(5)

    def latest(self) -> dict[str, Sample]:
        with self._lock:
            seen: dict[str, Sample] = {}
            for s in self.samples:
                seen[s.lane] = s
            return seen

    def since(self, at: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if s.at >= at]

    def frame(self, origin: float) -> pd.DataFrame:
        with self._lock:
            rows = [
                {"seconds": round(s.at - origin, 3), "lane": s.lane, "ok": s.ok, "detail": s.detail}
                for s in sorted(self.samples, key=lambda s: s.at)
            ]
        return pd.DataFrame(rows, columns=["seconds", "lane", "ok", "detail"])
