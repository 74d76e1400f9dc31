"""`shoal doctor`: why can't a container reach where it should? The checks follow the path a
packet takes, as the seed describes it: the sandbox's namespace, its eth0 (address, route),
the veth's host end on the bridge, the bridge and its gateway, IP forwarding, bridge
netfilter, shoal's rules and other firewalls' policies, and the published ports. Each failed
check says how to fix it."""

from __future__ import annotations

import errno
import os
import re
import socket
from collections.abc import Iterator
from ipaddress import IPv4Address

from . import drivers
from .checks import FAIL, NOTE, OK, Check
from .errors import InvalidArgument, ShoalError
from .firewall.iptables_rules import IPT_CHAINS, chains, iptables_tables
from .firewall.nftables_rules import TABLE, declared_sets, port_element, set_elements
from .kernel import hostports, links, ns, sysctl
from .model import RUNNING, Container
from .neighbours import (
    Place,
    Rule,
    parse_iptables_rule,
    parse_iptables_save,
    parse_nft,
    parse_nft_rule,
    verdict,
)
from .netfilter import net_rule
from .rules import port_mapping
from .runtime import pids

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .controller import Engine





def _rule_lines(ruleset: str) -> Iterator[tuple[str, str, str]]:
    """(family table, chain, rule) for every rule of an nft listing."""
    for (table, chain), info in parse_nft(ruleset).items():
        for rule in info.rules:
            yield table, chain, rule


def _ruleset_text(engine: Engine) -> str:
    """The whole ruleset as nft prints it ('' if nft is not there)."""
    from .firewall.nftables import Nftables

    try:
        return Nftables().run("list ruleset\n", "list the ruleset")
    except ShoalError:
        return ""


def check_host(engine: Engine) -> list[Check]:
    out: list[Check] = []
    nets = [n for n in engine.store.networks()
            if drivers.sandbox_mode(n.driver) == drivers.ENDPOINTS]
    if any(not n.internal for n in nets):
        if sysctl.read(sysctl.IP_FORWARD) == "1":
            out.append(Check(OK, "IP forwarding is on (net.ipv4.ip_forward=1)"))
        else:
            out.append(Check(FAIL, "IP forwarding is off: containers can't reach beyond the host",
                             "sysctl -w net.ipv4.ip_forward=1"))
    try:
        bnf = sysctl.read("net/bridge/bridge-nf-call-iptables")
    except OSError:
        bnf = "0"
    if bnf == "1":
        out.append(Check(NOTE, "bridge netfilter is on: traffic between containers of one "
                               "network also passes the host's forward chains, so a DROP "
                               "policy there blocks it too"))
    for net in nets:
        out += drivers.get(net.driver).diagnose(engine.ctx, net, None, "")
    out += _check_rules(engine)
    out += check_resolver(engine)
    out += check_cluster(engine)
    from .plugins.cni import agent

    pid = agent.running(engine.ctx.run_dir)
    if pid is not None:
        out.append(Check(NOTE, f"shoal-cni's agent (pid {pid}) serves this run directory's "
                               "ADD, DEL and CHECK calls"))
    return out


def check_cluster(engine: Engine) -> list[Check]:
    """A host in a cluster: its watcher runs, reaches the store, and could do everything."""
    from .errors import ShoalError

    link = engine.ctx.cluster
    meta = link.meta()
    if meta is None:
        return []
    fix = "shoal system reconcile (it starts the watcher again and syncs it)"
    try:
        status = link.status()
    except ShoalError as e:
        return [Check(FAIL, f"the cluster watcher does not answer: {e}", fix)]
    if status is None:
        return [Check(FAIL, f"the cluster watcher of host {meta['host']} is not running: "
                            "other hosts lose this host's endpoints when its lease expires",
                      fix)]
    out = []
    if status.get("down") or not status.get("connected"):
        out.append(Check(FAIL, f"the cluster store {meta['store']} cannot be reached (since "
                               f"{status.get('down')}): {status['errors'].get('store', '')}; "
                               "overlay containers keep the entries they have",
                         "start the store's members again; shoal converges by itself"))
    else:
        out.append(Check(OK, f"host {meta['host']} ({meta['address']}) is in the cluster of "
                             f"{meta['store']}: lease {status.get('lease')}, "
                             f"{status.get('published')} endpoint(s) published, "
                             f"{len(engine.store.remotes())} remote endpoint(s) known"))
    for subject, why in sorted((status.get("errors") or {}).items()):
        if subject != "store":
            out.append(Check(FAIL, why, fix))
    return out


