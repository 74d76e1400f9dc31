"""Sandboxes and their endpoints: CNM's create endpoint, join and leave.

A sandbox is a network namespace (a `model.Sandbox` record). A container's own is made and
removed by shoal; one handed in by another runtime (its namespace path) is only joined and
left. An endpoint is a sandbox's attachment to a network: `create_endpoint` records it and
takes its address, `join` has the network's driver plug it into the sandbox and adds its
firewall elements, `leave` undoes that, `delete_endpoint` forgets it.

Callers hold the store's lock (`with store.locked():`) around each operation."""

from __future__ import annotations

from .. import drivers
from ..errors import Conflict, ShoalError
from ..faults import crashpoint
from ..model import Endpoint, Network, PublishedPort, Sandbox, now
from ..names import new_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from ipaddress import IPv4Address

    from ..kernel.netlink import Netlink
    from ..ports import Binding
    from .context import Context


def pending_key(endpoint_id: str) -> str:
    """The meta row that marks an endpoint whose kernel side a join is making: if it is still
    there when the endpoint's kernel side is missing, the join was interrupted."""
    return f"pending-connect:{endpoint_id}"


def handed_off_key(sandbox_id: str) -> str:
    """The meta row that marks a sandbox whose endpoints are handed off: shoal makes each
    one's veth pair in the host namespace and its runtime (dockerd) moves the peer into the
    namespace and configures it. shoal never enters such a sandbox, and its namespace need
    not exist yet (dockerd's SandboxKey becomes a namespace only once runc's hook runs): an
    endpoint of it is alive while its host end is there."""
    return f"handed-off:{sandbox_id}"


def next_ifname(endpoints: list[Endpoint]) -> str:
    used = {ep.ifname for ep in endpoints}
    n = 0
    while f"eth{n}" in used:
        n += 1
    return f"eth{n}"


