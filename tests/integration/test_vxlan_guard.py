"""The VXLAN guard (issue 12), for both backends: on a host in a cluster, UDP to the VXLAN
port in the host's namespace arrives only from the cluster's registered hosts; nothing else is
touched, and a host in no cluster has no such rule.

Besides the host and its outside namespace, the test makes two more namespaces, each joined to
the host by a veth: `peer` (a registered host, or not, as each step says) and `stranger`
(10.77.2.2, never registered unless a step says so). Datagrams go to a UDP echo server in the
host's namespace, so a sender sees whether its datagram arrived (an answer) or was dropped (no
answer)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .harness import HOST_ADDR, OUTSIDE_ADDR, Host
from .servers import TCP, UDP

PY = sys.executable
VXLAN = 4789
OTHER = 5000  # another UDP port of the host
PEER, PEER_HOST_SIDE = "10.77.1.2", "10.77.1.1"
STRANGER, STRANGER_HOST_SIDE = "10.77.2.2", "10.77.2.1"


def _namespace(host: Host, name: str, addr: str, host_side: str) -> str:
    """A namespace of the test's own (a file under the host's directory: the harness's
    cleanup unmounts it, which removes it and its veth), joined to the host by a veth, with
    its default route through the host."""
    path = str(host.base / f"{name}.ns")
    Path(path).touch()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True)
    host.ip("link", "set", "lo", "up", ns=path)
    host.ip("link", "add", f"to-{name}", "type", "veth", "peer", "name", "eth0", "netns", path)
    host.ip("addr", "add", f"{host_side}/24", "dev", f"to-{name}")
    host.ip("link", "set", f"to-{name}", "up")
    host.ip("addr", "add", f"{addr}/24", "dev", "eth0", ns=path)
    host.ip("link", "set", "eth0", "up", ns=path)
    host.ip("route", "add", "default", "via", host_side, ns=path)
    return path


def _set_hosts(host: Host, hosts: list[str] | None) -> None:
    """What the cluster watcher does: Netfilter.set_cluster_hosts with the store locked."""
    host.python(f"""
from shoal.controller import Engine
engine = Engine.open({host.root!r}, {host.run_dir!r})
with engine.ctx.store.locked():
    engine.ctx.netfilter.set_cluster_hosts({hosts!r})
""")


def _udp(host: Host, ns: str, addr: str, port: int) -> str | None:
    """The address the echo server saw (None: no answer, the datagram was dropped)."""
    return host.fetch(ns, addr, port, "udp", timeout=1)


def _ruleset(host: Host) -> str:
    if host.backend == "nftables":
        return host.in_ns(host.ns, "nft", "list", "ruleset", check=True).stdout
    return host.in_ns(host.ns, "iptables-save", check=True).stdout


def _guard_lines(host: Host) -> list[str]:
    """The lines of the whole ruleset that name the VXLAN port or the guard's chain/set."""
    return [line.strip() for line in _ruleset(host).splitlines()
            if str(VXLAN) in line or "SHOAL-VXLAN" in line or "cluster_hosts" in line]


def _guard_is_only_in_shoals_own_chains(host: Host) -> None:
    if host.backend == "nftables":
        table = ""
        for line in _ruleset(host).splitlines():
            if line.startswith("table "):
                table = line.split("{")[0].strip()
            if str(VXLAN) in line or "cluster_hosts" in line:
                assert table == "table ip shoal", (table, line)
    else:
        for line in _guard_lines(host):
            assert line.startswith(("-A SHOAL-INPUT ", "-A SHOAL-VXLAN ", ":SHOAL-VXLAN ")), line


