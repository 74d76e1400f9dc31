"""The commands' side of a host's cluster (issue 12; the watcher process is
controller/watcher_main.py, the global store's keys are in shoal.cluster).

A host joins a cluster with `--store etcd://H1:2379,...` (env SHOAL_STORE), once: the local
store's meta row "cluster" then remembers the store, the host's id and its underlay address
(`--advertise-addr`, else the address its kernel sends from toward the store), and later
commands need no flag. The global store is only ever spoken to by overlay operations
(network create/rm -d overlay, and an address block when this host's are full), never on a
command's common path: importing its client alone costs ~150 ms.

Everything else goes through the host's watcher, a process of shoal's as the embedded
resolver is: it keeps the host's lease alive, publishes this host's overlay endpoints,
mirrors the cluster's overlay networks and the other hosts' endpoints into the local store
and the kernel. A command that changed something tells it at its last unlock (one line on
its control socket, answered at once: the publishing is the watcher's). Supervision as the
resolver's: its pid and start time are the meta row "watcher"; every command of a host in a
cluster checks it is alive (a /proc read) and starts it if not; `system reconcile` and
`doctor` check it too. The watcher writes the meta rows "cluster.lease" (the host's lease)
and "cluster.down" (since when the store cannot be reached, if it cannot)."""

from __future__ import annotations

import os

from ..errors import InvalidArgument, ShoalError
from ..faults import crashpoint
from .services import alive as _alive

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipaddress import IPv4Address
    from typing import Any

    from ..model import Network, RemoteEndpoint
    from ..store.protocol import GlobalStore
    from .context import Context

# {"store": url, "given": as given, "host": id, "address": underlay address}
CLUSTER_META = "cluster"
LEASE = "cluster.lease"  # the host's lease in the global store (the watcher's)
DOWN = "cluster.down"  # since when the watcher cannot reach the global store
WATCHER = "watcher"  # "pid start" of the watcher process
READY = "watcher.ready"  # the pid of the watcher once it has tried its first sync
WATCHER_SOCKET = "control"  # its socket, in the run directory's "cluster"
WATCHER_START_TIMEOUT = 30.0
WATCHER_REPLY_TIMEOUT = 10.0
WATCHER_BOOT = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
                "from shoal.controller.watcher_main import main; sys.exit(main(sys.argv[1:]))")


def store_setting(value: str | None) -> str | None:
    """--store URL, else SHOAL_STORE; None when neither is given. As given: it is parsed
    (store/etcd.parse_store_url) only when it differs from what the host recorded, so that a
    command with SHOAL_STORE set imports nothing more."""
    if value is None:
        return os.environ.get("SHOAL_STORE") or None
    if not value.strip():
        raise InvalidArgument("--store is empty: give the cluster's store, e.g. "
                              "etcd://10.0.0.1:2379,10.0.0.2:2379")
    return value.strip()


def normal_url(text: str) -> str:
    from ..store.etcd import format_store_url, parse_store_url

    return format_store_url(parse_store_url(text))


