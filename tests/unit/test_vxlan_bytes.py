"""The VXLAN device and its FDB and neighbour entries, byte for byte: every request shoal
sends is compared with bytes built here by hand from the kernel's layouts (struct ifinfomsg
and ndmsg, IFLA_INFO_DATA nesting, IFLA_VXLAN_* of linux/if_link.h, NDA_* and NUD_*/NTF_* of
linux/neighbour.h), not from shoal's encoders, and every answer is decoded from hand-built
bytes handed back by a fake kernel socket. No root, no kernel."""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

import pytest
from netlink_layouts import (
    ACK,
    ACK_TLVS,
    CAPPED,
    CREATE,
    DELLINK,
    DUMP,
    EXCL,
    GETLINK,
    MULTI,
    NEWLINK,
    REQUEST,
    SETLINK,
    Frame,
    a,
    acks,
    done,
    err,
    fake,
    ifinfo,
    msg,
    ok,
    s,
    u8,
    u32,
)

from shoal.errors import KernelError
from shoal.kernel import netlink as nl
from shoal.kernel import vxlan

# -- the kernel's layouts, written out ------------------------------------------------------

REPLACE = 0x100
NEWNEIGH, DELNEIGH, GETNEIGH = 28, 29, 30
NESTED = 0x8000  # NLA_F_NESTED, as the kernel marks the nests it sends
AF_INET, AF_INET6, AF_BRIDGE = 2, 10, 7
NUD_STALE, NUD_PERMANENT = 0x04, 0x80
NTF_SELF = 0x02
RTN_UNICAST = 1

# linux/if_link.h: IFLA_*, IFLA_INFO_*, IFLA_VXLAN_*
IFNAME, MTU, MASTER, LINKINFO, AF_SPEC = 3, 4, 10, 18, 26
INFO_KIND, INFO_DATA = 1, 2
VX_ID, VX_LINK, VX_LOCAL, VX_TTL, VX_LEARNING, VX_AGEING = 1, 3, 4, 5, 7, 8
VX_PROXY, VX_PORT, VX_UDP_CSUM = 11, 15, 18
# linux/neighbour.h: NDA_*
DST, LLADDR, CACHEINFO, PROBES, PORT, VNI, IFINDEX, MASTER_NDA = 1, 2, 3, 4, 6, 7, 8, 9


def ndm(family: int, index: int, state: int = 0, flags: int = 0, type_: int = 0) -> bytes:
    """struct ndmsg: family, pad1 (u8), pad2 (u16), ifindex (s32), state (u16), flags (u8),
    type (u8): 12 bytes, the index at offset 4."""
    return struct.pack("=BBHiHBB", family, 0, 0, index, state, flags, type_)


def ip4(text: str) -> bytes:
    return socket.inet_aton(text)




def no_autoconf() -> bytes:
    # IFLA_AF_SPEC { AF_INET6 { IFLA_INET6_ADDR_GEN_MODE (8): u8 IN6_ADDR_GEN_MODE_NONE (1) } }
    return a(AF_SPEC, a(AF_INET6, a(8, b"\x01")))


def vxlan_link(seq: int, index: int, name: str, data: bytes, flags: int = 0x1 | 0x10000,
               master: int | None = 4, mtu: int = 1450, kind: str = "vxlan",
               mflags: int = 0) -> bytes:
    """An RTM_NEWLINK as the kernel sends it: nests flagged, the attributes it always adds
    (here IFLA_MTU) among them."""
    body = ifinfo(index, flags, type_=1) + s(IFNAME, name) + u32(MTU, mtu)
    if master is not None:
        body += u32(MASTER, master)
    body += a(LINKINFO | NESTED, s(INFO_KIND, kind) + a(INFO_DATA | NESTED, data))
    return msg(NEWLINK, mflags, seq, body)


# the IFLA_INFO_DATA of VNI 42 from 192.0.2.1 through link 3, as the kernel reports it
# (vxlan_fill_info: also TTL, AGEING, UDP_CSUM... which shoal does not read)
KERNEL_DATA = (u32(VX_ID, 42) + u32(VX_LINK, 3) + a(VX_LOCAL, ip4("192.0.2.1"))
               + u8(VX_TTL, 0) + u8(VX_LEARNING, 0) + u8(VX_PROXY, 1) + u32(VX_AGEING, 300)
               + a(VX_PORT, b"\x12\xb5") + u8(VX_UDP_CSUM, 1))


