"""The netlink messages shoal sends and receives, byte for byte: every request is compared
with bytes built here by hand (from the kernel's struct layouts, not from shoal's encoders),
and every answer is decoded from hand-built bytes handed back by a fake kernel socket. No
root, no kernel."""

from __future__ import annotations

import errno
import socket
import struct
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
from netlink_layouts import (  # (the kernel's layouts, shared with test_vxlan_bytes.py)
    ACK,
    ACK_TLVS,
    CAPPED,
    CREATE,
    DELADDR,
    DELLINK,
    DELROUTE,
    DONE,
    DUMP,
    DUMP_INTR,
    ERROR,
    EXCL,
    GETADDR,
    GETLINK,
    GETROUTE,
    MULTI,
    NEWADDR,
    NEWLINK,
    NEWROUTE,
    REQUEST,
    SETLINK,
    Frame,
    a,
    acks,
    done,
    err,
    fake,
    hdr,
    ifaddr,
    ifinfo,
    msg,
    ok,
    rtm,
    s,
    u32,
)

from shoal.errors import KernelError
from shoal.kernel import conntrack, links
from shoal.kernel import netlink as nl

# -- acknowledgements and errors ------------------------------------------------------------

def test_a_batch_goes_in_one_send_and_each_ack_is_matched_to_its_request() -> None:
    sock, fs = fake(lambda sent: [ok(sent[1][2]), ok(99) + err(sent[0][2], errno.EPERM)])
    results = sock.batch([(SETLINK, 0, ifinfo(1), "first"), (SETLINK, 0, ifinfo(2), "second")])
    assert [f[:3] for f in fs.sent[0]] == [(SETLINK, REQUEST | ACK, 1),
                                         (SETLINK, REQUEST | ACK, 2)]
    assert results[1] is None  # an ack of another sequence number (99) is not taken for one
    assert isinstance(results[0], KernelError) and results[0].errno == errno.EPERM
    assert str(results[0]) == "first: Operation not permitted"


def test_an_error_without_ack_tlvs_has_no_detail_even_with_the_request_echoed() -> None:
    """Not capped (NETLINK_CAP_ACK did not take effect): the request follows the error's
    header. Its body happens to look like an NLMSGERR_ATTR_MSG attribute; it is not one."""
    request = s(1, "not the kernel's words")
    sock, _fs = fake(lambda sent: [err(sent[0][2], errno.EEXIST, request, flags=0)])
    e = sock.batch([(NEWLINK, CREATE | EXCL, request, "create x")])[0]
    assert e is not None and str(e) == "create x: File exists" and e.errno == errno.EEXIST


def test_ext_ack_message_of_a_capped_error() -> None:
    tlvs = s(1, "Unknown device type") + u32(2, 40)  # NLMSGERR_ATTR_MSG, NLMSGERR_ATTR_OFFS
    sock, _fs = fake(lambda sent: [err(sent[0][2], errno.EOPNOTSUPP, flags=CAPPED | ACK_TLVS,
                                       tlvs=tlvs)])
    e = sock.batch([(NEWLINK, CREATE, ifinfo(), "create y")])[0]
    assert str(e) == "create y: Operation not supported: Unknown device type"
    assert e is not None and e.errno == errno.EOPNOTSUPP


def test_ext_ack_message_after_an_echoed_request() -> None:
    """Not capped, with TLVs: they start after the echoed body (18 bytes, padded to 20)."""
    request = ifinfo() + b"\x01\x02"
    tlvs = s(1, "the reason")
    sock, _fs = fake(lambda sent: [err(sent[0][2], errno.EINVAL, request, flags=ACK_TLVS,
                                       tlvs=tlvs)])
    e = sock.batch([(NEWLINK, 0, request, "z")])[0]
    assert str(e) == "z: Invalid argument: the reason"


def test_ack_attrs_are_read_only_where_the_flags_say() -> None:
    body = struct.pack("=i", -22) + hdr(16, 0, 0, 1) + s(1, "why")
    assert nl.ack_attrs(ERROR, CAPPED, body) == {}
    assert nl.ack_attrs(ERROR, CAPPED | ACK_TLVS, body) == {1: b"why\0"}
    assert nl.ack_attrs(DONE, ACK_TLVS, struct.pack("=i", -22) + s(1, "why")) == {1: b"why\0"}
    assert nl.error_code(b"") == 0 and nl.error_code(struct.pack("=i", -19)) == errno.ENODEV