class Sandboxes:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # -- sandboxes -------------------------------------------------------------------------

    def record(self, sandbox_id: str) -> Sandbox | None:
        return self.ctx.store.sandbox_by_id(sandbox_id)

    def path(self, sandbox: Sandbox | str) -> str:
        """The namespace file of a sandbox (by record or id)."""
        if isinstance(sandbox, str):
            found = self.record(sandbox)
            if found is None:
                return self.ctx.owned_sandbox_path(sandbox)
            sandbox = found
        return sandbox.path or self.ctx.owned_sandbox_path(sandbox.id)

    def add(self, sandbox_id: str, owner: str, path: str = "") -> Sandbox:
        """Record a sandbox: owned (no path: shoal makes it at netns/<id>) or handed in (the
        runtime's namespace path). Nothing is made in the kernel."""
        sandbox = Sandbox(id=sandbox_id, path=path, owned=not path, created=now(), owner=owner)
        self.ctx.store.add_sandbox(sandbox)
        return sandbox

    def make(self, sandbox_id: str, endpoints: list[tuple[Endpoint, Network]]) -> None:
        """Make an owned sandbox's namespace and join its endpoints (the first gets the
        default route)."""
        from ..kernel import links, ns
        from ..kernel.netlink import Netlink

        self.ctx.prepare_netns_dir()
        sock = ns.create_netns(self.ctx.owned_sandbox_path(sandbox_id), Netlink)
        try:
            if not endpoints:
                links.bring_up_lo(sock)
            for i, (ep, net) in enumerate(endpoints):
                drivers.get(net.driver).join(self.ctx, sock, net, ep, first=i == 0,
                                             fresh=i == 0)
        finally:
            sock.close()

    def unmake(self, sandbox_id: str) -> None:
        """Unmount an owned sandbox's namespace; the kernel removes it and its veths once the
        last process in it is gone. A handed-in one is the runtime's: left alone."""
        from ..kernel import ns

        record = self.record(sandbox_id)
        if record is None or record.owned:
            ns.remove_netns(self.ctx.owned_sandbox_path(sandbox_id))

    def enter(self, sandbox_id: str) -> Netlink:
        """A netlink socket inside a sandbox (closed when its `with` ends)."""
        from ..kernel import ns
        from ..kernel.netlink import Netlink

        with ns.entered(self.path(sandbox_id)):
            return Netlink()

    def delete(self, sandbox_id: str) -> None:
        """Forget a sandbox, its endpoints and its ports (their kernel side is gone)."""
        with self.ctx.store.transaction():
            self.ctx.store.delete_sandbox(sandbox_id)
            self.ctx.store.delete_meta(handed_off_key(sandbox_id))

    def handed_off(self, sandbox_id: str) -> bool:
        return self.ctx.store.get_meta(handed_off_key(sandbox_id)) is not None

    # -- handed-in sandboxes (CNI runtimes, dockerd) -----------------------------------------

    def add_external(self, path: str, owner: str) -> Sandbox:
        """Record a namespace another runtime made (its path) as a sandbox shoal may join
        endpoints to; the same owner gets the same sandbox back."""
        import os

        from ..errors import InvalidArgument
        from ..kernel import ns

        if not os.path.isabs(path) or not ns.is_netns(path):
            raise InvalidArgument(f"{path} is not a network namespace: give the path of a "
                                  "namespace file (e.g. /run/netns/NAME), not a symlink")
        if not owner:
            raise InvalidArgument("a handed-in sandbox needs an owner (e.g. cni:CONTAINER-ID)")
        store = self.ctx.store
        with store.locked():
            found = store.sandbox_by_owner(owner)
            if found is not None:
                if found.path != path:
                    raise Conflict(f"{owner} already has a sandbox, at {found.path}; remove "
                                   "it first")
                return found
            with store.transaction():
                return self.add(new_id(), owner, path)

    def connect_external(self, sandbox_id: str, net: Network, requested: IPv4Address | None,
                         aliases: list[str], ifname: str | None = None,
                         mac: str | None = None) -> Endpoint:
        """CNM's create endpoint and join, for a handed-in sandbox: the endpoint exists in
        the kernel when this returns."""
        store = self.ctx.store
        with store.locked():
            record = self.record(sandbox_id)
            if record is None or record.owned:
                raise Conflict(f"no handed-in sandbox {sandbox_id[:12]}")
            if ifname is not None:
                from ..names import validate_ifname

                validate_ifname(ifname, "interface")
                if any(e.ifname == ifname for e in store.endpoints(sandbox_id=sandbox_id)):
                    raise Conflict(f"the sandbox already has an interface {ifname}")
            with store.transaction():
                ep = self.create_endpoint(sandbox_id, net, requested, aliases, plugged=True,
                                          ifname=ifname, pending=True)
                if mac is not None:
                    store.update_endpoint(ep.id, mac=mac)
                    ep = ep.replace(mac=mac)
            crashpoint("connect:row")
            self.join(sandbox_id, ep, net)
            return ep

    # -- handed-off endpoints (dockerd's remote network driver API) ---------------------------

    def add_handed_off(self, owner: str, net: Network, ip: IPv4Address,
                       mac: str | None) -> tuple[Sandbox, Endpoint]:
        """CNM's create endpoint for a runtime that configures the interface itself: a
        sandbox of its own (marked handed off, no namespace path yet) with one endpoint on
        `net` that is to have exactly `ip` (checked now, taken at `hand_off`). The same
        owner gets the same sandbox back."""
        from .. import ipam

        if not owner:
            raise ShoalError("a handed-off sandbox needs an owner (e.g. docker:ENDPOINT-ID)")
        if drivers.sandbox_mode(net.driver) != drivers.ENDPOINTS or not hasattr(
                drivers.get(net.driver), "hand_off"):
            raise Conflict(f"network {net.name} (driver {net.driver}) cannot hand endpoints "
                           "off to another runtime; use a bridge network")
        store = self.ctx.store
        with store.locked():
            found = store.sandbox_by_owner(owner)
            if found is not None:
                eps = store.endpoints(sandbox_id=found.id)
                if not self.handed_off(found.id) or [e.network_id for e in eps] != [net.id]:
                    raise Conflict(f"{owner} already has a sandbox, on another network")
                return found, eps[0]
            assert net.subnet is not None and net.gateway is not None
            ipam.check_static(ip, net.subnet, net.gateway, [], net.name)
            with store.transaction():
                sandbox = Sandbox(id=new_id(), path="", owned=False, created=now(),
                                  owner=owner)
                store.add_sandbox(sandbox)
                store.set_meta(handed_off_key(sandbox.id), "1")
                ep = Endpoint(id=new_id(), sandbox_id=sandbox.id, network_id=net.id,
                              ifname="eth0", ip=None, mac=mac or ipam.mac_for(ip),
                              aliases=[], requested_ip=ip)
                store.add_endpoint(ep)
            return sandbox, ep

    def hand_off(self, sandbox_id: str, net: Network, path: str) -> tuple[Endpoint, str]:
        """CNM's join for a handed-off endpoint: its address taken, its veth pair made in
        the host namespace (the host end on the bridge, the peer left for the runtime to
        move into `path`, its namespace), its firewall elements added. Returns the endpoint
        and the peer's name. Undone if a step fails; an interrupted one is rolled back by
        reconcile (the pending marker)."""
        import os

        from ..errors import InvalidArgument

        if not os.path.isabs(path):
            raise InvalidArgument(f"the sandbox key {path!r} is not an absolute path")
        store = self.ctx.store
        driver = drivers.get(net.driver)
        with store.locked():
            if not self.handed_off(sandbox_id):
                raise Conflict(f"no handed-off sandbox {sandbox_id[:12]}")
            ep = next((e for e in store.endpoints(sandbox_id=sandbox_id)
                       if e.network_id == net.id), None)
            if ep is None:
                raise Conflict(f"sandbox {sandbox_id[:12]} has no endpoint on network "
                               f"{net.name}")
            if ep.ip is not None and driver.endpoint_present(self.ctx, net, ep):
                return ep, driver.peer_name(ep)  # joined already (a retried call)
            assert ep.requested_ip is not None
            with store.transaction():
                ip = self.allocate(net, ep.requested_ip)
                store.update_endpoint(ep.id, ip=ip)
                store.update_sandbox(sandbox_id, path=path)
                store.set_meta(pending_key(ep.id), "hand-off")
            ep = ep.replace(ip=ip)
            crashpoint("hand-off:row")
            try:
                peer = driver.hand_off(self.ctx, net, ep)
                crashpoint("hand-off:attached")
                if added := self.ctx.netfilter.endpoint_elements(net, ep):
                    self.ctx.netfilter.apply(added=added)
            except BaseException:
                from contextlib import suppress  # not at the top: `network ls` loads this

                with suppress(ShoalError, OSError):
                    driver.leave(self.ctx, None, net, ep)
                with store.transaction():
                    store.update_endpoint(ep.id, ip=None)
                    store.delete_meta(pending_key(ep.id))
                raise
            with store.transaction():
                store.delete_meta(pending_key(ep.id))
            return ep, peer

    def take_back(self, sandbox_id: str, net: Network) -> None:
        """CNM's leave for a handed-off endpoint: its ports and firewall elements go, its
        address is released, its veth pair is deleted from the host's side (wherever the
        peer is now). The endpoint stays recorded until `remove_external`. Leaving twice,
        or an endpoint never joined, is not an error."""
        store = self.ctx.store
        with store.locked():
            ep = next((e for e in store.endpoints(sandbox_id=sandbox_id)
                       if e.network_id == net.id), None)
            if ep is None or not self.handed_off(sandbox_id):
                return
            rows = store.port_rows(sandbox_id, net.id)
            removed = (self.ctx.netfilter.endpoint_elements(net, ep, rows)
                       if ep.ip is not None else [])
            with store.transaction():
                store.delete_ports(sandbox_id, net.id)
                store.update_endpoint(ep.id, ip=None)
                store.delete_meta(pending_key(ep.id))
                if removed:
                    self.ctx.netfilter.apply(removed=removed)
            crashpoint("take-back:row")
            drivers.get(net.driver).leave(self.ctx, None, net, ep)
            if ep.ip is not None:
                self.ctx.flush_conntrack([str(ep.ip)], [(proto, host_ip, int(port)) for
                                                        proto, host_ip, port, _d, _p in rows])

    def disconnect_external(self, sandbox_id: str, net: Network) -> None:
        """CNM's leave and delete endpoint, for a handed-in sandbox (whose namespace may be
        gone already, or be a file no longer mounted: then only the records and the
        firewall's elements go)."""
        from ..kernel import ns

        store = self.ctx.store
        with store.locked():
            ep = next((e for e in store.endpoints(sandbox_id=sandbox_id)
                       if e.network_id == net.id), None)
            if ep is None:
                return
            self.leave(sandbox_id, ep, net, in_sandbox=ns.is_netns(self.path(sandbox_id)))

    def remove_external(self, sandbox_id: str) -> None:
        """Leave every network and forget a handed-in sandbox; its namespace is left alone."""
        store = self.ctx.store
        with store.locked():
            record = self.record(sandbox_id)
            if record is None or record.owned:
                return
            for ep in store.endpoints(sandbox_id=sandbox_id):
                ep_net = store.network_by_id(ep.network_id)
                if self.handed_off(sandbox_id):  # never entered: its runtime's to configure
                    self.take_back(sandbox_id, ep_net)
                else:
                    self.disconnect_external(sandbox_id, ep_net)
            self.delete(sandbox_id)

    def publish_external(self, sandbox_id: str, net: Network,
                         bindings: list[Binding]) -> list[PublishedPort]:
        """Publish host ports to a handed-in sandbox's endpoint on `net` (a CNI runtime's
        portMappings, dockerd's ProgramExternalConnectivity) through the firewall's maps.
        Each host port is checked as a container's is (against shoal's ports and the host's
        processes, by binding it) but not held afterwards: no shoal process outlives the
        call to hold it, as none holds the reference portmap plugin's. The ports go when the
        endpoint leaves, or with `unpublish_external`."""
        from .. import ipam
        from .. import ports as portspec
        from ..kernel import links
        from ..rules import port_elements

        store = self.ctx.store
        with store.locked():
            record = self.record(sandbox_id)
            if record is None or record.owned:
                raise Conflict(f"no handed-in sandbox {sandbox_id[:12]}")
            ep = next((e for e in store.endpoints(sandbox_id=sandbox_id)
                       if e.network_id == net.id), None)
            if ep is None or ep.ip is None:
                raise Conflict(f"sandbox {record.owner or sandbox_id[:12]} is not connected "
                               f"to network {net.name}: connect it before publishing ports")
            if not bindings:
                return []
            host_ips = ({a.ip for a in links.addresses(self.ctx.host, family=4)}
                        if any(b.host_ip != portspec.ANY for b in bindings) else set())
            checked: list[socket.socket] = []
            try:
                with store.transaction():
                    published = ipam.HostPorts(store).allocate(
                        sandbox_id, net, ep.ip, bindings, host_ips, checked)
                    rows = [(p.proto, str(p.host_ip), p.host_port, str(p.dest_ip),
                             p.container_port) for p in published]
                    self.ctx.netfilter.apply(added=port_elements(rows))
            finally:
                for sock in checked:
                    sock.close()
            # a client already sending to one of these ports keeps its entry otherwise
            self.ctx.flush_conntrack([], [(p.proto, str(p.host_ip), p.host_port)
                                          for p in published])
            return published

    def unpublish_external(self, sandbox_id: str, net: Network) -> None:
        """Remove the host ports published to a handed-in sandbox on `net` (none: nothing)."""
        from ..rules import port_elements

        store = self.ctx.store
        with store.locked():
            rows = store.port_rows(sandbox_id, net.id)
            if not rows:
                return
            with store.transaction():
                store.delete_ports(sandbox_id, net.id)
                self.ctx.netfilter.apply(removed=port_elements(rows))
            self.ctx.flush_conntrack([], [(proto, host_ip, int(port))
                                          for proto, host_ip, port, _d, _p in rows])

    # -- addresses -------------------------------------------------------------------------

    def allocate(self, net: Network, requested: IPv4Address | None) -> IPv4Address:
        """An address on `net` (the requested one, checked), inside the caller's
        transaction."""
        from .. import ipam

        limit = drivers.get(net.driver).max_endpoints(net)
        if limit is not None and self.ctx.store.plugged(net.id) >= limit[0]:
            raise Conflict(limit[1])
        if drivers.clustered(net.driver):  # from this host's address blocks
            return self.ctx.cluster.allocate(net, requested)
        return ipam.StoreAddresses(self.ctx.store).allocate(net, requested)

    # -- endpoints (CNM) -------------------------------------------------------------------

    def create_endpoint(self, sandbox_id: str, net: Network, requested: IPv4Address | None,
                        aliases: list[str], plugged: bool, ifname: str | None = None,
                        pending: bool = False) -> Endpoint:
        """Record an endpoint of a sandbox on a network, with its address if it is to be
        plugged in now (inside the caller's transaction). `pending`: it is to be joined to a
        sandbox that exists, and is marked so until `join` is done (see pending_key)."""
        from .. import ipam

        if drivers.sandbox_mode(net.driver) != drivers.ENDPOINTS:
            raise Conflict(f"containers cannot be connected to network {net.name}; it is a "
                           f"network mode: use shoal run --network {net.name}")
        existing = self.ctx.store.endpoints(sandbox_id=sandbox_id)
        if any(ep.network_id == net.id for ep in existing):
            raise Conflict(f"sandbox {sandbox_id[:12]} is already connected to network "
                           f"{net.name}")
        addr = self.allocate(net, requested) if plugged else None
        if not plugged and requested is not None:
            assert net.subnet is not None and net.gateway is not None
            ipam.check_static(requested, net.subnet, net.gateway, [], net.name)
        ep = Endpoint(id=new_id(), sandbox_id=sandbox_id, network_id=net.id,
                      ifname=ifname or next_ifname(existing), ip=addr,
                      mac=ipam.mac_for(addr) if addr else None, aliases=list(aliases),
                      requested_ip=requested)
        self.ctx.store.add_endpoint(ep)
        if pending:  # cleared once the kernel has the endpoint: see reconcile's step 3
            self.ctx.store.set_meta(pending_key(ep.id), "connect")
        return ep

    def join(self, sandbox_id: str, ep: Endpoint, net: Network) -> None:
        """Plug a recorded endpoint (made `pending`, with its address) into a sandbox whose
        namespace exists: the driver's kernel side, then its firewall elements; undone if a
        step fails."""
        store = self.ctx.store
        driver = drivers.get(net.driver)
        first = not any(e.ip for e in store.endpoints(sandbox_id=sandbox_id) if e.id != ep.id)
        try:
            with self.enter(sandbox_id) as sock:
                driver.join(self.ctx, sock, net, ep, first)
            crashpoint("connect:attached")
            if added := self.ctx.netfilter.endpoint_elements(net, ep):
                self.ctx.netfilter.apply(added=added)
        except BaseException:
            from contextlib import suppress

            # undo the half-made endpoint; the error worth reporting is the first one
            with suppress(ShoalError, OSError), self.enter(sandbox_id) as sock:
                driver.leave(self.ctx, sock, net, ep)
            with store.transaction():
                store.delete_endpoint(ep.id)
                store.delete_meta(pending_key(ep.id))
            raise
        with store.transaction():
            store.delete_meta(pending_key(ep.id))

    def leave(self, sandbox_id: str, ep: Endpoint, net: Network, in_sandbox: bool) -> None:
        """Unplug an endpoint and delete it with its published ports: the firewall elements
        and the rows go in one transaction, then the driver's kernel side (`in_sandbox`:
        the namespace exists and is entered), then its conntrack entries."""
        store = self.ctx.store
        rows = store.port_rows(sandbox_id, net.id)
        removed = self.ctx.netfilter.endpoint_elements(net, ep, rows,
                                                       plugged=ep.ip is not None)
        with store.transaction():
            store.delete_ports(sandbox_id, net.id)
            store.delete_endpoint(ep.id)
            self.ctx.netfilter.apply(removed=removed)
        crashpoint("disconnect:row")
        if in_sandbox and ep.ip is not None:
            with self.enter(sandbox_id) as sock:
                drivers.get(net.driver).leave(self.ctx, sock, net, ep)
                self.ensure_default_route(sock, sandbox_id)
            self.ctx.flush_conntrack([str(ep.ip)], [(proto, host_ip, int(port)) for
                                                    proto, host_ip, port, _d, _p in rows])

    def ensure_default_route(self, sock: Netlink, sandbox_id: str) -> None:
        """A sandbox that lost its default route (its network was disconnected) gets one
        through the first of its remaining networks that is not internal, as Docker does."""
        from ..kernel import links

        if links.default_route(sock, family=4) is not None:
            return
        for ep in self.ctx.store.endpoints(sandbox_id=sandbox_id):
            net = self.ctx.store.network_by_id(ep.network_id)
            if ep.ip is None or net.internal or net.gateway is None:
                continue
            link = links.get_link(sock, ep.ifname)
            if link is not None:
                links.add_default_route(sock, net.gateway, link.index)
                return

    def release_addresses(self, sandbox_id: str) -> list[str]:
        """Clear a sandbox's addresses (inside the caller's transaction); those released."""
        released = []
        for ep in self.ctx.store.endpoints(sandbox_id=sandbox_id):
            if ep.ip is not None:
                released.append(str(ep.ip))
            self.ctx.store.update_endpoint(ep.id, ip=None, mac=None)
        return released