class ClusterLink:
    def __init__(self, ctx: Context, store_url: str | None, advertise: str | None) -> None:
        self.ctx = ctx
        self.given_store = store_setting(store_url)
        if advertise is None:
            advertise = os.environ.get("SHOAL_ADVERTISE_ADDR") or None
        if advertise is not None:
            from ..cluster.hosts import parse_address

            parse_address(advertise)
        self.given_address = advertise
        self.is_watcher = False  # set in the watcher's own process
        from .services import Service

        self.process = Service(ctx, WATCHER, "cluster", WATCHER_SOCKET, "the cluster watcher",
                               WATCHER_BOOT, WATCHER_START_TIMEOUT, WATCHER_REPLY_TIMEOUT)
        self._global: GlobalStore | None = None
        self._meta: dict[str, str] | None = None

    # -- the host's membership -------------------------------------------------------------

    def meta(self) -> dict[str, str] | None:
        if self._meta is None:
            value = self.ctx.store.get_meta(CLUSTER_META)
            if value:
                from .. import jsonwire

                self._meta = jsonwire.loads(value)
        return self._meta

    @property
    def configured(self) -> bool:
        return self.given_store is not None or self.meta() is not None

    @property
    def url(self) -> str:
        meta = self.meta()
        if meta is not None:
            return meta["store"]
        if self.given_store is not None:
            return normal_url(self.given_store)
        raise InvalidArgument(
            "this host is in no cluster: overlay networks need a cluster store; give "
            "--store etcd://HOST:2379[,HOST:2379...] (or set SHOAL_STORE)")

    @property
    def host_id(self) -> str:
        return self._joined()["host"]

    @property
    def address(self) -> IPv4Address:
        from ipaddress import IPv4Address

        return IPv4Address(self._joined()["address"])

    def _joined(self) -> dict[str, str]:
        meta = self.meta()
        if meta is None:
            self.url  # noqa: B018  # raises the error that says how to join
            raise InvalidArgument("this host has not joined its cluster yet")
        return meta

    def join(self) -> None:
        """At every command of a host in a cluster (cheap: one meta read, one /proc read):
        record what --store and --advertise-addr give if it changed, and have the watcher
        running."""
        if self.is_watcher or not self.configured:
            return
        meta = self.meta()
        changed = self._changed(meta)
        record = self.watcher_record()
        if not changed and record is not None and _alive(*record):
            if not self._synced():
                self._wait_ready()
            return
        store = self.ctx.store
        with store.locked():
            self._meta = None
            meta = self.meta()
            if self._changed(meta):
                self._record_membership(meta)
                record = self.watcher_record()
                if record is not None:
                    self.stop_watcher(record)  # it serves the old settings
            record = self.watcher_record()
            if record is None or not _alive(*record):
                if record is not None:
                    self._forget(record)
                    self.ctx.repairs.append(f"the cluster watcher (pid {record[0]}) had "
                                            "died; started again")
                self.start_watcher()
        if not self._synced():  # (unlocked: its first sync takes the lock)
            self._wait_ready()

    def _synced(self) -> bool:
        """Has the running watcher of this host been through its first sync (meta READY
        names it)? Until then a command does not see the cluster's overlays."""
        record = self.watcher_record()
        return record is not None and self.ctx.store.get_meta(READY) == str(record[0])

    def _wait_ready(self) -> None:
        """Wait until the watcher (one this command or a concurrent one started) has synced
        once: what the cluster has is here then."""
        record = self.watcher_record()
        if record is not None:
            from contextlib import suppress

            with suppress(ShoalError):
                self.request({"op": "ready"}, record, WATCHER_REPLY_TIMEOUT * 3)

    def _changed(self, meta: dict[str, str] | None) -> bool:
        return meta is None or (self.given_store is not None and
                                self.given_store != meta.get("given")) or (
            self.given_address is not None and meta.get("address") != self.given_address)

    def _record_membership(self, old: dict[str, str] | None) -> None:
        from .. import jsonwire
        from ..names import new_id

        given = self.given_store or (old or {}).get("given")
        assert given is not None
        url = normal_url(given)
        address = self.given_address
        if address is None:
            from ..cluster.hosts import route_source
            from ..store.etcd import parse_store_url

            first = parse_store_url(url)[0]
            address = str(route_source(first.host, first.port))
        host = (old or {}).get("host") or new_id()[:16]
        meta = {"store": url, "given": given, "host": host, "address": address}
        with self.ctx.store.transaction():
            self.ctx.store.set_meta(CLUSTER_META, jsonwire.dumps(meta))
        self._meta = meta

    # -- the global store, for overlay operations only -------------------------------------

    def global_store(self) -> GlobalStore:
        if self._global is None:
            from ..store.etcd import EtcdStore

            self._global = EtcdStore(self.url)
        return self._global

    def close(self) -> None:
        if self._global is not None:
            self._global.close()
            self._global = None

    def require_store(self, what: str) -> GlobalStore:
        """The global store for an overlay operation; while the watcher finds it
        unreachable, a one-line error naming it (no request is even tried)."""
        down = self.ctx.store.get_meta(DOWN)
        if down:
            raise ShoalError(f"the cluster store {self.url} cannot be reached (since {down}): "
                             f"{what} needs it; retry when it is back (containers running on "
                             "overlays keep working meanwhile)")
        return self.global_store()

    def create_network(self, net: Network) -> Network:
        from ..cluster import networks

        return networks.create(self.require_store(f"creating overlay network {net.name}"),
                               net, self.host_id)

    def remove_network(self, net: Network) -> None:
        """Remove an overlay from the cluster: refused while another host has endpoints on
        it."""
        from .. import jsonwire
        from ..cluster import networks
        from ..cluster.endpoints import ENDPOINTS_PREFIX
        from ..errors import Conflict

        gs = self.require_store(f"removing overlay network {net.name}")
        kvs, _ = gs.get_prefix(f"{ENDPOINTS_PREFIX}{net.id}/")
        others = set()
        for kv in kvs:
            try:
                host = str(jsonwire.loads(kv.value).get("host"))
            except (ValueError, AttributeError):
                continue
            if host != self.host_id:
                others.add(host)
        if others:
            raise Conflict(f"network {net.name} has active endpoints on {len(others)} other "
                           f"host(s) ({', '.join(sorted(others))}); remove those containers "
                           "first")
        networks.delete(gs, net)

    # -- addresses: this host's blocks ------------------------------------------------------

    def allocate(self, net: Network, requested: IPv4Address | None) -> IPv4Address:
        """An address of an overlay for an endpoint of this host, inside the caller's
        transaction: from the blocks this host holds (no round trip to the store), else from
        a block leased now."""
        from ipaddress import IPv4Network

        from .. import ipam
        from ..errors import Conflict
        from ..ipam import blocks as blockmod
        from ..ipam.addresses import _UsedAddresses

        assert net.subnet is not None and net.gateway is not None
        store = self.ctx.store
        used = _UsedAddresses(store, net.id)
        held = [IPv4Network(b) for _, b in store.blocks(net.id)]
        if requested is not None:
            ipam.check_static(requested, net.subnet, net.gateway, used, net.name)
            block = next(b for b in blockmod.blocks(net.subnet) if requested in b)
            if block not in held:
                self._claim(net, block)
            return requested
        # the block where the last address came from first, then the others
        held.sort(key=lambda b: net.last_ip is None or net.last_ip not in b)
        for block in held:
            try:
                addr = ipam.allocate(net.subnet, net.gateway, block, used, net.last_ip,
                                     net.name)
            except Conflict:
                continue
            break
        else:
            block = self._claim(net, None)
            addr = ipam.allocate(net.subnet, net.gateway, block, used, None, net.name)
        store.update_network(net.id, last_ip=addr)
        net.last_ip = addr
        return addr

    def _claim(self, net: Network, block: Any) -> Any:
        from ..ipam.blocks import BlockLeases

        lease = self.ctx.store.get_meta(LEASE)
        if not lease:
            raise ShoalError(f"this host holds no lease in the cluster store {self.url} (its "
                             "watcher has not registered it): a new address block of network "
                             f"{net.name} needs one; run shoal system reconcile, or retry")
        assert net.subnet is not None
        leases = BlockLeases(self.require_store(f"a new address block of network {net.name}"),
                             net.id, net.subnet, self.host_id, int(lease))
        got = leases.claim() if block is None else leases.claim_block(block)
        crashpoint("run:block")
        self.ctx.store.add_block(net.id, str(got))
        return got

    def remotes(self, network_id: str) -> list[RemoteEndpoint]:
        return self.ctx.store.remotes(network_id)

    # -- the watcher -------------------------------------------------------------------------

    def watcher_record(self) -> tuple[int, int | None] | None:
        return self.process.record()

    def flush(self) -> None:
        """At a command's last unlock: tell the watcher the local state changed, if it did
        and there is an overlay (the watcher answers at once and publishes after)."""
        if self.is_watcher or self.meta() is None or not self.ctx.store.peek_touched():
            return
        from .. import drivers

        if not any(drivers.clustered(n.driver)
                   for n in self.ctx.store.networks()):
            return
        record = self.watcher_record()
        try:
            if record is None or not _alive(*record):
                if record is not None:
                    self._forget(record)
                self.start_watcher()
            else:
                self.request({"op": "sync"}, record)
        except (ShoalError, OSError) as e:
            self.ctx.repairs.append(f"the cluster watcher could not be told of this change: "
                                    f"{e}; run shoal system reconcile")

    def start_watcher(self) -> None:
        """Start the watcher (it reports once its control socket listens; its first sync
        comes after, when the starter's lock is released: see join)."""
        self.process.start([self.ctx.root, self.ctx.run_dir])

    def stop_watcher(self, record: tuple[int, int | None] | None = None) -> None:
        self.process.stop(record)

    def status(self) -> dict[str, Any] | None:
        record = self.process.running()
        return None if record is None else self.request({"op": "status"}, record)

    def repair(self) -> str | None:
        """For `system reconcile` (the lock held): the watcher runs (in a cluster) and syncs
        everything again once the lock is released. A line saying what was wrong, or None."""
        if self.is_watcher or self.meta() is None:
            return None
        record = self.watcher_record()
        if record is not None and _alive(*record):
            try:
                # (answered at once: the caller holds the lock the full sync needs)
                self.request({"op": "resync", "wait": False}, record)
                return None
            except ShoalError:
                self.process.kill_and_forget(record)
                self.start_watcher()
                return f"the cluster watcher (pid {record[0]}) did not answer; started again"
        if record is not None:
            self._forget(record)
        self.start_watcher()
        return ("the cluster watcher had died; started again" if record is not None
                else "the cluster watcher was not running; started it")

    def request(self, message: dict[str, Any], record: tuple[int, int | None],
                timeout: float = WATCHER_REPLY_TIMEOUT) -> dict[str, Any]:
        return self.process.request(message, record, timeout)

    def _forget(self, record: tuple[int, int | None]) -> None:
        self.process.forget(record)
