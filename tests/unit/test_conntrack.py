"""Byte-level tests of the ctnetlink messages shoal encodes and decodes (kernel/conntrack.py),
and of the choice of entries to flush. No root, no kernel."""

from __future__ import annotations

import socket
import struct

import pytest

from shoal.kernel import conntrack as ct
from shoal.kernel import netlink as nl


def ip(text: str) -> bytes:
    return socket.inet_aton(text)


def a(kind: int, data: bytes) -> bytes:
    """An attribute written out by hand: length, type, data, padding to 4 bytes."""
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


NESTED = 0x8000


def tuple_payload(src: str, dst: str, proto: int, sport: int, dport: int) -> bytes:
    return (a(1 | NESTED, a(1, ip(src)) + a(2, ip(dst)))
            + a(2 | NESTED, a(1, bytes([proto])) + a(2, struct.pack("!H", sport))
                + a(3, struct.pack("!H", dport))))


def test_message_types_are_ctnetlinks() -> None:
    assert ct.GET == 0x0101 and ct.DELETE == 0x0102


def test_nfgenmsg_is_family_version_and_zero_resource_id() -> None:
    assert ct.nfgenmsg() == b"\x02\x00\x00\x00"
    assert ct.dump_request() == b"\x02\x00\x00\x00"  # no filter: every IPv4 entry


def test_dump_filter_asks_for_protocol_and_destination_port() -> None:
    body = ct.dump_request(17, 5353)
    proto = a(1, b"\x11") + a(3, b"\x14\xe9")  # CTA_PROTO_NUM 17, CTA_PROTO_DST_PORT 5353
    expected = (b"\x02\x00\x00\x00"
                + a(1 | NESTED, a(2 | NESTED, proto))  # CTA_TUPLE_ORIG { CTA_TUPLE_PROTO }
                + a(25 | NESTED,  # CTA_FILTER { ORIG_FLAGS = PROTO_NUM|DST_PORT, REPLY = 0 }
                    a(1, struct.pack("=I", (1 << 3) | (1 << 5))) + a(2, b"\0\0\0\0")))
    assert body == expected


def test_parse_entry_reads_both_tuples_id_and_zone() -> None:
    orig = tuple_payload("198.51.100.1", "198.51.100.2", 17, 40999, 5353)
    reply = tuple_payload("10.20.0.10", "198.51.100.1", 17, 53, 40999)
    body = (b"\x02\x00\x00\x00" + a(1 | NESTED, orig) + a(2 | NESTED, reply)
            + a(3, struct.pack("!I", 0x188)) + a(12, b"\x01\x02\x03\x04") + a(18, b"\x00\x07"))
    e = ct.parse_entry(body)
    assert e is not None
    assert (e.proto, e.orig_src, e.orig_dst, e.orig_sport, e.orig_dport) == (
        17, ip("198.51.100.1"), ip("198.51.100.2"), 40999, 5353)
    assert (e.reply_src, e.reply_dst) == (ip("10.20.0.10"), ip("198.51.100.1"))
    assert e.tuple == orig and e.id == b"\x01\x02\x03\x04" and e.zone == b"\x00\x07"


def test_parse_entry_skips_other_families_and_handles_icmp() -> None:
    assert ct.parse_entry(b"\x0a\x00\x00\x00" + a(1 | NESTED, b"")) is None
    icmp = (a(1 | NESTED, a(1, ip("10.0.0.2")) + a(2, ip("10.0.0.3")))
            + a(2 | NESTED, a(1, b"\x01") + a(4, b"\x00\x05") + a(5, b"\x08") + a(6, b"\x00")))
    e = ct.parse_entry(b"\x02\x00\x00\x00" + a(1 | NESTED, icmp))
    assert e is not None and e.proto == 1 and e.orig_dport == 0 and e.reply_src == b""


def test_delete_sends_back_exactly_the_entrys_tuple_zone_and_id() -> None:
    orig = tuple_payload("198.51.100.1", "198.51.100.2", 6, 1234, 80)
    e = ct.Entry(6, ip("198.51.100.1"), ip("198.51.100.2"), 1234, 80, b"", b"", orig,
                 b"\x00\x00\x00\x2a", b"\x00\x03")
    assert ct.delete_request(e) == (b"\x02\x00\x00\x00" + a(1 | NESTED, orig)
                                    + a(18, b"\x00\x03") + a(12, b"\x00\x00\x00\x2a"))


def test_delete_without_a_tuple_is_refused() -> None:
    # the kernel would take a DELETE without a tuple as "flush the whole table"
    with pytest.raises(ValueError, match="whole table"):
        ct.delete_request(ct.Entry(17, b"", b"", 0, 0, b"", b"", b""))