def test_kernel_error_carries_errno_from_its_constructor() -> None:
    e = KernelError("x: No such device", errno.ENODEV)
    assert e.errno == errno.ENODEV and str(e) == "x: No such device"
    assert KernelError("no number").errno is None


# -- dumps ------------------------------------------------------------------------------------

def addr_msg(seq: int, index: int, ip: str, prefix: int, flags: int = MULTI) -> bytes:
    raw = socket.inet_aton(ip)
    return msg(NEWADDR, flags, seq, ifaddr(index, prefix) + a(2, raw) + a(1, raw))


def test_address_dump_in_several_datagrams() -> None:
    def answer(sent: list[Frame]) -> list[bytes]:
        seq = sent[0][2]
        return [addr_msg(seq, 1, "127.0.0.1", 8) + addr_msg(seq, 5, "10.0.0.1", 24),
                addr_msg(seq, 7, "172.17.0.1", 16), done(seq)]

    sock, fs = fake(answer)
    got = links.address_entries(sock, family=4)  # (every family: tests/unit/test_firewall_*)
    assert fs.sent == [[(GETADDR, REQUEST | DUMP, 1, ifaddr(0, 0))]]
    assert got == [(IPv4Interface("127.0.0.1/8"), 1), (IPv4Interface("10.0.0.1/24"), 5),
                   (IPv4Interface("172.17.0.1/16"), 7)]


def test_a_dump_ignores_messages_of_other_requests() -> None:
    sock, _fs = fake(lambda sent: [ok(41) + addr_msg(42, 3, "10.9.9.9", 8)
                                   + addr_msg(sent[0][2], 5, "10.0.0.1", 24), done(sent[0][2])])
    assert links.addresses(sock) == [IPv4Interface("10.0.0.1/24")]


def test_done_carrying_an_error_raises_it() -> None:
    sock, _fs = fake(lambda sent: [addr_msg(sent[0][2], 5, "10.0.0.1", 24),
                                   done(sent[0][2], errno.EINVAL, MULTI | ACK_TLVS,
                                        s(1, "bad filter"))])
    with pytest.raises(KernelError) as info:
        links.address_entries(sock)
    assert info.value.errno == errno.EINVAL
    assert str(info.value) == "list addresses: Invalid argument: bad filter"


def test_done_with_an_error_ends_a_conntrack_dump_with_that_error() -> None:
    ct = conntrack.Conntrack.__new__(conntrack.Conntrack)
    ct.nl, fs = fake(lambda sent: [done(sent[0][2], errno.EOPNOTSUPP)])
    with pytest.raises(KernelError) as info:
        ct.entries()
    assert info.value.errno == errno.EOPNOTSUPP
    assert fs.sent == [[(conntrack.GET, REQUEST | DUMP, 1, b"\x02\x00\x00\x00")]]


def ct_entry(port: int) -> conntrack.Entry:
    src, dst = socket.inet_aton("198.51.100.1"), socket.inet_aton("198.51.100.2")
    tuple_ = a(1 | 0x8000, a(1, src) + a(2, dst)) + a(2 | 0x8000, a(1, b"\x11")
                                                      + a(3, struct.pack("!H", port)))
    return conntrack.Entry(17, src, dst, 4000, port, dst, src, tuple_, struct.pack("!I", port))


def test_conntrack_deletes_count_only_their_own_answers() -> None:
    """The NETLINK_NETFILTER socket is the process's: an error left from an earlier request
    (sequence 99) is not one of these deletions failing."""
    def answer(sent: list[Frame]) -> list[bytes]:
        assert [f[1] & ACK for f in sent] == [0, 0, ACK]
        return [err(99, errno.ENOENT) + err(sent[1][2], errno.ENOENT) + ok(sent[2][2])]

    ct = conntrack.Conntrack.__new__(conntrack.Conntrack)
    ct.nl, fs = fake(answer)
    assert ct.delete([ct_entry(1), ct_entry(2), ct_entry(3)]) == 2
    kind, _flags, _seq, body = fs.sent[0][0]
    assert kind == conntrack.DELETE
    assert body == (b"\x02\x00\x00\x00" + a(1 | 0x8000, ct_entry(1).tuple)
                    + a(12, struct.pack("!I", 1)))  # nfgenmsg, CTA_TUPLE_ORIG, CTA_ID


