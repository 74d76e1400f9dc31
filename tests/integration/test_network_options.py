"""`network create -o` with Docker's own option names: the bridge's name, icc, IP
masquerade, the default host address of published ports, and the MTU."""

from __future__ import annotations

import sys

import pytest

from .harness import HOST_ADDR, OUTSIDE_ADDR, Host
from .servers import TCP

PY = sys.executable
BR = "com.docker.network.bridge."


def _outside_server(host: Host, port: int) -> None:
    host.background(host.outside, PY, "-c", TCP, str(port))
    host.wait_for(lambda: host.fetch(host.outside, "127.0.0.1", port) is not None,
                  what="outside server")


def test_docker_bridge_name_and_icc_options(host: Host) -> None:
    host.shoal("network", "create", "-o", f"{BR}name=br-dock1", "-o", f"{BR}enable_icc=false",
               "--subnet", "10.31.0.0/24", "quiet")
    [link] = host.ip_json("-d", "link", "show", "br-dock1")
    assert link["linkinfo"]["info_kind"] == "bridge"
    info = host.shoal_json("network", "inspect", "quiet")[0]
    assert info["Options"] == {f"{BR}name": "br-dock1", f"{BR}enable_icc": "false"}
    for name in ("a", "b"):
        host.shoal("run", "-d", "--name", name, "--network", "quiet", "--", "sleep", "60")
    # icc off: the containers do not reach each other, but reach their gateway
    assert not host.ping_ok("a", host.ip_of("b", "quiet"))
    assert host.ping_ok("a", "10.31.0.1")


@pytest.mark.parametrize(("opts", "needle"), [
    ([f"{BR}name=x1", "shoal.bridge.name=x2"], "are the same option: give one of them"),
    ([f"{BR}enable_icc=maybe"], "must be true or false, not 'maybe'"),
    (["com.docker.network.driver.mtu=67"], "must be an MTU from 68 to 65535, not '67'"),
    (["com.docker.network.driver.mtu=65536"], "must be an MTU from 68 to 65535"),
    (["com.docker.network.driver.mtu=abc"], "must be an MTU from 68 to 65535, not 'abc'"),
    ([f"{BR}host_binding_ipv4=nope"], "must be an IPv4 address of the host, not 'nope'"),
    ([f"{BR}inhibit_ipv4=true"], f"unknown bridge option '{BR}inhibit_ipv4'"),
])
def test_bad_options_are_one_line_errors_and_make_nothing(host: Host, opts: list[str],
                                                           needle: str) -> None:
    args = [a for o in opts for a in ("-o", o)]
    res = host.shoal("network", "create", *args, "n", check=False)
    assert res.returncode != 0 and needle in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "n" not in [r["Name"] for r in map(_json, host.shoal(
        "network", "ls", "--format", "json").stdout.splitlines())]


def _json(line: str) -> dict[str, str]:
    import json

    return json.loads(line)


@pytest.mark.parametrize("key", ["com.docker.network.driver.mtu", "shoal.bridge.mtu"])
def test_mtu_on_the_bridge_both_veth_ends_and_inside(host: Host, key: str) -> None:
    host.shoal("network", "create", "-o", f"{key}=1400", "small")
    info = host.shoal_json("network", "inspect", "small")[0]
    assert info["Options"] == {key: "1400"}  # as given
    host.shoal("run", "-d", "--name", "c", "--network", "small", "--", "sleep", "60")
    bridge = "sh-" + info["Id"][:12]
    ep = host.shoal_json("inspect", "c")[0]["NetworkSettings"]["Networks"]["small"]
    veth = "vsh" + ep["EndpointID"][:12]
    links = host.links()
    assert links[bridge]["mtu"] == 1400
    assert links[veth]["mtu"] == 1400 and links[veth]["master"] == bridge
    assert host.links(ns=host.sandbox("c"))["eth0"]["mtu"] == 1400
    assert "mtu 1400" in host.in_container("c", "ip", "link", "show", "eth0").stdout
    # a network without the option keeps the kernel's default
    host.shoal("run", "-d", "--name", "d", "--", "sleep", "60")
    assert host.links(ns=host.sandbox("d"))["eth0"]["mtu"] == 1500


def test_masquerade_off_sends_the_containers_own_address_out(fw_host: Host) -> None:
    host = fw_host
    host.shoal("network", "create", "-o", f"{BR}enable_ip_masquerade=false",
               "--subnet", "10.32.0.0/24", "plain")
    host.shoal("network", "create", "--subnet", "10.33.0.0/24", "masq")
    fw = host.shoal("system", "firewall").stdout
    if host.backend == "iptables":
        assert "-s 10.32.0.0/24 ! -o" not in fw and "-s 10.33.0.0/24 ! -o" in fw
        assert "MASQUERADE" in fw
    else:
        masq = next(line for line in _set_block(fw, "masq_subnets"))
        assert "10.33.0.0/24" in masq and "10.32.0.0/24" not in masq
    _outside_server(host, 7000)
    # the outside routes the containers' subnets back at the host (else no reply comes back)
    for subnet in ("10.32.0.0/24", "10.33.0.0/24"):
        host.in_ns(host.outside, "ip", "route", "add", subnet, "via", HOST_ADDR, check=True)
    host.shoal("run", "-d", "--name", "p", "--network", "plain", "--", "sleep", "60")
    host.shoal("run", "-d", "--name", "m", "--network", "masq", "--", "sleep", "60")
    assert host.fetch(host.sandbox("p"), OUTSIDE_ADDR, 7000) == host.ip_of("p", "plain")
    assert host.fetch(host.sandbox("m"), OUTSIDE_ADDR, 7000) == HOST_ADDR


def _set_block(text: str, name: str) -> list[str]:
    """The text of one set in `nft list table` output, joined to one line."""
    start = text.index(f"set {name} ")
    return [" ".join(text[start:text.index("}", start)].split())]


def test_host_binding_ipv4_is_the_default_host_address_of_published_ports(host: Host) -> None:
    host.ip("addr", "add", "192.0.2.10/32", "dev", "lo")
    host.shoal("network", "create", "-o", f"{BR}host_binding_ipv4=192.0.2.10", "bound")
    host.shoal("run", "-d", "--name", "c", "--network", "bound", "-p", "8080:80",
               "-p", "0.0.0.0:8081:81", "-p", "127.0.0.1:8082:82", "--", "sleep", "60")
    assert host.shoal("port", "c").stdout.splitlines() == [
        "80/tcp -> 192.0.2.10:8080", "81/tcp -> 0.0.0.0:8081", "82/tcp -> 127.0.0.1:8082"]
    assert host.shoal("port", "c", "80").stdout.strip() == "192.0.2.10:8080"
    # an address the host does not have is refused when a port is published on it
    host.shoal("network", "create", "-o", f"{BR}host_binding_ipv4=192.0.2.99", "nowhere")
    res = host.shoal("run", "-d", "--network", "nowhere", "-p", "8090:80", "--", "sleep", "60",
                     check=False)
    assert res.returncode == 125 and "192.0.2.99" in res.stderr
