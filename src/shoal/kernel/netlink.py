"""A small rtnetlink client on the standard library's sockets.

shoal talks to the kernel over netlink directly rather than through pyroute2: importing
pyroute2 costs 230-300 ms per process, more than the whole budget of `shoal run`, while the
few messages shoal needs (links, addresses, routes, neighbours) fit in this module. Requests
are batched into one sendmsg and their acknowledgements read back together.

What the kernel answers is read as the kernel says it is: an acknowledgement's extended-ack
attributes only when its NLM_F_ACK_TLVS flag is set, after the echoed request unless its
NLM_F_CAPPED flag says the request was left out; a dump's NLMSG_DONE may carry an error; and a
dump the kernel flags NLM_F_DUMP_INTR (its table changed while it was read, so entries may be
missing or doubled) is read again. The encoders and decoders are public so that links.py,
vxlan.py, conntrack.py and nftgen.py build on them and tests/unit/test_netlink_bytes.py checks
them byte for byte.
"""

from __future__ import annotations

# the C module under `socket`: socket.py adds classes shoal does not use here and imports
# enum, selectors and array, a few milliseconds of every shoal-cni ADD and DEL
import _socket as socket
import errno
import os
import struct
from collections.abc import Iterator

from ..errors import KernelError

NETLINK_ROUTE = 0
NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10  # on a dump's message: the table changed while it was dumped
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
# flags of an acknowledgement (NLMSG_ERROR) or of a dump's NLMSG_DONE
NLM_F_CAPPED = 0x100  # the request is not echoed after the error's header
NLM_F_ACK_TLVS = 0x200  # extended-ack attributes follow
NLMSGERR_ATTR_MSG = 1
NLMSGERR_ATTR_OFFS = 2

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30

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

# neighbours and forwarding entries (linux/neighbour.h)
NDA_DST = 1
NDA_LLADDR = 2
NDA_IFINDEX = 8
NUD_PERMANENT = 0x80
NTF_SELF = 0x02  # an entry of the device itself (a VXLAN device's), not of its bridge
AF_BRIDGE = 7

RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1

IFF_UP = 0x1

# a dump the kernel keeps flagging as interrupted is read this many times, then refused
DUMP_TRIES = 5

HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: length, type, flags, sequence, port id
IFINFOMSG = struct.Struct("=BxHiII")  # family, (pad), type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst/src length, tos, table, protocol, scope,
#                                      type, flags
NDMSG = struct.Struct("=B3xiHBB")  # family, (pad: u8, u16), index, state, flags, type
NFGENMSG = struct.Struct("=BBH")  # family, version, resource id (big-endian)
_ATTR = struct.Struct("=HH")
_ERRNO = struct.Struct("=i")
_U32 = struct.Struct("=I")


def _pad(n: int) -> int:
    return (n + 3) & ~3


# -- encoding -------------------------------------------------------------------------------

def attr(kind: int, data: bytes) -> bytes:
    """One netlink attribute (type-length-value, padded to 4 bytes)."""
    length = _ATTR.size + len(data)
    return _ATTR.pack(length, kind) + data + b"\0" * (_pad(length) - length)


def attr_str(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, _U32.pack(value))


def attr_u8(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=B", value))


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind, b"".join(attrs))