def test_an_interrupted_dump_is_read_again() -> None:
    def answer(sent: list[Frame]) -> list[bytes]:
        seq = sent[0][2]
        if seq == 1:  # the table changed while it was dumped: the kernel flags what follows
            return [addr_msg(seq, 5, "10.0.0.1", 24),
                    addr_msg(seq, 6, "10.0.0.9", 24, MULTI | DUMP_INTR),
                    done(seq, flags=MULTI | DUMP_INTR)]
        return [addr_msg(seq, 5, "10.0.0.1", 24) + addr_msg(seq, 6, "10.0.0.2", 24), done(seq)]

    sock, fs = fake(answer)
    assert links.address_entries(sock) == [(IPv4Interface("10.0.0.1/24"), 5),
                                           (IPv4Interface("10.0.0.2/24"), 6)]
    assert [f[0][2] for f in fs.sent] == [1, 2]  # drained to its DONE, then asked again


def test_interrupted_only_on_its_done_counts_too() -> None:
    calls = []

    def answer(sent: list[Frame]) -> list[bytes]:
        calls.append(1)
        seq = sent[0][2]
        return [addr_msg(seq, 5, "10.0.0.1", 24),
                done(seq, flags=MULTI | (DUMP_INTR if seq == 1 else 0))]

    sock, _fs = fake(answer)
    assert links.addresses(sock) == [IPv4Interface("10.0.0.1/24")] and len(calls) == 2


def test_a_dump_interrupted_every_time_is_a_clear_error() -> None:
    sock, fs = fake(lambda sent: [addr_msg(sent[0][2], 5, "10.0.0.1", 24, MULTI | DUMP_INTR),
                                  done(sent[0][2], flags=MULTI | DUMP_INTR)])
    with pytest.raises(KernelError) as info:
        links.address_entries(sock)
    assert len(fs.sent) == nl.DUMP_TRIES
    assert info.value.errno == errno.EINTR
    line = str(info.value)
    assert line.startswith("list addresses: the kernel's table kept changing") and "\n" not in line
    assert "try again" in line


def route_msg(seq: int, dst: str | None, dst_len: int, oif: int | None, gw: str | None = None,
              table: int = 254, type_: int = 1) -> bytes:
    body = rtm(dst_len, table=table, type_=type_)
    if dst is not None:
        body += a(1, socket.inet_aton(dst))
    if gw is not None:
        body += a(5, socket.inet_aton(gw))
    if oif is not None:
        body += u32(4, oif)
    return msg(NEWROUTE, MULTI, seq, body)


def test_route_dumps_decode_destinations_gateways_and_links() -> None:
    def answer(sent: list[Frame]) -> list[bytes]:
        seq = sent[0][2]
        return [route_msg(seq, None, 0, 2, gw="10.0.0.1")
                + route_msg(seq, "10.0.0.0", 24, 2)
                + route_msg(seq, "127.0.0.0", 8, 1, table=255, type_=2)  # local: skipped
                + route_msg(seq, "172.17.0.0", 16, None), done(seq)]

    sock, fs = fake(answer)
    assert links.route_entries(sock, family=4) == [(IPv4Network("10.0.0.0/24"), 2),
                                                   (IPv4Network("172.17.0.0/16"), None)]
    assert fs.sent[0] == [(GETROUTE, REQUEST | DUMP, 1, rtm())]
    assert links.default_route(sock, family=4) == (IPv4Address("10.0.0.1"), 2)


# -- links ----------------------------------------------------------------------------------

