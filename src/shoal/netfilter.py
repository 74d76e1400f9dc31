"""The controller's side of the firewall: which elements each change of state adds or
removes, IP forwarding and the choice of backend. The elements are typed and carry their
address family (`shoal.rules`, pure); a backend from `shoal.firewall` renders them in its own
syntax and applies them. (Host ports are allocated by shoal.ipam.hostports.)"""

from __future__ import annotations

import json
import os
from ipaddress import IPv4Address

from . import drivers
from .errors import InvalidArgument, ShoalError
from .firewall import BACKENDS, Backend, backend
from .kernel import sysctl
from .model import Container, Endpoint, Network, PublishedPort
from .neighbours import MODES
from .rules import (
    Elements,
    IsolatedPort,
    NetworkElement,
    PortMapping,
    VxlanGuard,
    cluster_host_elements,
    desired,
    merge,
    port_elements,
    port_mapping,
)
from .store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .firewall.neighbours import Neighbours

DEFAULT_BACKEND = "nftables"
DEFAULT_OTHER_FIREWALLS = "accept"
FORWARD_FIX = "sysctl -w net.ipv4.ip_forward=1"
# meta keys: the --other-firewalls mode last chosen, and where shoal's accepts are now
OTHER_FIREWALLS, NEIGHBOUR_PLACES = "other_firewalls", "neighbour_places"
# the nftables generation id after shoal's last change of the firewall (kernel/nftgen.py)
SEEN_GENERATION = "nft_generation"
# the cluster's registered hosts' underlay addresses, a JSON list of IPv4 addresses, written
# by the cluster watcher (issue 12); absent on a host in no cluster
CLUSTER_HOSTS = "cluster.hosts"


