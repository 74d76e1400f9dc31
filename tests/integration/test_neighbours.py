"""Living beside other firewalls (Docker, ufw, firewalld), on both backends: their dropping
forward chains do not block shoal's containers (shoal adds accepts for its own bridges
there, and only there), shoal's own forward chain does not block their containers, and
switching backends leaves the user's policy as it was."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import HOST_ADDR, OUTSIDE_ADDR, Host
from .servers import TCP
from .test_firewall import PY, _outside_server, _tcp_server

FIREWALLD = ("add table inet firewalld; add chain inet firewalld filter_FORWARD "
             "{ type filter hook forward priority filter + 10; policy drop; }")

# how each kind of other firewall is made to drop forwarded traffic by default
FOREIGN = {
    "iptables-nft": [["iptables-nft", "-P", "FORWARD", "DROP"]],
    "iptables-legacy": [["iptables-legacy", "-P", "FORWARD", "DROP"]],
    "firewalld": [["nft", FIREWALLD]],
}


def _drop(host: Host, kind: str) -> None:
    for cmd in FOREIGN[kind]:
        host.in_ns(host.ns, *cmd, check=True)


def _forward_drop_of(host: Host, kind: str) -> str:
    """The listing of that firewall's forward chain."""
    if kind == "iptables-legacy":
        return host.in_ns(host.ns, "iptables-legacy-save", "-t", "filter", check=True).stdout
    if kind == "iptables-nft":
        return host.in_ns(host.ns, "iptables-nft-save", "-t", "filter", check=True).stdout
    return host.in_ns(host.ns, "nft", "list", "table", "inet", "firewalld", check=True).stdout


def _works(host: Host) -> None:
    """Container to outside, outside to a published port, container to container on one
    network (bridge netfilter is on here)."""
    assert host.fetch(host.sandbox("web"), OUTSIDE_ADDR, 7000) == HOST_ADDR
    assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
    assert host.fetch(host.sandbox("client"), host.ip_of("web", "bridge"), 8000) is not None


def _blocked(host: Host) -> None:
    assert host.fetch(host.sandbox("web"), OUTSIDE_ADDR, 7000, timeout=1) is None
    assert host.fetch(host.outside, HOST_ADDR, 8080, timeout=1) is None


def _containers(host: Host) -> None:
    _outside_server(host, 7000)
    _tcp_server(host, "web", 8000, args=("-p", "8080:8000"))
    host.shoal("run", "-d", "--name", "client", "--", "sleep", "60")


def _bnf_on(host: Host) -> None:
    path = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    if not path.exists():
        pytest.skip("br_netfilter is not loaded")
    host.in_ns(host.ns, "sysctl", "-w", "net.bridge.bridge-nf-call-iptables=1", check=True)


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_other_firewalls_dropping_forward_do_not_block_shoal(fw_host: Host, kind: str) -> None:
    """Docker running before shoal: its FORWARD policy is DROP (or firewalld's zone drops)."""
    host = fw_host
    _bnf_on(host)
    _drop(host, kind)
    _containers(host)
    _works(host)
    # shoal's accepts there concern its own bridges only
    listing = _forward_drop_of(host, kind)
    assert "shoal0" in listing
    if not (kind == "iptables-nft" and host.backend == "iptables"):  # there it is shoal's own
        assert "SHOAL-ACCEPT" in listing or 'comment "shoal:' in listing
        # and `shoal system firewall` says where they are
        shown = host.shoal("system", "firewall").stdout
        where = {"firewalld": "inet firewalld filter_FORWARD"}.get(kind, "ip filter FORWARD")
        assert f"#   {where}: " in shown


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_a_firewall_started_after_shoal_is_handled_at_the_next_change(
        fw_host: Host, kind: str) -> None:
    host = fw_host
    _bnf_on(host)
    _containers(host)
    _works(host)
    _drop(host, kind)  # Docker starts now
    if not (kind == "iptables-nft" and host.backend == "iptables"):
        _blocked(host)
    # (a network, not a container: a new port on shoal0 may change the bridge's MAC, which
    # the lifecycle lane fixes, and cut web off for reasons of its own)
    host.shoal("network", "create", "later")
    _works(host)


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_a_firewall_started_after_shoal_is_handled_by_the_next_published_port(
        fw_host: Host, kind: str) -> None:
    """A change of published ports only (no bridge comes or goes) still looks at the other
    firewalls when anyone else changed the ruleset since shoal's last change (the nftables
    generation id moved), or where iptables-legacy has a filter table."""
    host = fw_host
    _bnf_on(host)
    _containers(host)
    host.shoal("run", "-d", "--name", "first", "-p", "8090:80", "--", "sleep", "60")
    _works(host)
    _drop(host, kind)  # Docker starts now
    host.shoal("run", "-d", "--name", "second", "-p", "8091:80", "--", "sleep", "60")
    _works(host)
    listing = _forward_drop_of(host, kind)
    if not (kind == "iptables-nft" and host.backend == "iptables"):  # (SHOAL-FORWARD is first)
        assert "shoal:" in listing or "-j SHOAL-ACCEPT" in listing


