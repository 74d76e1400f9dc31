"""The stores' protocols: what the controller may use of a store.

`LocalStore`: one host's state (networks, containers, endpoints, published ports, meta), the
write lock and the intent rows of mutating commands. `shoal.store.sqlite.Store` implements
it.

`GlobalStore`: state shared by the hosts of a multi-host network (the overlay driver's
networks, address leases, host membership), modelled on etcd v3's KV, Lease and Watch
services so that an etcd client implements it directly. `shoal.store.memory.MemoryStore`
implements it in one process. tests/unit/test_global_store_contract.py is the contract:
every implementation is added to its parameter list and must pass it unchanged.

The global store's model, as etcd's:

- keys are strings and values bytes. Keys are ordered and matched as their UTF-8 bytes
  (the same order as the strings');
- the store has one **revision**, a counter that grows with every change: each put or
  delete, each lease's expiry or revocation, makes it grow, and everything one change did
  carries the same revision. A key records the revision that created it
  (`create_revision`), the one that last changed it (`mod_revision`) and how many times it
  was written since it was created (`version`, 1 at creation);
- a **conditional write** names the `mod_revision` the caller last read (`if_revision`):
  it is done only if the key still has it, and 0 means "only if the key does not exist".
  That is etcd's transaction comparing `mod_revision`, for one key; it is enough for
  read-modify-write (read, compute, write if unchanged, else read again);
- a **lease** has a time to live; keys written with it are deleted, by one change, when it
  expires (its holder stopped calling `keep_alive`) or is revoked. A host's keys live as
  long as the host does;
- a **watch** of a prefix gives, in revision order, every put and delete of the keys under
  it from a revision on, none lost or repeated (the deletes of an expiry included). A
  watcher that lists a prefix (revision R) and watches it from R + 1 sees everything after
  its listing. Old revisions may be **compacted** away; watching from before the compacted
  revision raises `Compacted`, and the watcher must list again.

What is left out on purpose (etcd has it; add it here when a caller needs it): reads at an
old revision, multi-key transactions, range deletes, a lease's remaining time, prev_kv in
events, progress notifications."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

from ..errors import ShoalError

if TYPE_CHECKING:
    from collections.abc import Callable
    from ipaddress import IPv4Address
    from types import TracebackType
    from typing import Any, Self

    from ..model import Container, Endpoint, Network, PublishedPort, RemoteEndpoint, Sandbox


# -- the local store --------------------------------------------------------------------------


class Processes(Protocol):
    """What the local store asks about processes, handed in by its caller (the controller
    gives it `shoal.runtime.pids`): the store records which process holds an intent row and
    later asks whether that process still runs."""

    def start_time(self, pid: int) -> int | None:
        """A process's start time (any value that tells it from a later process with the
        same pid), or None if unknown."""
        ...

    def alive(self, pid: int | None, started: int | None) -> bool:
        """Does the process (pid, start time) still run?"""
        ...


class _Context(Protocol):
    def __enter__(self) -> None: ...

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class LocalStore(Protocol):
    """One host's state. Lookups by reference (`network`, `container`) accept a name, an id
    or an unambiguous id prefix and raise NotFound; adding a record whose name or unique key
    is taken raises Conflict. Reads need no lock and see committed state; changes are made
    inside `transaction()` (nested ones join the outer one), under `locked()` when they
    belong to a mutating command. Safe to use from several threads of one process."""

    root: str
    # called with the lock held, at the first acquisition, when a previous mutating command
    # did not finish; then at every first acquisition
    on_interrupted: Callable[[], None] | None
    on_locked: Callable[[], None] | None
    # called when the outermost lock is about to be released (still held, nothing
    # uncommitted): the moment to tell others what the command changed
    on_unlocking: Callable[[], None] | None

    def peek_touched(self) -> bool:
        """Were sandboxes touched since take_touched last took them?"""
        ...

    def take_touched(self) -> set[str]:
        """The sandboxes whose names may have changed since the last call (the store notes
        its own writes: endpoints added, updated or deleted, containers and sandboxes
        deleted); forgets them."""
        ...

    def close(self) -> None: ...

    # locking, transactions, intent
    def locked(self) -> _Context:
        """The write lock for a whole mutating command: excludes every other thread and
        process; re-entrant in one thread. Taking it records this process's intent;
        releasing it clears the record."""
        ...

    def transaction(self) -> _Context:
        """One atomic change, rolled back if the block raises; nested ones join it."""
        ...

    def interrupted(self) -> bool:
        """Did a mutating command die before finishing?"""
        ...

    # meta: small settings and markers
    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def delete_meta(self, key: str) -> None: ...

    # networks
    def add_network(self, net: Network) -> None: ...
    def network(self, ref: str) -> Network: ...
    def network_by_id(self, id_: str) -> Network: ...
    def networks(self) -> list[Network]: ...
    def update_network(self, id_: str, **changes: Any) -> None: ...
    def delete_network(self, id_: str) -> None:
        """The network and its endpoints."""
        ...

    # overlay networks: other hosts' endpoints (mirrored by the watcher), this host's blocks
    def put_remote(self, ep: RemoteEndpoint) -> None:
        """Add or replace a remote endpoint."""
        ...

    def delete_remote(self, id_: str) -> None: ...
    def remotes(self, network_id: str | None = None) -> list[RemoteEndpoint]: ...
    def take_touched_remote(self) -> set[str]:
        """The networks whose remote endpoints changed since the last call; forgets them."""
        ...

    def add_block(self, network_id: str, block: str) -> None: ...
    def delete_block(self, network_id: str, block: str) -> None: ...
    def blocks(self, network_id: str | None = None) -> list[tuple[str, str]]:
        """(network id, block as a CIDR) of each address block this host holds."""
        ...

    # containers
    def add_container(self, ctr: Container) -> None: ...
    def container(self, ref: str) -> Container: ...
    def container_by_id(self, id_: str) -> Container | None: ...
    def containers(self) -> list[Container]: ...
    def update_container(self, id_: str, **changes: Any) -> None: ...
    def delete_container(self, id_: str) -> None:
        """The container, with its own sandbox and that sandbox's endpoints and ports."""
        ...

    def name_taken(self, name: str) -> bool: ...
    def sharing_sandbox(self, container_id: str) -> list[str]:
        """Names of running containers in this container's sandbox."""
        ...

    def supervisors(self) -> list[tuple[int, int | None]]:
        """(pid, start) of each process answering for a running or created container."""
        ...

    def supervised_by(self, pid: int) -> list[str]: ...
    def hand_over(self, id_: str, pid: int, start: int | None, status: str) -> None: ...

    # sandboxes: a container's own has its id; one handed in by a runtime has a path
    def add_sandbox(self, sandbox: Sandbox) -> None: ...
    def sandbox_by_id(self, id_: str) -> Sandbox | None: ...
    def sandbox_by_owner(self, owner: str) -> Sandbox | None: ...
    def sandboxes(self, owned: bool | None = None) -> list[Sandbox]: ...
    def update_sandbox(self, id_: str, **changes: Any) -> None: ...
    def delete_sandbox(self, id_: str) -> None:
        """The sandbox, its endpoints and its published ports."""
        ...

    # endpoints (of a sandbox)
    def add_endpoint(self, ep: Endpoint) -> None:
        """Conflict if its address is taken on its network."""
        ...

    def endpoints(self, sandbox_id: str | None = None, network_id: str | None = None
                  ) -> list[Endpoint]: ...
    def plugged(self, network_id: str) -> int:
        """How many endpoints of the network hold an address."""
        ...

    def update_endpoint(self, id_: str, **changes: Any) -> None: ...
    def delete_endpoint(self, id_: str) -> None: ...
    def ip_in_use(self, network_id: str, ip: IPv4Address) -> bool: ...

    # published ports: (proto, host address, host port) is unique
    def add_ports(self, ports: list[PublishedPort]) -> None:
        """Conflict if one is published already."""
        ...

    def ports(self, sandbox_id: str | None = None) -> list[PublishedPort]: ...
    def port_rows(self, sandbox_id: str, network_id: str | None = None
                  ) -> list[tuple[str, str, int, str, int]]:
        """(proto, host_ip, host_port, dest_ip, container_port), as stored (cheap)."""
        ...

    def port_sample(self, limit: int) -> list[tuple[str, str, int, str, int]]: ...
    def holders(self, wanted: list[tuple[str, int]]) -> list[tuple[str, int, str, str]]:
        """(proto, host_port, host_ip, sandbox_id) of the published ports among
        `wanted` ((proto, host_port) pairs)."""
        ...

    def published_host_ports(self, lo: int = 1, hi: int = 65535) -> set[tuple[int, str]]: ...
    def delete_ports(self, sandbox_id: str, network_id: str | None = None) -> None: ...