def ifinfomsg(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return IFINFOMSG.pack(family, 0, index, flags, change)


def ifaddrmsg(index: int, prefixlen: int, family: int = socket.AF_INET) -> bytes:
    return IFADDRMSG.pack(family, prefixlen, 0, RT_SCOPE_UNIVERSE, index)


def rtmsg(dst_len: int = 0, scope: int = RT_SCOPE_UNIVERSE, family: int = socket.AF_INET) -> bytes:
    return RTMSG.pack(family, dst_len, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST, 0)


def ndmsg(family: int, index: int = 0, state: int = 0, flags: int = 0) -> bytes:
    """The header of a neighbour or forwarding-database message (type 0: the kernel's
    default)."""
    return NDMSG.pack(family, index, state, flags, 0)


def nfgenmsg(family: int = socket.AF_UNSPEC) -> bytes:
    """The header of a netfilter (nfnetlink) message: version 0, resource id 0."""
    return NFGENMSG.pack(family, 0, 0)


def message(kind: int, flags: int, seq: int, body: bytes, pid: int = 0) -> bytes:
    """One netlink message: its header and body, padded to 4 bytes so that a message after
    it in the same send starts where the kernel looks for it (NLMSG_ALIGN)."""
    return (HEADER.pack(HEADER.size + len(body), kind, flags, seq, pid) + body
            + b"\0" * (-len(body) % 4))


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


# -- decoding -------------------------------------------------------------------------------

def parse_attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Attributes of a message body from `offset`; a later duplicate replaces an earlier one.
    The type's nested and byte-order flags are dropped."""
    out: dict[int, bytes] = {}
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size or offset + length > len(data):
            break  # malformed or cut short: the attributes before it are still good
        out[kind & 0x3FFF] = data[offset + _ATTR.size : offset + length]
        offset += _pad(length)
    return out


def parse_messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, sequence, body) of each message in one datagram."""
    offset = 0
    while offset + HEADER.size <= len(data):
        length, kind, flags, seq, _pid = HEADER.unpack_from(data, offset)
        if length < HEADER.size or offset + length > len(data):
            break
        yield kind, flags, seq, data[offset + HEADER.size : offset + length]
        offset += _pad(length)


def u32(raw: bytes) -> int:
    """A native-endian 32-bit attribute's value."""
    return _U32.unpack_from(raw)[0]


def text(raw: bytes) -> str:
    """A string attribute's value (NUL-terminated)."""
    return raw.split(b"\0", 1)[0].decode(errors="replace")


class IfInfo:
    """A link message (RTM_NEWLINK, as links are dumped or got): its ifinfomsg and attributes."""

    __slots__ = ("family", "type", "index", "flags", "change", "attrs")

    def __init__(self, body: bytes) -> None:
        self.family, self.type, self.index, self.flags, self.change = \
            IFINFOMSG.unpack_from(body)
        self.attrs = parse_attrs(body, IFINFOMSG.size)


class IfAddr:
    """An address message (RTM_NEWADDR): its ifaddrmsg and attributes."""

    __slots__ = ("family", "prefixlen", "flags", "scope", "index", "attrs")

    def __init__(self, body: bytes) -> None:
        self.family, self.prefixlen, self.flags, self.scope, self.index = \
            IFADDRMSG.unpack_from(body)
        self.attrs = parse_attrs(body, IFADDRMSG.size)


class RtMsg:
    """A route message (RTM_NEWROUTE): its rtmsg and attributes."""

    __slots__ = ("family", "dst_len", "src_len", "tos", "table", "protocol", "scope", "type",
                 "flags", "attrs")

    def __init__(self, body: bytes) -> None:
        (self.family, self.dst_len, self.src_len, self.tos, self.table, self.protocol,
         self.scope, self.type, self.flags) = RTMSG.unpack_from(body)
        self.attrs = parse_attrs(body, RTMSG.size)


class NdMsg:
    """A neighbour or forwarding-database message (RTM_NEWNEIGH): its ndmsg and attributes."""

    __slots__ = ("family", "index", "state", "flags", "type", "attrs")

    def __init__(self, body: bytes) -> None:
        self.family, self.index, self.state, self.flags, self.type = NDMSG.unpack_from(body)
        self.attrs = parse_attrs(body, NDMSG.size)


def error_code(body: bytes) -> int:
    """The error number an NLMSG_ERROR or NLMSG_DONE carries, positive (0: none, an ack)."""
    return -_ERRNO.unpack_from(body)[0] if len(body) >= _ERRNO.size else 0


def ack_attrs(kind: int, flags: int, body: bytes) -> dict[int, bytes]:
    """The extended-ack attributes (NLMSGERR_ATTR_*) of an NLMSG_ERROR or NLMSG_DONE, read only
    where the kernel's NLM_F_ACK_TLVS flag says they are there. In an error they follow the
    echoed request's header and, unless NLM_F_CAPPED says it was left out, the request's body
    (whether NETLINK_CAP_ACK was asked for does not matter: the flag tells what was done)."""
    if not flags & NLM_F_ACK_TLVS:
        return {}
    offset = _ERRNO.size
    if kind == NLMSG_ERROR:
        if len(body) < _ERRNO.size + HEADER.size:
            return {}
        offset += HEADER.size
        if not flags & NLM_F_CAPPED:
            echoed = _U32.unpack_from(body, _ERRNO.size)[0]  # the request's nlmsg_len
            offset += _pad(max(echoed, HEADER.size) - HEADER.size)
    return parse_attrs(body, offset)