def entry(src: str, dst: str, dport: int, rsrc: str, rdst: str, proto: int = 17) -> ct.Entry:
    return ct.Entry(proto, ip(src), ip(dst), 40000, dport, ip(rsrc), ip(rdst),
                    tuple_payload(src, dst, proto, 40000, dport))


def test_stale_entries_of_an_address_anywhere_in_the_tuples() -> None:
    inbound = entry("198.51.100.1", "198.51.100.2", 5353, "10.20.0.10", "198.51.100.1")
    outbound = entry("10.20.0.10", "198.51.100.1", 7001, "198.51.100.1", "198.51.100.2")
    other = entry("10.20.0.11", "198.51.100.1", 7001, "198.51.100.1", "198.51.100.2")
    got = ct.stale([inbound, outbound, other], {ip("10.20.0.10")}, set(), lambda: set())
    assert got == [inbound, outbound]


def test_stale_entries_of_a_port_go_to_one_of_the_hosts_addresses() -> None:
    to_host = entry("198.51.100.1", "198.51.100.2", 5353, "198.51.100.2", "198.51.100.1")
    to_loopback = entry("127.0.0.1", "127.0.0.1", 5353, "127.0.0.1", "127.0.0.1")
    # a container's masqueraded query to a remote server on the same port keeps its entry
    to_remote = entry("172.17.0.2", "203.0.113.53", 5353, "203.0.113.53", "198.51.100.2")
    tcp = entry("198.51.100.1", "198.51.100.2", 5353, "198.51.100.2", "198.51.100.1", 6)
    asked = []

    def local() -> set[bytes]:
        asked.append(1)
        return {ip("198.51.100.2")}

    entries = [to_host, to_loopback, to_remote, tcp]
    got = ct.stale(entries, set(), {(17, 5353, None)}, local)
    assert got == [to_host, to_loopback] and len(asked) == 1
    # published on one address only: only entries to that address
    got = ct.stale(entries, set(), {(17, 5353, ip("127.0.0.1"))}, local)
    assert got == [to_loopback]
    # nothing on that port: the host's addresses are not even looked up
    asked.clear()
    assert ct.stale(entries, set(), {(17, 9999, None)}, local) == [] and not asked


class FakeNetlink:
    """Records what is sent; answers the acked message of each send (and a failure for the
    entries it is told are gone)."""

    def __init__(self, gone: set[int]) -> None:
        self.sent: list[bytes] = []
        self.seq = 0
        self.gone = gone
        self.sock = self

    def frame(self, kind: int, flags: int, body: bytes) -> tuple[int, bytes]:
        return nl.Netlink.frame(self, kind, flags, body)  # type: ignore[arg-type]

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)

    def receive(self):  # type: ignore[no-untyped-def]
        data = self.sent[-1]
        offset = 0
        while offset < len(data):
            length, _kind, flags, seq, _pid = struct.unpack_from("=IHHII", data, offset)
            if seq in self.gone:
                yield nl.NLMSG_ERROR, 0, seq, struct.pack("=i", -2)
            elif flags & nl.NLM_F_ACK:
                yield nl.NLMSG_ERROR, 0, seq, struct.pack("=i", 0)
            offset += length


def frames(data: bytes) -> list[tuple[int, int]]:
    out, offset = [], 0
    while offset < len(data):
        length, kind, flags, _seq, _pid = struct.unpack_from("=IHHII", data, offset)
        out.append((kind, flags))
        offset += length
    return out


def test_deletes_are_batched_with_one_ack_per_send() -> None:
    conn = ct.Conntrack.__new__(ct.Conntrack)
    fake = FakeNetlink(gone={2})
    conn.nl = fake  # type: ignore[assignment]
    entries = [entry("198.51.100.1", "198.51.100.2", 5353, "10.0.0.2", "198.51.100.1")] * 3
    assert conn.delete(entries) == 2  # one was already gone: not an error
    assert len(fake.sent) == 1
    sent = frames(fake.sent[0])
    assert [k for k, _ in sent] == [0x0102] * 3
    assert [bool(f & nl.NLM_F_ACK) for _, f in sent] == [False, False, True]
    assert all(f & nl.NLM_F_REQUEST for _, f in sent)


def test_many_deletes_go_in_chunks_below_the_send_buffer() -> None:
    conn = ct.Conntrack.__new__(ct.Conntrack)
    fake = FakeNetlink(gone=set())
    conn.nl = fake  # type: ignore[assignment]
    entries = [entry("198.51.100.1", "198.51.100.2", p, "10.0.0.2", "198.51.100.1")
               for p in range(1, 2001)]
    assert conn.delete(entries) == 2000
    assert len(fake.sent) > 1 and all(len(chunk) <= ct.CHUNK + 256 for chunk in fake.sent)
    for chunk in fake.sent:
        acks = [bool(f & nl.NLM_F_ACK) for _, f in frames(chunk)]
        assert acks[-1] and not any(acks[:-1])
