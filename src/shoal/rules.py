"""The firewall shoal owns, as a pure function of the state, in no backend's syntax.

The state's firewall is a few kinds of typed elements: each bridge network
(`NetworkElement`), each published port (`PortMapping`), each bridge port of a network with
icc off (`IsolatedPort`), when shoal turned IP forwarding on, the host's own interfaces
of that moment (`HostLink`) and, when the host is in a cluster, the guard of the VXLAN port
(`VxlanGuard`) with the cluster's registered hosts (`ClusterHost`). Networks, ports and
cluster hosts carry their address family (4 or 6); the others belong to every family. An
`Elements` value holds a set of each kind, and a change of state is two of them: what it adds
and what it removes.

Each backend renders elements in its own syntax (shoal.firewall.nftables_rules: set and map
elements of shoal's nftables tables; shoal.firewall.iptables_rules: shoal's iptables and
ebtables chains). Nothing here knows either.
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from ipaddress import IPv4Network, IPv6Network

FAMILIES = (4, 6)
# a port published on every address of the host, per family (as the store writes it)
EVERY_ADDRESS = {4: "0.0.0.0", 6: "::"}


def family_of(address: str) -> int:
    """4 or 6, from an address's text (no parsing: published ports are many)."""
    return 6 if ":" in address else 4


# The elements are named tuples (hashable, compared by value, cheap for 10,000 published
# ports) made with collections.namedtuple, not typing.NamedTuple: importing typing costs
# every command that touches the firewall (`shoal run`, each shoal-cni ADD and DEL) a few
# milliseconds. The annotations below are for readers (a value given to one would hide
# the field).


class NetworkElement(namedtuple("NetworkElement", "family bridge subnet internal icc masquerade",
                                defaults=(False, True, True))):
    """What the firewall needs to know of one bridge network, in one family."""

    __slots__ = ()
    family: int
    bridge: str
    subnet: IPv4Network | IPv6Network
    internal: bool  # (the defaults are namedtuple's: False, True, True)
    icc: bool
    masquerade: bool  # what its containers send beyond the host (enable_ip_masquerade)


class PortMapping(namedtuple("PortMapping",
                             "family proto host_ip host_port dest_ip dest_port")):
    """One published port: (proto, host address, host port) -> (container address, port).
    The addresses are text in their canonical form, as the store holds them (a container may
    publish 10,000 ports: no address objects are made for them); host_ip is the family's
    EVERY_ADDRESS for a port published on every address of the host."""

    __slots__ = ()
    family: int
    proto: str
    host_ip: str
    host_port: int
    dest_ip: str
    dest_port: int

    @property
    def every_address(self) -> bool:
        return self.host_ip == EVERY_ADDRESS[self.family]


class IsolatedPort(namedtuple("IsolatedPort", "ifname")):
    """The host end of an endpoint on a network with icc off: frames it sends are not
    bridged to the other ports (only the gateway, through the host, is reachable)."""

    __slots__ = ()
    ifname: str


class HostLink(namedtuple("HostLink", "ifname")):
    """One of the host's own interfaces of the moment shoal turned IP forwarding on: nothing
    is forwarded between two of them."""

    __slots__ = ()
    ifname: str


class VxlanGuard(namedtuple("VxlanGuard", "port")):
    """The host is in a cluster (issue 12): inbound UDP to `port` (VXLAN's) on the host is
    dropped unless its source is one of the `ClusterHost`s. Without this element there is no
    such rule at all; with it and no cluster host, every such datagram is dropped."""

    __slots__ = ()
    port: int


class ClusterHost(namedtuple("ClusterHost", "family address")):
    """A registered host of the cluster, by its underlay address (canonical text): its
    VXLAN datagrams pass the guard."""

    __slots__ = ()
    family: int
    address: str