def test_vxlan_port_takes_datagrams_from_cluster_hosts_only(fw_host: Host) -> None:
    host = fw_host
    # forwarding on before shoal: shoal then drops nothing forwarded between the host's links
    host.in_ns(host.ns, "sysctl", "-w", "net.ipv4.ip_forward=1", check=True)
    peer = _namespace(host, "peer", PEER, PEER_HOST_SIDE)
    stranger = _namespace(host, "stranger", STRANGER, STRANGER_HOST_SIDE)
    host.ip("route", "add", "10.77.0.0/16", "via", HOST_ADDR, ns=host.outside)
    for port in (VXLAN, OTHER):
        host.background(host.ns, PY, "-c", UDP, str(port))
    host.background(host.ns, PY, "-c", TCP, str(VXLAN))  # TCP on the VXLAN port number
    host.background(host.outside, PY, "-c", UDP, str(VXLAN))  # beyond the host: forwarded
    host.shoal("run", "-d", "--name", "c", "-p", "8080:80", "--", "sleep", "60")
    host.wait_for(lambda: _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) == STRANGER,
                  what="the echo server on the VXLAN port")
    host.wait_for(lambda: _udp(host, stranger, STRANGER_HOST_SIDE, OTHER) == STRANGER,
                  what="the echo server on another port")
    host.wait_for(lambda: host.fetch(stranger, STRANGER_HOST_SIDE, VXLAN) == STRANGER,
                  what="the TCP server")
    # in no cluster: no rule at all
    assert _guard_lines(host) == []

    _set_hosts(host, [PEER, "10.77.0.10"])
    assert _udp(host, peer, PEER_HOST_SIDE, VXLAN) == PEER
    assert _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) is None
    # nothing else is touched: another UDP port, TCP on 4789, and what the host forwards
    assert _udp(host, stranger, STRANGER_HOST_SIDE, OTHER) == STRANGER
    assert host.fetch(stranger, STRANGER_HOST_SIDE, VXLAN) == STRANGER
    assert _udp(host, stranger, OUTSIDE_ADDR, VXLAN) == STRANGER
    # (the stranger's datagram is dropped whichever of the host's addresses it is sent to)
    assert _udp(host, stranger, HOST_ADDR, VXLAN) is None
    _guard_is_only_in_shoals_own_chains(host)
    doctor = host.shoal("doctor", check=False).stdout
    assert "ok    the VXLAN port (UDP 4789) takes datagrams only from the cluster's 2 " \
        "registered hosts" in doctor, doctor

    # a host joins (a delta), then the peer leaves (a delta)
    _set_hosts(host, [PEER, "10.77.0.10", STRANGER])
    assert _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) == STRANGER
    _set_hosts(host, ["10.77.0.10", STRANGER])
    assert _udp(host, peer, PEER_HOST_SIDE, VXLAN) is None
    assert _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) == STRANGER

    # an empty cluster list: nothing passes
    _set_hosts(host, [])
    assert _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) is None
    assert _udp(host, peer, PEER_HOST_SIDE, VXLAN) is None
    assert _udp(host, peer, PEER_HOST_SIDE, OTHER) == PEER

    # the watcher may write the row itself and reload: the guard is a function of the state
    host.python(f"""
from shoal.controller import Engine
engine = Engine.open({host.root!r}, {host.run_dir!r})
with engine.ctx.store.locked(), engine.ctx.store.transaction():
    engine.ctx.store.set_meta("cluster.hosts", {json.dumps([PEER])!r})
    engine.ctx.netfilter.reload()
""")
    assert _udp(host, peer, PEER_HOST_SIDE, VXLAN) == PEER
    assert _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) is None
    # a reload from the state (after a flush, a reconcile) keeps it
    host.shoal("system", "reload-firewall")
    assert _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) is None
    assert _udp(host, peer, PEER_HOST_SIDE, VXLAN) == PEER

    # out of the cluster: the rule, its set or chain, all gone; everyone's datagrams arrive
    _set_hosts(host, None)
    assert _guard_lines(host) == []
    assert _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) == STRANGER
    assert _udp(host, peer, PEER_HOST_SIDE, VXLAN) == PEER