def kernel_error(kind: int, flags: int, body: bytes, what: str) -> KernelError:
    """The KernelError of a failed request's NLMSG_ERROR (or a dump's NLMSG_DONE): the
    kernel's errno, and its extended-ack message where it sent one."""
    code = error_code(body)
    detail = ack_attrs(kind, flags, body).get(NLMSGERR_ATTR_MSG)
    line = f"{what}: {os.strerror(code)}"
    if detail:
        line += ": " + text(detail)
    return KernelError(line, code)


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
        # smaller errors and the kernel's reasons, where it has both; an older kernel
        # refuses these, and its answers' flags then say what they hold
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

    def frame(self, kind: int, flags: int, body: bytes) -> tuple[int, bytes]:
        """The next sequence number and a message of this type carrying it."""
        self.seq += 1
        return self.seq, message(kind, flags, self.seq, body)

    def receive(self) -> Iterator[tuple[int, int, int, bytes]]:
        """The messages of the next datagram the kernel sends this socket."""
        return parse_messages(self.sock.recv(1 << 20))

    def batch(self, requests: list[tuple[int, int, bytes, str]]) -> list[KernelError | None]:
        """Send (type, flags, body, description) requests in one go and wait for every ack.
        Returns one entry per request: None for success, or the error."""
        frames = []
        what: dict[int, int] = {}
        for i, (kind, flags, body, _desc) in enumerate(requests):
            seq, frame = self.frame(kind, flags | NLM_F_REQUEST | NLM_F_ACK, body)
            what[seq] = i
            frames.append(frame)
        self.sock.sendall(b"".join(frames))
        results: list[KernelError | None] = [None] * len(requests)
        pending = set(what)
        while pending:
            for kind, flags, seq, body in self.receive():
                if kind == NLMSG_ERROR and seq in pending:
                    pending.discard(seq)
                    if error_code(body):
                        results[what[seq]] = kernel_error(kind, flags, body,
                                                          requests[what[seq]][3])
        return results

    def call(self, *requests: tuple[int, int, bytes, str]) -> None:
        """Like batch, raising the first error."""
        for err in self.batch(list(requests)):
            if err is not None:
                raise err

    def get(self, kind: int, body: bytes, desc: str) -> bytes | None:
        """One GET request; the body of the answer, or None if the object does not exist."""
        seq, frame = self.frame(kind, NLM_F_REQUEST, body)
        self.sock.sendall(frame)
        while True:
            for mkind, mflags, mseq, mbody in self.receive():
                if mseq != seq or mkind == NLMSG_NOOP:
                    continue
                if mkind == NLMSG_ERROR:
                    code = error_code(mbody)
                    if code in (0, errno.ENODEV, errno.ENOENT):
                        return None
                    raise kernel_error(mkind, mflags, mbody, desc)
                return mbody

    def dump(self, kind: int, body: bytes, desc: str) -> list[bytes]:
        """A dump request; the bodies of every answer. A dump the kernel flags as interrupted
        is read again, up to DUMP_TRIES times."""
        for _ in range(DUMP_TRIES):
            out, interrupted = self._dump_once(kind, body, desc)
            if not interrupted:
                return out
        raise KernelError(
            f"{desc}: the kernel's table kept changing while it was listed (the dump was "
            f"interrupted {DUMP_TRIES} times in a row); try again when it is quieter",
            errno.EINTR)

    def _dump_once(self, kind: int, body: bytes, desc: str) -> tuple[list[bytes], bool]:
        """(bodies, whether any message was flagged NLM_F_DUMP_INTR), read up to the dump's
        NLMSG_DONE, so that the socket holds nothing of it afterwards."""
        seq, frame = self.frame(kind, NLM_F_REQUEST | NLM_F_DUMP, body)
        self.sock.sendall(frame)
        out: list[bytes] = []
        interrupted = False
        while True:
            for mkind, mflags, mseq, mbody in self.receive():
                if mseq != seq:
                    continue
                interrupted = interrupted or bool(mflags & NLM_F_DUMP_INTR)
                if mkind == NLMSG_DONE:
                    if error_code(mbody):  # the dump failed part way: its error
                        raise kernel_error(mkind, mflags, mbody, desc)
                    return out, interrupted
                if mkind == NLMSG_ERROR:
                    raise kernel_error(mkind, mflags, mbody, desc)
                if mkind != NLMSG_NOOP:
                    out.append(mbody)
