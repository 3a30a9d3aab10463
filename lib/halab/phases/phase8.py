"""Phase 8, ClusterPlex: the orchestrator, Plex and the Kubernetes workers from the rendered
tree, the Docker workers started with `docker compose up -d` over SSH on their hosts, and
the plan's validation lines: the orchestrator and PMS Running behind their LoadBalancer
addresses, the GPU worker Running with its resource, the Docker worker running, every
worker registered, jobs spread over the workers, and the two things ClusterPlex needs that
nothing enforces (the same Plex on PMS and workers, one shared transcode directory).

Plan "Phase 8: ClusterPlex Deployment" and "ClusterPlex Components"; facts from
reference/clusterplex.md and clusterplex-real.md. Which apps are the orchestrator, PMS
and the workers, where each runs and how many there are come from the inventory's roles.

The distribution check posts ClusterPlex's synthetic jobs (the worker's `testpayload`
hook: five seconds of sleep, then success) as PMS's job poster does; the transcodes check
starts real ones through Plex (plex_transcodes.py), as a player does, and the transcode
report reads each one's ffmpeg progress from the worker that ran it.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from halab.apply import apply_objects
from halab.changes import Change
from halab.clusterplex import ClusterPlexError, JobResult, Orchestrator, js_hwaccel
from halab.context import Context
from halab.evidence import Check, Status, timed
from halab.hosts import Hosts
from halab.inventory.model import App
from halab.inventory.scheduling import GPU_RESOURCE_ALIASES
from halab.kube import ClusterError, wait_for
from halab.phases import gpu_busy, plex_transcodes
from halab.phases.cluster_checks import Verdict, app_pods, no_target, pod_ready
from halab.phases.loadbalancer import in_pool
from halab.render.apps import workload
from halab.render.external import compose
from halab.render.objects import namespace

PHASE = 8
# Where the kit puts a host's rendered compose file before `docker compose up -d`.
COMPOSE_DIR = "/mnt/user/appdata/halab"
UNSCHEDULABLE_GRACE_S = 10.0
FORWARDED = re.compile(r"Forwarding work request to ([0-9a-f-]+)\|(\S+)")


def apps(ctx: Context, role: str) -> list[App]:
    return [a for a in ctx.inventory.apps if a.role == role]


def k8s_workers(ctx: Context) -> list[App]:
    return [a for a in apps(ctx, "worker") if a.kind != "docker"]


def docker_workers(ctx: Context) -> list[App]:
    return [a for a in apps(ctx, "worker") if a.kind == "docker"]


def expected_workers(ctx: Context) -> int:
    """Worker processes the inventory runs: a DaemonSet's count is its GPU nodes'."""
    count = 0
    for app in apps(ctx, "worker"):
        if app.kind == "docker":
            count += 1
        elif app.kind == "daemonset":
            count += len([n for n in ctx.inventory.nodes if n.gpu is not None])
        else:
            count += app.replicas
    return count


def strategy(ctx: Context) -> str:
    orchestrator = next(iter(apps(ctx, "orchestrator")), None)
    chosen = orchestrator.env.get("WORKER_SELECTION_STRATEGY", "") if orchestrator else ""
    return chosen or "LOAD_RANK"  # ClusterPlex's default


def hwaccel_workers(ctx: Context) -> list[str]:
    """Workers whose FFMPEG_HWACCEL puts `-hwaccel` in every job, as the worker reads it."""
    return [a.name for a in apps(ctx, "worker") if js_hwaccel(a.env.get("FFMPEG_HWACCEL", ""))]


def gpu_resource(app: App) -> str | None:
    for name in {**app.resources.requests, **app.resources.limits}:
        if name in GPU_RESOURCE_ALIASES or name.startswith("gpu.intel.com/"):
            return name
    return None


def scope(ctx: Context) -> pd.DataFrame:
    rows = []
    for app in [*apps(ctx, "plex"), *apps(ctx, "orchestrator"), *apps(ctx, "worker")]:
        rows.append(
            {
                "app": app.name,
                "role": app.role,
                "runs as": f"docker on {app.host}" if app.kind == "docker" else app.kind,
                "namespace": "" if app.kind == "docker" else app.namespace,
                "image": app.image,
                "GPU resource": gpu_resource(app) or "",
                "env": ", ".join(f"{k}={v}" for k, v in sorted(app.env.items())),
            }
        )
    columns = ["app", "role", "runs as", "namespace", "image", "GPU resource", "env"]
    return pd.DataFrame(rows, columns=columns)


# -- build ----------------------------------------------------------------------------------


def objects(ctx: Context) -> list[dict[str, Any]]:
    """Phase 8's part of apps/: PMS, the orchestrator and the Kubernetes workers."""
    chosen = [
        a
        for a in ctx.inventory.apps
        if a.role in ("plex", "orchestrator", "worker") and a.kind != "docker"
    ]
    spaces = sorted({a.namespace for a in chosen})
    return [
        *(namespace(ns) for ns in spaces),
        *(o for a in chosen for o in workload(a, ctx.inventory)),
    ]


