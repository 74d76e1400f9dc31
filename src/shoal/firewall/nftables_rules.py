"""The nftables backend's syntax: shoal's typed firewall elements (shoal.rules) as the
elements of the sets and maps of its two tables, and the transactions that write them.

The ruleset is a fixed skeleton of chains whose rules only look things up in sets and maps
(shoal's bridges, internal bridges, subnets to masquerade, published ports). Every change of
state (a network created, a container started with ports) is therefore a change of set
elements only, applied as one transaction of `add element`/`delete element`, and the cost
of a packet does not depend on how many ports are published. A full apply (`reconcile`,
`shoal system reload-firewall`) writes the skeleton and every element in one transaction.

The one part of the skeleton that depends on the state is the VXLAN guard (issue 12): on a
host in a cluster, the input chain drops UDP to the VXLAN port from any source that is not in
the set `cluster_hosts`; on any other host neither that rule nor that set exists. Turning the
guard on or off is a full apply; a host joining or leaving the cluster is a change of set
elements like any other.

Families: IPv4's rules live in `ip shoal`, the bridge-level ones (icc off) in
`bridge shoal`. IPv6 would get an `ip6 shoal` table with the same skeleton and sets typed
ipv6_addr (TABLE_FAMILY, and SETS per table); until then its elements are refused here.
"""

from __future__ import annotations

from ..errors import FirewallError
from ..rules import EVERY_ADDRESS, Elements, PortMapping

TABLE = "shoal"
USER_CHAIN = "user"
# the nftables table family of each address family's rules
TABLE_FAMILY = {4: "ip"}

# name: (nft family, declaration). Maps have a ':' in their type.
SETS: dict[str, tuple[str, str]] = {
    "bridges": ("ip", "type ifname;"),
    "internal": ("ip", "type ifname;"),
    "icc": ("ip", "type ifname . ifname;"),
    # the subnets whose traffic beyond the host is masqueraded (enable_ip_masquerade)
    "masq_subnets": ("ip", "type ipv4_addr; flags interval;"),
    # the subnets of every network that is not internal: a container's connection to a
    # published port through the host is masqueraded (hairpin), whether or not the first is
    "hairpin_subnets": ("ip", "type ipv4_addr; flags interval;"),
    "ports_any": ("ip", "type inet_proto . inet_service : ipv4_addr . inet_service;"),
    "ports_ip": (
        "ip", "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;"),
    "no_icc_ports": ("bridge", "type ifname;"),
    # the host's own interfaces when shoal turned IP forwarding on: nothing is routed between
    # them (see _chains)
    "host_links": ("ip", "type ifname;"),
}
PORT_MAPS = ("ports_any", "ports_ip")
# the sets that exist only with the VXLAN guard (a host in a cluster): the registered hosts'
# underlay addresses, whose VXLAN datagrams pass
GUARD_SETS: dict[str, tuple[str, str]] = {"cluster_hosts": ("ip", "type ipv4_addr;")}
ALL_SETS = {**SETS, **GUARD_SETS}

SetElements = dict[str, set[str]]


def _q(name: str) -> str:
    return f'"{name}"'


def _refuse_family(family: int) -> None:
    raise FirewallError(f"IPv{family} is not supported yet by the nftables backend")


def port_element(p: PortMapping) -> tuple[str, str]:
    """(map, element) of one published port."""
    if p.family not in TABLE_FAMILY:
        _refuse_family(p.family)
    target = f"{p.dest_ip} . {p.dest_port}"
    if p.every_address:
        return "ports_any", f"{p.proto} . {p.host_port} : {target}"
    return "ports_ip", f"{p.host_ip} . {p.proto} . {p.host_port} : {target}"


