"""Network drivers: how a network of each kind is built in the kernel, behind one protocol
(`drivers.api.NetworkDriver`).

- bridge: a Linux bridge holding the gateway; each endpoint is a veth pair plugged into it.
- null:   no connectivity; a container on it gets its own namespace with only `lo`.
- host:   no isolation; a container on it uses the host's network namespace.
- external: a bridge another plugin made; shoal publishes ports to it and isolates it.
- overlay: a network across the hosts of a cluster: per host a bridge and a VXLAN device.

A driver's module is imported when a network of its kind is first used: commands that only
read the state never import one.
"""

from __future__ import annotations

from ..errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .api import NetworkDriver

# scope: where a network of a driver exists (Docker's `Scope`)
LOCAL, GLOBAL = "local", "global"
# what a container on one of a driver's networks gets for a network namespace
ENDPOINTS = "endpoints"  # a sandbox of its own, with one endpoint per network it is on
HOST = "host"  # the host's namespace itself: no sandbox, no endpoint
NONE = "none"  # a sandbox of its own with only `lo`

# name -> ("module:class", scope, sandbox): the module is imported on first use; scope and
# sandbox are here so that reading the state (network ls, inspect) imports no driver
REGISTRY: dict[str, tuple[str, str, str]] = {
    "bridge": ("shoal.drivers.bridge:BridgeDriver", LOCAL, ENDPOINTS),
    "host": ("shoal.drivers.host:HostDriver", LOCAL, HOST),
    "null": ("shoal.drivers.null:NullDriver", LOCAL, NONE),
    # links another plugin made (shoal-cni chained after `bridge`): shoal adds its firewall
    "external": ("shoal.drivers.external:ExternalDriver", LOCAL, ENDPOINTS),
    # a network across the hosts of a cluster (--store): a bridge and a VXLAN device per host
    "overlay": ("shoal.drivers.overlay:OverlayDriver", GLOBAL, ENDPOINTS),
}
DEFAULT = "bridge"  # `network create` without -d, and the default network's driver
# the drivers whose networks are a cluster's (their records in the global store, their
# endpoints published by the host's watcher, their addresses from the host's blocks)
CLUSTERED = frozenset({"overlay"})
_loaded: dict[str, NetworkDriver] = {}
_factories: dict[str, Callable[[], NetworkDriver]] = {}


def register(name: str, factory: Callable[[], NetworkDriver]) -> None:
    """Add (or replace) a driver at run time."""
    _factories[name] = factory
    _loaded.pop(name, None)


def unregister(name: str) -> None:
    _factories.pop(name, None)
    _loaded.pop(name, None)


def names() -> list[str]:
    return sorted(set(REGISTRY) | set(_factories))


def get(name: str) -> NetworkDriver:
    """The driver called `name`; an unknown one is a clear error."""
    driver = _loaded.get(name)
    if driver is not None:
        return driver
    if name in _factories:
        driver = _factories[name]()
    elif name in REGISTRY:
        import sys

        module, _, cls = REGISTRY[name][0].partition(":")
        __import__(module)  # (not importlib.import_module: importlib brings warnings along)
        driver = getattr(sys.modules[module], cls)()
    else:
        creatable = [n for n in names() if n in _factories or n in (DEFAULT, "external", "overlay")]
        raise InvalidArgument(
            f"unknown network driver {name!r}: shoal supports {', '.join(creatable)} "
            f"({DEFAULT} is the default); host and null exist only as the built-in networks "
            "'host' and 'none'")
    _loaded[name] = driver
    return driver


def scope(name: str) -> str:
    """A driver's scope (LOCAL or GLOBAL), without importing a built-in one."""
    if name in REGISTRY and name not in _factories:
        return REGISTRY[name][1]
    return get(name).scope


def sandbox_mode(name: str) -> str:
    """What a container on a network of the driver gets (ENDPOINTS, HOST or NONE), without
    importing a built-in one."""
    if name in REGISTRY and name not in _factories:
        return REGISTRY[name][2]
    return get(name).sandbox


def clustered(name: str) -> bool:
    """Are the driver's networks a cluster's (controller/cluster.py)?"""
    return name in CLUSTERED
