"""The iptables backend's syntax: shoal's typed firewall elements (shoal.rules) as the rules
of its own chains (SHOAL, SHOAL-POSTROUTING in nat; SHOAL-FORWARD, SHOAL-ISOLATION,
SHOAL-ISOLATION-2, SHOAL-INPUT in filter; the never-flushed SHOAL-USER) for
iptables-restore, and of SHOAL-ICC for ebtables-restore.

On a host in a cluster (the VXLAN guard, issue 12), SHOAL-INPUT sends UDP to the VXLAN port
to SHOAL-VXLAN, which returns for each registered host and drops the rest; on any other host
neither that jump nor that chain exists.

Families: IPv4's rules are iptables'. IPv6 would be ip6tables-restore's, from the family(6)
part of the same elements (FAMILY_TOOL); until then its elements are refused here.
"""

from __future__ import annotations

from ..errors import FirewallError
from ..rules import ClusterHost, Elements, NetworkElement, PortMapping

IPT_CHAINS = {
    "nat": ("SHOAL", "SHOAL-POSTROUTING"),
    "filter": ("SHOAL-FORWARD", "SHOAL-ISOLATION", "SHOAL-ISOLATION-2", "SHOAL-INPUT"),
}
IPT_USER = "SHOAL-USER"
# the VXLAN guard's chain (filter), only on a host in a cluster
VXLAN_CHAIN = "SHOAL-VXLAN"
# where shoal's chains hook into the built-in ones (inserted once, at the top)
IPT_JUMPS = {
    "nat": (
        # a packet from outside for 127.0.0.0/8 is never translated (moby#45610)
        ("PREROUTING", "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j SHOAL"),
        ("OUTPUT", "-m addrtype --dst-type LOCAL -j SHOAL"),
        ("POSTROUTING", "-j SHOAL-POSTROUTING"),
    ),
    "filter": (("FORWARD", "-j SHOAL-FORWARD"), ("INPUT", "-j SHOAL-INPUT")),
}
# icc=false without bridge netfilter: frames between a network's ports are dropped by ebtables
EBT_CHAIN = "SHOAL-ICC"
EBT_JUMP = ("FORWARD", f"-j {EBT_CHAIN}")
# the restore tool of each address family's rules
FAMILY_TOOL = {4: "iptables-restore"}
# iptables-nft finds each rule to delete by comparing it with the chain's rules: past this many
# deletions a rewrite of the chain is cheaper (10,000 deletions took 1.2 s, a rewrite 0.7 s)
IPT_MAX_DELETES = 1000


def _check_families(elements: Elements) -> None:
    for family in elements.families():
        if family not in FAMILY_TOOL:
            raise FirewallError(f"IPv{family} is not supported yet by the iptables backend")


def _port_key(p: PortMapping) -> tuple[str, int, str]:
    return (p.proto, p.host_port, p.host_ip)


def _network_key(n: NetworkElement) -> tuple[int, int, int]:
    return (n.family, int(n.subnet.network_address), n.subnet.prefixlen)


def iptables_tables(elements: Elements) -> dict[str, list[str]]:
    """The rules of shoal's own chains, per table, in iptables-save syntax ('-A CHAIN ...'),
    networks in the order of their subnets, ports in that of (proto, port, address).
    FORWARD's policy is never changed: nothing is routed between the host's own interfaces
    of the moment shoal turned forwarding on (host_links), as with nftables."""
    _check_families(elements)
    networks = sorted(elements.networks, key=_network_key)
    nat = ["-A " + iptables_dnat(p) for p in sorted(elements.ports, key=_port_key)]
    post = []
    for n in networks:
        post.append(f"-A SHOAL-POSTROUTING -s 127.0.0.0/8 -o {n.bridge} -j MASQUERADE")
        post.append(f"-A SHOAL-POSTROUTING -s {n.subnet} -d {n.subnet} -o {n.bridge} "
                    "-m conntrack --ctstate DNAT -j MASQUERADE")
        if not n.internal and n.masquerade:
            post.append(f"-A SHOAL-POSTROUTING -s {n.subnet} ! -o {n.bridge} -j MASQUERADE")
    fwd = [f"-A SHOAL-FORWARD -j {IPT_USER}"]
    links = sorted(h.ifname for h in elements.host_links)
    fwd += [f"-A SHOAL-FORWARD -i {a} -o {b} -j DROP" for a in links for b in links]
    fwd.append("-A SHOAL-FORWARD -j SHOAL-ISOLATION")
    # nothing crosses an internal network's bridge, not even to a published port
    iso = []
    for n in networks:
        if n.internal:
            iso.append(f"-A SHOAL-ISOLATION -i {n.bridge} ! -o {n.bridge} -j DROP")
            iso.append(f"-A SHOAL-ISOLATION -o {n.bridge} ! -i {n.bridge} -j DROP")
    iso.append("-A SHOAL-ISOLATION -m conntrack --ctstate DNAT -j RETURN")
    iso2 = []
    inp = [f"-A SHOAL-INPUT -i {n.bridge} -d 127.0.0.0/8 -m conntrack "
           "! --ctstate RELATED,ESTABLISHED -j DROP" for n in networks]
    for n in networks:
        b = n.bridge
        fwd.append(f"-A SHOAL-FORWARD -o {b} -m conntrack --ctstate RELATED,ESTABLISHED "
                   "-j ACCEPT")
        fwd.append(f"-A SHOAL-FORWARD -o {b} -m conntrack --ctstate DNAT -j ACCEPT")
        fwd.append(f"-A SHOAL-FORWARD -i {b} -o {b} -j {'ACCEPT' if n.icc else 'DROP'}")
        if n.internal:
            fwd.append(f"-A SHOAL-FORWARD -i {b} -j DROP")
        else:
            fwd.append(f"-A SHOAL-FORWARD -i {b} ! -o {b} -j ACCEPT")
        fwd.append(f"-A SHOAL-FORWARD -o {b} -j DROP")
        iso.append(f"-A SHOAL-ISOLATION -i {b} ! -o {b} -j SHOAL-ISOLATION-2")
        iso2.append(f"-A SHOAL-ISOLATION-2 -o {b} -j DROP")
    return {"nat": nat + post, "filter": fwd + iso + iso2 + inp + vxlan_rules(elements)}