@pytest.mark.parametrize("kind", ["firewalld", "iptables-legacy"])
def test_reload_and_reconcile_put_removed_accepts_back(fw_host: Host, kind: str) -> None:
    host = fw_host
    _drop(host, kind)
    _containers(host)
    # firewalld reloads: its table is made again, without shoal's rules
    if kind == "firewalld":
        host.in_ns(host.ns, "nft", "delete table inet firewalld", check=True)
    else:
        host.in_ns(host.ns, "iptables-legacy", "-F", "FORWARD", check=True)
    _drop(host, kind)
    _blocked(host)
    host.shoal("system", "reload-firewall")
    _works(host)
    if kind == "firewalld":
        host.in_ns(host.ns, "nft", "delete table inet firewalld", check=True)
        _drop(host, kind)
        host.shoal("system", "reconcile")
        _works(host)


def test_leave_turns_it_off_and_is_remembered(fw_host: Host) -> None:
    host = fw_host
    _drop(host, "firewalld")
    _containers(host)
    _works(host)
    host.shoal("--other-firewalls", "leave", "network", "ls")
    assert "shoal" not in _forward_drop_of(host, "firewalld")
    _blocked(host)
    # remembered: later changes leave it alone
    host.shoal("network", "create", "later")
    host.shoal("system", "reload-firewall")
    assert "shoal" not in _forward_drop_of(host, "firewalld")
    _blocked(host)
    res = host.shoal("--other-firewalls", "sometimes", "network", "ls", check=False)
    assert res.returncode != 0 and "--other-firewalls" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    host.shoal("--other-firewalls", "accept", "network", "ls")
    _works(host)


def test_leave_from_the_environment(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    _drop(host, "firewalld")
    monkeypatch.setenv("SHOAL_OTHER_FIREWALLS", "leave")
    _containers(host)
    assert "shoal" not in _forward_drop_of(host, "firewalld")
    _blocked(host)


def test_accepts_go_when_the_chain_stops_dropping_and_when_backend_owns_it(host: Host) -> None:
    """iptables' FORWARD is a neighbour of the nftables backend and the iptables backend's
    own chain: switching to it removes SHOAL-ACCEPT (there SHOAL-FORWARD, first, decides)."""
    _drop(host, "iptables-nft")
    _containers(host)
    assert "-A FORWARD -j SHOAL-ACCEPT" in _forward_drop_of(host, "iptables-nft")
    host.shoal("--firewall-backend", "iptables", "system", "reload-firewall")
    saved = _forward_drop_of(host, "iptables-nft")
    assert "SHOAL-ACCEPT" not in saved and "-A FORWARD -j SHOAL-FORWARD" in saved
    _works(host)
    host.shoal("--firewall-backend", "nftables", "system", "reload-firewall")
    assert "-A FORWARD -j SHOAL-ACCEPT" in _forward_drop_of(host, "iptables-nft")
    _works(host)
    # the chain accepts by default again: shoal's accepts are taken out at the next change
    host.in_ns(host.ns, "iptables-nft", "-P", "FORWARD", "ACCEPT", check=True)
    host.shoal("system", "reload-firewall")
    assert "SHOAL-ACCEPT" not in _forward_drop_of(host, "iptables-nft")
    _works(host)


def test_accepts_are_only_for_shoals_bridges(fw_host: Host) -> None:
    """shoal's rules there name its bridges, and follow them as networks come and go."""
    host = fw_host
    _drop(host, "firewalld")
    _containers(host)
    listing = _forward_drop_of(host, "firewalld")
    names = {line.split('"')[1] for line in listing.splitlines() if "shoal:" in line}
    assert names == {"shoal0"}
    host.shoal("network", "create", "red")
    bridge = "sh-" + host.shoal_json("network", "inspect", "red")[0]["Id"][:12]
    listing = _forward_drop_of(host, "firewalld")
    assert bridge in listing and "shoal0" in listing
    host.shoal("network", "rm", "red")
    assert bridge not in _forward_drop_of(host, "firewalld")


# -- shoal's own forward chain and other engines' containers (item 16) -------------------------


def _lan(host: Host) -> Iterator[str]:
    """A second network beside the host's uplink (a LAN namespace on 192.0.2.0/24), made
    before shoal runs: the host must not start routing between it and the outside."""
    path = str(host.base / "lan.ns")
    Path(path).touch()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True)
    try:
        host.ip("link", "set", "lo", "up", ns=path)
        host.ip("link", "add", "lan0", "type", "veth", "peer", "name", "lanpeer")
        host.ip("link", "set", "lanpeer", "netns", path)
        host.ip("addr", "add", "192.0.2.1/24", "dev", "lan0")
        host.ip("link", "set", "lan0", "up")
        host.ip("addr", "add", "192.0.2.2/24", "dev", "lanpeer", ns=path)
        host.ip("link", "set", "lanpeer", "up", ns=path)
        host.ip("route", "add", "default", "via", "192.0.2.1", ns=path)
        host.in_ns(host.outside, "ip", "route", "add", "192.0.2.0/24", "via", HOST_ADDR,
                   check=True)
        yield path
    finally:
        subprocess.run(["umount", path], capture_output=True)