def check_resolver(engine: Engine) -> list[Check]:
    """The embedded resolver: running if a container needs it, listening in every sandbox
    that has an address on a network with names, and with somewhere to forward to."""
    from .controller.resolver import sandbox_view

    link = engine.ctx.resolver
    store = engine.store
    wanted = {sb.id for sb in store.sandboxes(owned=True) if sandbox_view(store, sb.id)}
    if not wanted and link.record() is None:
        return []
    fix = "shoal system reconcile (it starts the resolver again and gives it the state)"
    try:
        status = link.status()
    except ShoalError as e:
        return [Check(FAIL, f"the embedded resolver does not answer: {e}", fix)]
    if status is None:
        if not wanted:
            return []
        return [Check(FAIL, f"the embedded resolver is not running: {len(wanted)} "
                            "container(s) on user-defined networks cannot resolve names", fix)]
    have = set(status.get("listeners") or {})
    errors = status.get("errors") or {}
    out = []
    upstreams = status.get("upstreams") or []
    source = status.get("resolv_conf")
    remote = sum((status.get("remote") or {}).values())
    also = f", with the names of {remote} container(s) of other hosts" if remote else ""
    out.append(Check(OK, f"the embedded resolver (pid {status.get('pid')}) answers at "
                         f"127.0.0.11:53 in {len(have)} sandbox(es){also}; it forwards other "
                         f"names to {', '.join(upstreams) or 'nobody'} (from {source}, unless "
                         "a container has --dns)"))
    if not upstreams:
        out.append(Check(NOTE, f"{source} names no DNS server: containers "
                               "without --dns resolve only container names",
                         "shoal --resolv-conf FILE ..., or run the containers with --dns IP"))
    for sid in sorted(wanted - have):
        ctr = store.container_by_id(sid)
        why = f": {errors[sid]}" if sid in errors else ""
        out.append(Check(FAIL, f"{ctr.name if ctr else sid[:12]}: the embedded resolver does "
                               f"not listen in its sandbox{why}", fix))
    for sid in sorted(have - wanted):
        out.append(Check(FAIL, f"the embedded resolver still serves sandbox {sid[:12]}, which "
                               "has no address on a network with names", fix))
    return out