# -- the MTU ----------------------------------------------------------------------------------

def test_overlay_mtu_leaves_room_for_the_ipv4_udp_vxlan_and_inner_ethernet_headers() -> None:
    assert vxlan.overlay_mtu(1500) == 1450  # 20 + 8 + 8 + 14
    assert vxlan.overlay_mtu(9000) == 8950
    assert vxlan.overlay_mtu(118) == 68
    with pytest.raises(ValueError, match="less than IPv4's minimum of 68"):
        vxlan.overlay_mtu(117)


# -- creating the device ----------------------------------------------------------------------

def create_answer(index: int = 5) -> Callable[[list[Frame]], list[bytes]]:
    def answer(sent: list[Frame]) -> list[bytes]:
        if sent[0][0] == GETLINK:
            return [vxlan_link(sent[0][2], index, "vx0", KERNEL_DATA, flags=0)]
        return acks(sent)
    return answer


def create_body(link: bool) -> bytes:
    # IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO { KIND "vxlan", DATA { ID 42,
    #   LOCAL 192.0.2.1, [LINK 3], PORT 4789 (be16 0x12b5), LEARNING 0, PROXY 1 } }; down
    data = u32(VX_ID, 42) + a(VX_LOCAL, b"\xc0\x00\x02\x01")
    if link:
        data += u32(VX_LINK, 3)
    data += a(VX_PORT, b"\x12\xb5") + a(VX_LEARNING, b"\x00") + a(VX_PROXY, b"\x01")
    return (ifinfo() + s(IFNAME, "vx0") + u32(MTU, 1450) + u32(MASTER, 4)
            + a(LINKINFO, s(INFO_KIND, "vxlan") + a(INFO_DATA, data)))


def test_create_sends_one_create_then_turns_autoconf_off_and_brings_it_up_by_index(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vxlan, "ipv6_enabled", lambda: True)
    sock, fs = fake(create_answer())
    index = vxlan.create_vxlan(sock, "vx0", 42, IPv4Address("192.0.2.1"), master=4,
                               mtu=1450, link=3)
    assert index == 5
    assert fs.sent == [
        [(NEWLINK, REQUEST | ACK | CREATE | EXCL, 1, create_body(link=True))],
        [(GETLINK, REQUEST, 2, ifinfo() + s(IFNAME, "vx0"))],
        [(SETLINK, REQUEST | ACK, 3, ifinfo(5) + no_autoconf()),
         (SETLINK, REQUEST | ACK, 4, ifinfo(5, 0x1, 0x1))],  # IFF_UP in flags and change
    ]


def test_create_without_an_underlay_link_nor_ipv6(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vxlan, "ipv6_enabled", lambda: False)
    sock, fs = fake(create_answer(9))
    assert vxlan.create_vxlan(sock, "vx0", 42, IPv4Address("192.0.2.1"), 4, 1450) == 9
    assert fs.sent[0] == [(NEWLINK, REQUEST | ACK | CREATE | EXCL, 1, create_body(link=False))]
    assert fs.sent[2] == [(SETLINK, REQUEST | ACK, 3, ifinfo(9, 0x1, 0x1))]


def test_a_refused_create_raises_the_kernels_reason_and_sends_nothing_more() -> None:
    tlvs = s(1, "VXLAN ID must be lower than 16777216") + u32(2, 60)  # MSG, OFFS
    sock, fs = fake(lambda sent: [err(sent[0][2], errno.ERANGE, flags=CAPPED | ACK_TLVS,
                                                 tlvs=tlvs)])
    with pytest.raises(KernelError) as info:
        vxlan.create_vxlan(sock, "vx0", 1 << 24, IPv4Address("192.0.2.1"), 4, 1450)
    assert info.value.errno == errno.ERANGE
    assert str(info.value) == ("create vxlan vx0: Numerical result out of range: "
                               "VXLAN ID must be lower than 16777216")
    assert len(fs.sent) == 1  # a taken name (EEXIST) too: the link there is not touched


def test_a_device_that_cannot_be_brought_up_is_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vxlan, "ipv6_enabled", lambda: False)

    def answer(sent: list[Frame]) -> list[bytes]:
        if sent[0][0] == SETLINK:
            return [err(sent[0][2], errno.ENETDOWN)]
        return create_answer()(sent)

    sock, fs = fake(answer)
    with pytest.raises(KernelError) as info:
        vxlan.create_vxlan(sock, "vx0", 42, IPv4Address("192.0.2.1"), 4, 1450)
    assert info.value.errno == errno.ENETDOWN and str(info.value).startswith("bring up vx0")
    assert fs.sent[-1] == [(DELLINK, REQUEST | ACK, 4, ifinfo() + s(IFNAME, "vx0"))]