def _truthy(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise InvalidArgument(f"invalid --ip-forward value {text!r}: use true or false")


def net_rule(net: Network) -> NetworkElement:
    """The firewall's element of a network with an interface and a subnet (of the subnet's
    family); whether its containers reach each other, and whether what they send out is
    masqueraded, is its driver's to say."""
    assert net.bridge is not None and net.subnet is not None
    driver = drivers.get(net.driver)
    return NetworkElement(net.subnet.version, net.bridge, net.subnet, net.internal,
                          driver.icc(net), driver.masquerade(net))


def _firewalled(net: Network) -> bool:
    """Does the firewall have rules for the network (an interface and a subnet)?"""
    return bool(net.bridge and net.subnet)


def _isolated(net: Network, ep: Endpoint) -> IsolatedPort | None:
    """The endpoint's port, if its network keeps its containers apart (icc off)."""
    driver = drivers.get(net.driver)
    name = driver.port_name(ep) if not driver.icc(net) else None
    return IsolatedPort(name) if name else None


def canonical_hosts(addresses: object) -> list[str]:
    """The cluster hosts' addresses in canonical text, sorted by address, each once;
    InvalidArgument naming the first that is not an IPv4 address."""
    if isinstance(addresses, str) or not isinstance(addresses, list | tuple | set | frozenset):
        raise InvalidArgument(f"the cluster's hosts must be a list of IPv4 addresses, not "
                              f"{addresses!r}")
    out = set()
    for a in addresses:
        try:
            if not isinstance(a, str):  # (IPv4Address would take an int)
                raise ValueError(a)
            out.add(IPv4Address(a))
        except ValueError:
            raise InvalidArgument(f"a cluster host's address must be an IPv4 address, not "
                                  f"{a!r}") from None
    return [str(a) for a in sorted(out)]


def port_rule(p: PublishedPort) -> PortMapping:
    """The firewall's element of a published port (of its addresses' family)."""
    return PortMapping(p.family, p.proto, str(p.host_ip), p.host_port, str(p.dest_ip),
                       p.container_port)


def _vxlan_port() -> int:
    from .kernel.vxlan import VXLAN_PORT  # (only on a host in a cluster: netlink's modules)

    return VXLAN_PORT


def _guard_elements(hosts: list[str] | None) -> Elements:
    """The VXLAN guard's elements for these cluster hosts (none for None: no cluster)."""
    if hosts is None:
        return Elements()
    out = cluster_host_elements(hosts)
    out.guards.add(VxlanGuard(_vxlan_port()))
    return out


class Netfilter:
    def __init__(self, store: Store, backend_name: str | None = None,
                 ip_forward: str | None = None, other_firewalls: str | None = None) -> None:
        self.store = store
        self.warnings: list[str] = []
        requested = backend_name or os.environ.get("SHOAL_FIREWALL_BACKEND") or None
        if requested is not None and requested not in BACKENDS:
            raise InvalidArgument(
                f"unknown firewall backend {requested!r}: use nftables or iptables")
        self.requested = requested
        forward = ip_forward if ip_forward is not None else os.environ.get("SHOAL_IP_FORWARD")
        self.ip_forward = True if forward is None else _truthy(forward)
        others = other_firewalls or os.environ.get("SHOAL_OTHER_FIREWALLS") or None
        if others is not None and others not in MODES:
            raise InvalidArgument(
                f"invalid --other-firewalls value {others!r}: use accept (shoal opens other "
                "firewalls' dropping forward chains for its own bridges) or leave")
        self.requested_others = others
        self._backend: Backend | None = None
        self._neighbours: Neighbours | None = None

    @property
    def backend_name(self) -> str:
        return self.store.get_meta("firewall_backend") or self.requested or DEFAULT_BACKEND

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = backend(self.backend_name)
        return self._backend

    @property
    def other_firewalls(self) -> str:
        """accept: shoal puts accepts for its bridges into other firewalls' forward chains
        whose policy is drop; leave: it leaves them to the user."""
        return (self.requested_others or self.store.get_meta(OTHER_FIREWALLS)
                or DEFAULT_OTHER_FIREWALLS)

    def switch_needed(self) -> bool:
        stored = self.store.get_meta("firewall_backend")
        if self.requested is not None and stored is not None and stored != self.requested:
            return True
        return (self.requested_others is not None
                and self.requested_others != (self.store.get_meta(OTHER_FIREWALLS)
                                              or DEFAULT_OTHER_FIREWALLS))

    def switch_backend(self) -> None:
        """Remove what the previous backend owned, then apply everything with the new one
        (and the --other-firewalls mode asked for). Call with the write lock held."""
        if self.requested_others is not None:
            self.store.set_meta(OTHER_FIREWALLS, self.requested_others)
        old = self.store.get_meta("firewall_backend")
        if self.requested is not None and old and old != self.requested:
            backend(old).remove()
            self.store.set_meta("firewall_backend", self.requested)
            self._backend = None
            self._neighbours = None
        self.reload()

    # -- state ---------------------------------------------------------------------------------

    def state(self) -> Elements:
        """Every element of the firewall shoal owns, for the whole state."""
        nets = {n.id: n for n in self.store.networks() if _firewalled(n)}
        no_icc = []
        for net in nets.values():
            if not net_rule(net).icc:
                no_icc += [port.ifname for ep in self.store.endpoints(network_id=net.id)
                           if ep.ip is not None and (port := _isolated(net, ep))]
        hosts = self.cluster_hosts()
        return desired([net_rule(n) for n in nets.values()],
                       [port_rule(p) for p in self.store.ports()], no_icc, self.host_links(),
                       None if hosts is None else _vxlan_port(), hosts or ())

    # -- the VXLAN guard (issue 12) ------------------------------------------------------------

    def cluster_hosts(self) -> list[str] | None:
        """The cluster's registered hosts (meta `cluster.hosts`), canonical and sorted; None
        on a host in no cluster. A row that is not a JSON list of IPv4 addresses keeps the
        guard closed (an empty list, so no VXLAN datagram passes) and adds a warning: a
        broken row must not open the port."""
        text = self.store.get_meta(CLUSTER_HOSTS)
        if text is None:
            return None
        try:
            return canonical_hosts(json.loads(text))
        except (ValueError, InvalidArgument) as e:
            warning = (f"the meta row {CLUSTER_HOSTS} is not a JSON list of IPv4 addresses "
                       f"({e}): every VXLAN datagram is dropped until it is rewritten")
            if warning not in self.warnings:  # (read at every change of the firewall)
                self.warnings.append(warning)
            return []

    def set_cluster_hosts(self, addresses: list[str] | None) -> None:
        """Make the cluster's registered hosts `addresses` (IPv4 underlay addresses, in any
        order; None: the host is in no cluster) in the store and in the kernel, for the
        cluster watcher (issue 12). On a host in a cluster, inbound UDP to the VXLAN port
        (4789) in the host's namespace is dropped unless its source is one of them, also
        when there are none; in no cluster there is no such rule. Nothing else is touched:
        other UDP ports, TCP 4789 and forwarded traffic are not matched, and shoal's rule
        only drops (what passes is still other firewalls' to decide).

        Writes the meta row `cluster.hosts` (a sorted JSON list, or deletes it for None) in a
        store transaction and applies the change in it, so a kernel refusal rolls the row
        back. Call with the store's write lock held. A host joining or leaving is a delta
        (nftables: elements of the set `cluster_hosts`; iptables: one RETURN rule of
        SHOAL-VXLAN); entering or leaving a cluster, or finding the kernel's rules not as
        shoal left them, rewrites the whole ruleset from the state. InvalidArgument, before
        anything is written, if an address is not IPv4. Writing the row directly and calling
        `reload()` gives the same rules, at the cost of a full apply."""
        new = None if addresses is None else canonical_hosts(addresses)
        old = self.cluster_hosts()
        with self.store.transaction():
            if new is None:
                self.store.delete_meta(CLUSTER_HOSTS)
            else:
                self.store.set_meta(CLUSTER_HOSTS, json.dumps(new))
            before, after = _guard_elements(old), _guard_elements(new)
            self.apply(added=after - before, removed=before - after)

    def host_links(self) -> list[str]:
        """The host's own interfaces when shoal turned forwarding on (nothing is routed
        between them); none when forwarding was on before shoal."""
        if self.store.get_meta("drop_forward") != "1":
            return []
        # an external network's bridge (another plugin made it, maybe before shoal turned
        # forwarding on) is a network's, not one of the host's own
        bridges = {net.bridge for net in self.store.networks() if net.bridge}
        return [name for name in (self.store.get_meta("host_links") or "").split()
                if name not in bridges]

    def was_host_link(self, name: str | None) -> bool:
        """Was `name` one of the host's own interfaces when shoal turned forwarding on (an
        external network's bridge may be)? Its network's creation and removal then rewrite
        the ruleset: routing to it is dropped while no network has it."""
        return bool(name) and self.store.get_meta("drop_forward") == "1" and \
            name in (self.store.get_meta("host_links") or "").split()

    def container_elements(self, ctr: Container, ports_only: bool = False) -> Elements:
        """The elements a running container contributes: its published ports and (unless
        `ports_only`) its ports on networks with icc off."""
        out = port_elements(self.store.port_rows(ctr.id))
        for ep in [] if ports_only else self.store.endpoints(sandbox_id=ctr.id):
            if ep.ip is not None and (
                    port := _isolated(self.store.network_by_id(ep.network_id), ep)):
                out.isolated.add(port)
        return out

    @staticmethod
    def endpoint_elements(net: Network, ep: Endpoint,
                          port_rows: list[tuple[str, str, int, str, int]] | None = None,
                          plugged: bool = True) -> Elements:
        """The elements one endpoint contributes: the given published ports (rows of
        store.port_rows) and, if it is plugged into a network with icc off, its bridge
        port."""
        out = port_elements(port_rows or [])
        if plugged and (port := _isolated(net, ep)):
            out.isolated.add(port)
        return out

    @staticmethod
    def network_elements(net: Network) -> Elements:
        return Elements(networks=(net_rule(net),))

    # -- applying ------------------------------------------------------------------------------

    def apply(self, added: Elements | None = None, removed: Elements | None = None) -> None:
        added, removed = added or Elements(), removed or Elements()
        if not added and not removed:
            return  # (a container without ports: the backend is not even loaded)
        try:
            nets = [n for n in self.store.networks() if _firewalled(n)]
            untouched = self._others_untouched()  # (asked before shoal's own change)
            if self.backend.apply_delta(added, removed, self.present(added, removed, nets)):
                if not untouched or added.networks or removed.networks:
                    self.sync_neighbours(nets)
                self._note_generation()
                return
        except ShoalError:
            pass  # the kernel's rules are not what shoal last wrote (flushed, edited by hand)
        self.reload()  # write all of them from the state instead

    def present(self, added: Elements, removed: Elements, nets: list[Network]) -> Elements:
        """Elements the kernel must hold already, among which the backend picks one of each
        of its sets that neither `added` nor `removed` changes: the delta deletes and adds it
        again, so a set flushed by hand (`nft flush set ip shoal bridges`) makes it fail and
        everything is rewritten. Every network, and of the ports the first one on every host
        address and the first one on a given address that do not change. Costs one query of
        the networks and one of a few ports (a port not among the first rows is not checked:
        `shoal doctor` compares every element), and the cluster's hosts (one meta row: a
        guard's set flushed by hand is rewritten at the next change)."""
        out = merge(*(self.network_elements(n) for n in nets))
        hosts = self.cluster_hosts()
        if hosts:
            out.cluster_hosts |= cluster_host_elements(hosts).cluster_hosts
        kinds: set[bool] = set()
        wanted = len(added.ports) + len(removed.ports) + 1
        for row in self.store.port_sample(wanted):  # (the first rows; no scan for ports_ip)
            port = port_mapping(*row)
            kind = port.every_address
            if kind not in kinds and port not in added.ports and port not in removed.ports:
                kinds.add(kind)
                out.ports.add(port)
                if len(kinds) == 2:
                    break
        return out

    def reload(self) -> None:
        """Apply the whole ruleset from the state (after a flush, a reboot or a crash)."""
        if self.store.get_meta("firewall_backend") is None:
            self.store.set_meta("firewall_backend", self.backend_name)
        elements = self.state()
        for net in elements.networks:
            self.set_route_localnet(net.bridge)
        self.backend.apply_full(elements)
        self.sync_neighbours()
        self._note_generation()

    def _others_untouched(self) -> bool:
        """Has nobody but shoal changed the firewall since shoal last synced with the other
        firewalls? Then a delta need not look at them again (listing their chains costs a
        libnftables context and a dump: about 0.5 ms of every published port). nftables,
        iptables-nft and firewalld all bump the nftables generation id; iptables-legacy does
        not, so where it has a filter table the other firewalls are always looked at."""
        from .firewall.neighbours import LEGACY_NAMES
        from .kernel import nftgen

        gen = nftgen.generation()
        if gen is None or self.store.get_meta(SEEN_GENERATION) != str(gen):
            return False
        try:
            with open(LEGACY_NAMES) as f:
                return "filter" not in f.read().split()
        except OSError:
            return True

    def _note_generation(self) -> None:
        from .kernel import nftgen

        gen = nftgen.generation()
        if gen is not None:
            self.store.set_meta(SEEN_GENERATION, str(gen))

    def show(self) -> str:
        """shoal's rules in the backend's syntax, and where it put accepts for its bridges in
        other firewalls' chains."""
        text = self.backend.show()
        places = (self.store.get_meta(NEIGHBOUR_PLACES) or "").split("\n")
        lines = []
        for key in filter(None, places):
            kind, family, table, chain = key.split()
            how = ("rules commented shoal:" if kind == "nft"
                   else f"a jump to SHOAL-ACCEPT ({kind})")
            lines.append(f"#   {family} {table} {chain}: {how}")
        if lines:
            text += ("# shoal's accepts for its bridges in other firewalls' forward chains "
                     "(--other-firewalls leave removes them):\n" + "\n".join(lines) + "\n")
        return text

    # -- other firewalls -----------------------------------------------------------------------

    @property
    def neighbours(self) -> Neighbours:
        if self._neighbours is None:
            from .firewall.neighbours import Neighbours, iptables_variant
            from .firewall.nftables import Nftables
            from .neighbours import comment

            # (a context of its own: listing other tables in the backend's context would
            # make its next transaction fetch shoal's 10,000-element maps again)
            nft: Nftables | None = None
            own = self.backend_name
            if own != "nftables":
                own = iptables_variant() or "iptables-nft"
            try:
                nft = Nftables()
            except ShoalError:
                nft = None
            self._neighbours = Neighbours(nft, own, comment(self.store.root))
        return self._neighbours

    def sync_neighbours(self, nets: list[Network] | None = None) -> None:
        """Put accepts for shoal's bridges into other firewalls' dropping forward chains (or
        take them out again: --other-firewalls leave, no bridge left). A failure is a
        warning: shoal's own rules are in place."""
        if nets is None:
            nets = [n for n in self.store.networks() if _firewalled(n)]
        bridges = sorted(n.bridge for n in nets if n.bridge)
        installed = (self.store.get_meta(NEIGHBOUR_PLACES) or "").splitlines()
        try:
            now = self.neighbours.sync(bridges, self.other_firewalls, installed)
        except ShoalError as e:
            self.warnings.append(f"shoal could not open another firewall for its bridges: {e}"
                                 " (or run with --other-firewalls leave and add the accepts "
                                 "yourself; see shoal doctor)")
            return
        if now != installed:
            self.store.set_meta(NEIGHBOUR_PLACES, "\n".join(now))

    @staticmethod
    def set_route_localnet(bridge: str) -> None:
        """Let the host's 127.0.0.1 reach published ports through this bridge."""
        try:
            sysctl.write(sysctl.route_localnet(bridge), "1")
        except FileNotFoundError:
            pass

    def ensure_forwarding(self) -> bool:
        """Turn IP forwarding on, as Docker's --ip-forward=true does; warn if it is off and
        shoal was told to leave it. True if shoal just turned it on (then, as Docker does,
        forwarded traffic shoal did not ask for is dropped: apply the full ruleset)."""
        if sysctl.read(sysctl.IP_FORWARD) == "1":
            return False
        if not self.ip_forward:
            self.warnings.append(
                "IP forwarding is off (net.ipv4.ip_forward=0), so containers can't reach the "
                f"outside; fix: {FORWARD_FIX}"
            )
            return False
        sysctl.write(sysctl.IP_FORWARD, "1")
        self.store.set_meta("drop_forward", "1")
        self.store.set_meta("host_links", " ".join(self._own_links()))
        return True

    def _own_links(self) -> list[str]:
        """The host's interfaces now, other than lo and shoal's: the ones between which
        nothing was routed before shoal turned forwarding on."""
        import socket

        shoal = {n.bridge for n in self.store.networks() if n.bridge}
        makers = [drivers.get(name) for name in drivers.names()]
        return sorted(name for _, name in socket.if_nameindex()
                      if name != "lo" and name not in shoal
                      and not any(d.owns_link(name) for d in makers))
