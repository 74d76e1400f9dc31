"""The cluster watcher: one process per host in a cluster (controller/cluster.py is the
commands' side). It is where this host and the global store meet:

- it registers the host (cluster/hosts.py) on a lease it keeps alive every KEEPALIVE
  seconds, and takes its address blocks over onto that lease after a restart;
- it publishes this host's overlay endpoints (cluster/endpoints.py) when a command says the
  local state changed (one line on its control socket, answered at once);
- it watches the cluster's keys and mirrors them here: overlay networks into the local store
  and the kernel (Networks.mirror), other hosts' endpoints into the local store's remote
  endpoints and the VXLAN device's static entries, the hosts' addresses into the firewall's
  VXLAN guard.

When the store cannot be reached it keeps what it has (the containers keep talking with the
entries they have), writes meta "cluster.down" so that overlay operations fail at once with
a line naming the store, and tries again every RETRY seconds; when it is back, a full sync
makes everything converge (a lease that expired meanwhile is replaced, and the endpoints and
blocks go onto the new one). Started by ClusterLink.start_watcher with argv ROOT RUN_DIR FD:
it syncs once (or finds the store down), opens run-dir/cluster/control, writes "ok" to FD.

Control requests, one JSON line each, one JSON line back:
  {"op": "sync"}    -> {"ok": true}     (the local endpoints are published right after)
  {"op": "resync"}  -> {"ok": true, ...} (after a full sync; with "wait": false at once,
                                         the sync after: system reconcile holds the lock)
  {"op": "status"}  -> {"ok": true, "host", "address", "lease", "down", "remotes", "errors"}
  {"op": "stop"}    -> {"ok": true}, then the process exits"""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time
from contextlib import suppress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..model import Network, RemoteEndpoint
    from ..store.protocol import Event, GlobalStore, KeyValue
    from .engine import Engine

PREFIX = "/shoal/v1/"
RETRY = 1.0  # seconds between tries while the store cannot be reached
LOG_MAX = 1 << 20


