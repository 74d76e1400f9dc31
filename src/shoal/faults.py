"""Fault injection for the crash-safety tests: with SHOAL_CRASH_AT=<point> in its environment,
a shoal process kills itself with SIGKILL when it reaches that point of a command, leaving
the state exactly as a crash there would."""

from __future__ import annotations

import os

# every point a mutating command passes, in order
POINTS = (
    "network-create:row", "network-create:bridge",
    "network-rm:row",
    "run:rows", "run:sandbox", "run:firewall", "run:spawned",
    "stop:released",
    "start:rows",
    "connect:row", "connect:attached",
    "disconnect:row",
)
# the points only overlay operations pass (in a cluster: tests/integration/
# test_overlay_failures.py), besides network-create:* and network-rm:row: after the VNI is
# taken, after the cluster's record is written or removed, after a new address block is leased
OVERLAY_POINTS = ("network-create:vni", "network-create:global", "network-rm:global",
                  "run:block")
# the points shoal-cni passes besides connect:* and disconnect:row (plugins/cni/commands.py)
CNI_POINTS = ("cni-add:sandbox", "cni-add:published", "cni-del:endpoint")


def crashpoint(name: str) -> None:
    if os.environ.get("SHOAL_CRASH_AT") == name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
