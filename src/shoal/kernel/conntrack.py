"""Flushing connection-tracking entries over netlink (NETLINK_NETFILTER, ctnetlink).

Netfilter decides NAT once per connection, when its conntrack entry is made, and keeps the
decision for as long as packets keep the entry alive. So a UDP client that keeps sending
keeps reaching whatever its entry points at: a removed container's old address (and the next
container given that address), or, for a port published while it was already sending, the
host itself. Docker flushes those entries; shoal does the same here: one dump of the
namespace's IPv4 entries (filtered by the kernel where one (protocol, port) is asked for),
matched here, then one IPCTNL_MSG_CT_DELETE per stale entry, batched into few sends. An empty
table (the entry count in /proc/sys/net/netfilter) is not dumped at all.

Only an entry's own tuple is ever sent back, with its id: a DELETE without a tuple would
flush the whole table, so the encoder refuses to make one.
"""

from __future__ import annotations

import _socket as socket  # (as netlink.py: not socket.py, for its imports)
import errno
import struct
from collections.abc import Callable, Iterable

from ..errors import KernelError
from . import netlink as nl
from .netlink import NETLINK_NETFILTER, NFGENMSG, attr, attr_u32, parse_attrs, shared

NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
NLA_F_NESTED = 0x8000

CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_ID = 12
CTA_ZONE = 18
CTA_FILTER = 25
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
CTA_FILTER_ORIG_FLAGS = 1
CTA_FILTER_REPLY_FLAGS = 2
# which fields of the filter's tuple the kernel compares (nf_internals.h)
FILTER_PROTO_NUM = 1 << 3
FILTER_PROTO_DST_PORT = 1 << 5

PROTO_NUMBERS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": 132}

GET = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
# a netlink message larger than the socket's send buffer is refused: send in chunks
CHUNK = 32 * 1024

_PORT = struct.Struct("!H")


def nfgenmsg(family: int = socket.AF_INET) -> bytes:
    return nl.nfgenmsg(family)


