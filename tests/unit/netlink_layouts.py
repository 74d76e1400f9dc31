"""The kernel's netlink layouts written out by hand (from its struct definitions, never from
shoal's encoders), and a fake kernel socket: what the byte-level netlink tests share
(test_netlink_bytes.py, test_vxlan_bytes.py)."""

from __future__ import annotations

import struct
from collections.abc import Callable

from shoal.kernel import netlink as nl

# -- the kernel's layouts, written out ------------------------------------------------------

REQUEST, MULTI, ACK, DUMP_INTR = 0x1, 0x2, 0x4, 0x10
DUMP, EXCL, CREATE = 0x300, 0x200, 0x400
CAPPED, ACK_TLVS = 0x100, 0x200
ERROR, DONE = 2, 3
NEWLINK, DELLINK, GETLINK, SETLINK = 16, 17, 18, 19
NEWADDR, DELADDR, GETADDR = 20, 21, 22
NEWROUTE, DELROUTE, GETROUTE = 24, 25, 26


def a(kind: int, data: bytes) -> bytes:
    """struct nlattr + payload, padded to 4."""
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def s(kind: int, value: str) -> bytes:
    return a(kind, value.encode() + b"\0")


def u32(kind: int, value: int) -> bytes:
    return a(kind, struct.pack("=I", value))


def hdr(length: int, kind: int, flags: int, seq: int, pid: int = 0) -> bytes:
    """struct nlmsghdr."""
    return struct.pack("=IHHII", length, kind, flags, seq, pid)


def msg(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return hdr(16 + len(body), kind, flags, seq) + body + b"\0" * (-len(body) % 4)


def u8(kind: int, value: int) -> bytes:
    return a(kind, bytes([value]))


def ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = 0,
           type_: int = 0) -> bytes:
    """struct ifinfomsg: family, pad, type, index, flags, change."""
    return struct.pack("=BBHiII", family, 0, type_, index, flags, change)


def ifaddr(index: int, prefix: int, family: int = 2, flags: int = 0, scope: int = 0) -> bytes:
    """struct ifaddrmsg: family, prefixlen, flags, scope, index."""
    return struct.pack("=BBBBI", family, prefix, flags, scope, index)


def rtm(dst_len: int = 0, table: int = 254, protocol: int = 3, scope: int = 0,
        type_: int = 1) -> bytes:
    """struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags."""
    return struct.pack("=BBBBBBBBI", 2, dst_len, 0, 0, table, protocol, scope, type_, 0)


def err(seq: int, code: int, request: bytes = b"", flags: int = CAPPED,
        tlvs: bytes = b"") -> bytes:
    """An NLMSG_ERROR answering request `seq`: struct nlmsgerr (the negative errno and the
    request's header), the request's body when not capped, then extended-ack attributes."""
    echoed_len = 16 + len(request)
    body = struct.pack("=i", -code) + hdr(echoed_len, 0, 0, seq)
    if not flags & CAPPED:
        body += request + b"\0" * (-len(request) % 4)
    return msg(ERROR, flags, seq, body + tlvs)


def ok(seq: int) -> bytes:
    return err(seq, 0)


def done(seq: int, code: int = 0, flags: int = MULTI, tlvs: bytes = b"") -> bytes:
    return msg(DONE, flags, seq, struct.pack("=i", -code) + tlvs)


Frame = tuple[int, int, int, bytes]  # type, flags, seq, body


def frames(data: bytes) -> list[Frame]:
    out, offset = [], 0
    while offset < len(data):
        length, kind, flags, seq, pid = struct.unpack_from("=IHHII", data, offset)
        assert pid == 0 and length >= 16
        out.append((kind, flags, seq, data[offset + 16 : offset + length]))
        offset += (length + 3) & ~3
    assert offset == len(data)
    return out


class FakeSocket:
    """The kernel's end: records each send (one sendall is one sendmsg), answers it through
    `answer` with a list of datagrams, handed out one per recv."""

    def __init__(self, answer: Callable[[list[Frame]], list[bytes]]) -> None:
        self.answer = answer
        self.sent: list[list[Frame]] = []
        self.queue: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        sent = frames(data)
        self.sent.append(sent)
        self.queue.extend(self.answer(sent))

    def recv(self, size: int) -> bytes:
        assert self.queue, "recv with nothing sent back: the caller would hang"
        return self.queue.pop(0)


def fake(answer: Callable[[list[Frame]], list[bytes]]) -> tuple[nl.Netlink, FakeSocket]:
    sock = nl.Netlink.__new__(nl.Netlink)
    sock.seq = 0
    fs = FakeSocket(answer)
    sock.sock = fs  # type: ignore[assignment]
    return sock, fs


def acks(sent: list[Frame]) -> list[bytes]:
    """Every request succeeds: one datagram of acks."""
    return [b"".join(ok(seq) for _k, flags, seq, _b in sent if flags & ACK)]
