"""The firewall shoal owns, as a pure function of the state.

The nftables ruleset is a fixed skeleton of chains whose rules only look things up in sets
and maps (shoal's bridges, internal bridges, subnets to masquerade, published ports). Every
change of state (a network created, a container started with ports) is therefore a change of
set elements only, applied as one transaction of `add element`/`delete element`, and the cost
of a packet does not depend on how many ports are published. A full apply (`reconcile`,
`shoal system reload-firewall`) writes the skeleton and every element in one transaction.

The iptables backend renders the same state as shoal's own chains (SHOAL, SHOAL-ISOLATION,
SHOAL-POSTROUTING, SHOAL-FORWARD and the never-flushed SHOAL-USER) for iptables-restore.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from .ports import ANY
from .records import Record

TABLE = "shoal"
USER_CHAIN = "user"


class NetRule(Record):
    """What the firewall needs to know of one bridge network."""

    bridge: str
    subnet: IPv4Network
    internal: bool = False
    icc: bool = True


class PortRule(Record):
    """One published port: (proto, host address, host port) -> (container address, port)."""

    proto: str
    host_ip: IPv4Address
    host_port: int
    dest_ip: IPv4Address
    dest_port: int


# name: (nft family, declaration). Maps have a ':' in their type.
SETS: dict[str, tuple[str, str]] = {
    "bridges": ("ip", "type ifname;"),
    "internal": ("ip", "type ifname;"),
    "icc": ("ip", "type ifname . ifname;"),
    "masq_subnets": ("ip", "type ipv4_addr; flags interval;"),
    "ports_any": ("ip", "type inet_proto . inet_service : ipv4_addr . inet_service;"),
    "ports_ip": (
        "ip", "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;"),
    "no_icc_ports": ("bridge", "type ifname;"),
    # the host's own interfaces when shoal turned IP forwarding on: nothing is routed between
    # them (see _nft_chains)
    "host_links": ("ip", "type ifname;"),
}

Elements = dict[str, set[str]]


def _q(name: str) -> str:
    return f'"{name}"'


def network_elements(net: NetRule) -> Elements:
    out: Elements = {"bridges": {_q(net.bridge)}}
    if net.internal:
        out["internal"] = {_q(net.bridge)}
    else:
        out["masq_subnets"] = {str(net.subnet)}
    if net.icc:
        out["icc"] = {f"{_q(net.bridge)} . {_q(net.bridge)}"}
    return out


def no_icc_port_elements(host_veth: str) -> Elements:
    """The host end of an endpoint on a network with icc off: frames it sends are not
    bridged to the other ports (only the gateway, through the host, is reachable)."""
    return {"no_icc_ports": {_q(host_veth)}}


def port_entry(proto: str, host_ip: str, host_port: int, dest_ip: str, dest_port: int
               ) -> tuple[str, str]:
    """(map, element) of one published port; host_ip '0.0.0.0' means every address."""
    target = f"{dest_ip} . {dest_port}"
    if host_ip == "0.0.0.0":
        return "ports_any", f"{proto} . {host_port} : {target}"
    return "ports_ip", f"{host_ip} . {proto} . {host_port} : {target}"


def port_elements(port: PortRule) -> Elements:
    name, element = port_entry(port.proto, str(port.host_ip), port.host_port,
                               str(port.dest_ip), port.dest_port)
    return {name: {element}}


def merge(*parts: Elements) -> Elements:
    out: Elements = {name: set() for name in SETS}
    for part in parts:
        for name, values in part.items():
            out[name] |= values
    return out


def host_link_elements(host_links: list[str]) -> Elements:
    return {"host_links": {_q(name) for name in host_links}}


def desired(networks: list[NetRule], ports: list[PortRule], no_icc_ports: list[str],
            host_links: list[str] | None = None) -> Elements:
    """Every element of every set shoal owns, for this state."""
    return merge(*(network_elements(n) for n in networks), *(port_elements(p) for p in ports),
                 *(no_icc_port_elements(v) for v in no_icc_ports),
                 host_link_elements(host_links or []))


# -- nftables ------------------------------------------------------------------------------------


def _nft_chains() -> list[str]:
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
        f"add rule {t} postrouting oifname @bridges ct status dnat ip saddr @masq_subnets "
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


def _element_lines(verb: str, elements: Elements) -> list[str]:
    lines = []
    for name in SETS:
        values = sorted(elements.get(name, ()))
        if values:
            family = SETS[name][0]
            lines.append(f"{verb} element {family} {TABLE} {name} {{ {', '.join(values)} }}")
    return lines


def nft_full(elements: Elements) -> str:
    """One transaction that makes shoal's tables exactly this, keeping the user chain."""
    lines = [f"add table ip {TABLE}", f"add table bridge {TABLE}"]
    for name, (family, decl) in SETS.items():
        kind = "map" if ":" in decl else "set"
        lines.append(f"add {kind} {family} {TABLE} {name} {{ {decl} }}")
        lines.append(f"flush {kind} {family} {TABLE} {name}")
    lines += _nft_chains()
    lines += _element_lines("add", elements)
    return "\n".join(lines) + "\n"


def nft_delta(added: Elements, removed: Elements, present: Elements | None = None) -> str:
    """One transaction adding and removing elements. Each element of `present` is deleted and
    added again: a cheap check that the set still holds it (after `nft flush set` it does
    not, the delete fails, the transaction does nothing and shoal rewrites everything)."""
    check = []
    for line in _element_lines("delete", present or {}):
        check += [line, "add" + line[len("delete"):]]
    return "\n".join(check + _element_lines("delete", removed)
                     + _element_lines("add", added)) + "\n"


