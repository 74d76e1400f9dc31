"""Netfilter, for both backends: outbound NAT, forwarding, published ports, isolation."""

from __future__ import annotations

import json
import sys
import time

import pytest

from .harness import HOST_ADDR, OUTSIDE_ADDR, Host
from .servers import TCP, UDP

PY = sys.executable


def _tcp_server(host: Host, name: str, *ports: int, args: tuple[str, ...] = (),
                network: str = "bridge") -> str:
    host.shoal("run", "-d", "--name", name, "--network", network, *args, "--",
               PY, "-c", TCP, *(str(p) for p in ports))
    host.wait_for(lambda: host.fetch(host.sandbox(name), "127.0.0.1", ports[0]) is not None,
                  what=f"{name} to listen")
    return host.ip_of(name, network)


def _outside_server(host: Host, port: int) -> None:
    host.background(host.outside, PY, "-c", TCP, str(port))
    host.wait_for(lambda: host.fetch(host.outside, "127.0.0.1", port) is not None,
                  what="outside server")


def test_outbound_is_masqueraded_and_forwarding_turned_on(fw_host: Host) -> None:
    host = fw_host
    host.in_ns(host.ns, "sysctl", "-w", "net.ipv4.ip_forward=0", check=True)
    _outside_server(host, 7000)
    host.shoal("run", "-d", "--name", "c", "--", "sleep", "60")
    assert host.in_ns(host.ns, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
    # the outside sees the host's address, not the container's
    assert host.fetch(host.sandbox("c"), OUTSIDE_ADDR, 7000) == HOST_ADDR


def test_ip_forward_false_leaves_it_off_and_warns(fw_host: Host) -> None:
    host = fw_host
    host.in_ns(host.ns, "sysctl", "-w", "net.ipv4.ip_forward=0", check=True)
    res = host.shoal("--ip-forward=false", "run", "-d", "--name", "c", "--", "sleep", "60")
    assert "sysctl -w net.ipv4.ip_forward=1" in res.stderr and "warning" in res.stderr
    assert host.in_ns(host.ns, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "0"
    _outside_server(host, 7000)
    assert host.fetch(host.sandbox("c"), OUTSIDE_ADDR, 7000, timeout=1) is None


def test_unsolicited_inbound_to_container_addresses_is_dropped(fw_host: Host) -> None:
    host = fw_host
    addr = _tcp_server(host, "web", 8000)
    # a client that routes the containers' subnet at the host still gets nowhere
    host.in_ns(host.outside, "ip", "route", "add", "172.17.0.0/16", "via", HOST_ADDR,
               check=True)
    assert host.fetch(host.outside, addr, 8000, timeout=1) is None
    # and forwarding is not open for traffic shoal did not ask for
    assert host.fetch(host.sandbox("web"), addr, 8000) is not None


def test_published_port_from_outside_host_and_hairpin(fw_host: Host) -> None:
    host = fw_host
    _tcp_server(host, "web", 8000, args=("-p", "8080:8000"))
    assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
    # from the host itself, through its own addresses, without a proxy process
    assert host.fetch(host.ns, HOST_ADDR, 8080) is not None
    assert host.fetch(host.ns, "127.0.0.1", 8080) is not None
    # from a container on the same network through the host's address (hairpin)
    host.shoal("run", "-d", "--name", "client", "--", "sleep", "60")
    assert host.fetch(host.sandbox("client"), HOST_ADDR, 8080) is not None
    assert host.shoal("port", "web").stdout.strip() == "8000/tcp -> 0.0.0.0:8080"
    info = host.shoal_json("inspect", "web")[0]
    assert info["NetworkSettings"]["Ports"]["8000/tcp"] == [
        {"HostIp": "0.0.0.0", "HostPort": "8080"}]
    assert info["HostConfig"]["PortBindings"] == {"8000/tcp": [{"HostIp": "", "HostPort": "8080"}]}
    assert "0.0.0.0:8080->8000/tcp" in host.shoal("ps").stdout


def test_port_bound_to_loopback_is_not_reachable_from_outside(fw_host: Host) -> None:
    host = fw_host
    addr = _tcp_server(host, "web", 8000, args=("-p", "127.0.0.1:9090:8000",
                                                "-p", "127.0.0.1::8000"))
    assert host.fetch(host.ns, "127.0.0.1", 9090) is not None
    assert host.fetch(host.outside, HOST_ADDR, 9090, timeout=1) is None
    host.in_ns(host.outside, "ip", "route", "add", "172.17.0.0/16", "via", HOST_ADDR,
               check=True)
    assert host.fetch(host.outside, addr, 8000, timeout=1) is None
    lines = host.shoal("port", "web").stdout.splitlines()
    assert lines[0] == "8000/tcp -> 127.0.0.1:9090"
    assert lines[1].startswith("8000/tcp -> 127.0.0.1:")
    random_port = int(lines[1].rsplit(":", 1)[1])
    assert host.fetch(host.ns, "127.0.0.1", random_port) is not None


def test_udp_and_ranges(fw_host: Host) -> None:
    host = fw_host
    host.shoal("run", "-d", "--name", "dns", "-p", "5353:5353/udp", "--",
               PY, "-c", UDP, "5353")
    host.wait_for(lambda: host.fetch(host.outside, HOST_ADDR, 5353, "udp", timeout=0.5)
                  is not None, what="udp echo through the published port")
    assert host.fetch(host.outside, HOST_ADDR, 5353, "udp") == OUTSIDE_ADDR
    _tcp_server(host, "multi", 9000, 9001, 9002, args=("-p", "19000-19002:9000-9002"))
    for port in (19000, 19001, 19002):
        assert host.fetch(host.outside, HOST_ADDR, port) == OUTSIDE_ADDR
    assert len(host.shoal("port", "multi").stdout.splitlines()) == 3


def test_publish_all_takes_ports_from_the_sandbox_ephemeral_range(fw_host: Host) -> None:
    host = fw_host
    host.in_ns(host.ns, "sysctl", "-w", "net.ipv4.ip_local_port_range=41000 41010", check=True)
    host.in_ns(host.ns, "sysctl", "-w", "net.ipv4.ip_local_reserved_ports=41000", check=True)
    _tcp_server(host, "web", 8000, args=("--expose", "8000", "-P"))
    line = host.shoal("port", "web", "8000").stdout.strip()
    port = int(line.rsplit(":", 1)[1])
    assert 41001 <= port <= 41010  # inside the range, skipping the reserved port
    assert host.fetch(host.outside, HOST_ADDR, port) == OUTSIDE_ADDR
    # a host process listening on the next port is skipped too
    host.background(host.ns, PY, "-c", TCP, str(port + 1))
    # (waited for through the kernel: a connect from this namespace, whose ephemeral range is
    # now 41001-41010, could pick port + 1 as its own source port and connect to itself)
    host.wait_for(lambda: host.listening(host.ns, port + 1), what="host listener")
    host.shoal("run", "-d", "--name", "second", "-p", "8000", "--", "sleep", "60")
    second = int(host.shoal("port", "second").stdout.strip().rsplit(":", 1)[1])
    assert second == port + 2


def test_conflicting_host_port_names_the_holder_and_creates_nothing(fw_host: Host) -> None:
    host = fw_host
    host.shoal("run", "-d", "--name", "first", "-p", "8080:80", "--", "sleep", "60")
    links_before = set(host.links())
    res = host.shoal("run", "-d", "--name", "second", "-p", "8080:81", "--", "sleep", "60",
                     check=False)
    assert res.returncode == 125 and "first" in res.stderr and "8080" in res.stderr
    names = [json.loads(line)["Names"] for line in
             host.shoal("ps", "-a", "--format", "json").stdout.splitlines()]
    assert names == ["first"]
    assert set(host.links()) == links_before


def test_networks_are_isolated_from_each_other(fw_host: Host) -> None:
    host = fw_host
    host.shoal("network", "create", "red")
    host.shoal("network", "create", "blue")
    red = _tcp_server(host, "r", 8000, network="red")
    blue = _tcp_server(host, "b", 8000, network="blue")
    assert host.fetch(host.sandbox("r"), blue, 8000, timeout=1) is None
    assert host.fetch(host.sandbox("b"), red, 8000, timeout=1) is None
    host.shoal("run", "-d", "--name", "r2", "--network", "red", "--", "sleep", "60")
    assert host.fetch(host.sandbox("r2"), red, 8000) is not None  # same network: fine


def test_internal_network_has_no_way_out_and_cannot_publish(fw_host: Host) -> None:
    host = fw_host
    _outside_server(host, 7000)
    host.shoal("network", "create", "--internal", "vault")
    inner = _tcp_server(host, "v1", 8000, network="vault")
    host.shoal("run", "-d", "--name", "v2", "--network", "vault", "--", "sleep", "60")
    assert host.ip_json("route", "show", "default", ns=host.sandbox("v2")) == []
    assert host.fetch(host.sandbox("v2"), OUTSIDE_ADDR, 7000, timeout=1) is None
    assert host.fetch(host.sandbox("v2"), inner, 8000) is not None
    res = host.shoal("run", "-d", "--network", "vault", "-p", "8081:80", "--", "sleep", "9",
                     check=False)
    assert res.returncode == 125 and "internal" in res.stderr
    # nor can it reach another network's published port through its gateway (a host address)
    _tcp_server(host, "pub", 8000, args=("-p", "8090:8000"))
    assert host.fetch(host.outside, HOST_ADDR, 8090) == OUTSIDE_ADDR
    gateway = host.shoal_json("network", "inspect", "vault")[0]["IPAM"]["Config"][0]["Gateway"]
    assert host.fetch(host.sandbox("v2"), gateway, 8090, timeout=1) is None


def test_icc_false_blocks_containers_of_one_network(fw_host: Host) -> None:
    host = fw_host
    host.shoal("network", "create", "-o", "shoal.bridge.enable_icc=false", "quiet")
    addr = _tcp_server(host, "a", 8000, args=("-p", "8085:8000"), network="quiet")
    host.shoal("run", "-d", "--name", "b", "--network", "quiet", "--", "sleep", "60")
    assert not host.ping_ok("b", addr)
    assert host.fetch(host.sandbox("b"), addr, 8000, timeout=1) is None
    assert host.ping_ok("b", "172.18.0.1")  # the gateway stays reachable
    assert host.fetch(host.outside, HOST_ADDR, 8085) == OUTSIDE_ADDR


def test_user_chain_survives_reload_and_flush_is_repaired(fw_host: Host) -> None:
    host = fw_host
    _tcp_server(host, "web", 8000, args=("-p", "8080:8000"))
    assert host.fetch(host.outside, HOST_ADDR, 8080) is not None
    if host.backend == "nftables":
        host.in_ns(host.ns, "nft", "add", "rule", "ip", "shoal", "user", "tcp", "dport",
                   "8000", "drop", check=True)
    else:
        host.in_ns(host.ns, "iptables", "-A", "SHOAL-USER", "-p", "tcp", "--dport", "8000",
                   "-j", "DROP", check=True)
    assert host.fetch(host.outside, HOST_ADDR, 8080, timeout=1) is None
    host.shoal("system", "reload-firewall")
    host.shoal("run", "-d", "--name", "other", "-p", "8081:8000", "--", "sleep", "60")
    assert host.fetch(host.outside, HOST_ADDR, 8080, timeout=1) is None  # user rule kept
    if host.backend == "nftables":
        host.in_ns(host.ns, "nft", "flush", "ruleset", check=True)
    else:
        host.in_ns(host.ns, "iptables", "-t", "nat", "-F", check=True)
        host.in_ns(host.ns, "iptables", "-F", check=True)
    host.shoal("system", "reload-firewall")
    assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR


def _ruleset(host: Host) -> str:
    if host.backend == "nftables":
        return host.in_ns(host.ns, "nft", "list", "ruleset", check=True).stdout
    return host.in_ns(host.ns, "iptables-save", check=True).stdout


def test_rm_leaves_no_rule_element_or_chain(fw_host: Host) -> None:
    host = fw_host
    host.shoal("network", "create", "-o", "shoal.bridge.enable_icc=false", "n")
    host.shoal("run", "-d", "--name", "x", "--network", "n", "-p", "8080:80", "-p",
               "127.0.0.1:5300:53/udp", "--", "sleep", "60")
    rules = _ruleset(host)
    assert "172.18.0.2" in rules and "8080" in rules
    host.shoal("rm", "-f", "x")
    rules = _ruleset(host)
    assert "172.18.0.2" not in rules and "8080" not in rules and "vsh" not in rules
    host.shoal("network", "rm", "n")
    rules = _ruleset(host)
    assert "172.18.0.0" not in rules and "sh-" not in rules
    # the iptables backend shows the seed's view: DNAT rules under `iptables -t nat -L -n`
    if host.backend == "iptables":
        host.shoal("run", "-d", "--name", "y", "-p", "8080:80", "--", "sleep", "60")
        listing = host.in_ns(host.ns, "iptables", "-t", "nat", "-L", "-n").stdout
        assert "DNAT" in listing and "to:172.17.0.2:80" in listing


def test_switching_backends_removes_the_other_ones_rules(host: Host) -> None:
    host.shoal("run", "-d", "--name", "web", "-p", "8080:8000", "--", PY, "-c", TCP, "8000")
    assert "table ip shoal" in host.in_ns(host.ns, "nft", "list", "tables").stdout
    host.shoal("--firewall-backend", "iptables", "system", "reload-firewall")
    assert "table ip shoal" not in host.in_ns(host.ns, "nft", "list", "tables").stdout
    saved = host.in_ns(host.ns, "iptables-save").stdout
    assert "-A SHOAL -p tcp -m tcp --dport 8080 -j DNAT" in saved
    host.wait_for(lambda: host.fetch(host.outside, HOST_ADDR, 8080) is not None,
                  what="published port through iptables")
    text = host.shoal("system", "firewall").stdout
    assert "DNAT" in text


@pytest.mark.parametrize("spec", ["0:80", "70000:80", "8080:0", "80-82:80-83", "80/icmp",
                                  "abc:80", "[::1]:80:80", "10.9.9.9:8080:80"])
def test_bad_publish_specs(host: Host, spec: str) -> None:
    res = host.shoal("run", "-d", "-p", spec, "--", "sleep", "9", check=False)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 125 and len(lines) == 1 and lines[0].startswith("shoal:"), res
    assert host.shoal("ps", "-a", "-q").stdout.strip() == ""


def test_inspect_ports_json(host: Host) -> None:
    host.shoal("run", "-d", "--name", "w", "--expose", "9000/udp", "-p", "127.0.0.1:8080:80",
               "--", "sleep", "60")
    info = host.shoal_json("inspect", "w")[0]
    assert info["NetworkSettings"]["Ports"] == {
        "9000/udp": None, "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    assert info["Config"]["ExposedPorts"] == {"9000/udp": {}, "80/tcp": {}}
    assert json.loads(json.dumps(info["HostConfig"]["PortBindings"])) == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}


def test_containers_cannot_reach_the_hosts_loopback_services(fw_host: Host) -> None:
    """route_localnet on shoal's bridges (for ports published on 127.0.0.1) must not let a
    container send to a host service bound to 127.0.0.1 (CVE-2020-8558). TCP could not
    answer from 127.0.0.1 anyway; a single UDP datagram is enough to act on."""
    host = fw_host
    log = host.base / "received"
    server = ("import socket, sys\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              "s.bind(('127.0.0.1', 7777))\n"
              "while True:\n"
              "    data, peer = s.recvfrom(100)\n"
              f"    open({str(log)!r}, 'a').write(peer[0] + ' ' + data.decode() + '\\n')\n")
    host.background(host.ns, PY, "-c", server)
    send = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.sendto(b'hello', ('127.0.0.1', 7777))")
    host.wait_for(lambda: host.in_ns(host.ns, PY, "-c", send).returncode == 0
                  and log.exists(), what="loopback-only host service")
    host.shoal("run", "-d", "--name", "c", "-p", "127.0.0.1:9091:80", "--", "sleep", "60")
    # the container sends 127.0.0.1 to its gateway instead of its own lo
    setup = ("ip route del local 127.0.0.0/8 dev lo table local; "
             "ip route del local 127.0.0.1 dev lo table local; "
             "sysctl -qw net.ipv4.conf.eth0.route_localnet=1; "
             "ip route add 127.0.0.1/32 via 172.17.0.1 dev eth0")
    host.in_container("c", "sh", "-c", setup, check=False)
    assert host.ip_json("route", "get", "127.0.0.1", ns=host.sandbox("c"))[0]["dev"] == "eth0"
    for _ in range(5):
        host.in_ns(host.sandbox("c"), PY, "-c", send, check=True)
    time.sleep(0.5)
    assert [line for line in log.read_text().splitlines() if not line.startswith("127.")] == []


def _dnat_packets(host: Host, port: int) -> int:
    out = host.in_ns(host.ns, "iptables", "-t", "nat", "-L", "SHOAL", "-n", "-v", "-x",
                     check=True).stdout
    return sum(int(line.split()[0]) for line in out.splitlines() if f"dpt:{port} " in line + " ")


def test_iptables_port_changes_touch_only_their_rules(iptables_host: Host) -> None:
    """Starting or removing a container with ports deletes and appends its DNAT rules only:
    the other rules keep their packet counters (a rewrite of the chain would reset them)."""
    host = iptables_host
    _tcp_server(host, "web", 8000, args=("-p", "8080:8000"))
    assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
    assert _dnat_packets(host, 8080) >= 1
    _tcp_server(host, "other", 8000, args=("-p", "8081:8000", "-p", "127.0.0.1:8082:8000"))
    assert host.fetch(host.outside, HOST_ADDR, 8081) == OUTSIDE_ADDR
    host.shoal("rm", "-f", "other")
    assert _dnat_packets(host, 8080) >= 1  # web's rule was not rewritten
    nat = host.in_ns(host.ns, "iptables-save", "-t", "nat", check=True).stdout
    assert "--dport 8081" not in nat and "--dport 8082" not in nat
    assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR


def test_iptables_port_rule_deleted_by_hand_is_repaired_on_the_next_change(
        iptables_host: Host) -> None:
    host = iptables_host
    _tcp_server(host, "web", 8000, args=("-p", "8080:8000"))
    host.shoal("run", "-d", "--name", "gone", "-p", "9090:80", "--", "sleep", "60")
    rule = next(line for line in host.in_ns(host.ns, "iptables-save", "-t", "nat",
                                            check=True).stdout.splitlines()
                if "--dport 9090" in line)
    host.in_ns(host.ns, "iptables", "-t", "nat", *rule.replace("-A ", "-D ", 1).split(),
               check=True)
    host.shoal("rm", "-f", "gone")  # its rule is missing: the delta fails, all is rewritten
    nat = host.in_ns(host.ns, "iptables-save", "-t", "nat", check=True).stdout
    assert "--dport 9090" not in nat and nat.count("--dport 8080") == 1
    assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