def _query_own_name(engine: Engine, ctr: Container, ips: set[str]) -> Check:
    """Ask 127.0.0.11:53 from inside the container's sandbox for its own name."""
    import dns.message
    import dns.rdatatype

    query = dns.message.make_query(ctr.name + ".", dns.rdatatype.A)
    with ns.entered(engine.sandbox_path(ctr.id)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(2)
        sock.sendto(query.to_wire(), ("127.0.0.11", 53))
        data = sock.recv(65535)
    except OSError as e:
        return Check(FAIL, f"{ctr.name}: no answer from the embedded resolver at "
                           f"127.0.0.11:53 ({e.strerror or e})",
                     "shoal system reconcile (it gives the resolver its listeners again)")
    finally:
        sock.close()
    answer = dns.message.from_wire(data)
    got = {rd.address for rrset in answer.answer for rd in rrset if rrset.rdtype == 1}
    if not ips <= got:
        return Check(FAIL, f"{ctr.name}: the embedded resolver answers its name with "
                           f"{', '.join(sorted(got)) or 'nothing'}, not {', '.join(sorted(ips))}",
                     "shoal system reconcile")
    return Check(OK, f"{ctr.name}: its name resolves at 127.0.0.11 to "
                     f"{', '.join(sorted(ips))}")


def _own_tables(engine: Engine) -> set[str]:
    """The nft tables whose forward chains are shoal's own (not a neighbour's)."""
    if engine.netfilter.backend_name == "nftables":
        return {f"ip {TABLE}", f"bridge {TABLE}"}
    from .firewall.neighbours import iptables_variant

    return {"ip filter", "ip nat"} if iptables_variant() != "iptables-legacy" else set()


def _check_rules(engine: Engine) -> list[Check]:
    out = []
    backend = engine.netfilter.backend_name
    text = _ruleset_text(engine)
    if backend == "nftables":
        chains = parse_nft(text)
        present = (f"ip {TABLE}", "forward") in chains and (f"ip {TABLE}", "prerouting") in chains
    else:
        saved = engine.netfilter.backend.show()
        present = "SHOAL-FORWARD" in saved and "-A FORWARD -j SHOAL-FORWARD" in saved
    if not present:
        out.append(Check(FAIL, f"shoal's firewall rules are missing ({backend}): someone "
                               "flushed them", "shoal system reload-firewall"))
    else:
        lacking = _set_problems(engine) if backend == "nftables" else _chain_problems(engine)
        if lacking:
            out += lacking
        else:
            out.append(Check(OK, f"shoal's firewall rules are in place ({backend})"))
            out += _check_vxlan_guard(engine)
    out += _check_neighbours(engine, text)
    return out


def _check_vxlan_guard(engine: Engine) -> list[Check]:
    """On a host in a cluster, a line saying whose VXLAN datagrams pass (the rules
    themselves were compared with the state already)."""
    hosts = engine.netfilter.cluster_hosts()
    if hosts is None:
        return []
    port = next(iter(engine.netfilter.state().guards)).port
    return [Check(OK, f"the VXLAN port (UDP {port}) takes datagrams only from the cluster's "
                      f"{len(hosts)} registered host{'s' if len(hosts) != 1 else ''}")]


def _set_elements(engine: Engine, family: str, kind: str, name: str) -> set[str] | None:
    """The elements of one of shoal's sets or maps in the kernel (None if it is missing)."""
    from .firewall.nftables import Nftables

    try:
        text = Nftables().run(f"list {kind} {family} {TABLE} {name}\n", "list a set")
    except ShoalError:
        return None
    _, sep, rest = text.partition("elements = {")
    if not sep:
        return set()
    body = rest.split("}", 1)[0]
    return {" ".join(e.split()) for e in body.split(",") if e.strip()}


def _set_problems(engine: Engine) -> list[Check]:
    """Each of shoal's sets holds exactly the elements the state gives it."""
    state = engine.netfilter.state()
    wanted = set_elements(state)
    out = []
    for name, (family, decl) in declared_sets(state).items():
        kind = "map" if ":" in decl else "set"
        have = _set_elements(engine, family, kind, name)
        where = f"{kind} {family} {TABLE} {name}"
        if have is None:
            out.append(Check(FAIL, f"shoal's {where} is missing", "shoal system reload-firewall"))
            continue
        missing = sorted(wanted.get(name, set()) - have)
        extra = sorted(have - wanted.get(name, set()))
        if missing:
            out.append(Check(FAIL, f"shoal's {where} lacks {len(missing)} of its "
                                   f"{len(wanted[name])} elements (e.g. {missing[0]}): someone "
                                   "deleted or flushed them", "shoal system reload-firewall"))
        if extra:
            out.append(Check(FAIL, f"shoal's {where} holds {len(extra)} elements its state "
                                   f"does not have (e.g. {extra[0]})",
                             "shoal system reload-firewall"))
    return out


def _chain_problems(engine: Engine) -> list[Check]:
    """Each of shoal's iptables chains holds exactly the rules the state gives it (compared
    word by word in any order: iptables-save prints a rule's matches in its own order)."""
    from collections import Counter

    state = engine.netfilter.state()
    wanted = iptables_tables(state)
    saved = engine.netfilter.backend.saved()  # type: ignore[attr-defined]
    out = []
    for table, names in chains(state).items():
        for chain in names:
            def words(lines: list[str], chain: str = chain) -> Counter[tuple[str, ...]]:
                return Counter(tuple(sorted(line.split())) for line in lines
                               if line.startswith(f"-A {chain} "))
            want, have = words(wanted[table]), words(saved.get(table, []))
            missing, extra = want - have, have - want
            if missing:
                example = next(line for line in wanted[table]
                               if tuple(sorted(line.split())) in missing)
                out.append(Check(FAIL, f"shoal's chain {chain} ({table}) lacks "
                                       f"{sum(missing.values())} of its {sum(want.values())} "
                                       f"rules (e.g. {example})", "shoal system reload-firewall"))
            if extra:
                out.append(Check(FAIL, f"shoal's chain {chain} ({table}) holds "
                                       f"{sum(extra.values())} rules its state does not have",
                                 "shoal system reload-firewall"))
    return out


DIRECTIONS = {"out": "containers to the outside", "in": "the outside to published ports",
              "within": "containers of one network to each other (bridge netfilter is on)"}


def _uplink(engine: Engine) -> str:
    route = links.default_route(engine.host, family=4)
    if route is None or route[1] is None:
        return ""
    for link in links.list_links(engine.host):
        if link.index == route[1]:
            return link.name
    return ""


def _foreign_chains(engine: Engine, text: str
                    ) -> list[tuple[Place, dict[str, list[Rule]], str]]:
    """(where, the rules of its table by chain, policy) of every other firewall's IPv4
    forward base chain: nft tables (iptables-nft's among them) and iptables-legacy's."""
    from .firewall.neighbours import iptables_variant, legacy_filter_text

    own = _own_tables(engine)
    out = []
    chains = parse_nft(text)
    for (table, name), info in chains.items():
        if info.hook != "forward" or table in own or table.split()[0] not in ("ip", "inet"):
            continue
        rules = {c: [parse_nft_rule(r) for r in i.rules]
                 for (t, c), i in chains.items() if t == table}
        kind = "iptables-nft" if table == "ip filter" else "nft"
        out.append((Place(kind=kind, table=table, chain=name), rules, info.policy or "accept"))
    own_legacy = engine.netfilter.backend_name == "iptables" and \
        iptables_variant() == "iptables-legacy"
    saved = None if own_legacy else parse_iptables_save(legacy_filter_text() or "")
    if saved is not None:
        rules = {c: [parse_iptables_rule(r) for r in lines] for c, lines in saved.rules.items()}
        out.append((Place(kind="iptables-legacy", table="ip filter", chain="FORWARD"), rules,
                    saved.policies.get("FORWARD", "ACCEPT").lower()))
    return out


def _check_neighbours(engine: Engine, text: str) -> list[Check]:
    """Does every other firewall's forward chain let shoal's traffic through? Judged by
    walking its rules for a new packet of each direction (its policy alone says nothing:
    an accept before it may let shoal's bridges pass)."""
    nets = [n for n in engine.store.networks() if n.bridge]
    if not nets:
        return []
    try:
        bnf = sysctl.read("net/bridge/bridge-nf-call-iptables") == "1"
    except OSError:
        bnf = False
    uplink = _uplink(engine)
    out = []
    for place, rules, policy in _foreign_chains(engine, text):
        blocked: dict[str, list[str]] = {}
        for net in nets:
            b = net.bridge or ""
            packets = []
            if not net.internal and uplink:
                packets += [("out", b, uplink), ("in", uplink, b)]
            if bnf:
                packets.append(("within", b, b))
            for what, iif, oif in packets:
                if verdict(rules, place.chain, iif, oif, policy) == "drop":
                    blocked.setdefault(what, []).append(b)
        if not blocked:
            if policy == "drop":
                out.append(Check(OK, f"{place.label} drops forwarded traffic by default, but "
                                     "accepts shoal's"))
            continue
        what = "; ".join(f"{DIRECTIONS[d]} ({', '.join(bs)})" for d, bs in blocked.items())
        bridges = sorted({b for bs in blocked.values() for b in bs})
        out.append(Check(
            FAIL, f"{place.label} drops forwarded traffic of shoal's networks: {what}. An "
                  "accept in shoal's own rules cannot override a drop in another firewall",
            _neighbour_fix(engine, place, bridges)))
    return out


def _neighbour_fix(engine: Engine, place: Place, bridges: list[str]) -> str:
    if engine.netfilter.other_firewalls == "accept":
        return ("shoal system reload-firewall (shoal puts accepts for its bridges there; "
                "--other-firewalls leave stops it)")
    if place.kind == "nft":
        names = ", ".join(f'"{b}"' for b in bridges)
        where = f"{place.table} {place.chain}"
        return (f"nft 'insert rule {where} iifname {{ {names} }} accept'; "
                f"nft 'insert rule {where} oifname {{ {names} }} accept'")
    return "; ".join(f"{place.kind} -I {place.chain} -{d} {b} -j ACCEPT"
                     for b in bridges for d in ("i", "o"))


def _port_rule_present(backend: str, rules: str, entry: tuple[str, str], port: int) -> bool:
    """Whether the port's element (nftables) or DNAT rule (iptables) is in `rules`: the whole
    ruleset, or the iptables backend's listing of its chains, read once per container."""
    name, element = entry
    if backend == "nftables":
        key, _, target = element.partition(" : ")
        return key in rules and target in rules
    return f"--dport {port} " in rules


def _shadowing(text: str, proto: str, port: int, backend: str) -> list[str]:
    """Other tables' (and chains') rules translating the same destination port; with the
    iptables backend, shoal's own DNAT rules live in `ip nat SHOAL` (iptables-nft)."""
    own = {("ip nat", chain) for chain in IPT_CHAINS["nat"]} if backend == "iptables" else set()
    return [f"{table} {chain}: {line}" for table, chain, line in _rule_lines(text)
            if table not in (f"ip {TABLE}", f"bridge {TABLE}") and (table, chain) not in own
            and re.search(rf"\bdport {port}\b", line)
            and re.search(r"\b(dnat|redirect)\b", line)]


def check_container(engine: Engine, ctr: Container) -> list[Check]:
    out: list[Check] = []
    name = ctr.name
    if ctr.status != RUNNING or not pids.alive(ctr.pid, ctr.pid_start):
        return [Check(FAIL, f"{name}: it is not running", "shoal system reconcile, then run it "
                                                          "again")]
    if not ctr.has_own_sandbox:
        return [Check(OK, f"{name}: uses network mode {ctr.network_mode}")]
    sandbox = engine.sandbox_path(ctr.id)
    if not ns.is_mountpoint(sandbox):
        return [Check(FAIL, f"{name}: its network namespace {sandbox} is not mounted",
                      "shoal system reconcile, then run the container again")]
    out.append(Check(OK, f"{name}: namespace {sandbox} is mounted"))
    eps = [ep for ep in engine.store.endpoints(sandbox_id=ctr.id) if ep.ip is not None]
    with engine.enter_sandbox(ctr.id) as sock:
        inside = {link.name: link for link in links.list_links(sock)}
        addrs = {a.ip for a in links.addresses(sock, family=4)}
        route = links.default_route(sock, family=4)
    enter = f"nsenter --net={sandbox}"
    for ep in eps:
        net = engine.store.network_by_id(ep.network_id)
        link = inside.get(ep.ifname)
        if link is None:
            out.append(Check(FAIL, f"{name}: {ep.ifname} (network {net.name}) is missing",
                             "shoal system reconcile (it creates the endpoint again)"))
            continue
        if not link.up:
            out.append(Check(FAIL, f"{name}: {ep.ifname} is down",
                             f"{enter} ip link set {ep.ifname} up"))
        elif ep.ip not in addrs:
            assert net.subnet is not None
            out.append(Check(FAIL, f"{name}: {ep.ifname} lacks its address {ep.ip}",
                             f"{enter} ip addr add {ep.ip}/{net.subnet.prefixlen} "
                             f"dev {ep.ifname}"))
        else:
            out.append(Check(OK, f"{name}: {ep.ifname} is up with {ep.ip} (network {net.name})"))
        if ep is next((e for e in eps
                       if not engine.store.network_by_id(e.network_id).internal), None):
            if route is None or route[0] != net.gateway:
                out.append(Check(FAIL, f"{name}: no default route through the gateway "
                                       f"{net.gateway}",
                                 f"{enter} ip route replace default via {net.gateway}"))
            else:
                out.append(Check(OK, f"{name}: default route via {net.gateway}"))
        out += drivers.get(net.driver).diagnose(engine.ctx, net, ep, name)
        if not net_rule(net).icc:
            out.append(Check(NOTE, f"{name}: network {net.name} has icc off: its containers "
                                   "can't reach each other"))
    out += _check_names(engine, ctr)
    ports = engine.store.port_rows(ctr.id)
    backend = engine.netfilter.backend_name
    text = _ruleset_text(engine) if ports else ""
    own = text if backend == "nftables" or not ports else engine.netfilter.backend.show()
    # the sockets that hold the ports, in the process answering for the container, are
    # shoal's own: any other one is a host process's
    held = (hostports.socket_inodes(ctr.supervisor_pid or 0)
            if ports and pids.alive(ctr.supervisor_pid, ctr.supervisor_start) else set())
    for proto, host_ip, host_port, dest_ip, dest_port in ports:
        label = f"{host_ip}:{host_port}/{proto} -> {dest_port}"
        entry = port_element(port_mapping(proto, host_ip, host_port, dest_ip, dest_port))
        if not _port_rule_present(backend, own, entry, host_port):
            out.append(Check(FAIL, f"{name}: published port {label} has no rule",
                             "shoal system reload-firewall"))
            continue
        for rule in _shadowing(text, proto, host_port, backend):
            out.append(Check(FAIL, f"{name}: published port {label} is shadowed by {rule}",
                             "remove that rule, or publish another host port"))
        if hostports.listened_on_elsewhere(proto, host_port, held):
            out.append(Check(FAIL, f"{name}: host port {host_port}/{proto} is also bound by a "
                                   "process on the host, which gets no connections while "
                                   "shoal translates them",
                             "stop that process, or publish another host port"))
        else:
            out.append(Check(OK, f"{name}: published port {label} is in place"))
    return out


def _check_names(engine: Engine, ctr: Container) -> list[Check]:
    from .controller.resolver import sandbox_view

    view = sandbox_view(engine.store, ctr.id)
    if view is None:
        return []
    return [_query_own_name(engine, ctr, {e.ip for e in view.entries})]


def check_path(engine: Engine, ctr: Container, target: str) -> list[Check]:
    """Try a TCP connection from the container to HOST:PORT."""
    addr, _, port_text = target.rpartition(":")
    try:
        dest = IPv4Address(addr)
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise InvalidArgument(f"invalid --to {target!r}: expected IPv4:PORT, e.g. "
                              "198.51.100.1:80") from None
    if ctr.status != RUNNING or not ctr.has_own_sandbox:
        return []
    with ns.entered(engine.sandbox_path(ctr.id)):
        sock = socket.socket()
    sock.settimeout(2)
    try:
        code = sock.connect_ex((str(dest), port))
    except TimeoutError:
        code = errno.ETIMEDOUT
    finally:
        sock.close()
    if code == 0:
        return [Check(OK, f"{ctr.name} connects to {target}")]
    if code == errno.ECONNREFUSED:
        return [Check(FAIL, f"{ctr.name} reaches {addr}, but nothing listens on port {port} "
                            "(connection refused)", f"start the service on {target}")]
    if code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return [Check(FAIL, f"{ctr.name} has no route to {addr} ({os.strerror(code)})",
                      "fix the failed checks above; on an internal network there is no way "
                      f"out: shoal network connect OTHER_NETWORK {ctr.name}")]
    return [Check(FAIL, f"{ctr.name} gets no answer from {target} ({os.strerror(code)}): the "
                        "packets are dropped on the way or by the destination",
                  "see the failed checks above; if all pass, look at the destination's "
                  "firewall")]


def doctor(engine: Engine, container: str | None = None, to: str | None = None
           ) -> list[Check]:
    checks = check_host(engine)
    if container is not None:
        ctrs = [engine.store.container(container)]
    else:
        ctrs = [c for c in engine.store.containers() if engine.effective_status(c) == RUNNING]
    for ctr in ctrs:
        checks += check_container(engine, ctr)
        if to is not None:
            checks += check_path(engine, ctr, to)
    if container is None:
        checks += check_handed_in(engine)
    return checks


def check_handed_in(engine: Engine) -> list[Check]:
    """The sandboxes another runtime handed in (a CNI runtime's, dockerd's), named by their
    owner: the namespace is there, and each endpoint's host side is as its driver made it."""
    out: list[Check] = []
    store = engine.store
    for sb in store.sandboxes(owned=False):
        who = sb.owner or sb.id[:12]
        # a handed-off sandbox (dockerd's) is never entered, and its namespace may not be
        # made yet: its endpoints' host sides say whether it is alive
        if not engine.sandboxes.handed_off(sb.id) and not ns.is_netns(sb.path):
            out.append(Check(FAIL, f"sandbox {who}: its namespace {sb.path} is gone",
                             "shoal system reconcile (it releases the sandbox's addresses)"))
            continue
        for ep in store.endpoints(sandbox_id=sb.id):
            if ep.ip is not None:
                net = store.network_by_id(ep.network_id)
                out += drivers.get(net.driver).diagnose(engine.ctx, net, ep,
                                                        f"{who} ({ep.ifname}, {ep.ip})")
    return out


def render(checks: list[Check]) -> str:
    lines = []
    for c in checks:
        lines.append(f"{c.status:<5} {c.what}")
        if c.fix:
            lines.append(f"      fix: {c.fix}")
    failed = sum(c.status == FAIL for c in checks)
    lines.append(f"\n{failed} problem{'s' if failed != 1 else ''} found" if failed
                 else "\neverything checks out")
    return "\n".join(lines)