def vxlan_rules(elements: Elements) -> list[str]:
    """The VXLAN guard's rules: SHOAL-INPUT's jump for UDP to the VXLAN port, and
    SHOAL-VXLAN's RETURN for each registered host (in address order) then DROP. RETURN, not
    ACCEPT: what a host sends is left to the rest of INPUT, as if shoal had no rule."""
    if not elements.guards:
        return []
    out = [f"-A SHOAL-INPUT -p udp -m udp --dport {g.port} -j {VXLAN_CHAIN}"
           for g in sorted(elements.guards)]
    out += [f"-A {_host_return(h)}" for h in sorted(elements.cluster_hosts, key=_host_key)]
    return [*out, f"-A {VXLAN_CHAIN} -j DROP"]


def _host_key(h: ClusterHost) -> tuple[int, ...]:
    return tuple(int(part) for part in h.address.split("."))


def _host_return(h: ClusterHost) -> str:
    """The rule of one registered host in SHOAL-VXLAN, after '-A ', '-D ' or '-I '."""
    return f"{VXLAN_CHAIN} -s {h.address}/32 -j RETURN"


def chains(elements: Elements) -> dict[str, tuple[str, ...]]:
    """shoal's own chains (but SHOAL-USER) per table, with these elements: IPT_CHAINS, and
    SHOAL-VXLAN with the VXLAN guard."""
    if not elements.guards:
        return IPT_CHAINS
    return {**IPT_CHAINS, "filter": (*IPT_CHAINS["filter"], VXLAN_CHAIN)}


def iptables_dnat(p: PortMapping) -> str:
    """The DNAT rule of one published port, after '-A ' or '-D '."""
    dst = "" if p.every_address else f" -d {p.host_ip}/32"
    return (f"SHOAL{dst} -p {p.proto} -m {p.proto} --dport {p.host_port} "
            f"-j DNAT --to-destination {p.dest_ip}:{p.dest_port}")


def iptables_port_delta(added: Elements, removed: Elements) -> str | None:
    """Input for `iptables-restore --noflush` that deletes and appends the DNAT rules of the
    ports that changed, without rewriting the chain (which costs about 0.8 s at 10,000 rules);
    None when the change is not one of published ports only, or deletes so many rules that a
    rewrite is cheaper."""
    if not (added.only_ports and removed.only_ports):
        return None
    if len(removed.ports) > IPT_MAX_DELETES:
        return None
    _check_families(added | removed)
    lines = ["*nat"]
    lines += ["-D " + iptables_dnat(p) for p in sorted(removed.ports, key=_port_key)]
    lines += ["-A " + iptables_dnat(p) for p in sorted(added.ports, key=_port_key)]
    return "\n".join([*lines, "COMMIT"]) + "\n"


def iptables_hosts_delta(added: Elements, removed: Elements) -> str | None:
    """Input for `iptables-restore --noflush` that deletes the RETURN rules of hosts that
    left the cluster and inserts those of hosts that joined it at the top of SHOAL-VXLAN
    (before its DROP); None when the change is not one of cluster hosts only (the guard
    turned on or off rewrites the chains). A rule to delete that is missing makes
    iptables-restore fail, and the caller rewrites everything."""
    if not (added.only_cluster_hosts and removed.only_cluster_hosts):
        return None
    _check_families(added | removed)
    lines = ["*filter"]
    lines += ["-D " + _host_return(h) for h in sorted(removed.cluster_hosts, key=_host_key)]
    lines += ["-I " + _host_return(h).replace(" -s ", " 1 -s ", 1)
              for h in sorted(added.cluster_hosts, key=_host_key)]
    return "\n".join([*lines, "COMMIT"]) + "\n"


def iptables_restore(elements: Elements) -> str:
    """Input for `iptables-restore --noflush`: declaring a chain flushes it, so shoal's chains
    are replaced in one go while everything else (and SHOAL-USER) is left alone."""
    rules = iptables_tables(elements)
    declared = chains(elements)
    out = []
    for table in ("nat", "filter"):
        out.append(f"*{table}")
        out += [f":{chain} - [0:0]" for chain in declared[table]]
        out += rules[table]
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def ebtables_restore(elements: Elements) -> str:
    """Input for `ebtables-restore --noflush`: shoal's SHOAL-ICC chain (declaring it flushes
    it), dropping frames sent by the ports of networks with icc off."""
    lines = ["*filter", f":{EBT_CHAIN} RETURN"]
    lines += [f"-A {EBT_CHAIN} -i {port} -j DROP"
              for port in sorted(i.ifname for i in elements.isolated)]
    return "\n".join(lines + ["COMMIT"]) + "\n"