def deliver(ctx: Context, api: Any) -> list[Change]:
    if api is None:
        return [Change("deliver apps/ (ClusterPlex)", False, "no target: nothing delivered")]
    return apply_objects(api, objects(ctx))


def compose_up(ctx: Context) -> list[Change]:
    """Each Docker worker's host: its rendered compose file uploaded and started."""
    if ctx.target is None:
        return [Change("docker compose up -d", False, "no target")]
    hosts = sorted({a.host for a in docker_workers(ctx)})
    if not hosts:
        return [Change("docker compose up -d", False, "the inventory has no Docker worker")]
    changes = []
    with Hosts(ctx.inventory, ctx.target) as pool:
        for name in hosts:
            host = pool[name]
            remote = f"{COMPOSE_DIR}/docker-compose.yml"
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(tmp) / "docker-compose.yml"
                local.write_text(compose(ctx.inventory, name))
                host.upload(local, remote, mode=0o644)
            done = host.run(["docker", "compose", "-f", remote, "up", "-d"], timeout=300)
            said = (done.stderr or done.stdout).strip().splitlines()
            changes.append(
                Change(
                    f"docker compose up -d on {name}",
                    done.ok,
                    f"{remote}: " + ("; ".join(said[-3:]) or f"exit {done.returncode}"),
                )
            )
    return changes


def prepare_plex(ctx: Context, api: Any) -> list[Change]:
    """Each PMS's libraries and its transcoder directory, set through Plex's API."""
    return [c for app in apps(ctx, "plex") for c in plex_transcodes.prepare(ctx, api, app)]


def wait_running(ctx: Context, api: Any, timeout: float = 180) -> Change:
    """Until the orchestrator's pod is Ready and its LoadBalancer address answers."""
    if api is None:
        return Change("wait for the orchestrator", False, "no target")
    start = time.monotonic()
    try:
        url = wait_for(lambda: _healthy_url(ctx, api), timeout, "the orchestrator's /health")
    except ClusterError as exc:
        return Change("wait for the orchestrator", False, str(exc))
    return Change(
        "wait for the orchestrator", True, f"{url} healthy in {time.monotonic() - start:.0f} s"
    )


def _healthy_url(ctx: Context, api: Any) -> str | None:
    url = orchestrator_url(ctx, api)
    if url is None:
        return None
    try:
        return url if Orchestrator(url, timeout=3).healthy() else None
    except ClusterPlexError:
        return None


def _ingress(api: Any, app: App) -> str | None:
    from kubernetes import client

    svc = client.CoreV1Api(api).read_namespaced_service(app.name, app.namespace)
    lb = svc.status.load_balancer
    return str(lb.ingress[0].ip) if lb and lb.ingress else None


def orchestrator_url(ctx: Context, api: Any) -> str | None:
    """The orchestrator's LoadBalancer address and port, as workers outside reach it."""
    app = next(iter(apps(ctx, "orchestrator")), None)
    if app is None or not app.ports:
        return None
    ip = _ingress(api, app)
    return f"http://{ip}:{app.ports[0]}" if ip else None


# -- checks ---------------------------------------------------------------------------------


