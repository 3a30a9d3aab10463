"""A worker reached as Kubernetes Jobs pinned to one node: the same harness as for this
machine and SSH hosts, with every command a Job and its output read from the pod log.

Clips are made in the cluster, once, by a Job writing to a shared claim (ReadWriteMany,
so every node's Jobs can read it); stream Jobs mount it read-only. GPU encoders request
the node's GPU resource, so the device plugin hands the pod /dev/dri. Every Job carries
the run's tag as a label: kill_tagged deletes exactly those.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from halab.inventory import Inventory
from halab.streams import Completed, Stream
from halab.transcode.media import parse_clip_name, sample_command
from halab.transcode.runners import (
    GPU_SCRIPT,
    TranscodeError,
    _cpu_model,
    _parse_proc_stat,
    parse_gpus,
)

LABEL = "halab.dev/bench-tag"
GPU_ENCODERS = {"h264_vaapi": "intel", "h264_qsv": "intel", "h264_nvenc": "nvidia"}
_TAG = re.compile(r"comment=(halab-bench-[0-9a-f]+)")


class KubeJobRunner:
    def __init__(
        self,
        api: Any,
        inventory: Inventory,
        node: str,
        image: str,
        namespace: str = "halab-bench",
        media_claim: str = "halab-bench-media",
        storage_class: str | None = None,
        start_timeout: float = 300.0,
    ) -> None:
        from kubernetes import client

        if node not in {n.name for n in inventory.nodes}:
            raise TranscodeError(f"job:{node}: no node {node!r} in the inventory")
        self.name = f"job:{node}"
        self.api = api
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.node = node
        self.image = image
        self.namespace = namespace
        self.claim = media_claim
        self.storage_class = storage_class
        self.start_timeout = start_timeout
        found = next(n for n in inventory.nodes if n.name == node)
        self.gpu = found.gpu.resource_name if found.gpu else None
        taints = found.taints
        self.tolerations = [
            {"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect}
            for t in taints
        ]
        self._prepared = False

    # -- setup ----------------------------------------------------------------------------

    def _prepare(self) -> None:
        from kubernetes.client.exceptions import ApiException

        if self._prepared:
            return
        with contextlib.suppress(ApiException):  # 409: it exists already
            self.core.create_namespace({"metadata": {"name": self.namespace}})
        claim: dict[str, Any] = {
            "metadata": {"name": self.claim},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "20Gi"}},
            },
        }
        if self.storage_class:
            claim["spec"]["storageClassName"] = self.storage_class
        try:
            self.core.create_namespaced_persistent_volume_claim(self.namespace, claim)
        except ApiException as exc:
            if exc.status != 409:
                raise TranscodeError(
                    f"{self.name}: cannot create the media claim: {exc.reason}"
                ) from None
        self._prepared = True

    def _job(self, argv: list[str], tag: str, shell: str | None = None) -> str:
        """Create a Job running argv (or a shell script) on the node; returns its name."""
        self._prepare()
        name = f"bench-{uuid.uuid4().hex[:10]}"
        resources: dict[str, Any] = {}
        encoder = next((a for a in argv if a in GPU_ENCODERS), None)
        if encoder and self.gpu:
            resources = {"limits": {self.gpu: "1"}}
        command = ["sh", "-c", shell] if shell is not None else argv
        body = {
            "metadata": {"name": name, "labels": {LABEL: tag}},
            "spec": {
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": 600,
                "template": {
                    "metadata": {"labels": {LABEL: tag}},
                    "spec": {
                        "restartPolicy": "Never",
                        "nodeSelector": {"kubernetes.io/hostname": self.node},
                        "tolerations": self.tolerations,
                        "containers": [
                            {
                                "name": "bench",
                                "image": self.image,
                                "command": command,
                                "resources": resources,
                                "volumeMounts": [{"name": "media", "mountPath": "/media"}],
                            }
                        ],
                        "volumes": [
                            {"name": "media", "persistentVolumeClaim": {"claimName": self.claim}}
                        ],
                    },
                },
            },
        }
        self.batch.create_namespaced_job(self.namespace, body)
        return name

    def _pod(self, job: str, timeout: float) -> Any:
        """The Job's pod once it has started (or finished), or a TranscodeError saying why not."""
        deadline = time.monotonic() + timeout
        reason = "no pod yet"
        while time.monotonic() < deadline:
            pods = self.core.list_namespaced_pod(
                self.namespace, label_selector=f"job-name={job}"
            ).items
            for pod in pods:
                if pod.status.phase in ("Running", "Succeeded", "Failed"):
                    return pod
                for cond in pod.status.conditions or []:
                    if cond.type == "PodScheduled" and cond.status == "False":
                        reason = cond.message or "unschedulable"
            time.sleep(0.3)
        raise TranscodeError(f"{self.name}: job {job} did not start in {timeout:.0f} s: {reason}")

    @staticmethod
    def _exit_code(pod: Any) -> int | None:
        for status in pod.status.container_statuses or []:
            if status.state and status.state.terminated:
                return int(status.state.terminated.exit_code)
        return None

    # -- the Runner protocol ----------------------------------------------------------------

    def run(self, argv: list[str], timeout: float = 60.0, shell: str | None = None) -> Completed:
        tag = f"halab-run-{uuid.uuid4().hex[:12]}"
        job = self._job(argv, tag, shell)
        try:
            pod = self._pod(job, self.start_timeout)
            deadline = time.monotonic() + timeout
            while (code := self._exit_code(pod)) is None:
                if pod.status.phase == "Failed":
                    why = pod.status.message or pod.status.reason or "no reason given"
                    raise TranscodeError(f"{self.name}: the pod of {argv[:2]} failed: {why}")
                if time.monotonic() > deadline:
                    raise TranscodeError(
                        f"{self.name}: {argv[:2]} did not finish in {timeout:.0f} s"
                    )
                time.sleep(0.3)
                pod = self.core.read_namespaced_pod(pod.metadata.name, self.namespace)
            log = self.core.read_namespaced_pod_log(pod.metadata.name, self.namespace)
            return Completed(code, log, "" if code == 0 else log[-2000:])
        finally:
            self._delete(job)

    def start(self, argv: list[str]) -> Stream:
        match = _TAG.search(" ".join(argv))
        tag = match.group(1) if match else f"halab-run-{uuid.uuid4().hex[:12]}"
        job = self._job(argv, tag)
        stream = Stream(started=time.monotonic())
        done = threading.Event()

        def follow() -> None:
            try:
                pod = self._pod(job, self.start_timeout)
                response = self.core.read_namespaced_pod_log(
                    pod.metadata.name, self.namespace, follow=True, _preload_content=False
                )
                buffer = b""
                for chunk in response.stream(4096):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        stream.lines.append(
                            (time.monotonic() - stream.started, line.decode("utf-8", "replace"))
                        )
                    if done.is_set():
                        break
                pod = self.core.read_namespaced_pod(pod.metadata.name, self.namespace)
                stream.returncode = self._exit_code(pod)
            except Exception as exc:  # the pod never started or went away: say why
                stream.stderr_tail.append(str(exc))
                stream.returncode = stream.returncode if stream.returncode is not None else 1

        def stop() -> None:
            done.set()
            self._delete(job)
            if stream.returncode is None:
                stream.returncode = -9

        thread = threading.Thread(target=follow, daemon=True)
        stream._stop = stop
        stream._threads = [thread]
        thread.start()
        return stream

    def _delete(self, job: str) -> None:
        from kubernetes.client.exceptions import ApiException

        with contextlib.suppress(ApiException):
            self.batch.delete_namespaced_job(job, self.namespace, propagation_policy="Background")
        for pod in self.core.list_namespaced_pod(
            self.namespace, label_selector=f"job-name={job}"
        ).items:
            with contextlib.suppress(ApiException):
                self.core.delete_namespaced_pod(
                    pod.metadata.name, self.namespace, grace_period_seconds=0
                )

    def kill_tagged(self, tag: str) -> None:
        selector = f"{LABEL}={tag}"
        for job in self.batch.list_namespaced_job(self.namespace, label_selector=selector).items:
            self._delete(job.metadata.name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            left = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
            if not left:
                return
            for pod in left:
                with contextlib.suppress(Exception):
                    self.core.delete_namespaced_pod(
                        pod.metadata.name, self.namespace, grace_period_seconds=0
                    )
            time.sleep(0.3)
        raise TranscodeError(f"{self.name}: pods tagged {tag} would not go")

    def stage(self, local: Path) -> str:
        """Make the clip on the shared claim with the same ffmpeg command that made the
        local one (its name carries the command's hash), once."""
        parsed = parse_clip_name(local.name)
        if parsed is None:
            raise TranscodeError(
                f"{self.name}: {local.name} is not one of the kit's test clips; a Job worker "
                "makes its clips in the cluster (put your own files on the claim "
                f"{self.claim} and pass them as /media/<file>)"
            )
        spec, seconds = parsed
        remote = f"/media/{local.name}"
        part = f"/media/.{local.name}.{uuid.uuid4().hex[:6]}.part.mkv"
        make = sample_command(spec, seconds, Path(part))
        script = f"test -s {remote} || {{ {shlex.join(make)} && mv {part} {remote}; }}"
        done = self.run(["sh"], timeout=1800, shell=script)
        if done.returncode != 0:
            raise TranscodeError(f"{self.name}: making {local.name} failed: {done.stdout[-400:]}")
        return remote

    def cpu_jiffies(self) -> tuple[int, int]:
        return _parse_proc_stat(self.run(["head", "-n1", "/proc/stat"], timeout=60).stdout)

    def facts(self) -> dict[str, object]:
        out = self.run(
            ["sh"],
            timeout=60,
            shell="uname -n; uname -m; nproc; cat /proc/cpuinfo; echo @@; ls /dev/dri 2>/dev/null; "
            f"echo @@; {GPU_SCRIPT}",
        ).stdout
        head, _, rest = out.partition("@@")
        dri, _, gpus = rest.partition("@@")
        lines = head.splitlines()
        return {
            "host": self.node,
            "arch": lines[1] if len(lines) > 1 else "",
            "cores": int(lines[2]) if len(lines) > 2 and lines[2].isdigit() else None,
            "cpu_model": _cpu_model(head),
            "dri": dri.split(),
            **parse_gpus(gpus),
            "image": self.image,
            "gpu_resource": self.gpu,
        }

    def close(self) -> None:
        self.api.close()
