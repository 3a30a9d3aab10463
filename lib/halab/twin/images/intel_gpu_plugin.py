"""A stand-in for Intel's GPU device plugin (intel/intel-gpu-plugin).

The real plugin finds /dev/dri/cardN of the i915 (or xe) driver, registers with the
kubelet and advertises `gpu.intel.com/i915` (or `/xe`) with `-shared-dev-num` slots per
card; a container given the resource has the card and render nodes mounted. This
machine has no GPU, so the device count comes from the inventory: the stand-in runs as
a placeholder and the kubelet, while it runs on a node the inventory gives a GPU,
advertises the node's resource with the plugin's slots. The device nodes it hands a
container have no driver behind them (ssh_world.device_nodes): opening them fails as on
a machine without the GPU.
"""

from __future__ import annotations

from typing import Any

IMAGE = "intel-gpu-plugin"
RUNS = (
    "stand-in: Intel GPU device plugin (the inventory's GPU advertised while it runs; "
    "no GPU on this machine, its device nodes open nothing)"
)


def is_gpu_plugin(image: str) -> bool:
    return image.split("@")[0].rsplit("/", 1)[-1].split(":")[0] == IMAGE


def shared_dev_num(container: dict[str, Any]) -> int:
    """The plugin's `-shared-dev-num` (1 when absent, as the plugin's default)."""
    words = [str(w) for w in [*(container.get("command") or []), *(container.get("args") or [])]]
    for i, word in enumerate(words):
        flag, _, value = word.lstrip("-").partition("=")
        if flag != "shared-dev-num":
            continue
        if not value and i + 1 < len(words):
            value = words[i + 1]
        try:
            return max(1, int(value))
        except ValueError:
            return 1
    return 1