def checks(ctx: Context, api: Any, jobs: int = 4) -> list[Check]:
    """Every validation line of phase 8, and the two settings ClusterPlex depends on."""
    found = [check_versions(ctx), check_transcode_shared(ctx)]
    if api is None or ctx.target is None:
        return [*found, no_target("orchestrator", "The orchestrator Running")]
    if not apps(ctx, "orchestrator"):
        skip = Check("orchestrator", "ClusterPlex", "skip", "the inventory runs no orchestrator")
        return [*found, skip]
    found.append(check_orchestrator(ctx, api))
    for app in apps(ctx, "plex"):
        found.append(check_pod_running(api, app, f"pms-{app.name}", f"PMS {app.name} Running"))
        found.append(check_pms_web(ctx, api, app))
        found.append(plex_transcodes.check_library(ctx, api, app))
        found.append(plex_transcodes.check_transcode_dir(ctx, api, app))
    for app in k8s_workers(ctx):
        found.append(check_k8s_worker(ctx, api, app))
    for app in docker_workers(ctx):
        found.append(check_docker_worker(ctx, app))
    found.append(check_registered(ctx, api))
    found.append(check_distribution(ctx, api, jobs))
    for app in apps(ctx, "plex"):
        count = max(2, expected_workers(ctx))  # enough that one worker cannot take them all
        asking = hwaccel_workers(ctx)
        watched = gpu_busy.machines(api, apps(ctx, "worker"), asking)
        with Hosts(ctx.inventory, ctx.target) as pool:
            seen = gpu_busy.watch(ctx, pool, watched)
            transcodes = plex_transcodes.check_transcodes(
                ctx, api, app, count, lambda: _orchestrator_log(ctx, api), asking, during=seen
            )
        found += [transcodes, gpu_busy.check(ctx, watched, seen, transcodes)]
    return found


def check_report(report: pd.DataFrame) -> Check:
    """The transcode report as an advisory check, so the run's index carries it: a worker
    whose slowest transcode ran below realtime would stall a player."""
    title = "Transcode speed per worker (the worker's ffmpeg progress)"
    done = report.dropna(subset=["median speed (x)"])
    if not len(done):
        return Check(
            "transcode-report",
            title,
            "skip",
            "no worker has finished a transcode",
            required=False,
            data=report,
        )
    said = "; ".join(
        f"{r['worker']}: {r['transcodes']} done, median {r['median speed (x)']}x, "
        f"slowest {r['slowest (x)']}x, {r['median fps']} fps"
        for _, r in done.iterrows()
    )
    slow = done[done["slowest (x)"] < 1.0]
    status: Status = "warn" if len(slow) else "pass"
    if len(slow):
        said += f"; below realtime on {', '.join(slow['worker'])}"
    return Check("transcode-report", title, status, said, required=False, data=report)


def transcode_report(ctx: Context, api: Any) -> pd.DataFrame:
    """Each worker's finished transcodes, from its log: speed (x realtime) and fps as its
    ffmpeg reported them at the end of each."""
    from kubernetes import client

    logs: dict[str, str] = {}
    if api is not None:
        core = client.CoreV1Api(api)
        for app in k8s_workers(ctx):
            for pod in app_pods(api, app):
                if pod.status.phase == "Running":
                    name = f"{pod.metadata.name} ({pod.spec.node_name})"
                    logs[name] = core.read_namespaced_pod_log(pod.metadata.name, app.namespace)
    if ctx.target is not None and docker_workers(ctx):
        with Hosts(ctx.inventory, ctx.target) as pool:
            for app in docker_workers(ctx):
                done = pool[app.host].run(["docker", "logs", app.name])
                if done.ok:
                    logs[f"{app.name} ({app.host})"] = done.stdout + done.stderr
    return plex_transcodes.report(logs)


def _unschedulable(pod: Any) -> str | None:
    for cond in pod.status.conditions or []:
        if cond.type == "PodScheduled" and cond.reason == "Unschedulable":
            return str(cond.message or cond.reason).rstrip(".")
    return None


def _pending_reason(api: Any, pod: Any) -> str:
    """Why a pod is not Ready: the scheduler's words, its claims not bound, or its phase."""
    from kubernetes import client

    said = _unschedulable(pod)
    if said:
        return said
    core = client.CoreV1Api(api)
    unbound = []
    for volume in pod.spec.volumes or []:
        claim = volume.persistent_volume_claim
        if claim is None:
            continue
        try:
            pvc = core.read_namespaced_persistent_volume_claim(
                claim.claim_name, pod.metadata.namespace
            )
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            unbound.append(f"claim {claim.claim_name} does not exist (its storage phase makes it)")
            continue
        if pvc.status.phase != "Bound":
            unbound.append(
                f"claim {claim.claim_name} {pvc.status.phase} ({_last_event(core, pvc)})"
            )
    if unbound:
        return "; ".join(unbound)
    return f"{pod.status.phase}, not Ready"