class Engine2:
    """Another engine's container (Docker's, made with ip): a bridge docker0 with a veth'd
    namespace, its own iptables-nft accepts, masquerade and one published port (DNAT)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.ns = str(host.base / "docker-ctr.ns")
        self.procs: list[subprocess.Popen[str]] = []

    def start(self) -> None:
        h = self.host
        Path(self.ns).touch()
        subprocess.run(["unshare", f"--net={self.ns}", "true"], check=True)
        h.ip("link", "add", "docker0", "type", "bridge")
        h.ip("addr", "add", "10.77.0.1/24", "dev", "docker0")
        h.ip("link", "set", "docker0", "up")
        h.ip("link", "add", "vethd0", "type", "veth", "peer", "name", "eth0", "netns", self.ns)
        h.ip("link", "set", "vethd0", "master", "docker0", "up")
        h.ip("link", "set", "lo", "up", ns=self.ns)
        h.ip("addr", "add", "10.77.0.2/24", "dev", "eth0", ns=self.ns)
        h.ip("link", "set", "eth0", "up", ns=self.ns)
        h.ip("route", "add", "default", "via", "10.77.0.1", ns=self.ns)
        for rule in (["-A", "FORWARD", "-o", "docker0", "-j", "ACCEPT"],
                     ["-A", "FORWARD", "-i", "docker0", "-j", "ACCEPT"],
                     ["-t", "nat", "-A", "POSTROUTING", "-s", "10.77.0.0/24", "!", "-o",
                      "docker0", "-j", "MASQUERADE"],
                     ["-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "9080", "-j",
                      "DNAT", "--to-destination", "10.77.0.2:8000"]):
            h.in_ns(h.ns, "iptables-nft", *rule, check=True)
        self.procs.append(h.background(self.ns, PY, "-c", TCP, "8000"))
        h.wait_for(lambda: h.fetch(self.ns, "127.0.0.1", 8000) is not None,
                   what="the other engine's container")

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        subprocess.run(["umount", self.ns], capture_output=True)


@pytest.fixture
def docker(fw_host: Host) -> Iterator[Engine2]:
    engine = Engine2(fw_host)
    try:
        yield engine
    finally:
        engine.stop()


def test_shoal_turning_forwarding_on_does_not_block_other_engines(
        fw_host: Host, docker: Engine2) -> None:
    host = fw_host
    lan = _lan(host)
    lan_ns = next(lan)
    try:
        host.in_ns(host.ns, "sysctl", "-w", "net.ipv4.ip_forward=0", check=True)
        _outside_server(host, 7000)
        _tcp_server(host, "web", 8000, args=("-p", "8080:8000"))  # shoal turns forwarding on
        assert host.in_ns(host.ns, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
        docker.start()  # Docker starts later: forwarding is on, so it leaves FORWARD's policy
        # Docker's container reaches the outside, and the outside its published port
        assert host.fetch(docker.ns, OUTSIDE_ADDR, 7000) == HOST_ADDR
        assert host.fetch(host.outside, HOST_ADDR, 9080) == OUTSIDE_ADDR
        # shoal's own traffic still works
        assert host.fetch(host.sandbox("web"), OUTSIDE_ADDR, 7000) == HOST_ADDR
        assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
        # and the host did not start routing between its own links (LAN <-> outside)
        server = host.background(lan_ns, PY, "-c", TCP, "7100")
        try:
            host.wait_for(lambda: host.fetch(lan_ns, "127.0.0.1", 7100) is not None,
                          what="lan server")
            assert host.fetch(host.outside, "192.0.2.2", 7100, timeout=1) is None
            assert host.fetch(lan_ns, OUTSIDE_ADDR, 7000, timeout=1) is None
        finally:
            server.kill()
            server.wait()
    finally:
        next(lan, None)


def test_forwarding_on_before_shoal_routes_as_before(fw_host: Host) -> None:
    """When forwarding was on already, shoal drops nothing that is not its own."""
    host = fw_host
    lan = _lan(host)
    lan_ns = next(lan)
    try:
        host.in_ns(host.ns, "sysctl", "-w", "net.ipv4.ip_forward=1", check=True)
        _outside_server(host, 7000)
        _tcp_server(host, "web", 8000, args=("-p", "8080:8000"))
        assert host.fetch(lan_ns, OUTSIDE_ADDR, 7000) == "192.0.2.2"
    finally:
        next(lan, None)


# -- switching backends (item 17) ---------------------------------------------------------------


@pytest.mark.parametrize("policy", ["DROP", "ACCEPT"])
def test_switching_backends_keeps_the_users_forward_policy(host: Host, policy: str) -> None:
    host.in_ns(host.ns, "iptables", "-P", "FORWARD", policy, check=True)
    host.in_ns(host.ns, "sysctl", "-w", "net.ipv4.ip_forward=0", check=True)
    _outside_server(host, 7000)
    host.shoal("--firewall-backend", "iptables", "run", "-d", "--name", "web", "-p",
               "8080:8000", "--", PY, "-c", TCP, "8000")
    assert f"-P FORWARD {policy}" in host.in_ns(host.ns, "iptables", "-S", "FORWARD").stdout
    host.shoal("--firewall-backend", "nftables", "network", "ls")
    assert f"-P FORWARD {policy}" in host.in_ns(host.ns, "iptables", "-S", "FORWARD").stdout
    host.wait_for(lambda: host.fetch(host.sandbox("web"), "127.0.0.1", 8000) is not None,
                  what="web")
    assert host.fetch(host.sandbox("web"), OUTSIDE_ADDR, 7000) == HOST_ADDR
    assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
    host.shoal("--firewall-backend", "iptables", "network", "ls")
    assert f"-P FORWARD {policy}" in host.in_ns(host.ns, "iptables", "-S", "FORWARD").stdout


# -- a flushed set is repaired by the next change (item 12) -------------------------------------


def test_flushed_set_is_repaired_by_the_next_run(host: Host) -> None:
    host.shoal("network", "create", "red")
    red = _tcp_server(host, "r", 8000, network="red", args=("-p", "8080:8000"))
    host.shoal("run", "-d", "--name", "b", "--", "sleep", "60")
    assert host.fetch(host.sandbox("b"), red, 8000, timeout=1) is None  # isolated
    host.in_ns(host.ns, "nft", "flush", "set", "ip", "shoal", "bridges", check=True)
    host.in_ns(host.ns, "nft", "flush", "map", "ip", "shoal", "ports_any", check=True)
    assert host.fetch(host.sandbox("b"), red, 8000, timeout=1) is not None  # broken
    host.shoal("run", "-d", "--name", "other", "-p", "8081:80", "--", "sleep", "60")
    listing = host.in_ns(host.ns, "nft", "list", "set", "ip", "shoal", "bridges").stdout
    assert "shoal0" in listing
    assert host.fetch(host.sandbox("b"), red, 8000, timeout=1) is None
    assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