def link_msg(seq: int, index: int, name: str, flags: int = 0, master: int | None = None,
             kind: str | None = None, alias: str | None = None, mtype: int = NEWLINK) -> bytes:
    body = ifinfo(index, flags, type_=1) + s(3, name) + u32(4, 1500)
    if master is not None:
        body += u32(10, master)
    if kind is not None:
        body += a(18 | 0x8000, s(1, kind))  # IFLA_LINKINFO, with the nested flag as sent
    if alias is not None:
        body += s(20, alias)
    return msg(mtype, 0, seq, body)


def test_get_link_asks_by_name_and_decodes_the_answer() -> None:
    sock, fs = fake(lambda sent: [link_msg(sent[0][2], 9, "vsh1", 0x1 | 0x1000, master=4,
                                           kind="veth", alias="shoal:abc")])
    link = links.get_link(sock, "vsh1")
    assert fs.sent == [[(GETLINK, REQUEST, 1, ifinfo() + s(3, "vsh1"))]]
    assert link == links.Link(index=9, name="vsh1", up=True, master=4, kind="veth",
                              alias="shoal:abc")


def test_get_link_of_a_missing_link_is_none() -> None:
    sock, _fs = fake(lambda sent: [err(sent[0][2], errno.ENODEV)])
    assert links.get_link(sock, "nope") is None
    sock, _fs = fake(lambda sent: [err(sent[0][2], errno.EPERM)])
    with pytest.raises(KernelError) as info:
        links.get_link(sock, "nope")
    assert info.value.errno == errno.EPERM


def test_link_dump_decodes_every_link() -> None:
    sock, fs = fake(lambda sent: [link_msg(sent[0][2], 1, "lo", 0x1)
                                  + link_msg(sent[0][2], 4, "shoal0", kind="bridge"),
                                  done(sent[0][2])])
    got = links.list_links(sock)
    assert fs.sent == [[(GETLINK, REQUEST | DUMP, 1, ifinfo())]]
    assert [(lk.index, lk.name, lk.up, lk.kind, lk.master) for lk in got] == [
        (1, "lo", True, None, None), (4, "shoal0", False, "bridge", None)]


def test_delete_link_by_name() -> None:
    sock, fs = fake(acks)
    assert links.delete_link(sock, "vsh1") is True
    assert fs.sent == [[(DELLINK, REQUEST | ACK, 1, ifinfo() + s(3, "vsh1"))]]
    for code in (errno.ENODEV, errno.ENOENT):
        sock, _fs = fake(lambda sent, code=code: [err(sent[0][2], code)])  # type: ignore[misc]
        assert links.delete_link(sock, "vsh1") is False
    sock, _fs = fake(lambda sent: [err(sent[0][2], errno.EPERM)])
    with pytest.raises(KernelError):
        links.delete_link(sock, "vsh1")


def no_autoconf() -> bytes:
    # IFLA_AF_SPEC { AF_INET6 { IFLA_INET6_ADDR_GEN_MODE: u8 IN6_ADDR_GEN_MODE_NONE } }
    return a(26, a(10, a(8, b"\x01")))


def addr_body(index: int, ip: str, prefix: int, bcast: str) -> bytes:
    raw = socket.inet_aton(ip)
    return ifaddr(index, prefix) + a(2, raw) + a(1, raw) + a(4, socket.inet_aton(bcast))


def test_create_bridge_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(links, "ipv6_enabled", lambda: True)

    def answer(sent: list[Frame]) -> list[bytes]:
        if sent[0][0] == GETLINK:
            return [link_msg(sent[0][2], 5, "shoal0", kind="bridge")]
        return acks(sent)

    sock, fs = fake(answer)
    index = links.create_bridge(sock, "shoal0", IPv4Interface("172.17.0.1/16"),
                                alias="shoal:r", mac="02:42:ac:11:00:01")
    assert index == 5
    create, get, rest = fs.sent
    # IFLA_IFNAME, IFLA_ADDRESS, IFLA_LINKINFO { KIND "bridge", DATA { MCAST_SNOOPING 0 } }
    assert create == [(NEWLINK, REQUEST | ACK | CREATE | EXCL, 1,
                       ifinfo() + s(3, "shoal0") + a(1, bytes.fromhex("0242ac110001"))
                       + a(18, s(1, "bridge") + a(2, a(23, b"\x00"))))]
    assert get == [(GETLINK, REQUEST, 2, ifinfo() + s(3, "shoal0"))]
    assert rest == [
        (SETLINK, REQUEST | ACK, 3, ifinfo(5) + no_autoconf()),
        (NEWADDR, REQUEST | ACK | CREATE | EXCL, 4,
         addr_body(5, "172.17.0.1", 16, "172.17.255.255")),
        (SETLINK, REQUEST | ACK, 5, ifinfo(5) + s(20, "shoal:r")),  # IFLA_IFALIAS
        (SETLINK, REQUEST | ACK, 6, ifinfo(5, 0x1, 0x1)),  # IFF_UP in flags and change
    ]


