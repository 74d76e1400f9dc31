"""A small rtnetlink client on the standard library's sockets.

shoal talks to the kernel over netlink directly rather than through pyroute2: importing
pyroute2 costs 230-300 ms per process, more than the whole budget of `shoal run`, while the
few messages shoal needs (links, addresses, routes) fit in this module. Requests are batched
into one sendmsg and their acknowledgements read back together.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator

from ..errors import KernelError

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_NET_NS_FD = 28
IFLA_AF_SPEC = 26
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_BR_MCAST_SNOOPING = 23
IFLA_INFO_SLAVE_KIND = 4
IFLA_INFO_SLAVE_DATA = 5
IFLA_BRPORT_MODE = 4  # a bridge port's hairpin mode
VETH_INFO_PEER = 1
IFLA_INET6_ADDR_GEN_MODE = 8
IN6_ADDR_GEN_MODE_NONE = 1

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_TABLE = 15

RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1

IFF_UP = 0x1

_HDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_ATTR = struct.Struct("=HH")


def _pad(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, data: bytes) -> bytes:
    """One netlink attribute (type-length-value, padded to 4 bytes)."""
    length = _ATTR.size + len(data)
    return _ATTR.pack(length, kind) + data + b"\0" * (_pad(length) - length)


def attr_str(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def attr_u8(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=B", value))


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind, b"".join(attrs))


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return _IFINFO.pack(family, 0, index, flags, change)


def ifaddrmsg(index: int, prefixlen: int, family: int = socket.AF_INET) -> bytes:
    return _IFADDR.pack(family, prefixlen, 0, RT_SCOPE_UNIVERSE, index)


def rtmsg(dst_len: int = 0, scope: int = RT_SCOPE_UNIVERSE, family: int = socket.AF_INET) -> bytes:
    return _RTMSG.pack(family, dst_len, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST, 0)


def parse_attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Attributes of a message body from `offset`; a later duplicate replaces an earlier one."""
    out: dict[int, bytes] = {}
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            break
        out[kind & 0x3FFF] = data[offset + _ATTR.size : offset + length]
        offset += _pad(length)
    return out


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


_SHARED: dict[tuple[int, int], Netlink] = {}


def shared(protocol: int) -> Netlink:
    """A socket of this netlink family in the current network namespace, opened once per
    process and kept open. For NETLINK_NETFILTER that matters: closing such a socket waits
    for nf_tables' pending destroy work (an RCU grace period, 6 ms here after shoal's own
    element changes), so a socket per request would cost every published port that much."""
    key = (protocol, os.stat("/proc/thread-self/ns/net").st_ino)
    sock = _SHARED.get(key)
    if sock is None:
        sock = _SHARED[key] = Netlink(protocol)
    return sock


class Netlink:
    """One rtnetlink socket (or, given another protocol, a socket of that netlink family).
    It stays in the network namespace it was opened in, so a socket opened while the thread
    was in a sandbox's namespace keeps working on that sandbox."""

    def __init__(self, protocol: int = NETLINK_ROUTE) -> None:
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol
        )
        self.sock.bind((0, 0))
        for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            try:
                self.sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:
                pass
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _frame(self, kind: int, flags: int, body: bytes) -> tuple[int, bytes]:
        self.seq += 1
        return self.seq, _HDR.pack(_HDR.size + len(body), kind, flags, self.seq, 0) + body

    def _messages(self) -> Iterator[tuple[int, int, int, bytes]]:
        data = self.sock.recv(1 << 20)
        offset = 0
        while offset + _HDR.size <= len(data):
            length, kind, flags, seq, _pid = _HDR.unpack_from(data, offset)
            if length < _HDR.size:
                break
            yield kind, flags, seq, data[offset + _HDR.size : offset + length]
            offset += _pad(length)

    @staticmethod
    def _error(body: bytes, what: str) -> KernelError:
        code = -struct.unpack_from("=i", body)[0]
        detail = ""
        if len(body) >= 4 + _HDR.size:
            ext = parse_attrs(body, 4 + _HDR.size)
            if 1 in ext:  # NLMSGERR_ATTR_MSG
                detail = ": " + ext[1].rstrip(b"\0").decode(errors="replace")
        err = KernelError(f"{what}: {os.strerror(code)}{detail}")
        err.errno = code  # type: ignore[attr-defined]
        return err

    def batch(self, requests: list[tuple[int, int, bytes, str]]) -> list[KernelError | None]:
        """Send (type, flags, body, description) requests in one go and wait for every ack.
        Returns one entry per request: None for success, or the error."""
        frames = []
        what: dict[int, int] = {}
        for i, (kind, flags, body, _desc) in enumerate(requests):
            seq, frame = self._frame(kind, flags | NLM_F_REQUEST | NLM_F_ACK, body)
            what[seq] = i
            frames.append(frame)
        self.sock.sendall(b"".join(frames))
        results: list[KernelError | None] = [None] * len(requests)
        pending = set(what)
        while pending:
            for kind, _flags, seq, body in self._messages():
                if kind == NLMSG_ERROR and seq in pending:
                    pending.discard(seq)
                    if struct.unpack_from("=i", body)[0] != 0:
                        results[what[seq]] = self._error(body, requests[what[seq]][3])
        return results

    def call(self, *requests: tuple[int, int, bytes, str]) -> None:
        """Like batch, raising the first error."""
        for err in self.batch(list(requests)):
            if err is not None:
                raise err

    def get(self, kind: int, body: bytes, desc: str) -> bytes | None:
        """One GET request; the body of the answer, or None if the object does not exist."""
        seq, frame = self._frame(kind, NLM_F_REQUEST, body)
        self.sock.sendall(frame)
        while True:
            for mkind, _flags, mseq, mbody in self._messages():
                if mseq != seq:
                    continue
                if mkind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", mbody)[0]
                    if code in (errno.ENODEV, errno.ENOENT):
                        return None
                    if code == 0:
                        return None
                    raise self._error(mbody, desc)
                return mbody

    def dump(self, kind: int, body: bytes, desc: str) -> list[bytes]:
        """A dump request; the bodies of every answer."""
        seq, frame = self._frame(kind, NLM_F_REQUEST | NLM_F_DUMP, body)
        self.sock.sendall(frame)
        out: list[bytes] = []
        while True:
            for mkind, _flags, mseq, mbody in self._messages():
                if mseq != seq:
                    continue
                if mkind == NLMSG_DONE:
                    return out
                if mkind == NLMSG_ERROR:
                    raise self._error(mbody, desc)
                out.append(mbody)