class Elements:
    """Sets of typed elements, one per kind. `family(f)` is the part one address family's
    rules are made of; merge (`|`), difference (`-`) and emptiness are those of the sets."""

    __slots__ = ("networks", "ports", "isolated", "host_links", "guards", "cluster_hosts")

    def __init__(self, networks: Iterable[NetworkElement] = (),
                 ports: Iterable[PortMapping] = (), isolated: Iterable[IsolatedPort] = (),
                 host_links: Iterable[HostLink] = (), guards: Iterable[VxlanGuard] = (),
                 cluster_hosts: Iterable[ClusterHost] = ()) -> None:
        self.networks: set[NetworkElement] = set(networks)
        self.ports: set[PortMapping] = set(ports)
        self.isolated: set[IsolatedPort] = set(isolated)
        self.host_links: set[HostLink] = set(host_links)
        self.guards: set[VxlanGuard] = set(guards)
        self.cluster_hosts: set[ClusterHost] = set(cluster_hosts)

    def __bool__(self) -> bool:
        return bool(self.networks or self.ports or self.isolated or self.host_links
                    or self.guards or self.cluster_hosts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Elements) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __or__(self, other: Elements) -> Elements:
        return Elements(*(getattr(self, k) | getattr(other, k) for k in self.__slots__))

    def __sub__(self, other: Elements) -> Elements:
        return Elements(*(getattr(self, k) - getattr(other, k) for k in self.__slots__))

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={sorted(getattr(self, k))!r}" for k in self.__slots__
                         if getattr(self, k))
        return f"Elements({body})"

    def families(self) -> set[int]:
        """The address families whose rules these elements touch (names of links alone
        belong to none)."""
        return ({n.family for n in self.networks} | {p.family for p in self.ports}
                | {h.family for h in self.cluster_hosts})

    def family(self, family: int) -> Elements:
        """The networks, ports and cluster hosts of one family, with the link names and the
        guard (every family's)."""
        return Elements((n for n in self.networks if n.family == family),
                        (p for p in self.ports if p.family == family),
                        self.isolated, self.host_links, self.guards,
                        (h for h in self.cluster_hosts if h.family == family))

    @property
    def only_ports(self) -> bool:
        """Nothing but published ports (a container's start or stop, icc on)."""
        return not (self.networks or self.isolated or self.host_links or self.guards
                    or self.cluster_hosts)

    @property
    def only_cluster_hosts(self) -> bool:
        """Nothing but cluster hosts (a host joined or left a cluster this host is in)."""
        return not (self.networks or self.ports or self.isolated or self.host_links
                    or self.guards)


def merge(*parts: Elements) -> Elements:
    out = Elements()
    for part in parts:
        out.networks |= part.networks
        out.ports |= part.ports
        out.isolated |= part.isolated
        out.host_links |= part.host_links
        out.guards |= part.guards
        out.cluster_hosts |= part.cluster_hosts
    return out


def network_elements(net: NetworkElement) -> Elements:
    return Elements(networks=(net,))


def port_mapping(proto: str, host_ip: str, host_port: int, dest_ip: str, dest_port: int
                 ) -> PortMapping:
    """The element of one published port, from the store's row of it."""
    return _make_port((6 if ":" in dest_ip else 4, proto, host_ip, host_port, dest_ip,
                       dest_port))


_make_port = PortMapping._make  # (a tuple's own constructor: a third of the keyword one's cost)


def port_elements(rows: Iterable[tuple[str, str, int, str, int]]) -> Elements:
    """Published ports from the store's rows (proto, host_ip, host_port, dest_ip,
    container_port)."""
    make = _make_port
    return Elements(ports={make((6 if ":" in dest_ip else 4, proto, host_ip, host_port,
                                 dest_ip, dest_port))
                           for proto, host_ip, host_port, dest_ip, dest_port in rows})


def no_icc_port_elements(host_veth: str) -> Elements:
    return Elements(isolated=(IsolatedPort(host_veth),))


def host_link_elements(host_links: Iterable[str]) -> Elements:
    return Elements(host_links=(HostLink(name) for name in host_links))


def cluster_host_elements(addresses: Iterable[str]) -> Elements:
    """The cluster hosts of these addresses (canonical text)."""
    return Elements(cluster_hosts=(ClusterHost(family_of(a), a) for a in addresses))


def desired(networks: Iterable[NetworkElement], ports: Iterable[PortMapping],
            no_icc_ports: Iterable[str], host_links: Iterable[str] | None = None,
            vxlan_port: int | None = None, cluster_hosts: Iterable[str] = ()) -> Elements:
    """Every element of the firewall shoal owns, for this state. `vxlan_port`: the host is
    in a cluster whose registered hosts are `cluster_hosts` (None: it is in none, and the
    cluster hosts are ignored)."""
    guarded = vxlan_port is not None
    return Elements(networks, ports, (IsolatedPort(v) for v in no_icc_ports),
                    (HostLink(name) for name in host_links or ()),
                    (VxlanGuard(vxlan_port),) if guarded else (),
                    (ClusterHost(family_of(a), a) for a in cluster_hosts) if guarded else ())
