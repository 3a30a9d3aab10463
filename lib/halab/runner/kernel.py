"""The kernel manager papermill uses: IPC sockets instead of TCP ports.

Over IPC the kernel listens on Unix sockets, so a notebook run opens no network port at
all (in keeping with the kit's loopback-only rule) and ipykernel has no unencrypted TCP
to warn about. The socket files live in the temp directory, never in the project.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any

from jupyter_client.manager import AsyncKernelManager


class IpcKernelManager(AsyncKernelManager):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("transport", "ipc")
        kwargs.setdefault("ip", os.path.join(tempfile.gettempdir(), f"halab-kernel-{uuid.uuid4()}"))
        super().__init__(**kwargs)
