"""halab: build, validate and benchmark a high-availability home media cluster."""

import os as _os

__version__ = "0.1.0"

if _os.environ.get("HALAB_NET_GUARD") == "loopback":
    # Tests set this so every process they start (notebook kernels too) is fenced in.
    from halab import netguard as _netguard

    _netguard.install()