def test_a_flushed_guard_is_repaired_by_the_next_change(fw_host: Host) -> None:
    """Someone empties the guard's set or chain by hand: the next change of hosts finds the
    kernel not as shoal left it and rewrites everything from the state."""
    host = fw_host
    stranger = _namespace(host, "stranger", STRANGER, STRANGER_HOST_SIDE)
    peer = _namespace(host, "peer", PEER, PEER_HOST_SIDE)
    host.background(host.ns, PY, "-c", UDP, str(VXLAN))
    host.wait_for(lambda: _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) == STRANGER,
                  what="the echo server on the VXLAN port")
    _set_hosts(host, [STRANGER, PEER])
    assert _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) == STRANGER
    if host.backend == "nftables":
        host.in_ns(host.ns, "nft", "flush", "set", "ip", "shoal", "cluster_hosts", check=True)
    else:
        host.in_ns(host.ns, "iptables", "-F", "SHOAL-VXLAN", check=True)
    # (nftables: an empty set drops all; iptables: an empty chain returns all)
    doctor = host.shoal("doctor", check=False).stdout
    lacking = ("shoal's set ip shoal cluster_hosts lacks 2 of its 2 elements"
               if host.backend == "nftables" else "shoal's chain SHOAL-VXLAN (filter) lacks 3")
    assert lacking in doctor and "VXLAN port" not in doctor, doctor
    _set_hosts(host, [STRANGER])  # deletes the peer's element or rule: missing, so a rewrite
    assert _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) == STRANGER
    assert _udp(host, peer, PEER_HOST_SIDE, VXLAN) is None


def test_switching_backends_moves_the_guard(host: Host) -> None:
    """The previous backend's guard goes with the rest of its rules, and the new one's holds."""
    stranger = _namespace(host, "stranger", STRANGER, STRANGER_HOST_SIDE)
    host.background(host.ns, PY, "-c", UDP, str(VXLAN))
    host.wait_for(lambda: _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) == STRANGER,
                  what="the echo server on the VXLAN port")
    _set_hosts(host, [PEER])  # (the default backend: nftables)
    assert _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) is None
    host.shoal("--firewall-backend", "iptables", "system", "reload-firewall")
    assert "table ip shoal" not in host.in_ns(host.ns, "nft", "list", "tables").stdout
    assert ":SHOAL-VXLAN" in host.in_ns(host.ns, "iptables-save", check=True).stdout
    assert _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) is None
    _set_hosts(host, [PEER, STRANGER])
    assert _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) == STRANGER
    host.shoal("--firewall-backend", "nftables", "system", "reload-firewall")
    assert "SHOAL" not in host.in_ns(host.ns, "iptables-save", check=True).stdout
    assert _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) == STRANGER
    _set_hosts(host, [PEER])
    assert _udp(host, stranger, STRANGER_HOST_SIDE, VXLAN) is None


def _ping(host: Host, ns: str, addr: str) -> bool:
    return host.in_ns(ns, "ping", "-c1", "-W1", addr).returncode == 0


def test_a_kernel_vxlan_tunnel_works_only_from_a_cluster_host(fw_host: Host) -> None:
    """The guard holds for the kernel's VXLAN devices too (their UDP socket is behind the same
    input hook): a tunnel from the peer to the host carries traffic only while the peer is
    one of the cluster's hosts."""
    host = fw_host
    peer = _namespace(host, "peer", PEER, PEER_HOST_SIDE)
    for ns, local, remote, dev, inner in ((host.ns, PEER_HOST_SIDE, PEER, "to-peer", "1"),
                                          (peer, PEER, PEER_HOST_SIDE, "eth0", "2")):
        host.ip("link", "add", "vx0", "type", "vxlan", "id", "42", "local", local, "remote",
                remote, "dstport", str(VXLAN), "dev", dev, ns=ns)
        host.ip("addr", "add", f"192.168.42.{inner}/24", "dev", "vx0", ns=ns)
        host.ip("link", "set", "vx0", "up", ns=ns)
    host.wait_for(lambda: _ping(host, peer, "192.168.42.1"), what="the tunnel")
    _set_hosts(host, ["10.77.0.10"])
    assert not _ping(host, peer, "192.168.42.1")
    _set_hosts(host, ["10.77.0.10", PEER])
    assert _ping(host, peer, "192.168.42.1")
