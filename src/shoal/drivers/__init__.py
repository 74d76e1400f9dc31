"""Network drivers: how a network of each kind is built in the kernel.

- bridge: a Linux bridge holding the gateway; each endpoint is a veth pair plugged into it.
- null:   no connectivity; a container on it gets its own namespace with only `lo`.
- host:   no isolation; a container on it uses the host's network namespace.
"""

from __future__ import annotations

from ..errors import InvalidArgument

DRIVERS = ("bridge", "host", "null")


def check_driver(name: str) -> str:
    if name not in DRIVERS:
        raise InvalidArgument(
            f"unknown network driver {name!r}: shoal supports bridge (the default); "
            "host and null exist only as the built-in networks 'host' and 'none'"
        )
    return name
