"""Addresses carry their family: the model's records and the store read either family, the
kernel's address and route dumps decode AF_INET and AF_INET6 (callers that want IPv4 ask
for it), and IPv6 input from users is still refused with one clear line. No root, no
kernel."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path

import pytest

from shoal import ipam
from shoal import ports as portspec
from shoal.errors import InvalidArgument
from shoal.kernel import links
from shoal.kernel import netlink as nl
from shoal.model import Endpoint, Network, PublishedPort, Sandbox
from shoal.netfilter import port_rule
from shoal.rules import PortMapping

T0 = "2024-05-01T10:00:00.000000000Z"


# -- the model -------------------------------------------------------------------------------


def test_records_parse_either_family_from_the_stores_text() -> None:
    four = Network(id="a", name="a", driver="bridge", created=T0, subnet="172.18.0.0/16",
                   gateway="172.18.0.1")  # type: ignore[arg-type]
    six = Network(id="b", name="b", driver="bridge", created=T0, subnet="fd00:1::/64",
                  gateway="fd00:1::1", ip_range="fd00:1::/80",  # type: ignore[arg-type]
                  last_ip="fd00:1::9")  # type: ignore[arg-type]
    assert four.subnet == IPv4Network("172.18.0.0/16") and four.family == 4
    assert six.subnet == IPv6Network("fd00:1::/64") and six.family == 6
    assert six.gateway == IPv6Address("fd00:1::1") and six.last_ip == IPv6Address("fd00:1::9")
    assert six.ip_range == IPv6Network("fd00:1::/80")
    assert four.gateway_interface == IPv4Interface("172.18.0.1/16")
    assert six.gateway_interface == IPv6Interface("fd00:1::1/64")
    host = Network(id="c", name="host", driver="host", created=T0)
    assert host.family is None
    ep = Endpoint(id="e", sandbox_id="c", network_id="b", ifname="eth0",
                  ip="fd00:1::2", mac=None, requested_ip="fd00:1::2")  # type: ignore[arg-type]
    assert ep.ip == IPv6Address("fd00:1::2") and ep.family == 6
    assert ep.requested_ip == IPv6Address("fd00:1::2")
    assert Endpoint(id="e", sandbox_id="c", network_id="b", ifname="eth0", ip=None,
                    mac=None).family is None


@pytest.mark.parametrize(("host_ip", "dest_ip", "family"), [
    ("0.0.0.0", "172.18.0.2", 4), ("127.0.0.1", "172.18.0.2", 4), ("::", "fd00:1::2", 6)])
def test_a_published_port_carries_its_family_into_the_firewall(host_ip: str, dest_ip: str,
                                                               family: int) -> None:
    p = PublishedPort(sandbox_id="c", network_id="n", proto="tcp",
                      host_ip=host_ip, host_port=8080,  # type: ignore[arg-type]
                      container_port=80, dest_ip=dest_ip)  # type: ignore[arg-type]
    assert p.family == family
    assert str(p.host_ip) == host_ip and p.host_ip.version == family
    assert port_rule(p) == PortMapping(family, "tcp", host_ip, 8080, dest_ip, 80)
    assert port_rule(p).every_address is (host_ip in ("0.0.0.0", "::"))


def test_the_store_keeps_and_reads_addresses_of_either_family(tmp_path: Path) -> None:
    """What the model holds, the store gives back, of whichever family (it does not decide
    what users may ask for: shoal.ipam does)."""
    from shoal.model import Container
    from shoal.store import Store

    store = Store(str(tmp_path / "state"))
    try:
        net = Network(id="a" * 64, name="six", driver="bridge", created=T0,
                      subnet=IPv6Network("fd00:1::/64"), gateway=IPv6Address("fd00:1::1"),
                      ip_range=IPv6Network("fd00:1::/80"), last_ip=IPv6Address("fd00:1::2"),
                      bridge="sh-aaaaaaaaaaaa")
        store.add_network(net)
        store.add_container(Container(id="c" * 64, name="c", created=T0, hostname="h",
                                      cmd=["x"], env=[], network_mode="six"))
        store.add_sandbox(Sandbox(id="c" * 64, path="", owned=True, created=T0))
        ep = Endpoint(id="e" * 64, sandbox_id="c" * 64, network_id=net.id, ifname="eth0",
                      ip=IPv6Address("fd00:1::2"), mac=None,
                      requested_ip=IPv6Address("fd00:1::2"))
        store.add_endpoint(ep)
        port = PublishedPort(sandbox_id="c" * 64, network_id=net.id, proto="tcp",
                             host_ip=IPv6Address("::"), host_port=8080, container_port=80,
                             dest_ip=IPv6Address("fd00:1::2"))
        store.add_ports([port])
        got = store.network("six")
        assert got == net and got.family == 6 and got.subnet == IPv6Network("fd00:1::/64")
        (got_ep,) = store.endpoints(network_id=net.id)
        assert got_ep == ep and got_ep.family == 6
        (got_port,) = store.ports()
        assert got_port == port and got_port.family == 6
        assert port_rule(got_port) == PortMapping(6, "tcp", "::", 8080, "fd00:1::2", 80)
    finally:
        store.close()


def test_reading_a_network_record_still_imports_no_ipaddress() -> None:
    """The lazy fields stay lazy (read-only commands keep ipaddress out)."""
    code = ("import sys; from shoal.model import Network, PublishedPort\n"
            "n = Network(id='a', name='a', driver='bridge', created='t', subnet='10.0.0.0/8')\n"
            "p = PublishedPort(sandbox_id='c', network_id='n', proto='tcp', host_ip='::',"
            " host_port=1, container_port=1, dest_ip='fd00::2')\n"
            "assert n.name == 'a' and p.host_port == 1 and 'ipaddress' not in sys.modules\n"
            "assert n.family == 4 and p.family == 6 and 'ipaddress' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- IPv6 input is refused, by name ------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda: ipam.parse_subnet("fd00:1::/64"),
    lambda: ipam.parse_subnet("fd00:1::/80", "ip-range"),
    lambda: ipam.parse_address("fd00:1::1", "gateway"),
    lambda: ipam.parse_address("fd00:1::5", "--ip"),
    lambda: portspec.parse_publish("[::1]:8080:80"),
    lambda: portspec.parse_publish("::1:8080:80"),
    lambda: portspec.parse_publish("fd00::5::80/udp"),
])
def test_ipv6_input_is_one_line_naming_ipv6(call: Callable[[], object]) -> None:
    with pytest.raises(InvalidArgument) as info:
        call()
    line = str(info.value)
    assert "IPv6 is not supported yet" in line and "\n" not in line


def test_ipv4_publish_specs_still_parse() -> None:
    (b,) = portspec.parse_publish("127.0.0.1:8080:80")
    assert b.host_ip == IPv4Address("127.0.0.1") and b.host_port == 8080
    with pytest.raises(InvalidArgument, match="expected IPv4"):
        portspec.parse_publish("x::80/udp")


# -- the kernel's dumps, decoded for either family -----------------------------------------------

REQUEST, MULTI, DUMP = 0x1, 0x2, 0x300
NEWADDR, GETADDR, NEWROUTE, GETROUTE, DONE = 20, 22, 24, 26, 3


def _a(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def _msg(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def _done(seq: int) -> bytes:
    return _msg(DONE, MULTI, seq, struct.pack("=i", 0))


def _addr(seq: int, family: int, index: int, ip: str, prefix: int) -> bytes:
    raw = socket.inet_pton(family, ip)
    body = struct.pack("=BBBBI", family, prefix, 0, 0, index) + _a(1, raw)  # IFA_ADDRESS
    if family == socket.AF_INET:
        body += _a(2, raw)  # IFA_LOCAL
    return _msg(NEWADDR, MULTI, seq, body)


def _route(seq: int, family: int, dst: str | None, dst_len: int, oif: int,
           gw: str | None = None) -> bytes:
    body = struct.pack("=BBBBBBBBI", family, dst_len, 0, 0, 254, 3, 0, 1, 0)
    if dst is not None:
        body += _a(1, socket.inet_pton(family, dst))
    if gw is not None:
        body += _a(5, socket.inet_pton(family, gw))
    body += _a(4, struct.pack("=I", oif))
    return _msg(NEWROUTE, MULTI, seq, body)


class _Kernel:
    def __init__(self, answer: Callable[[int], bytes]) -> None:
        self.answer = answer
        self.sent: list[bytes] = []
        self.queue: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)
        seq = struct.unpack_from("=IHHII", data)[3]
        self.queue += [self.answer(seq), _done(seq)]

    def recv(self, size: int) -> bytes:
        return self.queue.pop(0)

    def families_asked(self) -> list[int]:
        return [data[16] for data in self.sent]  # the first byte of ifaddrmsg / rtmsg


def _sock(answer: Callable[[int], bytes]) -> tuple[nl.Netlink, _Kernel]:
    sock = nl.Netlink.__new__(nl.Netlink)
    sock.seq = 0
    kernel = _Kernel(answer)
    sock.sock = kernel  # type: ignore[assignment]
    return sock, kernel


def test_address_dumps_decode_both_families_and_filter_when_asked() -> None:
    def answer(seq: int) -> bytes:
        return (_addr(seq, socket.AF_INET, 1, "127.0.0.1", 8)
                + _addr(seq, socket.AF_INET6, 1, "::1", 128)
                + _addr(seq, socket.AF_INET6, 5, "fd00:1::1", 64)
                + _addr(seq, socket.AF_INET, 5, "10.0.0.1", 24))

    sock, kernel = _sock(answer)
    assert links.address_entries(sock) == [
        (IPv4Interface("127.0.0.1/8"), 1), (IPv6Interface("::1/128"), 1),
        (IPv6Interface("fd00:1::1/64"), 5), (IPv4Interface("10.0.0.1/24"), 5)]
    assert links.addresses(sock, 5) == [IPv6Interface("fd00:1::1/64"),
                                        IPv4Interface("10.0.0.1/24")]
    # a caller that wants IPv4 says so (and the kernel is asked for AF_INET only)
    assert links.addresses(sock, family=4) == [IPv4Interface("127.0.0.1/8"),
                                               IPv4Interface("10.0.0.1/24")]
    assert links.addresses(sock, 1, family=6) == [IPv6Interface("::1/128")]
    assert kernel.families_asked() == [socket.AF_UNSPEC, socket.AF_UNSPEC, socket.AF_INET,
                                       socket.AF_INET6]


def test_route_dumps_decode_both_families_and_their_default_routes() -> None:
    def answer(seq: int) -> bytes:
        return (_route(seq, socket.AF_INET6, None, 0, 3, gw="fe80::1")
                + _route(seq, socket.AF_INET, None, 0, 2, gw="10.0.0.1")
                + _route(seq, socket.AF_INET, "10.0.0.0", 24, 2)
                + _route(seq, socket.AF_INET6, "fd00:1::", 64, 3))

    sock, kernel = _sock(answer)
    assert links.route_entries(sock) == [(IPv4Network("10.0.0.0/24"), 2),
                                         (IPv6Network("fd00:1::/64"), 3)]
    assert links.routes(sock, family=4) == [IPv4Network("10.0.0.0/24")]
    assert links.routes(sock, family=6) == [IPv6Network("fd00:1::/64")]
    assert links.default_route(sock, family=4) == (IPv4Address("10.0.0.1"), 2)
    assert links.default_route(sock, family=6) == (IPv6Address("fe80::1"), 3)
    assert links.default_route(sock) == (IPv6Address("fe80::1"), 3)  # the first, any family
    assert kernel.families_asked() == [socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6,
                                       socket.AF_INET, socket.AF_INET6, socket.AF_UNSPEC]


def test_address_and_route_requests_take_the_family_of_their_address() -> None:
    body = links._addr_request(3, IPv6Interface("fd00:1::1/64"), "x")[2]
    raw = socket.inet_pton(socket.AF_INET6, "fd00:1::1")
    assert body == (struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 0, 3)
                    + _a(2, raw) + _a(1, raw))  # IFA_LOCAL, IFA_ADDRESS, no broadcast
    v4 = links._addr_request(3, IPv4Interface("10.0.0.1/24"), "x")[2]
    assert v4[0] == socket.AF_INET and v4.endswith(_a(4, socket.inet_aton("10.0.0.255")))
    route = links._route_request(IPv6Address("fd00:1::1"), 3)[2]
    assert route[0] == socket.AF_INET6
    assert _a(5, socket.inet_pton(socket.AF_INET6, "fd00:1::1")) in route
