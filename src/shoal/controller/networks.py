"""Networks: create, remove, prune, list, and the members of one. What a network is in the
kernel is its driver's business (shoal.drivers); here is the order of things: checks, the
record, the driver's kernel side, the firewall, and the rollback if a step fails."""

from __future__ import annotations

from .. import drivers
from ..errors import Conflict, InvalidArgument
from ..faults import crashpoint
from ..model import BUILTIN_NETWORKS, DEFAULT_NETWORK, RUNNING, Container, Endpoint, Network, now
from ..names import new_id, validate_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from ipaddress import IPv4Network

    from .context import Context

# the built-in networks and their drivers
BUILTINS = ((DEFAULT_NETWORK, drivers.DEFAULT), ("host", "host"), ("none", "null"))


class Networks:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # -- reading ---------------------------------------------------------------------------

    def get(self, ref: str) -> Network:
        return self.ctx.store.network(ref)

    def list(self, filters: dict[str, list[str]] | None = None) -> list[Network]:
        nets = self.ctx.store.networks()
        for key, wanted in (filters or {}).items():
            nets = [n for n in nets if any(_network_matches(n, key, w) for w in wanted)]
        return nets

    def members(self, net: Network) -> list[tuple[Endpoint, Container]]:
        """(endpoint, container) of each container on the network. A network mode (host,
        none) has no endpoints: its members are the containers in that mode."""
        store = self.ctx.store
        out = []
        for ep in store.endpoints(network_id=net.id):
            ctr = store.container_by_id(ep.sandbox_id)  # a container's own sandbox: its id
            if ctr is not None:
                out.append((ep, ctr))
        if drivers.sandbox_mode(net.driver) != drivers.ENDPOINTS:
            out += [(Endpoint(ctr.id, ctr.id, net.id, "", None, None), ctr)
                    for ctr in store.containers() if ctr.network_mode == net.name]
        return out

    # -- subnets ---------------------------------------------------------------------------

    def taken_subnets(self) -> list[tuple[IPv4Network, str]]:
        """Subnets already used: by shoal's networks, and by the host's addresses and routes."""
        from ..kernel import links

        host = self.ctx.host
        taken = [(n.subnet, f"network {n.name}") for n in self.ctx.store.networks() if n.subnet]
        taken += [(a.network, f"host address {a}") for a in links.addresses(host, family=4)]
        taken += [(r, f"host route {r}") for r in links.routes(host, family=4)]
        return taken

    def check_host_overlap(self, subnet: IPv4Network, own: str | None = None) -> None:
        """An explicit subnet may hold none of the host's addresses, nor overlap a route of
        the host's (default routes aside): the bridge would take that link's traffic, as
        when a network on 198.51.100.0/24 took the uplink's 198.51.100.1. Docker refuses
        overlapping routes too. Those on the network's own link `own` are its own (an
        external network's bridge, which another plugin made)."""
        from ..kernel import links

        host = self.ctx.host
        names = {link.index: link.name for link in links.list_links(host)}
        mine = next((i for i, n in names.items() if n == own), None) if own else None
        for iface, index in links.address_entries(host, family=4):
            if index == mine:
                continue
            if iface.ip in subnet:
                raise Conflict(
                    f"subnet {subnet} holds the host's address {iface} on "
                    f"{names.get(index, index)}; choose another --subnet")
        for dst, oif in links.route_entries(host, family=4):
            if oif is not None and oif == mine:
                continue
            if dst.overlaps(subnet):
                via = f" on {names.get(oif, oif)}" if oif is not None else ""
                raise Conflict(f"subnet {subnet} overlaps the host's route to {dst}{via}; "
                               "choose another --subnet")

    def check_namespace_owner(self) -> None:
        """Refuse to work in a network namespace whose shoal objects another shoal root owns
        (each driver knows its own marked objects: for the bridge, the default bridge). Made
        when a root bootstraps (its built-in networks, a new run directory) and at each
        reconcile."""
        from ..names import marked_root

        for name in drivers.names():
            other = drivers.get(name).foreign_root(self.ctx)
            if other is not None and other != marked_root(self.ctx.mark):
                raise Conflict(
                    f"another shoal root, {other}, owns this network namespace's shoal "
                    f"objects (the {name} driver's links carry its mark): use --root {other} "
                    "with its --run-dir, or run this root in a network namespace of its own")

    # -- changes ---------------------------------------------------------------------------

    def create_builtins(self) -> None:
        """The built-in networks, at a root's first command: `bridge` on a free subnet,
        `host` and `none`."""
        from .. import ipam

        store = self.ctx.store
        with store.locked():
            if store.get_meta("builtins") is not None:
                return
            self.check_namespace_owner()  # before anything is made or changed
            created = now()
            nets = []
            for name, driver_name in BUILTINS:
                driver = drivers.get(driver_name)
                net = Network(id=new_id(), name=name, driver=driver_name, created=created)
                if driver.addresses:
                    subnet = ipam.choose_subnet(t for t, _ in self.taken_subnets())
                    _, gateway, _ = ipam.network_config(subnet, None, None)
                    net = net.replace(subnet=subnet, gateway=gateway)
                nets.append(driver.builtin(net))
            with store.transaction():
                for net in nets:
                    store.add_network(net)
                store.set_meta("builtins", "1")
            for net in nets:
                drivers.get(net.driver).repair(self.ctx, net)  # made, or made again
            self.ctx.netfilter.ensure_forwarding()
            self.ctx.netfilter.reload()

    def create(self, name: str, driver: str = drivers.DEFAULT, subnet: str | None = None,
               gateway: str | None = None, ip_range: str | None = None,
               internal: bool = False, labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None) -> Network:
        from .. import ipam

        validate_name(name, "network")
        drv = drivers.get(driver)
        if (gateway or ip_range) and not subnet:
            raise InvalidArgument("--gateway and --ip-range need --subnet")
        net_subnet = ipam.parse_subnet(subnet) if subnet else None
        if net_subnet is not None:
            ipam.check_usable(net_subnet)
        net_gw = ipam.parse_address(gateway, "gateway") if gateway else None
        net_range = ipam.parse_subnet(ip_range, "ip-range") if ip_range else None
        if net_subnet:
            ipam.network_config(net_subnet, net_gw, net_range)
        store = self.ctx.store
        with store.locked():
            others = store.networks()
            if any(n.name == name for n in others):
                raise Conflict(f"network with name {name} already exists")
            net = Network(id=new_id(), name=name, driver=driver, created=now(),
                          internal=internal, labels=dict(labels or {}),
                          options=dict(options or {}), subnet=net_subnet, gateway=net_gw)
            net = drv.validate(self.ctx, net, others)  # (host/null: only the built-in one)
            if drv.addresses:
                if net_subnet is None and net.subnet is not None:  # the driver's (external)
                    net_subnet, net_gw = net.subnet, net.gateway
                if net_subnet is None:
                    net_subnet = ipam.choose_subnet(t for t, _ in self.taken_subnets())
                else:
                    for other in others:
                        if other.subnet and other.subnet.overlaps(net_subnet):
                            raise Conflict(
                                f"subnet {net_subnet} overlaps network {other.name} "
                                f"({other.subnet}); choose another --subnet")
                    self.check_host_overlap(net_subnet, net.bridge)
                net_subnet, net_gw, net_range = ipam.network_config(net_subnet, net_gw,
                                                                    net_range)
                net = net.replace(subnet=net_subnet, gateway=net_gw, ip_range=net_range)
            overlay = drivers.clustered(driver)
            if overlay:  # the cluster's record first: its name and VNI are the cluster's
                if net_range is not None:
                    raise InvalidArgument("--ip-range is not supported on overlay networks: "
                                          "each host hands out addresses from blocks of the "
                                          "whole subnet")
                net = self.ctx.cluster.create_network(net)
                crashpoint("network-create:global")
            try:
                with store.transaction():
                    store.add_network(net)
            except BaseException:
                if overlay:
                    self._forget_global(net)
                raise
            crashpoint("network-create:row")
            try:
                drv.create_network(self.ctx, net)
                crashpoint("network-create:bridge")
                netfilter = self.ctx.netfilter
                if net.bridge:
                    netfilter.set_route_localnet(net.bridge)
                if netfilter.ensure_forwarding() or netfilter.was_host_link(net.bridge):
                    netfilter.reload()
                else:
                    netfilter.apply(added=netfilter.network_elements(net))
            except BaseException:
                from contextlib import suppress

                from ..errors import ShoalError

                with suppress(ShoalError, OSError):
                    drv.delete_network(self.ctx, net)
                with store.transaction():
                    store.delete_network(net.id)
                if overlay:
                    self._forget_global(net)
                raise
            return net

    def _forget_global(self, net: Network) -> None:
        from contextlib import suppress

        from ..errors import ShoalError

        with suppress(ShoalError, OSError):
            from ..cluster import networks

            networks.delete(self.ctx.cluster.global_store(), net)

    def mirror(self, net: Network) -> str | None:
        """Make an overlay network of the cluster on this host (the watcher, with the lock
        held): its record, its kernel side, its firewall elements. A line saying why not
        (its name or subnet is taken here), or None."""
        from ..drivers.overlay import overlay_bridge_name

        store = self.ctx.store
        others = store.networks()
        for other in others:
            if other.id == net.id:
                return None
            if other.name == net.name:
                return (f"overlay network {net.name} is not joined on this host: a local "
                        f"network has its name")
            if other.subnet and net.subnet and other.subnet.overlaps(net.subnet):
                return (f"overlay network {net.name} ({net.subnet}) is not joined on this "
                        f"host: it overlaps network {other.name} ({other.subnet})")
        drv = drivers.get(net.driver)
        net = net.replace(bridge=overlay_bridge_name(net.id), last_ip=None)
        with store.transaction():
            store.add_network(net)
        try:
            drv.create_network(self.ctx, net)
            self.ctx.netfilter.set_route_localnet(net.bridge or "")
            self.ctx.netfilter.apply(added=self.ctx.netfilter.network_elements(net))
        except BaseException:
            from contextlib import suppress

            from ..errors import ShoalError

            with suppress(ShoalError, OSError):
                drv.delete_network(self.ctx, net)
            with store.transaction():
                store.delete_network(net.id)
            raise
        return None

    def unmirror(self, network_id: str) -> str | None:
        """Take an overlay the cluster no longer has off this host (the watcher, with the
        lock held). Kept, with a line saying why, while a container here is on it."""
        store = self.ctx.store
        try:
            net = store.network_by_id(network_id)
        except Exception:
            return None
        if store.endpoints(network_id=net.id):
            return (f"overlay network {net.name} was removed from the cluster but containers "
                    "of this host are on it; it stays here until they leave it")
        with store.transaction():
            store.delete_network(net.id)
            self.ctx.netfilter.apply(removed=self.ctx.netfilter.network_elements(net))
        drivers.get(net.driver).delete_network(self.ctx, net)
        return None

    def remove(self, ref: str) -> None:
        store = self.ctx.store
        with store.locked():
            net = store.network(ref)
            if net.builtin:
                raise Conflict(f"{net.name} is a pre-defined network and cannot be removed")
            active = []
            for ep in store.endpoints(network_id=net.id):
                ctr = store.container_by_id(ep.sandbox_id)
                if ctr is None or ctr.status == RUNNING:
                    active.append(ctr.name if ctr else f"sandbox {ep.sandbox_id[:12]}")
            if active:
                raise Conflict(
                    f"network {net.name} has active endpoints ({', '.join(sorted(active))}); "
                    "stop those containers or disconnect them first"
                )
            if drivers.clustered(net.driver):
                self.ctx.cluster.remove_network(net)
                crashpoint("network-rm:global")
            with store.transaction():
                store.delete_network(net.id)
                if self.ctx.netfilter.was_host_link(net.bridge):
                    self.ctx.netfilter.reload()
                else:
                    self.ctx.netfilter.apply(
                        removed=self.ctx.netfilter.network_elements(net))
            crashpoint("network-rm:row")
            drivers.get(net.driver).delete_network(self.ctx, net)

    def prune(self, running: Callable[[Container], bool] | None = None,
              disconnect: Callable[[str, str], None] | None = None) -> list[str]:
        """Remove the networks no running container uses, as Docker does: the endpoints
        of stopped containers on one are disconnected first (`disconnect(network_id,
        container_id)`; the container keeps its record and can be removed or inspected).
        Without `running`, any endpoint keeps its network. The names removed."""
        removed = []
        store = self.ctx.store
        with store.locked():
            for net in store.networks():
                # an overlay is the cluster's, maybe used by other hosts: `network rm` only
                if net.builtin or drivers.clustered(net.driver):
                    continue
                stopped = []
                for ep in store.endpoints(network_id=net.id):
                    ctr = store.container_by_id(ep.sandbox_id)
                    if ctr is None or running is None or running(ctr):
                        break  # a handed-in sandbox's, or a running container's
                    stopped.append(ctr.id)
                else:
                    for ctr_id in stopped:
                        if disconnect is not None:
                            disconnect(net.id, ctr_id)
                    self.remove(net.id)
                    removed.append(net.name)
        return removed


def _network_matches(net: Network, key: str, wanted: str) -> bool:
    if key == "name":
        return wanted in net.name
    if key == "id":
        return net.id.startswith(wanted)
    if key == "driver":
        return net.driver == wanted
    if key == "label":
        k, sep, v = wanted.partition("=")
        return k in net.labels and (not sep or net.labels[k] == v)
    if key == "type":
        return (wanted == "builtin") == (net.name in BUILTIN_NETWORKS)
    raise InvalidArgument(f"invalid filter {key!r}: use name=, id=, driver=, label= or type=")