def test_set_mac_and_default_route_messages() -> None:
    sock, fs = fake(acks)
    links.set_mac(sock, "shoal0", "02:42:ac:11:00:01")
    links.add_default_route(sock, IPv4Address("10.0.0.1"), 2)
    assert fs.sent == [
        [(SETLINK, REQUEST | ACK, 1, ifinfo() + s(3, "shoal0")
          + a(1, bytes.fromhex("0242ac110001")))],
        [(NEWROUTE, REQUEST | ACK | CREATE | EXCL, 2,
          rtm() + a(5, socket.inet_aton("10.0.0.1")) + u32(4, 2))],
    ]


# -- a container's veth ---------------------------------------------------------------------

MAC = "02:42:ac:11:00:02"


def veth_create(index: int) -> bytes:
    # IFLA_IFNAME, IFLA_ADDRESS, IFLA_LINKINFO { KIND "veth", DATA { VETH_INFO_PEER {
    #   ifinfomsg, IFLA_IFNAME, IFLA_NET_NS_FD } } }
    peer = ifinfo() + s(3, "vsh0123456789ab") + u32(28, 7)
    return (ifinfo(index) + s(3, "eth0") + a(1, bytes.fromhex("0242ac110002"))
            + a(18, s(1, "veth") + a(2, a(1, peer))))


def inside(index: int, seq: int, lo: bool = True) -> list[Frame]:
    out = [(SETLINK, REQUEST | ACK, seq, ifinfo() + s(3, "eth0") + no_autoconf())]
    if lo:
        out.append((SETLINK, REQUEST | ACK, seq + 1, ifinfo(1, 0x1, 0x1)))
    out += [
        (SETLINK, REQUEST | ACK, seq + len(out), ifinfo(0, 0x1, 0x1) + s(3, "eth0")),
        (NEWADDR, REQUEST | ACK | CREATE | EXCL, seq + len(out) + 1,
         addr_body(index, "172.17.0.2", 16, "172.17.255.255")),
        (NEWROUTE, REQUEST | ACK | CREATE | EXCL, seq + len(out) + 2,
         rtm() + a(5, socket.inet_aton("172.17.0.1")) + u32(4, index)),
    ]
    return out


HOST_END = [
    # plug: up, IFLA_IFNAME, IFLA_MASTER, IFLA_IFALIAS; then hairpin: IFLA_LINKINFO {
    # SLAVE_KIND "bridge", SLAVE_DATA { IFLA_BRPORT_MODE 1 } }
    (NEWLINK, REQUEST | ACK, 1, ifinfo(0, 0x1, 0x1) + s(3, "vsh0123456789ab") + u32(10, 5)
     + s(20, "shoal:r")),
    (NEWLINK, REQUEST | ACK, 2, ifinfo() + s(3, "vsh0123456789ab")
     + a(18, s(4, "bridge") + a(5, a(4, b"\x01")))),
]


@pytest.fixture
def sysctls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    monkeypatch.setattr(links, "ipv6_enabled", lambda: True)
    written: list[tuple[str, str]] = []
    monkeypatch.setattr(links.sysctl, "write", lambda key, value: written.append((key, value)))
    return written


def attach(sandbox: nl.Netlink, host: nl.Netlink, fresh: bool) -> None:
    links.add_veth_endpoint(sandbox, host, 7, "eth0", "vsh0123456789ab", MAC,
                            IPv4Interface("172.17.0.2/16"), IPv4Address("172.17.0.1"), 5,
                            first=True, fresh=fresh, alias="shoal:r")