# -- the global store -------------------------------------------------------------------------


class KeyValue(NamedTuple):
    """A key as read: its value, the revisions that created and last changed it, how often
    it was written since its creation, and its lease (0: none)."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0


PUT, DELETE = "put", "delete"


class Event(NamedTuple):
    """One change a watch reports: a put (`value` is the new value) or a delete (`value` is
    b""; an expiry or revocation of a lease is a delete too). `revision` is the change's
    revision (the key's new mod_revision for a put)."""

    kind: str  # PUT or DELETE
    key: str
    value: bytes
    revision: int


class GlobalStoreError(ShoalError):
    pass


class LeaseNotFound(GlobalStoreError):
    """The lease expired, was revoked, or never existed."""


class Compacted(GlobalStoreError):
    """The revisions asked for were compacted away; `revision` is the oldest one left."""

    def __init__(self, revision: int) -> None:
        super().__init__(f"revisions before {revision} were compacted; list again and watch "
                         "from the listing's revision + 1")
        self.revision = revision


class Watch(Protocol):
    """The changes under a prefix, in revision order (events of one revision in the order
    the change made them). Events are kept for the watcher until it reads them."""

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting up to `timeout` seconds (None: as long as it takes);
        None when none came in time or the watch is closed."""
        ...

    def close(self) -> None:
        """Stop watching (a `get` waiting in another thread returns None)."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class GlobalStore(Protocol):
    """A key-value store shared by hosts (see the module's docstring for its model). Safe to
    use from several threads."""

    def revision(self) -> int:
        """The store's current revision (that of the last change)."""
        ...

    def get(self, key: str) -> KeyValue | None:
        """The key, or None if it does not exist."""
        ...

    def get_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key starting with `prefix`, sorted by key, and the revision they were read
        at (watch from it + 1 to miss nothing)."""
        ...

    def put(self, key: str, value: bytes, *, lease: int = 0,
            if_revision: int | None = None) -> int | None:
        """Write the key (attached to `lease` if not 0; LeaseNotFound if that lease is
        gone). With `if_revision`, only if the key's mod_revision is that (0: only if the key
        does not exist). The revision of the write, or None when the condition failed."""
        ...

    def delete(self, key: str, *, if_revision: int | None = None) -> int | None:
        """Delete the key; with `if_revision`, only if its mod_revision is that. The revision
        of the delete, or None when there was no such key or the condition failed."""
        ...

    def grant(self, ttl: float) -> int:
        """A new lease (its id, never 0) that expires `ttl` seconds from now unless kept
        alive. (A server may round `ttl` up to its minimum.)"""
        ...

    def keep_alive(self, lease: int) -> float:
        """Restart the lease's time to live; returns it (seconds). LeaseNotFound if it has
        expired or was revoked."""
        ...

    def revoke(self, lease: int) -> None:
        """End the lease now: its keys are deleted (one change). LeaseNotFound if it is
        gone already."""
        ...

    def watch(self, prefix: str, start_revision: int | None = None) -> Watch:
        """The changes of keys under `prefix` from `start_revision` on (inclusive), or from
        now if None. Compacted if `start_revision` is older than the oldest revision kept."""
        ...

    def compact(self, revision: int) -> None:
        """Forget the history before `revision` (a watch from before it raises Compacted);
        the current values of keys are kept."""
        ...

    def close(self) -> None: ...


def create(store: GlobalStore, key: str, value: bytes, lease: int = 0) -> int | None:
    """Create the key if it does not exist: its revision, or None if it did."""
    return store.put(key, value, lease=lease, if_revision=0)


def update(store: GlobalStore, key: str, change: Callable[[bytes | None], bytes],
           lease: int = 0) -> tuple[bytes, int]:
    """Read-modify-write one key with compare-and-swap: `change` gets the current value (None
    if the key does not exist) and returns the new one; called again if another writer came
    first. (The new value, its revision.)"""
    while True:
        kv = store.get(key)
        value = change(kv.value if kv is not None else None)
        revision = store.put(key, value, lease=lease,
                             if_revision=kv.mod_revision if kv is not None else 0)
        if revision is not None:
            return value, revision