def set_elements(elements: Elements) -> SetElements:
    """The elements of each of shoal's sets and maps, as nft writes them (the VXLAN guard's
    set only where the elements have the guard or cluster hosts)."""
    out: SetElements = {name: set() for name in SETS}
    for net in elements.networks:
        if net.family not in TABLE_FAMILY:
            _refuse_family(net.family)
        bridge = _q(net.bridge)
        out["bridges"].add(bridge)
        if net.internal:
            out["internal"].add(bridge)
        else:
            out["hairpin_subnets"].add(str(net.subnet))
            if net.masquerade:
                out["masq_subnets"].add(str(net.subnet))
        if net.icc:
            out["icc"].add(f"{bridge} . {bridge}")
    ports = elements.ports
    for family in {p[0] for p in ports}:
        if family not in TABLE_FAMILY:
            _refuse_family(family)
    # (comprehensions over unpacked tuples: a container's 10,000 ports are one transaction)
    every = EVERY_ADDRESS[4]
    out["ports_any"] = {f"{proto} . {host_port} : {dest_ip} . {dest_port}"
                        for _, proto, host_ip, host_port, dest_ip, dest_port in ports
                        if host_ip == every}
    out["ports_ip"] = {f"{host_ip} . {proto} . {host_port} : {dest_ip} . {dest_port}"
                       for _, proto, host_ip, host_port, dest_ip, dest_port in ports
                       if host_ip != every}
    out["no_icc_ports"] = {_q(i.ifname) for i in elements.isolated}
    out["host_links"] = {_q(h.ifname) for h in elements.host_links}
    if elements.guards or elements.cluster_hosts:  # (the guard's set, only with it)
        for host in elements.cluster_hosts:
            if host.family not in TABLE_FAMILY:
                _refuse_family(host.family)
        out["cluster_hosts"] = {h.address for h in elements.cluster_hosts}
    return out


def declared_sets(elements: Elements) -> dict[str, tuple[str, str]]:
    """The sets and maps shoal's tables have with these elements: SETS, and GUARD_SETS with
    the VXLAN guard."""
    return ALL_SETS if elements.guards else SETS


def _guard_rules(elements: Elements) -> list[str]:
    """The VXLAN guard's rules in the input chain: UDP to the VXLAN port from a source that
    is not a registered host is dropped (nothing is accepted: other firewalls and the rest
    of the hook still decide the others)."""
    return [f"add rule ip {TABLE} input udp dport {g.port} ip saddr != @cluster_hosts drop"
            for g in sorted(elements.guards)]


def _chains() -> list[str]:
    t = f"ip {TABLE}"
    return [
        f"add chain {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}",
        f"flush chain {t} prerouting",
        # a packet from outside for 127.0.0.0/8 is never translated (moby#45610)
        f"add rule {t} prerouting ip daddr 127.0.0.0/8 return",
        f"add rule {t} prerouting fib daddr type local "
        "dnat ip to ip daddr . meta l4proto . th dport map @ports_ip",
        f"add rule {t} prerouting fib daddr type local "
        "dnat ip to meta l4proto . th dport map @ports_any",
        f"add chain {t} output {{ type nat hook output priority -100; policy accept; }}",
        f"flush chain {t} output",
        f"add rule {t} output fib daddr type local "
        "dnat ip to ip daddr . meta l4proto . th dport map @ports_ip",
        f"add rule {t} output fib daddr type local "
        "dnat ip to meta l4proto . th dport map @ports_any",
        f"add chain {t} postrouting {{ type nat hook postrouting priority srcnat; "
        "policy accept; }",
        f"flush chain {t} postrouting",
        # the host's own 127.0.0.1 reaching a published port (with route_localnet on bridges)
        f"add rule {t} postrouting oifname @bridges ip saddr 127.0.0.0/8 masquerade",
        # hairpin: a container reaching a published port through the host's address, routed
        # or (bridge netfilter on) bridged, where no input interface is known here
        f"add rule {t} postrouting oifname @bridges ct status dnat ip saddr @hairpin_subnets "
        "masquerade",
        # containers reaching beyond the host
        f"add rule {t} postrouting ip saddr @masq_subnets oifname != @bridges masquerade",
        f"add chain {t} {USER_CHAIN}",  # created once, never flushed: the user's own policy
        # The policy is accept: shoal's chain decides only traffic that crosses shoal's own
        # bridges, and every other engine's (Docker's) passes it untouched. When shoal is the
        # one that turned IP forwarding on, the host must still not start routing traffic
        # nobody asked for: what goes from one of the host's own interfaces of that moment
        # (@host_links, e.g. two uplinks) to another is dropped, and nothing else.
        f"add chain {t} forward {{ type filter hook forward priority filter; policy accept; }}",
        f"flush chain {t} forward",
        f"add rule {t} forward jump {USER_CHAIN}",
        f"add rule {t} forward iifname @host_links oifname @host_links drop",
        # one bridge to itself: only seen when bridge netfilter is on; icc decides
        f"add rule {t} forward iifname . oifname @icc accept",
        # nothing crosses an internal network's bridge, not even to a published port
        f"add rule {t} forward iifname @internal drop",
        f"add rule {t} forward oifname @internal drop",
        f"add rule {t} forward oifname @bridges ct state established,related accept",
        f"add rule {t} forward oifname @bridges ct status dnat accept",
        # isolation between networks (and icc=false within one)
        f"add rule {t} forward iifname @bridges oifname @bridges drop",
        f"add rule {t} forward iifname @bridges accept",
        # nothing else reaches a container: not even a client routing its address at the host
        f"add rule {t} forward oifname @bridges drop",
        # route_localnet (for published ports on 127.0.0.1) must not open the host's
        # loopback-only services to containers (CVE-2020-8558)
        f"add chain {t} input {{ type filter hook input priority filter; policy accept; }}",
        f"flush chain {t} input",
        # (replies to the host's own 127.0.0.1 connections to published ports come back here
        # once un-masqueraded: only new connections are refused)
        f"add rule {t} input iifname @bridges ip daddr 127.0.0.0/8 "
        "ct state != { established, related } drop",
        f"add chain bridge {TABLE} forward {{ type filter hook forward priority filter; "
        "policy accept; }",
        f"flush chain bridge {TABLE} forward",
        f"add rule bridge {TABLE} forward iifname @no_icc_ports drop",
    ]