def test_a_fresh_sandbox_gets_its_veth_in_one_batch(sysctls: list[tuple[str, str]]) -> None:
    sandbox, sfs = fake(acks)
    host, hfs = fake(acks)
    attach(sandbox, host, fresh=True)
    assert sfs.sent == [[(NEWLINK, REQUEST | ACK | CREATE | EXCL, 1, veth_create(2)),
                         *inside(2, 2)]]
    assert hfs.sent == [HOST_END]
    assert sysctls == [("net/ipv6/conf/vsh0123456789ab/disable_ipv6", "1")]


def test_a_sandbox_that_is_not_fresh_looks_the_index_up(sysctls: list[tuple[str, str]]
                                                        ) -> None:
    def answer(sent: list[Frame]) -> list[bytes]:
        if sent[0][0] == GETLINK:
            return [link_msg(sent[0][2], 4, "eth0")]
        return acks(sent)

    sandbox, sfs = fake(answer)
    host, hfs = fake(acks)
    attach(sandbox, host, fresh=False)
    assert sfs.sent == [[(NEWLINK, REQUEST | ACK | CREATE | EXCL, 1, veth_create(0))],
                        [(GETLINK, REQUEST, 2, ifinfo() + s(3, "eth0"))],
                        inside(4, 3)]
    assert hfs.sent == [HOST_END]


@pytest.mark.parametrize("code", [errno.EEXIST, errno.EBUSY])
def test_index_2_taken_falls_back_to_an_unnumbered_create(
        code: int, sysctls: list[tuple[str, str]]) -> None:
    """What the kernel does with the batch when tunl0 holds index 2: the create is refused,
    the setlinks by name find no eth0, the address lands on tunl0 and the route through the
    down tunl0 is refused. The address is taken back, then the veth made unnumbered."""
    def answer(sent: list[Frame]) -> list[bytes]:
        kinds = [k for k, _f, _s, _b in sent]
        if kinds[0] == NEWLINK and sent[0][3] == veth_create(2):
            out = [err(sent[0][2], code)]
            for kind, _flags, seq, _body in sent[1:]:
                if kind == SETLINK and seq != sent[2][2]:  # by name: no such device
                    out.append(err(seq, errno.ENODEV))
                elif kind == NEWROUTE:
                    out.append(err(seq, errno.ENETUNREACH))
                else:
                    out.append(ok(seq))  # lo comes up, the address goes onto tunl0
            return [b"".join(out)]
        if kinds[0] == GETLINK:
            return [link_msg(sent[0][2], 11, "eth0")]
        return acks(sent)

    sandbox, sfs = fake(answer)
    host, hfs = fake(acks)
    attach(sandbox, host, fresh=True)
    first, undo, create, get, rest = sfs.sent
    assert first == [(NEWLINK, REQUEST | ACK | CREATE | EXCL, 1, veth_create(2)),
                     *inside(2, 2)]
    assert undo == [(DELADDR, REQUEST | ACK, 7,
                     addr_body(2, "172.17.0.2", 16, "172.17.255.255"))]
    assert create == [(NEWLINK, REQUEST | ACK | CREATE | EXCL, 8, veth_create(0))]
    assert get == [(GETLINK, REQUEST, 9, ifinfo() + s(3, "eth0"))]
    assert rest == inside(11, 10)
    assert hfs.sent == [HOST_END]


def test_index_2_taken_and_its_link_up_takes_the_route_back_too(
        sysctls: list[tuple[str, str]]) -> None:
    def answer(sent: list[Frame]) -> list[bytes]:
        if sent[0][0] == NEWLINK and sent[0][3] == veth_create(2):
            return [b"".join([err(sent[0][2], errno.EEXIST)]
                             + [ok(seq) for _k, _f, seq, _b in sent[1:]])]
        if sent[0][0] == GETLINK:
            return [link_msg(sent[0][2], 11, "eth0")]
        return acks(sent)

    sandbox, sfs = fake(answer)
    host, _hfs = fake(acks)
    attach(sandbox, host, fresh=True)
    undo = sfs.sent[1]
    assert [(k, b) for k, _f, _s, b in undo] == [
        (DELROUTE, rtm() + a(5, socket.inet_aton("172.17.0.1")) + u32(4, 2)),
        (DELADDR, addr_body(2, "172.17.0.2", 16, "172.17.255.255"))]


