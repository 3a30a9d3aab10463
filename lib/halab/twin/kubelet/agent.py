"""A kubelet for one twin node: registers the Node, renews its Lease, runs the pods bound
to it and reports their status as a kubelet does (phase, conditions, restarts, exit codes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from halab.inventory.model import Node as InventoryNode
from halab.twin.api.admission import now
from halab.twin.client import Client, ClientError, Informer, path
from halab.twin.controllers.leader import micro_time
from halab.twin.devices import device_nodes
from halab.twin.dns import dns_address, resolv_conf
from halab.twin.events import event_body
from halab.twin.guests import kill_sandboxes
from halab.twin.images import intel_gpu_plugin
from halab.twin.images.catalogue import program_for
from halab.twin.kubelet import runtime
from halab.twin.kubelet.csi import CsiNode, MountPending
from halab.twin.kubelet.nfs import NfsMounts
from halab.twin.kubelet.node import conditions, node_object
from halab.twin.kubelet.probes import probe_ok
from halab.twin.kubelet.volumes import volume_dirs

log = logging.getLogger("halab.twin.kubelet")


@dataclass
class PodState:
    uid: str
    ip: str
    containers: dict[str, runtime.Running] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    ready: dict[str, bool] = field(default_factory=dict)
    started: str = ""
    task: asyncio.Task[None] | None = None
    stopping: bool = False
    poked: asyncio.Event = field(default_factory=asyncio.Event)  # the pod object changed
    next_probe: dict[str, float] = field(default_factory=dict)  # container -> when
    # Startup probes: container -> when next, failures so far; in `up` once one succeeded.
    next_startup: dict[str, float] = field(default_factory=dict)
    startup_failures: dict[str, int] = field(default_factory=dict)
    up: set[str] = field(default_factory=set)
    init: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (exit, restarts)
    device_plugins: dict[str, int] = field(default_factory=dict)  # container -> GPU slots
    images: dict[str, str] = field(default_factory=dict)  # container -> image
    namespace: str = ""


class Kubelet:
    def __init__(
        self,
        client: Client,
        node: InventoryNode,
        address: IPv4Address,
        k3s_version: str,
        gpu_resource: str | None,
        data_dir: Path,
        host_root: Path,
        twin_root: Path,
        heartbeat: float,
        pod_octet: int = 42,
        nfs_map: Callable[[str], str | None] | None = None,
    ) -> None:
        self.client = client
        self.node = node
        self.name = node.name
        self.address = address
        self.k3s_version = k3s_version
        self.gpu_resource = gpu_resource
        self.data_dir = data_dir
        self.host_root = host_root
        self.twin_root = twin_root
        self.heartbeat = heartbeat
        self.pod_octet = pod_octet
        self.nameserver = dns_address(pod_octet)
        self.pods: dict[str, PodState] = {}
        self.informer = Informer(
            client, path("v1", "pods"), {"fieldSelector": f"spec.nodeName={node.name}"}
        )
        self._wake = asyncio.Event()
        self._devices_changed = asyncio.Event()
        # Pod addresses go round the node's range as CNI's host-local IPAM does, from the
        # last one handed out (kept on the node's disk): a node that reboots does not give
        # its new pods the addresses its old ones had, which peers may still have cached.
        self._ipam = data_dir / "ipam-last-reserved"
        self._next_ip = self._last_reserved() + 1
        self._tasks: set[asyncio.Task[None]] = set()
        self.csi = CsiNode(client, node.name, self.nameserver)
        self.nfs = NfsMounts(str(address), nfs_map) if nfs_map is not None else None

    # -- node -----------------------------------------------------------------------------

    async def register(self) -> None:
        body = node_object(self.node, self.address, self.k3s_version)
        url = path("v1", "nodes", None, self.name)
        while True:
            try:
                try:
                    current = await self.client.get(url)
                except ClientError as exc:
                    if exc.status != 404:
                        raise
                    await self.client.create(path("v1", "nodes"), body)
                    return
                # Re-registration after a restart: refresh what the kubelet owns, keep the
                # rest (labels set through the API, cordon, taints added by controllers).
                status = body["status"]
                current["status"] = {**current.get("status", {}), **status}
                await self.client.update(url + "/status", current)
                return
            except ClientError as exc:
                log.debug("%s: registration failed, retrying: %s", self.name, exc)
                await asyncio.sleep(0.5)

    async def heartbeat_loop(self) -> None:
        lease_url = path("coordination.k8s.io/v1", "leases", "kube-node-lease", self.name)
        last_status = 0.0
        failing = False
        while True:
            try:
                await self._renew(lease_url)
                if time.monotonic() - last_status > self.heartbeat * 4 or await self._not_ready():
                    await self._post_ready()
                    last_status = time.monotonic()
                if failing:
                    log.info("%s: heartbeats go through again", self.name)
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever went wrong, a kubelet keeps heartbeating
                if not failing:
                    log.warning("%s: heartbeat failed, retrying: %s", self.name, exc)
                failing = True
            await asyncio.sleep(self.heartbeat)

    async def _renew(self, url: str) -> None:
        duration = max(int(self.heartbeat * 4), 1)
        try:
            lease = await self.client.get(url)
        except ClientError as exc:
            if exc.status != 404:
                raise
            node = await self.client.get(path("v1", "nodes", None, self.name))
            await self.client.create(
                path("coordination.k8s.io/v1", "leases", "kube-node-lease"),
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": self.name,
                        "namespace": "kube-node-lease",
                        "ownerReferences": [
                            {
                                "apiVersion": "v1",
                                "kind": "Node",
                                "name": self.name,
                                "uid": node["metadata"]["uid"],
                            }
                        ],
                    },
                    "spec": {
                        "holderIdentity": self.name,
                        "leaseDurationSeconds": duration,
                        "renewTime": micro_time(),
                    },
                },
            )
            return
        lease["spec"]["renewTime"] = micro_time()
        lease["spec"]["holderIdentity"] = self.name
        await self.client.update(url, lease)

    async def _not_ready(self) -> bool:
        node = await self.client.get(path("v1", "nodes", None, self.name))
        ready = [c for c in node.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
        return not ready or ready[0].get("status") != "True"

    async def _post_ready(self) -> None:
        url = path("v1", "nodes", None, self.name, "status")
        node = await self.client.get(path("v1", "nodes", None, self.name))
        node.setdefault("status", {})["conditions"] = conditions(True)
        await self.client.update(url, node)

    # -- device plugins -------------------------------------------------------------------

    def _gpu_slots(self) -> int:
        """The slots the GPU plugin offers while one of its containers runs here."""
        return max(
            (
                slots
                for state in self.pods.values()
                for name, slots in state.device_plugins.items()
                if name in state.containers and not state.containers[name].done.is_set()
            ),
            default=0,
        )

    def running(self, image: Callable[[str], bool]) -> list[str]:
        """The namespaces of this node's pods with a running container of such an image."""
        return [
            state.namespace
            for state in list(self.pods.values())
            for name, running in state.containers.items()
            if not running.done.is_set() and image(state.images.get(name, ""))
        ]

    async def _device_plugin_loop(self) -> None:
        """Advertise the GPU while the plugin runs, as its registration with the kubelet
        does; when it stops, allocatable drops to 0 and capacity keeps the devices (the
        kubelet's device manager marks them unhealthy). Only on a node the inventory gives
        a GPU: elsewhere the real plugin finds no card and advertises nothing."""
        if self.gpu_resource is None or self.node.gpu is None:
            return
        advertised: int | None = None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._devices_changed.wait(), 0.5)
            self._devices_changed.clear()
            slots = self._gpu_slots()
            if advertised is None and slots == 0:
                continue
            if slots == advertised:
                continue
            try:
                await self._advertise(self.gpu_resource, slots)
                advertised = slots
                log.info("%s: %s allocatable %d", self.name, self.gpu_resource, slots)
            except ClientError as exc:
                log.debug(
                    "%s: advertising %s failed, retrying: %s", self.name, self.gpu_resource, exc
                )

    async def _advertise(self, resource: str, slots: int) -> None:
        node = await self.client.get(path("v1", "nodes", None, self.name))
        status = node.setdefault("status", {})
        capacity = status.setdefault("capacity", {})
        if slots:
            capacity[resource] = str(slots)
        status.setdefault("allocatable", {})[resource] = str(slots)
        await self.client.update(path("v1", "nodes", None, self.name, "status"), node)

    # -- pods -----------------------------------------------------------------------------

    async def run(self) -> None:
        # A machine that boots has no processes of its last life: a pod whose sandbox
        # outlived a host killed mid-start (parent gone before bubblewrap armed
        # --die-with-parent) goes now, before this life starts its own.
        await asyncio.to_thread(kill_sandboxes, [(self.data_dir / "pods").resolve()])
        await self.register()
        self.informer.handlers.append(self._on_pod_event)
        tasks = [
            asyncio.create_task(self.heartbeat_loop()),
            asyncio.create_task(self.informer.run()),
            asyncio.create_task(self._device_plugin_loop()),
        ]
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                self._sync()
                await asyncio.sleep(0.02)
        finally:
            for task in tasks:
                task.cancel()
            for state in self.pods.values():
                for running in state.containers.values():
                    await running.stop(0)
            await self.csi.release_all()
            if self.nfs is not None:
                await self.nfs.release_all()

    def _sync(self) -> None:
        wanted = {p["metadata"]["uid"]: p for p in self.informer.values()}
        self._background(self.csi.observe(list(wanted.values())))
        for uid, pod in wanted.items():
            state = self.pods.get(uid)
            if state is None and pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                if pod["metadata"].get("deletionTimestamp"):
                    self._background(self._finish_delete(pod))
                continue
            if state is None:
                state = PodState(uid, self._pod_ip(pod))
                self.pods[uid] = state
                state.task = asyncio.create_task(
                    self._run_pod(state, pod["metadata"]["namespace"], pod["metadata"]["name"])
                )
        for uid in set(self.pods) - set(wanted):
            # Deleted without us (a force delete): stop what runs.
            state = self.pods.pop(uid)
            if state.task:
                state.task.cancel()

    def _on_pod_event(self, _kind: str, obj: dict[str, Any]) -> None:
        self._wake.set()
        state = self.pods.get(obj.get("metadata", {}).get("uid", ""))
        if state is not None:
            state.poked.set()

    @staticmethod
    async def _nap(state: PodState, seconds: float) -> None:
        """Sleep until the pod object changes, or `seconds` pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.poked.wait(), seconds)
        state.poked.clear()

    @staticmethod
    def _poll_interval(pod: dict[str, Any]) -> float:
        # Processes can exit and probes need running: look often. A placeholder without
        # probes changes only when its pod object does, which wakes us anyway.
        containers = pod["spec"].get("containers") or []
        busy = any(program_for(c).kind == "process" or c.get("readinessProbe") for c in containers)
        return 0.2 if busy else 5.0

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        # Keep a reference: the event loop holds tasks only weakly.
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _pod_ip(self, pod: dict[str, Any]) -> str:
        if pod["spec"].get("hostNetwork"):
            return str(self.address)
        known = pod.get("status", {}).get("podIP")
        if known:
            return str(known)
        used = {s.ip for s in self.pods.values()}
        octet = int(self.address) & 0xFF
        while True:
            if self._next_ip > 254:
                self._next_ip = 2
            ip = f"127.{self.pod_octet}.{octet}.{self._next_ip}"
            self._next_ip += 1
            if ip not in used:
                self._ipam.parent.mkdir(parents=True, exist_ok=True)
                self._ipam.write_text(f"{self._next_ip - 1}\n")
                return ip

    def _last_reserved(self) -> int:
        try:
            return max(1, min(254, int(self._ipam.read_text().strip())))
        except (OSError, ValueError):
            return 1

    def _current(self, ns: str, name: str) -> dict[str, Any] | None:
        return self.informer.items.get((ns, name))

    async def _run_pod(self, state: PodState, ns: str, name: str) -> None:
        pod_dir = self.data_dir / "pods" / state.uid
        try:
            pod = self._current(ns, name)
            if pod is None:
                return
            state.started = now()
            volumes = await self._wait_volumes(pod, pod_dir, ns, name)
            if volumes is None:
                return
            if not await self._init_containers(state, pod, volumes, pod_dir, ns, name):
                return
            for c in pod["spec"]["containers"]:
                state.restarts[c["name"]] = self._previous_restarts(pod, c["name"])
                await self._start(state, pod, c, volumes, pod_dir)
            await self._report(state, ns, name)
            while True:
                pod = self._current(ns, name)
                if pod is None:  # force-deleted: nothing waits for a graceful stop
                    await asyncio.gather(*(r.stop(0) for r in state.containers.values()))
                    return
                if pod["metadata"].get("deletionTimestamp"):
                    await self._terminate(state, pod)
                    return
                changed = await self._tend(state, pod, volumes, pod_dir)
                if changed:
                    await self._report(state, ns, name)
                if self._all_done(state, pod):
                    await self._report(state, ns, name)
                    # A finished pod's volumes are torn down; its record stays.
                    await self._release_volumes(state.uid)
                    # Keep the record until the pod is deleted.
                    while self._current(ns, name) is not None and not (
                        self._current(ns, name) or {}
                    ).get("metadata", {}).get("deletionTimestamp"):
                        await self._nap(state, 5.0)
                    pod = self._current(ns, name)
                    if pod is not None:
                        await self._finish_delete(pod)
                    return
                await self._nap(state, self._poll_interval(pod))
        except asyncio.CancelledError:
            for running in state.containers.values():
                await running.stop(0)
            raise
        except Exception as exc:
            log.warning("%s: pod %s/%s: %s", self.name, ns, name, exc)
            for running in state.containers.values():  # a failed pod leaves nothing running
                await running.stop(0)
            with contextlib.suppress(Exception):
                await self._report_error(ns, name, str(exc))
        finally:
            await self._release_volumes(state.uid)  # they unmount when its containers end
            if not state.stopping:
                self.pods.pop(state.uid, None)

    async def _init_containers(
        self,
        state: PodState,
        pod: dict[str, Any],
        volumes: dict[str, Path],
        pod_dir: Path,
        ns: str,
        name: str,
    ) -> bool:
        """Run the init containers in order, each to success; False when the pod failed.

        A plain image runs its command; any other image has nothing to run here and
        completes at once (its log says so)."""
        policy = pod["spec"].get("restartPolicy", "Always")
        for c in pod["spec"].get("initContainers") or []:
            attempts = 0
            while True:
                log_path = pod_dir / "logs" / f"{c['name']}.log"
                if program_for(c).kind != "process":
                    log_path.parent.mkdir(parents=True, exist_ok=True)
                    log_path.write_text(
                        f"halab twin: init container {c.get('image')} has nothing to run here\n"
                    )
                    code = 0
                else:
                    running = await self._launch(state, pod, c, volumes, pod_dir, log_path)
                    assert running.process is not None
                    code = await running.process.wait()
                state.init[c["name"]] = (code, attempts)
                if code == 0:
                    break
                attempts += 1
                if policy == "Never":
                    await self._report_error(
                        ns, name, f"init container {c['name']} exited with {code}"
                    )
                    return False
                await self._report(state, ns, name)
                await asyncio.sleep(min(0.5 * 2**attempts, 5))
        return True

    async def _release_volumes(self, uid: str) -> None:
        """Every volume of the pod unmounted, CSI and NFS alike, even when its task is
        cancelled again meanwhile (the pod vanishing from the API cancels it, and that can
        come more than once): the release runs as a task of its own and is waited for to
        the end, and a cancellation is passed on only after it."""
        release = asyncio.ensure_future(self._release_all(uid))
        cancelled = False
        while not release.done():
            try:
                await asyncio.shield(release)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError
        release.result()

    async def _release_all(self, uid: str) -> None:
        try:
            await self.csi.release(uid)
        finally:  # an NFS mount goes even when a CSI unmount failed
            if self.nfs is not None:
                await self.nfs.release(uid)

    async def _wait_volumes(
        self, pod: dict[str, Any], pod_dir: Path, ns: str, name: str
    ) -> dict[str, Path] | None:
        """The pod's volumes, waiting (as ContainerCreating) while a claim is not bound or
        a volume cannot be mounted yet (a FailedMount event says why, once per reason)."""
        told = ""
        while True:
            try:
                return await volume_dirs(
                    self.client, pod, pod_dir, self.host_root, self.twin_root, self.csi, self.nfs
                )
            except MountPending as exc:
                if exc.message != told:
                    told = exc.message
                    with contextlib.suppress(ClientError):
                        await self.client.create(
                            path("v1", "events", ns),
                            event_body(
                                {**pod, "apiVersion": "v1", "kind": "Pod"},
                                "FailedMount",
                                f"MountVolume.SetUp failed: {exc.message}",
                                "Warning",
                                "kubelet",
                            ),
                        )
            except ClientError as exc:
                if exc.status not in (404, 409):
                    raise
                log.debug("%s: %s/%s waits for its volumes: %s", self.name, ns, name, exc)
            await asyncio.sleep(0.5)
            current = self._current(ns, name)
            if current is None or current["metadata"].get("deletionTimestamp"):
                return None
            pod = current

    @staticmethod
    def _previous_restarts(pod: dict[str, Any], container: str) -> int:
        for cs in pod.get("status", {}).get("containerStatuses") or []:
            if cs.get("name") == container:
                # A restarted kubelet finds the container gone: that is one more restart.
                return int(cs.get("restartCount", 0)) + (
                    1 if cs.get("state", {}).get("running") else 0
                )
        return 0

    async def _start(
        self,
        state: PodState,
        pod: dict[str, Any],
        c: dict[str, Any],
        volumes: dict[str, Path],
        pod_dir: Path,
    ) -> None:
        log_path = pod_dir / "logs" / f"{c['name']}.log"
        running = await self._launch(state, pod, c, volumes, pod_dir, log_path)
        state.containers[c["name"]] = running
        state.images[c["name"]] = str(c.get("image", ""))
        state.namespace = pod["metadata"]["namespace"]
        if intel_gpu_plugin.is_gpu_plugin(str(c.get("image", ""))):
            state.device_plugins[c["name"]] = intel_gpu_plugin.shared_dev_num(c)
            self._devices_changed.set()
        state.ready[c["name"]] = c.get("readinessProbe") is None and c.get("startupProbe") is None
        # A (re)started container begins its probes again, its startup probe first.
        for probes in (state.next_probe, state.next_startup, state.startup_failures):
            probes.pop(c["name"], None)
        state.up.discard(c["name"])

    async def _launch(
        self,
        state: PodState,
        pod: dict[str, Any],
        c: dict[str, Any],
        volumes: dict[str, Path],
        pod_dir: Path,
        log_path: Path,
    ) -> runtime.Running:
        """Start one container as the image catalogue says: a sandboxed process with the
        pod's volumes and resolv.conf, or a placeholder on the pod's address."""
        program = program_for(c).listening_on(state.ip)
        if program.kind == "placeholder":
            return await runtime.start_placeholder(c, state.ip, log_path, now(), program.runs)
        mounts = [m for m in c.get("volumeMounts") or [] if m.get("name") in volumes]
        binds = {m["mountPath"]: volumes[m["name"]] for m in mounts}
        read_only = {m["mountPath"] for m in mounts if m.get("readOnly")}
        resolv = pod_dir / "resolv.conf"
        resolv.parent.mkdir(parents=True, exist_ok=True)
        resolv.write_text(resolv_conf(pod["metadata"]["namespace"], self.nameserver))
        devices = {}
        if self._allocated_gpu(c):
            # As the plugin's Allocate mounts them: the card and its render node.
            devices["/dev/dri"] = device_nodes(self.data_dir / "dri")
        return await runtime.start_process(
            c,
            program,
            self._env(pod, c, state),
            binds,
            log_path,
            now(),
            str(self.twin_root),
            files={"/etc/resolv.conf": resolv},
            read_only=read_only,
            devices=devices,
        )

    def _allocated_gpu(self, c: dict[str, Any]) -> bool:
        if self.gpu_resource is None or self.node.gpu is None:
            return False
        resources = c.get("resources") or {}
        wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return str(wanted.get(self.gpu_resource, "0")) not in ("0", "")

    def _env(self, pod: dict[str, Any], c: dict[str, Any], state: PodState) -> dict[str, str]:
        fields = {
            "metadata.name": pod["metadata"]["name"],
            "metadata.namespace": pod["metadata"]["namespace"],
            "spec.nodeName": self.name,
            "status.podIP": state.ip,
            "status.hostIP": str(self.address),
        }
        env = {"HOSTNAME": pod["metadata"]["name"]}
        for item in c.get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
            elif (item.get("valueFrom") or {}).get("fieldRef"):
                env[item["name"]] = fields.get(item["valueFrom"]["fieldRef"].get("fieldPath"), "")
        return env

    async def _tend(
        self, state: PodState, pod: dict[str, Any], volumes: dict[str, Path], pod_dir: Path
    ) -> bool:
        """Restart exited containers per restartPolicy, run readiness probes; True if changed."""
        changed = False
        policy = pod["spec"].get("restartPolicy", "Always")
        for c in pod["spec"]["containers"]:
            running = state.containers.get(c["name"])
            if running is None:
                continue
            proc = running.process
            if proc is not None and proc.returncode is not None and not running.done.is_set():
                running.exit_code = proc.returncode
                running.finished_at = now()
                running.done.set()
                changed = True
                if policy == "Always" or (policy == "OnFailure" and proc.returncode != 0):
                    await asyncio.sleep(min(0.5 * (2 ** state.restarts[c["name"]]), 5))
                    state.restarts[c["name"]] += 1
                    await self._start(state, pod, c, volumes, pod_dir)
            if not running.done.is_set() and not await self._started_up(state, c, running):
                continue  # no readiness probe before the startup probe succeeds
            probe = c.get("readinessProbe")
            due = state.next_probe.get(c["name"], 0.0) <= time.monotonic()
            if probe is not None and not running.done.is_set() and due:
                # initialDelaySeconds first, then every periodSeconds (default 10 s).
                first = c["name"] not in state.next_probe
                if first and probe.get("initialDelaySeconds"):
                    state.next_probe[c["name"]] = time.monotonic() + float(
                        probe["initialDelaySeconds"]
                    )
                    continue
                state.next_probe[c["name"]] = time.monotonic() + float(
                    probe.get("periodSeconds") or 10
                )
                ok = await probe_ok(probe, state.ip, c, running)
                if ok != state.ready.get(c["name"]):
                    state.ready[c["name"]] = ok
                    changed = True
            elif running.done.is_set() and state.ready.get(c["name"]):
                state.ready[c["name"]] = False
                changed = True
        return changed

    @staticmethod
    async def _started_up(state: PodState, c: dict[str, Any], running: runtime.Running) -> bool:
        """The startup probe, as the kubelet runs it: from the container's start (after
        initialDelaySeconds) every periodSeconds until it succeeds, readiness and liveness
        held off meanwhile; failureThreshold failures kill the container, which restarts
        by its policy. On success the readiness probe runs at once (the kubelet triggers
        it), not a period later. No startup probe: started."""
        name, probe = c["name"], c.get("startupProbe")
        if probe is None or name in state.up:
            return True
        at = time.monotonic()
        if name not in state.next_startup:
            state.next_startup[name] = at + float(probe.get("initialDelaySeconds") or 0)
        if state.next_startup[name] > at:
            return False
        state.next_startup[name] = at + float(probe.get("periodSeconds") or 10)
        if await probe_ok(probe, state.ip, c, running):
            state.up.add(name)
            state.next_probe[name] = 0.0  # readiness now
            if c.get("readinessProbe") is None:
                state.ready[name] = True
            return True
        state.startup_failures[name] = state.startup_failures.get(name, 0) + 1
        if state.startup_failures[name] >= int(probe.get("failureThreshold") or 3):
            log.info("container %s failed its startup probe: killed, to restart", name)
            if running.process is not None and running.process.returncode is None:
                # Killed, not stopped: the exit is then seen and restarted by its policy.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.process.pid, signal.SIGKILL)
        return False

    @staticmethod
    def _all_done(state: PodState, pod: dict[str, Any]) -> bool:
        policy = pod["spec"].get("restartPolicy", "Always")
        if policy == "Always":
            return False
        done = [r.done.is_set() for r in state.containers.values()]
        if not all(done):
            return False
        if policy == "OnFailure":
            return all(r.exit_code == 0 for r in state.containers.values())
        return True

    def _status(self, state: PodState, pod: dict[str, Any]) -> dict[str, Any]:
        statuses = []
        for c in pod["spec"]["containers"]:
            running = state.containers.get(c["name"])
            if running is None:
                st: dict[str, Any] = {"waiting": {"reason": "ContainerCreating"}}
            elif running.done.is_set():
                code = running.exit_code or 0
                st = {
                    "terminated": {
                        "exitCode": code,
                        "reason": "Completed" if code == 0 else "Error",
                        "startedAt": running.started_at,
                        "finishedAt": running.finished_at or now(),
                    }
                }
            else:
                st = {"running": {"startedAt": running.started_at}}
            statuses.append(
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": f"twin://{c.get('image', '')}",
                    "containerID": f"twin://{state.uid}/{c['name']}",
                    "ready": bool(state.ready.get(c["name"])) and "running" in st,
                    "started": "running" in st
                    and (c.get("startupProbe") is None or c["name"] in state.up),
                    "restartCount": state.restarts.get(c["name"], 0),
                    "state": st,
                }
            )
        all_ready = all(s["ready"] for s in statuses)
        policy = pod["spec"].get("restartPolicy", "Always")
        phase = "Running"
        if self._all_done(state, pod):
            failed = any(s["state"]["terminated"]["exitCode"] != 0 for s in statuses)
            phase = "Failed" if failed and policy == "Never" else "Succeeded"
        elif not state.containers:
            phase = "Pending"
        previous = {c["type"]: c for c in pod.get("status", {}).get("conditions") or []}

        def cond(kind: str, ok: bool) -> dict[str, Any]:
            value = "True" if ok else "False"
            old = previous.get(kind)
            since = old["lastTransitionTime"] if old and old.get("status") == value else now()
            return {
                "type": kind,
                "status": value,
                "lastProbeTime": None,
                "lastTransitionTime": since,
            }

        ready = all_ready and phase == "Running"
        return {
            **pod.get("status", {}),
            "phase": phase,
            "hostIP": str(self.address),
            "hostIPs": [{"ip": str(self.address)}],
            "podIP": state.ip,
            "podIPs": [{"ip": state.ip}],
            "startTime": pod.get("status", {}).get("startTime") or state.started,
            "conditions": [
                cond("PodReadyToStartContainers", True),
                cond("Initialized", True),
                cond("Ready", ready),
                cond("ContainersReady", ready),
                cond("PodScheduled", True),
            ],
            "containerStatuses": statuses,
            **self._init_statuses(state, pod),
        }

    @staticmethod
    def _init_statuses(state: PodState, pod: dict[str, Any]) -> dict[str, Any]:
        inits = pod["spec"].get("initContainers") or []
        if not inits:
            return {}
        out = []
        for c in inits:
            done = state.init.get(c["name"])
            st: dict[str, Any] = (
                {
                    "terminated": {
                        "exitCode": done[0],
                        "reason": "Completed" if done[0] == 0 else "Error",
                    }
                }
                if done
                else {"waiting": {"reason": "PodInitializing"}}
            )
            out.append(
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": f"twin://{c.get('image', '')}",
                    "ready": bool(done and done[0] == 0),
                    "restartCount": done[1] if done else 0,
                    "state": st,
                }
            )
        return {"initContainerStatuses": out}

    async def _report(self, state: PodState, ns: str, name: str) -> None:
        for _ in range(5):
            pod = self._current(ns, name)
            if pod is None:
                return
            try:
                body = {**pod, "status": self._status(state, pod)}
                fresh = await self.client.update(path("v1", "pods", ns, name, "status"), body)
                self.informer.items[(ns, name)] = fresh
                return
            except ClientError as exc:
                if exc.status == 404:
                    return
                if exc.status == 409:
                    with contextlib.suppress(ClientError):
                        self.informer.items[(ns, name)] = await self.client.get(
                            path("v1", "pods", ns, name)
                        )
                    continue
                raise

    async def _report_error(self, ns: str, name: str, message: str) -> None:
        pod = self._current(ns, name)
        if pod is None:
            return
        status = {
            **pod.get("status", {}),
            "phase": "Failed",
            "reason": "TwinError",
            "message": message,
        }
        await self.client.update(path("v1", "pods", ns, name, "status"), {**pod, "status": status})

    async def _terminate(self, state: PodState, pod: dict[str, Any]) -> None:
        state.stopping = True
        grace = float(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
        await asyncio.gather(*(r.stop(grace) for r in state.containers.values()))
        for r in state.containers.values():
            r.finished_at = r.finished_at or now()
        self.pods.pop(state.uid, None)
        await self._finish_delete(pod)

    async def _finish_delete(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        with contextlib.suppress(ClientError):
            await self.client.delete(
                path("v1", "pods", meta["namespace"], meta["name"]),
                {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
            )

    def log_file(self, ns: str, name: str, container: str) -> Path | None:
        pod = self._current(ns, name)
        if pod is None:
            return None
        found = self.data_dir / "pods" / pod["metadata"]["uid"] / "logs" / f"{container}.log"
        return found if found.exists() else None
