"""The store protocols describe what is used and what is implemented: every method the
controller's modules call on a store is in LocalStore, and each implementation has every
member of its protocol with the protocol's parameters."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import shoal
from shoal.ipam import protocol as ipam_protocol
from shoal.ipam.addresses import StoreAddresses
from shoal.ipam.hostports import HostPorts
from shoal.store import Store
from shoal.store.etcd import EtcdStore, EtcdWatch
from shoal.store.memory import MemoryStore, MemoryWatch
from shoal.store.protocol import GlobalStore, LocalStore, Processes, Watch

SRC = Path(shoal.__file__).parent
# the store's users: everything but the store itself
USERS = sorted(p for p in SRC.rglob("*.py") if "store" not in p.relative_to(SRC).parts)


def members(protocol: type) -> dict[str, inspect.Signature | None]:
    """A protocol's methods (their signatures) and attributes (None)."""
    out: dict[str, inspect.Signature | None] = {
        name: None for name in getattr(protocol, "__annotations__", {})}
    for name, value in vars(protocol).items():
        if callable(value) and (not name.startswith("_") or name in ("__enter__", "__exit__")):
            out[name] = inspect.signature(value)
    return out


def _global(path: Path) -> bool:
    """Is the module a user of the global store (it names GlobalStore, and its `store` is
    one), not of the local store? A module that reaches the local store through a Context
    (`ctx.store`) is the local store's user, and calls the global one `gs` (or
    `global_store()`): the controller's side of a cluster."""
    text = path.read_text()
    return "GlobalStore" in text and "ctx.store" not in text


# how the controller's side of a cluster names the global store
_GLOBAL_NAMES = r"(?:\bgs\(?\)?|\bglobal_store\(\)|\brequire_store\([^)]*\))\.([A-Za-z_]\w*)"


def used_on_stores(global_: bool = False) -> dict[str, list[str]]:
    """store.X as the store's users write it (imports and module paths such as
    shoal.store.etcd aside): X -> the files; of the global store's users with `global_`
    (and gs.X in the modules that use both stores)."""
    out: dict[str, list[str]] = {}
    for path in USERS:
        both = "GlobalStore" in path.read_text() and not _global(path)
        if _global(path) != global_ and not (global_ and both):
            continue
        pattern = _GLOBAL_NAMES if global_ and both else r"(?<!shoal\.)\bstore\.([A-Za-z_]\w*)"
        for line in path.read_text().splitlines():
            if "import " in line:
                continue
            for name in re.findall(pattern, line):
                out.setdefault(name, []).append(str(path.relative_to(SRC)))
    return out


def test_the_controller_uses_only_what_the_local_store_protocol_has() -> None:
    used = used_on_stores()
    assert {"locked", "transaction", "add_endpoint", "port_rows"} <= set(used)  # (found)
    missing = {name: files for name, files in used.items() if name not in members(LocalStore)}
    assert missing == {}


def test_the_global_store_s_users_use_only_what_its_protocol_has() -> None:
    used = used_on_stores(global_=True)
    assert {"get_prefix", "grant"} <= set(used)  # (found: cluster/hosts.py, ipam/blocks.py)
    assert "keep_alive" in used  # (found: controller/watcher_main.py's gs)
    missing = {name: files for name, files in used.items()
               if name not in members(GlobalStore)}
    assert missing == {}


@pytest.mark.parametrize(("protocol", "implementation"), [
    (LocalStore, Store), (GlobalStore, MemoryStore), (Watch, MemoryWatch),
    (GlobalStore, EtcdStore), (Watch, EtcdWatch),
    (ipam_protocol.AddressAllocator, StoreAddresses),
    (ipam_protocol.HostPortAllocator, HostPorts),
], ids=lambda c: c.__name__)
def test_an_implementation_has_every_member_of_its_protocol(protocol: type,
                                                            implementation: type) -> None:
    for name, wanted in members(protocol).items():
        if wanted is None:  # an attribute: set by the constructor
            assert name in inspect.getsource(implementation.__init__), name
            continue
        assert hasattr(implementation, name), name
        got = inspect.signature(getattr(implementation, name))
        assert [(p.name, p.kind) for p in got.parameters.values()] == [
            (p.name, p.kind) for p in wanted.parameters.values()], name


def test_the_runtime_pids_module_answers_the_processes_protocol() -> None:
    from shoal.runtime import pids

    for name, wanted in members(Processes).items():
        assert wanted is not None
        got = inspect.signature(getattr(pids, name))
        assert [p.name for p in got.parameters.values()] == [
            p.name for p in wanted.parameters.values() if p.name != "self"], name