def _element_lines(verb: str, elements: SetElements) -> list[str]:
    lines = []
    for name in ALL_SETS:
        values = sorted(elements.get(name, ()))
        if values:
            family = ALL_SETS[name][0]
            lines.append(f"{verb} element {family} {TABLE} {name} {{ {', '.join(values)} }}")
    return lines


def full(elements: Elements) -> str:
    """One transaction that makes shoal's tables exactly this, keeping the user chain. Without
    the VXLAN guard, its set is deleted after the chains that used it were flushed (added
    first, so that deleting it is safe when it is not there)."""
    lines = [f"add table ip {TABLE}", f"add table bridge {TABLE}"]
    declared = declared_sets(elements)
    for name, (family, decl) in declared.items():
        kind = "map" if ":" in decl else "set"
        lines.append(f"add {kind} {family} {TABLE} {name} {{ {decl} }}")
        lines.append(f"flush {kind} {family} {TABLE} {name}")
    lines += _chains()
    lines += _guard_rules(elements)
    for name, (family, decl) in ALL_SETS.items():
        if name not in declared:
            lines.append(f"add set {family} {TABLE} {name} {{ {decl} }}")
            lines.append(f"delete set {family} {TABLE} {name}")
    lines += _element_lines("add", set_elements(elements))
    return "\n".join(lines) + "\n"


def delta(added: Elements, removed: Elements, present: Elements | None = None) -> str:
    """One transaction adding and removing elements. One element of each set that `present`
    gives and that neither changes (the first in order) is deleted and added again: a cheap
    check that the set still holds it (after `nft flush set` it does not, the delete fails,
    the transaction does nothing and shoal rewrites everything). The VXLAN guard itself is
    no element of a set: a change that adds or removes it is a full apply's
    (`needs_full`)."""
    add, rem = set_elements(added), set_elements(removed)
    check = []
    if present:
        pool = set_elements(present)
        for name in ALL_SETS:
            left = pool.get(name, set()) - add.get(name, set()) - rem.get(name, set())
            if left:
                one = {name: {min(left)}}
                check += [*_element_lines("delete", one), *_element_lines("add", one)]
    return "\n".join(check + _element_lines("delete", rem) + _element_lines("add", add)) + "\n"


def needs_full(added: Elements, removed: Elements) -> bool:
    """Does this change alter the skeleton (the VXLAN guard turned on or off)?"""
    return bool(added.guards or removed.guards)


def remove() -> str:
    # 'add' first makes 'delete' safe when a table is missing ('destroy' needs nft 1.0.8)
    return "".join(f"add table {f} {TABLE}\ndelete table {f} {TABLE}\n" for f in ("ip", "bridge"))