class Watcher:
    def __init__(self, engine: Engine) -> None:
        self.engine, self.ctx = engine, engine.ctx
        self.cluster = engine.ctx.cluster
        self.store = engine.ctx.store
        self.host_id = self.cluster.host_id
        self.address = self.cluster.address
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        # the lease the host's last watcher kept (meta "cluster.lease"): taken over if it is
        # still alive, so that a killed watcher's successor keeps the host's keys on it
        self.lease: int | None = _recorded_lease(self.store)
        self.connected = False
        self.down_since: str | None = None
        self.published: dict[str, bytes] = {}  # endpoint key -> the value this host put
        self.errors: dict[str, str] = {}  # what the watcher could not do, by subject
        self.watch: Any = None
        self.next_keepalive = 0.0
        self.local_dirty = True
        self.first_done = threading.Event()  # the first try to connect is over
        self.log_dir = -1  # run-dir/cluster (set by main)
        # a command killed half-way is repaired by whoever takes the lock next, often this
        # process (its event came first): the cluster's side of it then needs a full sync
        repair = self.store.on_interrupted

        def interrupted() -> None:
            if repair is not None:
                repair()
            self.queue.put(("resync", None))
        self.store.on_interrupted = interrupted

    # -- connecting -----------------------------------------------------------------------

    def gs(self) -> GlobalStore:
        return self.cluster.global_store()

    def connect(self) -> None:
        """Register (or keep the lease), sync everything, watch from there."""
        from ..cluster import hosts
        from ..store.protocol import LeaseNotFound

        gs = self.gs()
        if self.lease is not None:
            try:
                gs.keep_alive(self.lease)
            except LeaseNotFound:
                self.lease = None
        if self.lease is None:
            self.lease = hosts.register(gs, self.host_id, self.address)
            self.published = {}
            self._reclaim_blocks()
        else:  # the record may have gone with a compaction of history: write it again
            from .. import jsonwire

            gs.put(hosts.HOSTS_PREFIX + self.host_id,
                   jsonwire.dumps({"address": str(self.address)}).encode(), lease=self.lease)
        self.next_keepalive = time.monotonic() + hosts.KEEPALIVE
        revision = self.full_sync()
        self._watch(revision + 1)
        self.connected = True
        with self.store.locked(), self.store.transaction():
            from .cluster import DOWN, LEASE

            self.store.set_meta(LEASE, str(self.lease))
            self.store.delete_meta(DOWN)
        self.down_since = None

    def disconnect(self, why: str) -> None:
        from ..model import now
        from .cluster import DOWN

        if self.connected or self.down_since is None:
            self.log(f"the store cannot be reached: {why}")
        self.connected = False
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        if self.down_since is None:
            self.down_since = now()
            with self.store.locked(), self.store.transaction():
                self.store.set_meta(DOWN, self.down_since)
        self.errors["store"] = why

    def _watch(self, revision: int) -> None:
        watch = self.gs().watch(PREFIX, revision)
        self.watch = watch

        def forward() -> None:
            try:
                while self.watch is watch:
                    event = watch.get(timeout=1.0)
                    if event is not None:
                        self.queue.put(("event", event))
            except Exception as e:  # the stream is gone: the main loop reconnects
                if self.watch is watch:
                    self.queue.put(("broken", e))

        threading.Thread(target=forward, daemon=True, name="watch").start()

    def _reclaim_blocks(self) -> None:
        """This host's blocks onto its new lease (a lease lost while the store was away)."""
        from ipaddress import IPv4Network

        from ..errors import Conflict
        from ..ipam.blocks import BlockLeases

        assert self.lease is not None
        for network_id, block in self.store.blocks():
            try:
                net = self.store.network_by_id(network_id)
            except Exception:
                continue
            assert net.subnet is not None
            leases = BlockLeases(self.gs(), network_id, net.subnet, self.host_id, self.lease)
            try:
                leases.claim_block(IPv4Network(block))
                kv = self.gs().get(_block_key(network_id, block))
                if kv is not None and kv.lease != self.lease:  # still on the old lease
                    self.gs().put(kv.key, kv.value, lease=self.lease,
                                  if_revision=kv.mod_revision)
            except Conflict as e:
                # another host took it while this one's lease was lost: no new address comes
                # from it here (the containers that have one keep it; doctor says so)
                self.errors[f"block {block}"] = (f"{e}; it was this host's before its lease "
                                                 "expired")
                with self.store.locked(), self.store.transaction():
                    self.store.delete_block(network_id, block)

    # -- syncing --------------------------------------------------------------------------

    def full_sync(self) -> int:
        from ..cluster import endpoints, hosts, networks
        from ..ipam.blocks import BLOCKS_PREFIX

        kvs, revision = self.gs().get_prefix(PREFIX)
        nets = {}
        remote: dict[str, RemoteEndpoint] = {}
        addresses = []
        mine: dict[str, bytes] = {}
        held: list[KeyValue] = []  # address blocks this host holds
        for kv in kvs:
            if kv.key.startswith(networks.NETWORKS_PREFIX):
                net = networks.decode(kv)
                if net is not None:
                    nets[net.id] = net
            elif kv.key.startswith(endpoints.ENDPOINTS_PREFIX):
                ep = endpoints.decode(kv)
                if ep is None:
                    continue
                if ep.host == self.host_id:
                    # one left on another lease (a killed watcher's) is put again on this
                    # one, or deleted: b"" differs from every record
                    mine[kv.key] = kv.value if kv.lease == self.lease else b""
                else:
                    remote[ep.id] = ep
            elif kv.key.startswith(hosts.HOSTS_PREFIX):
                address = _host_address(kv)
                if address:
                    addresses.append(address)
            elif kv.key.startswith(BLOCKS_PREFIX) and _holder(kv) == self.host_id:
                held.append(kv)
        with self.store.locked():
            self._sync_networks(nets)
            self._sync_remotes(remote)
            self._set_hosts(addresses)
            # (with the lock held no `network create` of this host is half-way)
            networks.free_vnis(self.gs(), self.host_id)
            self._adopt_blocks(held)
        self.published = mine
        self.local_dirty = True
        self.publish()
        return revision

    def _adopt_blocks(self, held: list[KeyValue]) -> None:
        """The blocks the store says this host holds are in the local store, on this host's
        lease: a command killed after it leased one left it out (its addresses would be
        lost to the cluster while the host lives)."""
        from ..ipam.blocks import BLOCKS_PREFIX

        local = set(self.store.blocks())
        overlays = self._local_overlays()
        for kv in held:
            network_id, _, name = kv.key[len(BLOCKS_PREFIX):].partition("/")
            block = name.replace("-", "/")
            if network_id not in overlays:
                continue
            if (network_id, block) not in local:
                with self.store.transaction():
                    self.store.add_block(network_id, block)
            if kv.lease != self.lease:
                assert self.lease is not None
                self.gs().put(kv.key, kv.value, lease=self.lease,
                              if_revision=kv.mod_revision)

    def _local_overlays(self) -> dict[str, Network]:
        from .. import drivers

        return {n.id: n for n in self.store.networks()
                if drivers.clustered(n.driver)}

    def _sync_networks(self, nets: dict[str, Network]) -> None:
        local = self._local_overlays()
        for net_id, net in nets.items():
            if net_id not in local:
                self._mirror(net)
        for net_id in set(local) - set(nets):
            self._unmirror(net_id)

    def _mirror(self, net: Network) -> None:
        try:
            why = self.engine.network_ops.mirror(net)
        except Exception as e:
            why = f"overlay network {net.name} could not be made here: {e}"
        if why:
            self.errors[f"network {net.name}"] = why
        else:  # (its remote endpoints' entries: the driver writes them with the device)
            self.errors.pop(f"network {net.name}", None)

    def _unmirror(self, network_id: str) -> None:
        from ..cluster import networks
        from ..errors import NotFound

        try:  # a VNI its remover left (killed after the record went) goes too
            net = self.store.network_by_id(network_id)
        except NotFound:
            return
        networks.release_vni(self.gs(), net)  # (a store error: the sync is done again)
        try:
            why = self.engine.network_ops.unmirror(network_id)
        except Exception as e:
            why = f"overlay network {network_id[:12]} could not be removed here: {e}"
        if why:
            self.errors[f"network {network_id[:12]}"] = why

    def _sync_remotes(self, wanted: dict[str, RemoteEndpoint]) -> None:
        local = self._local_overlays()
        have = {ep.id: ep for ep in self.store.remotes()}
        for ep_id, ep in have.items():
            if wanted.get(ep_id) != ep:
                self._remove_remote(ep)
        for ep_id, ep in wanted.items():
            if ep.network_id not in local:
                continue
            if have.get(ep_id) != ep:
                self._add_remote(ep)
            else:  # known: its entries again, in case they went (a full sync is rare)
                self._program(ep)

    def _add_remote(self, ep: RemoteEndpoint) -> None:
        with self.store.transaction():
            self.store.put_remote(ep)
        self._program(ep)

    def _program(self, ep: RemoteEndpoint) -> None:
        from ..kernel import vxlan

        index = self._device(ep.network_id)
        if index is None:
            return
        try:
            vxlan.add_remote(self.ctx.host, index, ep.mac, ep.ip, ep.address)
            self.errors.pop(f"endpoint {ep.ip}", None)
        except Exception as e:
            self.errors[f"endpoint {ep.ip}"] = f"no entry for {ep.ip} of host {ep.host}: {e}"

    def _remove_remote(self, ep: RemoteEndpoint) -> None:
        from ..kernel import vxlan

        with self.store.transaction():
            self.store.delete_remote(ep.id)
        index = self._device(ep.network_id)
        if index is not None:
            try:
                vxlan.delete_remote(self.ctx.host, index, ep.mac, ep.ip)
            except Exception as e:
                self.errors[f"endpoint {ep.ip}"] = f"entry for {ep.ip} not removed: {e}"

    def _device(self, network_id: str) -> int | None:
        from ..drivers.overlay import vxlan_name
        from ..kernel import links

        link = links.get_link(self.ctx.host, vxlan_name(network_id))
        return link.index if link is not None else None

    def _set_hosts(self, addresses: list[str]) -> None:
        netfilter = self.ctx.netfilter
        setter = getattr(netfilter, "set_cluster_hosts", None)
        if setter is not None:
            try:
                setter(sorted(set(addresses)))
            except Exception as e:
                self.errors["firewall"] = f"the VXLAN guard could not be updated: {e}"

    def publish(self) -> None:
        """This host's overlay endpoints into the store, as the local store has them now."""
        if not self.local_dirty or self.lease is None:
            return
        from ..cluster import endpoints
        from ..model import RemoteEndpoint

        store = self.store
        wanted: dict[str, bytes] = {}
        for net_id in self._local_overlays():
            for ep in store.endpoints(network_id=net_id):
                if ep.ip is None or ep.mac is None:
                    continue
                record = RemoteEndpoint(id=ep.id, network_id=net_id, host=self.host_id,
                                        address=self.address, ip=ep.ip, mac=ep.mac,
                                        names=self._names(ep.sandbox_id, ep.aliases))
                wanted[endpoints.key(net_id, ep.id)] = endpoints.encode(record)
        gs = self.gs()
        assert self.lease is not None
        for key, value in wanted.items():
            if self.published.get(key) != value:
                gs.put(key, value, lease=self.lease)
                self.published[key] = value
        for key in set(self.published) - set(wanted):
            gs.delete(key)
            del self.published[key]
        self.local_dirty = False

    def _names(self, sandbox_id: str, aliases: list[str]) -> list[str]:
        sandbox = self.store.sandbox_by_id(sandbox_id)
        if sandbox is None or not sandbox.owned:
            return list(aliases)
        ctr = self.store.container_by_id(sandbox.owner or sandbox_id)
        names = [ctr.name, ctr.id[:12], ctr.hostname] if ctr is not None else []
        out: list[str] = []
        for name in names + list(aliases):
            if name and name.lower() not in {n.lower() for n in out}:
                out.append(name)
        return out

    # -- changes the watch reports ----------------------------------------------------------

    def apply(self, events: list[Event]) -> None:
        from ..cluster import endpoints, hosts, networks
        from ..store.protocol import PUT

        hosts_changed = any(ev.key.startswith(hosts.HOSTS_PREFIX) for ev in events)
        addresses = None
        if hosts_changed:  # (read before the lock: no round trip while commands wait)
            kvs, _ = self.gs().get_prefix(hosts.HOSTS_PREFIX)
            addresses = [a for a in (_host_address(kv) for kv in kvs) if a]
        with self.store.locked():
            for ev in events:
                if ev.key.startswith(networks.NETWORKS_PREFIX):
                    if ev.kind == PUT:
                        net = networks.decode(_kv(ev))
                        if net is not None and net.id not in self._local_overlays():
                            self._mirror(net)
                    else:
                        name = networks.name_of(ev.key)
                        for net in self._local_overlays().values():
                            if net.name == name:
                                self._unmirror(net.id)
                elif ev.key.startswith(endpoints.ENDPOINTS_PREFIX):
                    where = endpoints.split(ev.key)
                    if where is None:
                        continue
                    if ev.kind == PUT:
                        ep = endpoints.decode(_kv(ev))
                        if ep is None or ep.host == self.host_id:
                            continue
                        if ep.network_id in self._local_overlays():
                            for old in self.store.remotes(ep.network_id):
                                if old.id == ep.id and old != ep:  # moved: the old entries go
                                    self._remove_remote(old)
                            self._add_remote(ep)
                    else:
                        if ev.key in self.published:  # ours, deleted by someone: put back
                            del self.published[ev.key]
                            self.local_dirty = True
                        for ep in self.store.remotes(where[0]):
                            if ep.id == where[1]:
                                self._remove_remote(ep)
            if addresses is not None:
                self._set_hosts(addresses)

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        from ..cluster import hosts
        from ..errors import ShoalError
        from ..store.protocol import Compacted, LeaseNotFound

        next_try = 0.0
        while True:
            now = time.monotonic()
            wait = (self.next_keepalive if self.connected else next_try) - now
            try:
                item = self.queue.get(timeout=max(0.0, wait))
            except queue.Empty:
                item = None
            items = [item] if item is not None else []
            while True:  # everything queued meanwhile, in one go
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if any(kind == "stop" for kind, _ in items):
                return
            events = [value for kind, value in items if kind == "event"]
            if any(kind in ("sync", "resync") for kind, _ in items):
                self.local_dirty = True
            try:
                if not self.connected:
                    if time.monotonic() >= next_try or any(k == "resync" for k, _ in items):
                        next_try = time.monotonic() + RETRY
                        self.connect()
                else:
                    if any(kind == "broken" for kind, _ in items):
                        raise ShoalError(next(str(v) for k, v in items if k == "broken"))
                    if any(kind == "resync" for kind, _ in items):
                        self.full_sync()
                    if events:
                        self.apply(events)
                    if time.monotonic() >= self.next_keepalive:
                        assert self.lease is not None
                        self.gs().keep_alive(self.lease)
                        self.next_keepalive = time.monotonic() + hosts.KEEPALIVE
                    self.publish()
                self.errors.pop("store", None)
            except LeaseNotFound:
                self.lease = None  # expired while away: connect registers again
                self.disconnect("the host's lease had expired")
                next_try = 0.0
            except Compacted:
                self.disconnect("the watch fell behind the store's history")
                next_try = 0.0
            except (ShoalError, OSError) as e:
                self.disconnect(str(e))
                next_try = time.monotonic() + RETRY
            except Exception as e:  # a bug, or the local store busy: logged, tried again
                self.log(f"{type(e).__name__}: {e}", trace=True)
                self.errors["watcher"] = f"the cluster watcher failed: {type(e).__name__}: {e}"
                self.local_dirty = True
                if self.connected:  # everything again from a full sync
                    with suppress(Exception):
                        self.disconnect(f"after an error: {e}")
                next_try = time.monotonic() + RETRY
            if not self.first_done.is_set():
                from .cluster import READY

                with self.store.locked(), self.store.transaction():
                    self.store.set_meta(READY, str(os.getpid()))
                self.first_done.set()
            for kind, done in items:
                if kind == "resync" and done is not None:
                    done.set()

    def log(self, line: str, trace: bool = False) -> None:
        """A line in run-dir/cluster/watcher.log (kept under LOG_MAX bytes): what went wrong,
        for whoever debugs it (doctor shows the watcher's errors)."""
        import traceback

        from ..model import now

        text = f"{now()} {line}\n" + (traceback.format_exc() if trace else "")
        with suppress(OSError):
            fd = os.open("watcher.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=self.log_dir)
            try:
                if os.fstat(fd).st_size > LOG_MAX:
                    os.ftruncate(fd, 0)
                os.write(fd, text.encode(errors="replace"))
            finally:
                os.close(fd)

    def status(self) -> dict[str, Any]:
        return {"ok": True, "host": self.host_id, "address": str(self.address),
                "lease": self.lease, "connected": self.connected, "down": self.down_since,
                "published": len(self.published), "errors": dict(self.errors)}


def _holder(kv: KeyValue) -> str | None:
    from .. import jsonwire

    try:
        return str(jsonwire.loads(kv.value)["host"])
    except (ValueError, KeyError, TypeError):
        return None


def _recorded_lease(store: Any) -> int | None:
    from .cluster import LEASE

    value = store.get_meta(LEASE)
    return int(value) if value and value.isdigit() else None


def _kv(ev: Event) -> KeyValue:
    from ..store.protocol import KeyValue

    return KeyValue(ev.key, ev.value, 0, ev.revision, 0)


def _host_address(kv: KeyValue) -> str | None:
    from .. import jsonwire

    try:
        return str(jsonwire.loads(kv.value)["address"])
    except (ValueError, KeyError, TypeError):
        return None


def _block_key(network_id: str, block: str) -> str:
    from ipaddress import IPv4Network

    from ..ipam.blocks import key

    return key(network_id, IPv4Network(block))


def _serve(control: socket.socket, watcher: Watcher) -> None:
    from .services import read_line

    while True:
        try:
            conn, _ = control.accept()
        except OSError:
            return
        try:
            conn.settimeout(30)
            request = json.loads(read_line(conn) or b"{}")
            op = request.get("op")
            if op == "sync":
                watcher.queue.put(("sync", None))
                reply: dict[str, Any] = {"ok": True}
            elif op == "resync":
                done = threading.Event()
                watcher.queue.put(("resync", done))
                if request.get("wait", True):  # (not with the lock held: the sync takes it)
                    done.wait(20)
                reply = {"ok": True, **watcher.status()}
            elif op == "ready":
                watcher.first_done.wait(20)
                reply = watcher.status()
            elif op == "status":
                reply = watcher.status()
            elif op == "stop":
                watcher.queue.put(("stop", None))
                reply = {"ok": True}
            else:
                reply = {"ok": False, "error": f"unknown request {op!r}"}
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except (OSError, ValueError):
            pass
        finally:
            conn.close()


def main(argv: list[str]) -> int:
    import signal

    root, run_dir, fd = argv
    report = os.fdopen(int(fd), "w")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    # The command that starts the watcher holds the store's lock until it has the report,
    # so nothing before the report may wait for that lock: the report comes once the control
    # socket listens; the engine and the first sync come after (requests wait in the
    # socket's backlog meanwhile; `ready` is answered after the first sync).
    try:
        from .. import dirs
        from ..runtime.cgroup import Cgroups
        from .cluster import WATCHER_SOCKET

        Cgroups(run_dir).join_supervisors()  # out of the command's cgroup
        run_fd = dirs.open_dir(run_dir, "run directory (--run-dir)")
        cluster_fd = dirs.subdir(run_fd, "cluster", os.path.join(run_dir, "cluster"))
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        dirs.bind_socket(control, cluster_fd, WATCHER_SOCKET)
        control.listen(64)
    except Exception as e:  # reported to the command that started it, which says it
        report.write(f"err\tthe cluster watcher could not start: {e}")
        report.close()
        return 1
    report.write("ok")
    report.close()
    from .engine import Engine

    engine = Engine(root, run_dir)
    engine.ctx.cluster.is_watcher = True
    engine.bootstrap()
    watcher = Watcher(engine)
    watcher.log_dir = cluster_fd
    threading.Thread(target=_serve, args=(control, watcher), daemon=True,
                     name="control").start()
    try:
        watcher.run()
    finally:
        control.close()
        engine.close()
    return 0