def _last_event(core: Any, obj: Any) -> str:
    events = [
        e
        for e in core.list_namespaced_event(obj.metadata.namespace).items
        if e.involved_object.name == obj.metadata.name
    ]
    return str(events[-1].message) if events else "no event"


def check_pod_running(api: Any, app: App, cid: str, title: str, timeout: float = 120) -> Check:
    def run() -> Verdict:
        start = time.monotonic()

        def ready() -> list[Any] | bool | None:
            pods = app_pods(api, app)
            up = [p for p in pods if pod_ready(p)]
            if up:
                return up
            # The scheduler has said no, and stays saying it: no point waiting longer.
            stuck = pods and all(_unschedulable(p) for p in pods)
            return bool(stuck) and time.monotonic() - start > UNSCHEDULABLE_GRACE_S

        try:
            found = wait_for(ready, timeout, f"{app.name} Ready", every=1.0)
        except ClusterError:
            found = True
        if found is True:
            pods = app_pods(api, app)
            said = "; ".join(f"{p.metadata.name}: {_pending_reason(api, p)}" for p in pods)
            return "fail", said or f"no pod of {app.name} in {app.namespace}"
        assert isinstance(found, list)
        up = found
        where = ", ".join(f"{p.metadata.name} on {p.spec.node_name}" for p in up)
        return "pass", f"Running and Ready: {where}"

    return timed(cid, title, run)


def check_orchestrator(ctx: Context, api: Any) -> Check:
    app = apps(ctx, "orchestrator")[0]
    title = f"The orchestrator {app.name} Running with a LoadBalancer address from the pool"

    def run() -> Verdict:
        pod = check_pod_running(api, app, "x", "x")
        if pod.status != "pass":
            return "fail", pod.detail
        ip = wait_for(lambda: _ingress(api, app), 60, f"{app.name}'s LoadBalancer address")
        if not in_pool(ctx, ip):
            pool = ", ".join(ctx.inventory.network.metallb.pool)
            return "fail", f"{ip} is not in the inventory's pool {pool}"
        url = f"http://{ip}:{app.ports[0]}"
        if not wait_for(lambda: _healthy_url(ctx, api), 60, f"{url}/health"):
            return "fail", f"{url}/health does not answer Healthy"
        return "pass", f"{pod.detail}; {url}/health answers Healthy; strategy {strategy(ctx)}"

    return timed("orchestrator", title, run)


def check_pms_web(ctx: Context, api: Any, app: App) -> Check:
    """PMS's `/identity` through its LoadBalancer address: Plex answers it without a token."""
    title = f"PMS {app.name}'s web endpoint answers through its LoadBalancer address"
    assert ctx.target is not None
    why = ctx.target.lacks("plex")
    if why:
        return Check(f"pms-web-{app.name}", title, "skip", why)

    def run() -> Verdict:
        import urllib.request
        import xml.etree.ElementTree as ET

        ip = wait_for(lambda: _ingress(api, app), 60, f"{app.name}'s LoadBalancer address")
        url = f"http://{ip}:{app.ports[0]}/identity"
        with urllib.request.urlopen(url, timeout=10) as answer:
            root = ET.fromstring(answer.read())
        if root.tag != "MediaContainer" or not root.get("machineIdentifier"):
            return "fail", f"{url} did not answer as Plex does ({root.tag})"
        return "pass", f"{url}: Plex {root.get('version')}, machine {root.get('machineIdentifier')}"

    return timed(f"pms-web-{app.name}", title, run)


def check_k8s_worker(ctx: Context, api: Any, app: App) -> Check:
    resource = gpu_resource(app)
    title = f"The worker {app.name} Running" + (f" with {resource}" if resource else "")

    def run() -> Verdict:
        running = check_pod_running(api, app, "x", "x", timeout=60)
        if running.status == "pass":
            return "pass", running.detail
        detail = running.detail
        if resource in GPU_RESOURCE_ALIASES:
            right = sorted({n.gpu.resource_name for n in ctx.inventory.nodes if n.gpu})
            detail += (
                f". Finding gpu-resource-name: {resource} is not a resource any device plugin "
                f"advertises; fix: request {', '.join(right) or 'gpu.intel.com/i915'}: 1."
            )
        return "fail", detail

    return timed(f"worker-{app.name}", title, run)


