"""SeaweedFS delivered once to the session's twin for the two modules that need it (the
CSI driver's and SeaweedFS's own, which run one after the other), and taken away as soon
as the last of their tests is done, so that the rest of the session does not carry
thirteen weed processes. Delivering it takes some 20 s; once is enough."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from halab.context import Context, open_context
from halab.phases import phase2
from halab.phases.seaweed_servers import all_servers
from halab.twin import supervisor
from halab.twin.kubelet.csi import mounts_under

from twinlab import TwinLab, eventually, namespace_gone

MODULES = ("test_twin_seaweed_csi", "test_twin_seaweedfs")


def weeds(directory: Path) -> list[int]:
    """The twin's sandboxes that run weed (the supervisor finds the sandboxes)."""
    found = []
    for pid in supervisor.sandboxes(directory.resolve()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"/weed") for a in argv):
            found.append(pid)
    return found


def describe(pids: list[int]) -> list[str]:
    """Each leftover sandbox: its parent and the pod directory it names."""
    out = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        pods = [a.decode() for a in argv if b"/pods/" in a][:1]
        parent = Path(f"/proc/{stat[1]}/cmdline").read_bytes().replace(b"\0", b" ")[:90]
        out.append(f"{pid} (parent {stat[1]} {parent.decode(errors='replace')}) {pods}")
    return out


def mount_holders(points: list[str]) -> list[str]:
    """The processes whose command line names one of these mount points (their daemons)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(p in argv for p in points):
            found.append(f"{proc.name}: {argv[:160]}")
    return found


def deliver(twin: TwinLab, run_dir: Path) -> Context:
    ctx = open_context(twin.inventory, target=twin.dir / "target.yaml", run_dir=run_dir)
    api = twin.api()
    changes = phase2.deliver(ctx, api)
    assert not [c for c in changes if c.detail.startswith("refused")], changes
    ready = phase2.wait_running(ctx, api)
    assert "Ready after" in ready.detail, ready.detail
    # The check at the end can only mean something if weed runs in sandboxes now: one
    # per server (bubblewrap shows twice for each, outside and inside its namespace).
    commands = {Path(f"/proc/{pid}/cmdline").read_bytes() for pid in weeds(twin.dir)}
    assert len(commands) == len(all_servers(ctx))
    return ctx


def take_down(twin: TwinLab) -> None:
    """The namespace deleted; every weed process and every mount of the twin gone."""
    api = twin.api()
    client.CoreV1Api(api).delete_namespace("seaweedfs")
    try:
        eventually(lambda: not weeds(twin.dir), 90, "every weed process of the twin gone")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; left: {describe(weeds(twin.dir))}") from None
    try:
        eventually(lambda: not mounts_under(twin.dir), 60, "no mount of the twin left")
    except AssertionError as exc:  # say which, and whose processes still hold them
        left = mounts_under(twin.dir)
        raise AssertionError(f"{exc}: {left}; {mount_holders(left)}") from None
    namespace_gone(api, "seaweedfs")


class Shared:
    """The one delivery, and the take-down still owed for it."""

    def __init__(self) -> None:
        self.ctx: Context | None = None
        self._owed: Callable[[], None] | None = None

    def get(self, twin: TwinLab, run_dir: Path) -> Context:
        if self.ctx is None:
            self.ctx = deliver(twin, run_dir)
            self._owed = lambda: take_down(twin)
        else:  # the earlier module may have failed a host: every server back first
            ready = phase2.wait_running(self.ctx, twin.api())
            assert "Ready after" in ready.detail, ready.detail
        return self.ctx

    def release(self) -> None:
        owed, self._owed, self.ctx = self._owed, None, None
        if owed is not None:
            owed()

    def due(self, nextitem: Any) -> bool:
        """Whether the last test that needs it has run."""
        module = getattr(getattr(nextitem, "module", None), "__name__", "")
        return self._owed is not None and module not in MODULES


SHARED = Shared()