def _nest(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


class Entry:
    """One conntrack entry, as much of it as deciding and deleting need. Addresses are the
    4 raw bytes; ports are 0 for protocols without them (ICMP)."""

    __slots__ = ("proto", "orig_src", "orig_dst", "orig_sport", "orig_dport",
                 "reply_src", "reply_dst", "tuple", "id", "zone")

    def __init__(self, proto: int, orig_src: bytes, orig_dst: bytes, orig_sport: int,
                 orig_dport: int, reply_src: bytes, reply_dst: bytes, tuple_: bytes,
                 id_: bytes | None = None, zone: bytes | None = None) -> None:
        self.proto, self.orig_src, self.orig_dst = proto, orig_src, orig_dst
        self.orig_sport, self.orig_dport = orig_sport, orig_dport
        self.reply_src, self.reply_dst = reply_src, reply_dst
        self.tuple, self.id, self.zone = tuple_, id_, zone

    def __repr__(self) -> str:
        def ip(raw: bytes) -> str:
            return socket.inet_ntoa(raw) if len(raw) == 4 else "?"
        return (f"<conntrack {self.proto} {ip(self.orig_src)}:{self.orig_sport} -> "
                f"{ip(self.orig_dst)}:{self.orig_dport}, reply from {ip(self.reply_src)}>")


def _tuple(raw: bytes) -> tuple[bytes, bytes, int, int, int]:
    """(src, dst, proto, sport, dport) of a CTA_TUPLE_* attribute's payload."""
    parts = parse_attrs(raw)
    ip = parse_attrs(parts.get(CTA_TUPLE_IP, b""))
    proto = parse_attrs(parts.get(CTA_TUPLE_PROTO, b""))
    num = proto.get(CTA_PROTO_NUM, b"\0")[0]
    sport = proto.get(CTA_PROTO_SRC_PORT)
    dport = proto.get(CTA_PROTO_DST_PORT)
    return (ip.get(CTA_IP_V4_SRC, b""), ip.get(CTA_IP_V4_DST, b""), num,
            _PORT.unpack(sport[:2])[0] if sport else 0,
            _PORT.unpack(dport[:2])[0] if dport else 0)


def parse_entry(body: bytes) -> Entry | None:
    """An IPCTNL_MSG_CT_NEW message of a dump (its body after the netlink header); None if
    it is not an IPv4 entry."""
    if len(body) < NFGENMSG.size or body[0] != socket.AF_INET:
        return None
    attrs = parse_attrs(body, NFGENMSG.size)
    orig = attrs.get(CTA_TUPLE_ORIG)
    if not orig:
        return None
    src, dst, proto, sport, dport = _tuple(orig)
    rsrc, rdst, _p, _s, _d = _tuple(attrs.get(CTA_TUPLE_REPLY, b""))
    return Entry(proto, src, dst, sport, dport, rsrc, rdst, orig, attrs.get(CTA_ID),
                 attrs.get(CTA_ZONE))


def dump_request(proto: int | None = None, dport: int | None = None) -> bytes:
    """The body of a dump of IPv4 entries; with (proto, dport), a filter asking the kernel
    (5.8 and later; older ones ignore it and send every entry) for only the entries whose
    original direction goes to that port."""
    body = nfgenmsg()
    if proto is None:
        return body
    fields = [attr(CTA_PROTO_NUM, bytes([proto]))]
    flags = FILTER_PROTO_NUM
    if dport is not None:
        fields.append(attr(CTA_PROTO_DST_PORT, _PORT.pack(dport)))
        flags |= FILTER_PROTO_DST_PORT
    body += _nest(CTA_TUPLE_ORIG, _nest(CTA_TUPLE_PROTO, *fields))
    body += _nest(CTA_FILTER, attr_u32(CTA_FILTER_ORIG_FLAGS, flags),
                  attr_u32(CTA_FILTER_REPLY_FLAGS, 0))
    return body


def delete_request(entry: Entry) -> bytes:
    """The body of an IPCTNL_MSG_CT_DELETE of exactly this entry: its original tuple as the
    kernel gave it, its zone, and its id (the kernel then deletes nothing if the tuple now
    belongs to a newer entry)."""
    if not entry.tuple:
        raise ValueError("a conntrack delete needs the entry's tuple (without one, the "
                         "kernel would flush the whole table)")
    body = nfgenmsg() + attr(CTA_TUPLE_ORIG | NLA_F_NESTED, entry.tuple)
    if entry.zone is not None:
        body += attr(CTA_ZONE, entry.zone)
    if entry.id is not None:
        body += attr(CTA_ID, entry.id)
    return body


PortKey = tuple[int, int, bytes | None]  # (protocol number, host port, host address or None=any)


def stale(entries: Iterable[Entry], addresses: set[bytes], ports: set[PortKey],
          local_addresses: Callable[[], set[bytes]]) -> list[Entry]:
    """The entries to flush: those with a released address anywhere in their tuples (as
    Docker's flush does), and those going to a published host port, which are the ones whose
    original destination is that host address or, for a port published on every address, any
    address of the host (a connection of the host's or a container's to a remote server on
    that port number keeps its entry). `local_addresses` is asked only when needed."""
    out: list[Entry] = []
    by_port: dict[tuple[int, int], list[bytes | None]] = {}
    for proto, port, host_ip in ports:
        by_port.setdefault((proto, port), []).append(host_ip)
    local: set[bytes] | None = None
    for e in entries:
        if addresses and (e.orig_src in addresses or e.orig_dst in addresses
                          or e.reply_src in addresses or e.reply_dst in addresses):
            out.append(e)
            continue
        wanted = by_port.get((e.proto, e.orig_dport))
        if wanted is None:
            continue
        if e.orig_dst in wanted:
            out.append(e)
        elif None in wanted:
            if local is None:
                local = local_addresses()
            if e.orig_dst in local or e.orig_dst[:1] == b"\x7f":
                out.append(e)
    return out


class Conntrack:
    """ctnetlink in the current namespace, over the process's one NETLINK_NETFILTER socket
    (netlink.shared: closing one after nf_tables changes waits for an RCU grace period)."""

    def __init__(self) -> None:
        self.nl = shared(NETLINK_NETFILTER)

    def close(self) -> None:
        pass  # the socket is kept for the process

    def __enter__(self) -> Conntrack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def entries(self, proto: int | None = None, dport: int | None = None) -> list[Entry]:
        out = []
        for body in self.nl.dump(GET, dump_request(proto, dport), "list conntrack entries"):
            entry = parse_entry(body)
            if entry is not None:
                out.append(entry)
        return out

    def delete(self, entries: list[Entry]) -> int:
        """Delete these entries, in as few sends as fit; how many the kernel deleted (one
        already gone, timed out or replaced, is not an error)."""
        deleted = 0
        frames: list[bytes] = []
        size = 0
        for i, entry in enumerate(entries):
            last = i == len(entries) - 1
            body = delete_request(entry)
            if size + len(body) + 16 > CHUNK or last:
                flags = nl.NLM_F_REQUEST | nl.NLM_F_ACK
            else:
                flags = nl.NLM_F_REQUEST  # only failures are answered
            seq, frame = self.nl.frame(DELETE, flags, body)
            frames.append(frame)
            size += len(frame)
            if flags & nl.NLM_F_ACK:
                deleted += len(frames) - self._send(frames, seq)
                frames, size = [], 0
        return deleted

    def _send(self, frames: list[bytes], last_seq: int) -> int:
        """Send frames whose last one asks for an ack; the number of failed deletions. (The
        socket is the process's: an answer to an earlier request is not counted.)"""
        self.nl.sock.sendall(b"".join(frames))
        first_seq = last_seq - len(frames) + 1
        failed = 0
        while True:
            for kind, flags, seq, body in self.nl.receive():
                if kind != nl.NLMSG_ERROR or not first_seq <= seq <= last_seq:
                    continue
                code = nl.error_code(body)
                if code and code != errno.ENOENT:
                    raise nl.kernel_error(kind, flags, body, "delete conntrack entries")
                if code:
                    failed += 1
                if seq == last_seq:
                    return failed


def tracked() -> int:
    """How many entries this namespace's table holds (0 without conntrack). Any dump walks
    every bucket of the table (about 9 ms for 262,144 of them), so an empty table is worth
    knowing first: then publishing a port costs this one read."""
    try:
        with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def flush(addresses: Iterable[str], ports: Iterable[tuple[str, str, int]],
          local_addresses: Callable[[], Iterable[str]]) -> int:
    """Flush, in the current network namespace, the entries of released container addresses
    and of host ports ((proto, host ip, host port), host ip '0.0.0.0' for every address).
    Returns how many were deleted; a kernel without conntrack has nothing to flush."""
    addrs = {socket.inet_aton(a) for a in addresses}
    keys: set[PortKey] = set()
    for proto, host_ip, port in ports:
        if proto in PROTO_NUMBERS:
            keys.add((PROTO_NUMBERS[proto], port,
                      None if host_ip == "0.0.0.0" else socket.inet_aton(host_ip)))
    if not addrs and not keys or tracked() == 0:
        return 0
    try:
        ct = Conntrack()
    except OSError as e:
        if e.errno in (errno.EPROTONOSUPPORT, errno.ENOENT):
            return 0  # no nfnetlink: no conntrack either
        raise
    with ct:
        try:
            if not addrs and len({(p, port) for p, port, _ip in keys}) == 1:
                proto, port, _ip = next(iter(keys))
                entries = ct.entries(proto, port)
            else:
                entries = ct.entries()
        except KernelError as e:
            if e.errno in (errno.EOPNOTSUPP, errno.ENOENT, errno.EPROTONOSUPPORT):
                return 0  # conntrack is not loaded: nothing is tracked
            raise
        doomed = stale(entries, addrs, keys,
                       lambda: {socket.inet_aton(a) for a in local_addresses()})
        return ct.delete(doomed) if doomed else 0
