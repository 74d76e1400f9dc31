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

from .errors import InvalidArgument, ShoalError
from .kernel import hostports, links, ns, sysctl
from .model import RUNNING, Container
from .names import host_veth_name
from .netfilter import net_rule
from .records import Record
from .rules import TABLE, port_entry
from .runtime import pids

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .engine import Engine

OK, FAIL, NOTE = "ok", "FAIL", "note"


class Check(Record):
    status: str
    what: str
    fix: str = ""


def _rule_lines(ruleset: str) -> Iterator[tuple[str, str, str]]:
    """(family table, chain, line) for every line of `nft list ruleset` inside a chain."""
    table = chain = ""
    for line in ruleset.splitlines():
        stripped = line.strip()
        if m := re.match(r"table (\w+) (\S+) \{", stripped):
            table, chain = f"{m[1]} {m[2]}", ""
        elif m := re.match(r"chain (\S+) \{", stripped):
            chain = m[1]
        elif chain:
            yield table, chain, stripped


def _foreign_forward_drops(ruleset: str, own_tables: set[str]) -> list[str]:
    """'family table chain' of other tables' forward base chains whose policy is drop."""
    return [f"{table} {chain}" for table, chain, line in _rule_lines(ruleset)
            if table not in own_tables and "hook forward" in line and "policy drop" in line]


def _ruleset_text(engine: Engine) -> str:
    """The whole ruleset as nft prints it ('' if nft is not there)."""
    from .firewall.nftables import Nftables

    try:
        return Nftables()._run("list ruleset\n", "list the ruleset")
    except ShoalError:
        return ""


def check_host(engine: Engine) -> list[Check]:
    out: list[Check] = []
    nets = [n for n in engine.store.networks() if n.driver == "bridge"]
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
        assert net.bridge is not None
        link = links.get_link(engine.host, net.bridge)
        if link is None:
            out.append(Check(FAIL, f"network {net.name}: its bridge {net.bridge} is missing",
                             "shoal system reconcile"))
            continue
        if not link.up:
            out.append(Check(FAIL, f"network {net.name}: bridge {net.bridge} is down",
                             f"ip link set {net.bridge} up"))
        elif net.gateway not in {a.ip for a in links.addresses(engine.host, link.index)}:
            out.append(Check(FAIL, f"network {net.name}: bridge {net.bridge} lacks its gateway "
                                   f"address {net.gateway_interface}",
                             f"ip addr add {net.gateway_interface} dev {net.bridge}"))
        else:
            out.append(Check(OK, f"network {net.name}: bridge {net.bridge} is up with "
                                 f"{net.gateway_interface}"))
    out += _check_rules(engine)
    return out


def _check_rules(engine: Engine) -> list[Check]:
    out = []
    backend = engine.netfilter.backend_name
    text = _ruleset_text(engine)
    if backend == "nftables":
        present = f"table ip {TABLE}" in text and "hook forward" in text.split(
            f"table ip {TABLE}", 1)[-1]
        own = {f"ip {TABLE}", f"bridge {TABLE}"}
    else:
        saved = engine.netfilter.backend.show()
        present = "SHOAL-FORWARD" in saved and "-A FORWARD -j SHOAL-FORWARD" in saved
        own = {"ip filter", "ip nat", "bridge filter"}
    if present:
        out.append(Check(OK, f"shoal's firewall rules are in place ({backend})"))
    else:
        out.append(Check(FAIL, f"shoal's firewall rules are missing ({backend}): someone "
                               "flushed them", "shoal system reload-firewall"))
    for where in _foreign_forward_drops(text, own):
        out.append(Check(
            FAIL, f"{where} drops forwarded traffic by default (as Docker's FORWARD policy "
                  "does): containers' traffic is dropped there even though shoal accepts it",
            f"nft add rule {where} iifname \"sh-*\" accept; nft add rule {where} oifname "
            f"\"sh-*\" accept (and the same for shoal0), or stop the other firewall"))
    return out


def _port_rule_present(engine: Engine, entry: tuple[str, str], port: int) -> bool:
    name, element = entry
    if engine.netfilter.backend_name == "nftables":
        text = _ruleset_text(engine)
        key, _, target = element.partition(" : ")
        return key in text and target in text
    return f"--dport {port} " in engine.netfilter.backend.show()


def _shadowing(text: str, proto: str, port: int) -> list[str]:
    """Other tables' rules translating the same destination port."""
    return [f"{table} {chain}: {line}" for table, chain, line in _rule_lines(text)
            if table not in (f"ip {TABLE}", f"bridge {TABLE}")
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
    eps = [ep for ep in engine.store.endpoints(container_id=ctr.id) if ep.ip is not None]
    with engine._sandbox(ctr.id) as sock:
        inside = {link.name: link for link in links.list_links(sock)}
        addrs = {a.ip for a in links.addresses(sock)}
        route = links.default_route(sock)
    enter = f"nsenter --net={sandbox}"
    for i, ep in enumerate(eps):
        net = engine.store.network_by_id(ep.network_id)
        link = inside.get(ep.ifname)
        if link is None:
            out.append(Check(FAIL, f"{name}: {ep.ifname} (network {net.name}) is missing",
                             f"shoal network disconnect {net.name} {name} && "
                             f"shoal network connect {net.name} {name}"))
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
        if i == 0 and not net.internal:
            if route is None or route[0] != net.gateway:
                out.append(Check(FAIL, f"{name}: no default route through the gateway "
                                       f"{net.gateway}",
                                 f"{enter} ip route replace default via {net.gateway}"))
            else:
                out.append(Check(OK, f"{name}: default route via {net.gateway}"))
        peer = links.get_link(engine.host, host_veth_name(ep.id))
        bridge = links.get_link(engine.host, net.bridge or "")
        veth = host_veth_name(ep.id)
        if peer is None:
            out.append(Check(FAIL, f"{name}: the host end {veth} of {ep.ifname} is missing",
                             f"shoal network disconnect {net.name} {name} && "
                             f"shoal network connect {net.name} {name}"))
        elif bridge is None or peer.master != bridge.index:
            out.append(Check(FAIL, f"{name}: {veth} is not plugged into bridge {net.bridge}",
                             f"ip link set {veth} master {net.bridge} up"))
        elif not peer.up:
            out.append(Check(FAIL, f"{name}: {veth} (host end of {ep.ifname}) is down",
                             f"ip link set {veth} up"))
        else:
            out.append(Check(OK, f"{name}: {veth} is up on bridge {net.bridge}"))
        if not net_rule(net).icc:
            out.append(Check(NOTE, f"{name}: network {net.name} has icc off: its containers "
                                   "can't reach each other"))
    ports = engine.store.port_rows(ctr.id)
    text = _ruleset_text(engine) if ports else ""
    # the sockets that hold the ports, in the process answering for the container, are
    # shoal's own: any other one is a host process's
    held = (hostports.socket_inodes(ctr.supervisor_pid or 0)
            if ports and pids.alive(ctr.supervisor_pid, ctr.supervisor_start) else set())
    for proto, host_ip, host_port, dest_ip, dest_port in ports:
        label = f"{host_ip}:{host_port}/{proto} -> {dest_port}"
        entry = port_entry(proto, host_ip, host_port, dest_ip, dest_port)
        if not _port_rule_present(engine, entry, host_port):
            out.append(Check(FAIL, f"{name}: published port {label} has no rule",
                             "shoal system reload-firewall"))
            continue
        for rule in _shadowing(text, proto, host_port):
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
    return checks


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