def nft_remove() -> str:
    # 'add' first makes 'delete' safe when a table is missing ('destroy' needs nft 1.0.8)
    return "".join(f"add table {f} {TABLE}\ndelete table {f} {TABLE}\n" for f in ("ip", "bridge"))


# -- iptables ------------------------------------------------------------------------------------

IPT_CHAINS = {
    "nat": ("SHOAL", "SHOAL-POSTROUTING"),
    "filter": ("SHOAL-FORWARD", "SHOAL-ISOLATION", "SHOAL-ISOLATION-2", "SHOAL-INPUT"),
}
IPT_USER = "SHOAL-USER"
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


def iptables_tables(networks: list[NetRule], ports: list[PortRule],
                    host_links: list[str] | None = None) -> dict[str, list[str]]:
    """The rules of shoal's own chains, per table, in iptables-save syntax ('-A CHAIN ...').
    FORWARD's policy is never changed: nothing is routed between the host's own interfaces
    of the moment shoal turned forwarding on (host_links), as with nftables."""
    nat = ["-A " + iptables_dnat(p)
           for p in sorted(ports, key=lambda p: (p.proto, p.host_port, str(p.host_ip)))]
    post = []
    for n in networks:
        post.append(f"-A SHOAL-POSTROUTING -s 127.0.0.0/8 -o {n.bridge} -j MASQUERADE")
        post.append(f"-A SHOAL-POSTROUTING -s {n.subnet} -d {n.subnet} -o {n.bridge} "
                    "-m conntrack --ctstate DNAT -j MASQUERADE")
        if not n.internal:
            post.append(f"-A SHOAL-POSTROUTING -s {n.subnet} ! -o {n.bridge} -j MASQUERADE")
    fwd = [f"-A SHOAL-FORWARD -j {IPT_USER}"]
    links = sorted(host_links or [])
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
    return {"nat": nat + post, "filter": fwd + iso + iso2 + inp}


def iptables_dnat(p: PortRule) -> str:
    """The DNAT rule of one published port, after '-A ' or '-D '."""
    dst = "" if p.host_ip == ANY else f" -d {p.host_ip}/32"
    return (f"SHOAL{dst} -p {p.proto} -m {p.proto} --dport {p.host_port} "
            f"-j DNAT --to-destination {p.dest_ip}:{p.dest_port}")


def port_rule(name: str, element: str) -> PortRule:
    """The published port behind an element of ports_any or ports_ip (see port_entry)."""
    key, _, target = element.partition(" : ")
    dest_ip, dest_port = target.split(" . ")
    parts = key.split(" . ")
    host_ip = parts.pop(0) if name == "ports_ip" else str(ANY)
    proto, host_port = parts
    return PortRule(proto=proto, host_ip=IPv4Address(host_ip), host_port=int(host_port),
                    dest_ip=IPv4Address(dest_ip), dest_port=int(dest_port))


PORT_MAPS = ("ports_any", "ports_ip")
# iptables-nft finds each rule to delete by comparing it with the chain's rules: past this many
# deletions a rewrite of the chain is cheaper (10,000 deletions took 1.2 s, a rewrite 0.7 s)
IPT_MAX_DELETES = 1000


def iptables_port_delta(added: Elements, removed: Elements) -> str | None:
    """Input for `iptables-restore --noflush` that deletes and appends the DNAT rules of the
    ports that changed, without rewriting the chain (which costs about 0.8 s at 10,000 rules);
    None when the change is not one of published ports only, or deletes so many rules that a
    rewrite is cheaper."""
    if any(values for name, values in (*added.items(), *removed.items())
           if name not in PORT_MAPS):
        return None
    if sum(len(removed.get(name, ())) for name in PORT_MAPS) > IPT_MAX_DELETES:
        return None
    lines = ["*nat"]
    lines += ["-D " + iptables_dnat(port_rule(name, element))
              for name in PORT_MAPS for element in sorted(removed.get(name, ()))]
    lines += ["-A " + iptables_dnat(port_rule(name, element))
              for name in PORT_MAPS for element in sorted(added.get(name, ()))]
    return "\n".join([*lines, "COMMIT"]) + "\n"


def iptables_restore(networks: list[NetRule], ports: list[PortRule],
                     host_links: list[str] | None = None) -> str:
    """Input for `iptables-restore --noflush`: declaring a chain flushes it, so shoal's chains
    are replaced in one go while everything else (and SHOAL-USER) is left alone."""
    rules = iptables_tables(networks, ports, host_links)
    out = []
    for table in ("nat", "filter"):
        out.append(f"*{table}")
        out += [f":{chain} - [0:0]" for chain in IPT_CHAINS[table]]
        out += rules[table]
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def ebtables_restore(no_icc_ports: list[str]) -> str:
    """Input for `ebtables-restore --noflush`: shoal's SHOAL-ICC chain (declaring it flushes
    it), dropping frames sent by the ports of networks with icc off."""
    lines = ["*filter", f":{EBT_CHAIN} RETURN"]
    lines += [f"-A {EBT_CHAIN} -i {port} -j DROP" for port in sorted(no_icc_ports)]
    return "\n".join(lines + ["COMMIT"]) + "\n"