def check_docker_worker(ctx: Context, app: App) -> Check:
    title = f"The Docker worker {app.name} running on {app.host} (`docker ps` over SSH)"

    def run() -> Verdict:
        assert ctx.target is not None
        with Hosts(ctx.inventory, ctx.target) as pool:
            fmt = "{{.Names}} {{.State}} {{.Status}}"
            done = pool[app.host].run(["docker", "ps", "-a", "--format", fmt], check=True)
        rows = [line.split(" ", 2) for line in done.stdout.splitlines() if line.strip()]
        mine = [r for r in rows if r[0] == app.name]
        if not mine:
            return "fail", f"no container {app.name} on {app.host}: run phase 8's compose step"
        state = mine[0][1] if len(mine[0]) > 1 else "?"
        status = mine[0][2] if len(mine[0]) > 2 else ""
        if state != "running":
            return "fail", f"{app.name} is {state} ({status}): `docker logs {app.name}` says why"
        return "pass", f"{app.name} {status}"

    return timed(f"docker-worker-{app.name}", title, run)


RECOUNT_S = 5.0  # how often the workers that run are counted while some are unregistered


def check_registered(ctx: Context, api: Any, timeout: float = 90) -> Check:
    wanted = expected_workers(ctx)
    title = f"Every worker registered with the orchestrator ({wanted} by the inventory)"

    def run() -> Verdict:
        url = orchestrator_url(ctx, api)
        if url is None:
            return "fail", "the orchestrator has no LoadBalancer address"
        orchestrator = Orchestrator(url)
        start = time.monotonic()
        running: list[tuple[float, int]] = []  # (when counted, workers running then)

        def settled() -> bool:
            active = orchestrator.metrics().workers_active
            if active >= wanted:
                return True
            # Every worker that runs has registered: the rest are not running (the checks
            # above say why), so waiting on is pointless. Counting the running ones asks
            # the hosts over SSH: after a first few seconds, and then every few.
            now = time.monotonic()
            if now - start < RECOUNT_S:
                return False
            if not running or now - running[-1][0] > RECOUNT_S:
                running.append((now, _running_workers(ctx, api)))
            return active >= running[-1][1]

        with contextlib.suppress(ClusterError):  # said below, with what is registered
            wait_for(settled, timeout, f"workers_active = {wanted}", every=1.0)
        metrics = orchestrator.metrics()
        names = _registered_names(ctx, api)
        said = f"workers_active {metrics.workers_active}; registered: {', '.join(names) or 'none'}"
        if metrics.workers_active < wanted:
            return "fail", f"{said} (expected {wanted}: see the worker checks above)"
        return "pass", said

    return timed("workers-registered", title, run)


def _running_workers(ctx: Context, api: Any) -> int:
    """Worker pods Ready and Docker workers running, as far as this machine can tell."""
    count = sum(1 for app in k8s_workers(ctx) for p in app_pods(api, app) if pod_ready(p))
    for app in docker_workers(ctx):
        count += check_docker_worker(ctx, app).status == "pass"
    return count


def _orchestrator_log(ctx: Context, api: Any) -> str:
    from kubernetes import client

    app = apps(ctx, "orchestrator")[0]
    core = client.CoreV1Api(api)
    logs = [
        core.read_namespaced_pod_log(p.metadata.name, app.namespace)
        for p in app_pods(api, app)
        if p.status.phase == "Running"
    ]
    return "\n".join(logs)


def _registered_names(ctx: Context, api: Any) -> list[str]:
    """Hosts named in the orchestrator's `Registered new worker: <id>|<host>` lines that
    have not since been unregistered."""
    live: dict[str, str] = {}
    for line in _orchestrator_log(ctx, api).splitlines():
        if m := re.search(r"Registered new worker: ([0-9a-f-]+)\|(\S+)", line):
            live[m.group(1)] = m.group(2)
        elif m := re.search(r"Unregistering worker ([0-9a-f-]+)\|", line):
            live.pop(m.group(1), None)
    return sorted(live.values())