def test_addresses_of_another_family_and_bad_macs_are_refused_before_the_kernel() -> None:
    """The kernel would read the first 4 bytes of a 16-byte address (and the first 6 of a
    longer MAC in a neighbour entry), so these never get as far as a request."""
    sock, fs = fake(acks)
    with pytest.raises(ValueError, match="local must be an IPv4 address"):
        vxlan.create_vxlan(sock, "vx0", 42, IPv6Address("2001:db8::1"), 4, 1450)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        vxlan.create_vxlan(sock, "vx0", 42, IPv4Address("192.0.2.1"), 4, 1450, port=65536)
    with pytest.raises(ValueError, match="out of range"):
        vxlan.create_vxlan(sock, "vx0", -1, IPv4Address("192.0.2.1"), 4, 1450)
    with pytest.raises(ValueError, match="dst must be an IPv4 address"):
        vxlan.add_fdb(sock, 5, "02:00:00:00:00:0b", IPv6Address("2001:db8::2"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a MAC address"):
        vxlan.add_neighbour(sock, 5, IPv4Address("10.77.0.3"), "02:00:00:00:00:0b:0c")
    with pytest.raises(ValueError, match="not a MAC address"):
        vxlan.add_fdb(sock, 5, "02:00:00:00:0b", IPv4Address("192.0.2.2"))
    assert fs.sent == []


def test_delete_the_device_by_name() -> None:
    sock, fs = fake(acks)
    assert vxlan.delete_vxlan(sock, "vx0") is True
    assert fs.sent == [[(DELLINK, REQUEST | ACK, 1, ifinfo() + s(IFNAME, "vx0"))]]
    sock, _fs = fake(lambda sent: [err(sent[0][2], errno.ENODEV)])
    assert vxlan.delete_vxlan(sock, "vx0") is False


# -- reading the device back --------------------------------------------------------------------

EXPECTED = vxlan.Vxlan(index=5, name="vx0", vni=42, local=IPv4Address("192.0.2.1"), port=4789,
                       learning=False, proxy=True, link=3, master=4, mtu=1450, up=True)


def test_get_vxlan_decodes_the_kernels_attributes() -> None:
    sock, fs = fake(lambda sent: [vxlan_link(sent[0][2], 5, "vx0", KERNEL_DATA)])
    assert vxlan.get_vxlan(sock, "vx0") == EXPECTED
    assert fs.sent == [[(GETLINK, REQUEST, 1, ifinfo() + s(IFNAME, "vx0"))]]


def test_get_vxlan_of_a_missing_link_or_of_another_kind_is_none() -> None:
    sock, _fs = fake(lambda sent: [err(sent[0][2], errno.ENODEV)])
    assert vxlan.get_vxlan(sock, "vx0") is None
    sock, _fs = fake(lambda sent: [vxlan_link(sent[0][2], 4, "br0", u8(23, 0), kind="bridge")])
    assert vxlan.get_vxlan(sock, "br0") is None


def test_list_vxlans_reads_them_out_of_a_link_dump() -> None:
    """Learning on, no local address, no underlay link, no bridge, down: each as reported
    (the kernel leaves IFLA_VXLAN_LOCAL and IFLA_VXLAN_LINK out when they are unset)."""
    other = u32(VX_ID, 7) + u8(VX_LEARNING, 1) + u8(VX_PROXY, 0) + a(VX_PORT, b"\x21\x18")

    def answer(sent: list[Frame]) -> list[bytes]:
        seq = sent[0][2]
        lo = msg(NEWLINK, MULTI, seq, ifinfo(1, 0x1, type_=772) + s(IFNAME, "lo"))
        return [lo + vxlan_link(seq, 4, "br0", u8(23, 0), kind="bridge", master=None,
                                mflags=MULTI),
                vxlan_link(seq, 5, "vx0", KERNEL_DATA, mflags=MULTI)
                + vxlan_link(seq, 8, "vx7", other, flags=0, master=None, mtu=1500,
                             mflags=MULTI),
                done(seq)]

    sock, fs = fake(answer)
    assert vxlan.list_vxlans(sock) == [
        EXPECTED,
        vxlan.Vxlan(index=8, name="vx7", vni=7, local=None, port=8472, learning=True,
                    proxy=False, link=None, master=None, mtu=1500, up=False)]
    assert fs.sent == [[(GETLINK, REQUEST | DUMP, 1, ifinfo())]]


# -- forwarding entries -----------------------------------------------------------------------

MAC_B = "02:00:00:00:00:0b"
RAW_B = bytes.fromhex("02000000000b")


def test_add_fdb_is_a_permanent_self_entry_of_the_mac_with_the_remote_host() -> None:
    sock, fs = fake(acks)
    vxlan.add_fdb(sock, 5, MAC_B, IPv4Address("192.0.2.2"))
    # ndmsg { AF_BRIDGE, index 5, NUD_PERMANENT, NTF_SELF }, NDA_LLADDR, NDA_DST
    assert fs.sent == [[(NEWNEIGH, REQUEST | ACK | CREATE | REPLACE, 1,
                         ndm(AF_BRIDGE, 5, NUD_PERMANENT, NTF_SELF) + a(LLADDR, RAW_B)
                         + a(DST, ip4("192.0.2.2")))]]


def test_add_fdb_refused_carries_the_kernels_message() -> None:
    sock, _fs = fake(lambda sent: [err(sent[0][2], errno.ENODEV, flags=CAPPED | ACK_TLVS,
                                       tlvs=s(1, "unknown ifindex"))])
    with pytest.raises(KernelError) as info:
        vxlan.add_fdb(sock, 99, MAC_B, IPv4Address("192.0.2.2"))
    assert str(info.value) == ("add the forwarding entry 02:00:00:00:00:0b -> 192.0.2.2: "
                               "No such device: unknown ifindex")


@pytest.mark.parametrize(("code", "result"), [(0, True), (errno.ENOENT, False),
                                              (errno.ENODEV, False)])
def test_delete_fdb_by_mac_alone_and_a_missing_entry_is_not_an_error(
        code: int, result: bool) -> None:
    sock, fs = fake(lambda sent: [err(sent[0][2], code)])
    assert vxlan.delete_fdb(sock, 5, MAC_B) is result
    # no NDA_DST: the whole entry goes, whatever host it names
    assert fs.sent == [[(DELNEIGH, REQUEST | ACK, 1, ndm(AF_BRIDGE, 5, 0, NTF_SELF)
                         + a(LLADDR, RAW_B))]]


def test_delete_fdb_raises_other_errors() -> None:
    sock, _fs = fake(lambda sent: [err(sent[0][2], errno.EPERM)])
    with pytest.raises(KernelError) as info:
        vxlan.delete_fdb(sock, 5, MAC_B)
    assert info.value.errno == errno.EPERM


def fdb_entry(seq: int, index: int, mac: bytes, flags: int, dst: str | None = None,
              state: int = NUD_PERMANENT, extra: bytes = b"") -> bytes:
    """An AF_BRIDGE RTM_NEWNEIGH as a dump sends it (vxlan_fdb_info, br_fdb_fill_info)."""
    body = ndm(AF_BRIDGE, index, state, flags, RTN_UNICAST) + a(LLADDR, mac)
    if dst is not None:
        body += a(DST, ip4(dst))
    body += extra + a(CACHEINFO, struct.pack("=IIII", 0, 0, 0, 0))
    return msg(NEWNEIGH, MULTI, seq, body)


def test_list_fdb_asks_for_the_device_and_keeps_its_own_entries_only() -> None:
    def answer(sent: list[Frame]) -> list[bytes]:
        seq = sent[0][2]
        return [
            # the bridge's entries for its port vx0, learned and its own MAC: no NTF_SELF,
            # the bridge named in NDA_MASTER (br_fdb_fill_info; ndm_flags 0, as seen on 6.18)
            fdb_entry(seq, 5, bytes.fromhex("0200000000aa"), 0, state=0,
                      extra=u32(MASTER_NDA, 4))
            + fdb_entry(seq, 5, bytes.fromhex("b2aedad1f958"), 0, extra=u32(MASTER_NDA, 4)),
            # vx0's own: one MAC with two hosts, one with a port and VNI of its own
            fdb_entry(seq, 5, RAW_B, NTF_SELF, "192.0.2.2")
            + fdb_entry(seq, 5, RAW_B, NTF_SELF, "192.0.2.3")
            + fdb_entry(seq, 5, bytes.fromhex("02000000000c"), NTF_SELF, "192.0.2.4",
                        extra=a(PORT, b"\x21\x18") + u32(VNI, 43))
            # another device's (were the kernel not to filter), and a non-permanent one
            + fdb_entry(seq, 6, bytes.fromhex("02000000000d"), NTF_SELF, "192.0.2.9")
            + fdb_entry(seq, 5, bytes.fromhex("02000000000e"), NTF_SELF, "192.0.2.5",
                        state=NUD_STALE),
            done(seq)]

    sock, fs = fake(answer)
    got = vxlan.list_fdb(sock, 5)
    # an ifinfomsg of 16 bytes, family AF_BRIDGE, index 5: the kernel's legacy dump filter
    assert fs.sent == [[(GETNEIGH, REQUEST | DUMP, 1, ifinfo(5, family=AF_BRIDGE))]]
    assert got == [
        vxlan.FdbEntry(mac=MAC_B, dst=IPv4Address("192.0.2.2"), permanent=True),
        vxlan.FdbEntry(mac=MAC_B, dst=IPv4Address("192.0.2.3"), permanent=True),
        vxlan.FdbEntry(mac="02:00:00:00:00:0c", dst=IPv4Address("192.0.2.4"), permanent=True),
        vxlan.FdbEntry(mac="02:00:00:00:00:0e", dst=IPv4Address("192.0.2.5"),
                       permanent=False),
    ]


# -- neighbour entries ------------------------------------------------------------------------

def test_add_and_delete_neighbour_messages() -> None:
    sock, fs = fake(acks)
    vxlan.add_neighbour(sock, 5, IPv4Address("10.77.0.3"), MAC_B)
    assert vxlan.delete_neighbour(sock, 5, IPv4Address("10.77.0.3")) is True
    assert fs.sent == [
        # ndmsg { AF_INET, index 5, NUD_PERMANENT, no flags }, NDA_DST, NDA_LLADDR
        [(NEWNEIGH, REQUEST | ACK | CREATE | REPLACE, 1,
          ndm(AF_INET, 5, NUD_PERMANENT) + a(DST, ip4("10.77.0.3")) + a(LLADDR, RAW_B))],
        [(DELNEIGH, REQUEST | ACK, 2, ndm(AF_INET, 5) + a(DST, ip4("10.77.0.3")))],
    ]


def test_delete_neighbour_of_a_missing_entry_is_not_an_error() -> None:
    for code in (errno.ENOENT, errno.ENODEV):
        sock, _fs = fake(lambda sent, code=code: [err(sent[0][2], code)])  # type: ignore[misc]
        assert vxlan.delete_neighbour(sock, 5, IPv4Address("10.77.0.3")) is False
    sock, _fs = fake(lambda sent: [err(sent[0][2], errno.EINVAL)])
    with pytest.raises(KernelError):
        vxlan.delete_neighbour(sock, 5, IPv4Address("10.77.0.3"))


def neigh_entry(seq: int, index: int, ip: bytes, mac: bytes | None, state: int,
                family: int = AF_INET) -> bytes:
    """An RTM_NEWNEIGH as a dump sends it (neigh_fill_info)."""
    body = ndm(family, index, state, 0, RTN_UNICAST) + a(DST, ip)
    if mac is not None:
        body += a(LLADDR, mac)
    body += u32(PROBES, 0) + a(CACHEINFO, struct.pack("=IIII", 0, 0, 0, 1))
    return msg(NEWNEIGH, MULTI, seq, body)


def test_list_neighbours_asks_for_the_device_and_decodes_its_entries() -> None:
    def answer(sent: list[Frame]) -> list[bytes]:
        seq = sent[0][2]
        return [neigh_entry(seq, 5, ip4("10.77.0.3"), RAW_B, NUD_PERMANENT)
                + neigh_entry(seq, 5, ip4("10.77.0.9"), None, 0x20)  # NUD_FAILED, no lladdr
                + neigh_entry(seq, 6, ip4("10.77.0.4"), RAW_B, NUD_PERMANENT),
                neigh_entry(seq, 5, IPv6Address("2001:db8::3").packed, RAW_B, NUD_PERMANENT,
                            family=AF_INET6),
                done(seq)]

    sock, fs = fake(answer)
    got = vxlan.list_neighbours(sock, 5)
    # ndmsg { AF_INET }, NDA_IFINDEX 5: the kernel's dump filter by device
    assert fs.sent == [[(GETNEIGH, REQUEST | DUMP, 1, ndm(AF_INET, 0) + u32(IFINDEX, 5))]]
    assert got == [
        vxlan.Neighbour(ip=IPv4Address("10.77.0.3"), mac=MAC_B, permanent=True),
        vxlan.Neighbour(ip=IPv4Address("10.77.0.9"), mac=None, permanent=False),
    ]


# -- a remote endpoint ------------------------------------------------------------------------

def test_add_remote_sends_the_forwarding_entry_then_the_neighbour_in_one_batch() -> None:
    sock, fs = fake(acks)
    vxlan.add_remote(sock, 5, MAC_B, IPv4Address("10.77.0.3"), IPv4Address("192.0.2.2"))
    assert fs.sent == [[
        (NEWNEIGH, REQUEST | ACK | CREATE | REPLACE, 1, ndm(AF_BRIDGE, 5, NUD_PERMANENT, NTF_SELF)
         + a(LLADDR, RAW_B) + a(DST, ip4("192.0.2.2"))),
        (NEWNEIGH, REQUEST | ACK | CREATE | REPLACE, 2, ndm(AF_INET, 5, NUD_PERMANENT)
         + a(DST, ip4("10.77.0.3")) + a(LLADDR, RAW_B)),
    ]]


def test_add_remote_takes_the_neighbour_back_when_the_forwarding_entry_is_refused() -> None:
    """Else the device would answer ARP for an endpoint it has no way to."""
    def answer(sent: list[Frame]) -> list[bytes]:
        if sent[0][0] == NEWNEIGH:
            return [err(sent[0][2], errno.EADDRNOTAVAIL) + ok(sent[1][2])]
        return acks(sent)

    sock, fs = fake(answer)
    with pytest.raises(KernelError) as info:
        vxlan.add_remote(sock, 5, MAC_B, IPv4Address("10.77.0.3"), IPv4Address("192.0.2.2"))
    assert info.value.errno == errno.EADDRNOTAVAIL
    assert str(info.value).startswith("add the forwarding entry 02:00:00:00:00:0b")
    assert fs.sent[1] == [(DELNEIGH, REQUEST | ACK, 3, ndm(AF_INET, 5)
                           + a(DST, ip4("10.77.0.3")))]
    # the neighbour refused, the forwarding entry kept: its error, nothing taken back
    sock, fs = fake(lambda sent: [ok(sent[0][2]) + err(sent[1][2], errno.EINVAL)])
    with pytest.raises(KernelError) as info:
        vxlan.add_remote(sock, 5, MAC_B, IPv4Address("10.77.0.3"), IPv4Address("192.0.2.2"))
    assert info.value.errno == errno.EINVAL and len(fs.sent) == 1


def test_delete_remote_sends_the_neighbour_then_the_forwarding_entry_and_ignores_missing(
        ) -> None:
    sock, fs = fake(lambda sent: [err(sent[0][2], errno.ENOENT) + err(sent[1][2], errno.ENOENT)])
    vxlan.delete_remote(sock, 5, MAC_B, IPv4Address("10.77.0.3"))
    assert fs.sent == [[
        (DELNEIGH, REQUEST | ACK, 1, ndm(AF_INET, 5) + a(DST, ip4("10.77.0.3"))),
        (DELNEIGH, REQUEST | ACK, 2, ndm(AF_BRIDGE, 5, 0, NTF_SELF) + a(LLADDR, RAW_B)),
    ]]
    sock, _fs = fake(lambda sent: [ok(sent[0][2]) + err(sent[1][2], errno.EPERM)])
    with pytest.raises(KernelError) as info:
        vxlan.delete_remote(sock, 5, MAC_B, IPv4Address("10.77.0.3"))
    assert info.value.errno == errno.EPERM
    assert str(info.value).startswith("delete the forwarding entry of 02:00:00:00:00:0b")


# -- the header -------------------------------------------------------------------------------

def test_ndmsg_layout() -> None:
    assert nl.ndmsg(AF_BRIDGE, 5, NUD_PERMANENT, NTF_SELF) == ndm(AF_BRIDGE, 5, NUD_PERMANENT,
                                                                 NTF_SELF)
    assert len(nl.ndmsg(AF_INET)) == 12
    entry = nl.NdMsg(ndm(AF_INET, 70000, 0x102, 0x82, 3) + a(DST, b"\x01\x02"))
    assert (entry.family, entry.index, entry.state, entry.flags, entry.type) == (
        AF_INET, 70000, 0x102, 0x82, 3)
    assert entry.attrs == {DST: b"\x01\x02"}