def test_a_fresh_create_refused_for_another_reason_is_raised(
        sysctls: list[tuple[str, str]]) -> None:
    sandbox, sfs = fake(lambda sent: [b"".join([err(sent[0][2], errno.EPERM)]
                                               + [err(q, errno.ENODEV) for _k, _f, q, _b
                                                  in sent[1:]])])
    host, hfs = fake(acks)
    with pytest.raises(KernelError) as info:
        attach(sandbox, host, fresh=True)
    assert info.value.errno == errno.EPERM and str(info.value).startswith("create veth eth0")
    assert len(sfs.sent) == 1 and hfs.sent == []


# -- attributes -----------------------------------------------------------------------------

def test_attribute_encoders() -> None:
    assert nl.attr(3, b"ab") == struct.pack("=HH", 6, 3) + b"ab\0\0"
    assert nl.attr_str(3, "eth0") == struct.pack("=HH", 9, 3) + b"eth0\0\0\0\0"
    assert nl.attr_u32(4, 1500) == struct.pack("=HHI", 8, 4, 1500)
    assert nl.attr_u8(23, 0) == struct.pack("=HH", 5, 23) + b"\0\0\0\0"
    assert nl.nested(18, nl.attr_u8(1, 1)) == struct.pack("=HH", 12, 18) + a(1, b"\x01")
    assert nl.mac_bytes("02:42:AC:11:00:0a") == bytes.fromhex("0242ac11000a")
    assert nl.nfgenmsg(socket.AF_INET) == b"\x02\x00\x00\x00"
    assert nl.message(18, 0x301, 7, b"abcd") == hdr(20, 18, 0x301, 7) + b"abcd"
    # the length says 18, the next message starts at 20
    assert nl.message(18, 0, 7, b"ab") == hdr(18, 18, 0, 7) + b"ab\0\0"


def test_attribute_decoder() -> None:
    data = a(1 | 0x8000, b"nested") + a(2, b"") + a(1, b"again")
    assert nl.parse_attrs(data) == {1: b"again", 2: b""}
    # an attribute longer than what is left (cut short) ends the list; those before it stay
    assert nl.parse_attrs(a(3, b"ok") + struct.pack("=HH", 40, 4) + b"xx") == {3: b"ok"}
    assert nl.parse_attrs(struct.pack("=HH", 2, 4) + a(3, b"x")) == {}
    assert nl.text(b"eth0\0\0") == "eth0" and nl.u32(struct.pack("=I", 9)) == 9


def test_message_decoder_stops_at_a_cut_message() -> None:
    data = msg(NEWADDR, MULTI, 1, b"abcd") + hdr(64, NEWADDR, MULTI, 1) + b"short"
    assert list(nl.parse_messages(data)) == [(NEWADDR, MULTI, 1, b"abcd")]


def test_struct_decoders() -> None:
    link = nl.IfInfo(ifinfo(7, 0x1043, 0x1, family=0, type_=772) + s(3, "lo"))
    assert (link.family, link.type, link.index, link.flags, link.change) == (0, 772, 7,
                                                                             0x1043, 1)
    assert link.attrs == {3: b"lo\0"}
    addr = nl.IfAddr(ifaddr(3, 24, flags=0x80, scope=253) + a(2, b"\x0a\0\0\x01"))
    assert (addr.family, addr.prefixlen, addr.flags, addr.scope, addr.index) == (2, 24, 0x80,
                                                                                 253, 3)
    route = nl.RtMsg(rtm(16, table=255, protocol=2, scope=253, type_=2) + u32(4, 3))
    assert (route.family, route.dst_len, route.table, route.protocol, route.scope,
            route.type) == (2, 16, 255, 2, 253, 2)
    assert route.attrs == {4: struct.pack("=I", 3)}