def check_distribution(ctx: Context, api: Any, jobs: int) -> Check:
    """`jobs` synthetic jobs posted at once, as a burst of playbacks would, and which
    worker each went to (the orchestrator's `Forwarding work request` lines)."""
    title = f"Transcode jobs distributed across workers ({jobs} at once, {strategy(ctx)})"

    def run() -> Check:
        url = orchestrator_url(ctx, api)
        if url is None:
            return Check("jobs-distributed", title, "fail", "no orchestrator address")
        before = len(FORWARDED.findall(_orchestrator_log(ctx, api)))
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results: list[JobResult] = list(
                pool.map(lambda _: Orchestrator(url).post_job(timeout=120), range(jobs))
            )
        sent = FORWARDED.findall(_orchestrator_log(ctx, api))[before:]
        spread = Counter(host for _, host in sent)
        table = pd.DataFrame(
            [{"worker": host, "jobs": count} for host, count in sorted(spread.items())],
            columns=["worker", "jobs"],
        )
        ok = sum(r.result for r in results)
        said = (
            f"{ok}/{jobs} succeeded; "
            + (", ".join(f"{h}: {c}" for h, c in sorted(spread.items())) or "none dispatched")
            + f"; {max((r.seconds for r in results), default=0):.1f} s for the slowest"
        )
        if ok < jobs:
            return Check("jobs-distributed", title, "fail", said, data=table)
        registered = Orchestrator(url).metrics().workers_active
        if len(spread) < min(registered, jobs):
            # ClusterPlex picks from the stats workers last reported (every STAT_CPU_INTERVAL),
            # so a burst lands on the best worker of that moment; LOAD_RANK weighs CPU only.
            why = (
                f"{strategy(ctx)} chose from stats reported before the burst, so one worker "
                "took them all"
                + (
                    "; LOAD_RANK ranks by CPU alone and never sees GPU use"
                    if strategy(ctx) == "LOAD_RANK"
                    else ""
                )
            )
            return Check("jobs-distributed", title, "warn", f"{said}. {why}", data=table)
        return Check("jobs-distributed", title, "pass", said, data=table)

    return timed("jobs-distributed", title, run)


def check_versions(ctx: Context) -> Check:
    """PMS and every worker on one Plex image: PMS builds the transcoder's argv for its own
    version and the workers run it with theirs (clusterplex.md §3.3)."""
    title = "PMS and the workers run the same Plex image"
    pms = apps(ctx, "plex")
    workers = apps(ctx, "worker")
    if not pms or not workers:
        return Check("plex-versions", title, "skip", "no PMS or no worker in the inventory")
    images = {a.name: a.image for a in [*pms, *workers]}
    if len(set(images.values())) > 1:
        said = "; ".join(f"{k}: {v}" for k, v in sorted(images.items()))
        return Check("plex-versions", title, "fail", f"different images: {said}")
    image = next(iter(images.values()))
    if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]:
        return Check(
            "plex-versions",
            title,
            "warn",
            f"all on {image}, but :latest is pulled when each starts, so PMS and a worker "
            "restarted later can differ: pin a version tag",
            required=False,
        )
    return Check("plex-versions", title, "pass", f"all on {image}")


def check_transcode_shared(ctx: Context) -> Check:
    """PMS and every worker mount one shared (RWX) transcode directory at the same path:
    the worker runs in PMS's session directory (clusterplex.md §3.5)."""
    title = "PMS and the workers share one transcode directory at one path"
    pms = apps(ctx, "plex")
    workers = apps(ctx, "worker")
    if not pms or not workers:
        return Check("transcode-shared", title, "skip", "no PMS or no worker in the inventory")
    where = plex_transcodes.writable_shares
    common = set.intersection(*(where(ctx, a) for a in [*pms, *workers]))
    if not common:
        said = "; ".join(f"{a.name}: {sorted(where(ctx, a)) or 'none'}" for a in [*pms, *workers])
        return Check("transcode-shared", title, "fail", f"no shared writable directory: {said}")
    return Check("transcode-shared", title, "pass", ", ".join(sorted(common)))


__all__ = [
    "apps",
    "checks",
    "compose_up",
    "deliver",
    "expected_workers",
    "objects",
    "orchestrator_url",
    "scope",
    "wait_running",
]
