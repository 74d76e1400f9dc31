"""DNS messages as bytes: reading a query, building the resolver's own answers, and the
forwarded answers it keeps (with where their TTLs are, so that answering from the cache is
a byte patch). Pure, no I/O; dnspython is used only where speed does not matter.

Bodies: the builders return a message without its first two bytes (the ID), so that the
server answers with `query id + body`, and can keep bodies for the next identical query."""

from __future__ import annotations

import socket
import struct

QR, AA, TC, RD, RA, CD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0010
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
TYPE_A, TYPE_NS, TYPE_SOA, TYPE_PTR, TYPE_AAAA, TYPE_OPT, TYPE_ANY = 1, 2, 6, 12, 28, 41, 255
CLASS_IN = 1
EDNS_SIZE = 1232  # what the resolver says it can receive (the DNS flag day's size)
UDP_PLAIN = 512  # a UDP answer's limit without EDNS
BADVERS = 16

_HEADER = struct.Struct(">HHHHHH")
_COUNTS = struct.Struct(">HHHHH")  # a body's start: flags and the four counts
_RR = struct.Struct(">HHIH")  # type, class, ttl, rdlength
_U16 = struct.Struct(">H")
_UINT32 = struct.Struct(">I")


class Malformed(Exception):  # noqa: N818  (a reason to drop a packet, not an error of shoal)
    """Not a query one can answer: dropped."""


class FormError(Exception):  # noqa: N818
    """A query whose header is readable and whose rest is not: FORMERR."""

    def __init__(self, ident: bytes, flags: int) -> None:
        super().__init__("malformed query")
        self.ident, self.flags = ident, flags


class Query:
    """A query's parts (data is the packet as it came)."""

    __slots__ = ("data", "ident", "flags", "qend", "qtype", "qclass", "name", "edns",
                 "udp_size", "do", "version")

    def __init__(self, data: bytes, flags: int, qend: int, qtype: int, qclass: int,
                 name: str, edns: bool, udp_size: int, do: bool, version: int) -> None:
        self.data, self.ident, self.flags, self.qend = data, data[:2], flags, qend
        self.qtype, self.qclass, self.name = qtype, qclass, name
        self.edns, self.udp_size, self.do, self.version = edns, udp_size, do, version

    @property
    def question(self) -> bytes:
        """The question section as the client wrote it (its case kept: 0x20)."""
        return self.data[12:self.qend]

    def limit(self, tcp: bool) -> int:
        """The largest answer the client can take."""
        if tcp:
            return 65535
        return max(UDP_PLAIN, min(self.udp_size, 65535)) if self.edns else UDP_PLAIN


def skip_name(data: bytes, pos: int) -> int:
    """The offset after a (possibly compressed) name. ValueError if it is not one."""
    n = len(data)
    while True:
        if pos >= n:
            raise ValueError("name past the end")
        length = data[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            if pos + 2 > n:
                raise ValueError("pointer past the end")
            return pos + 2
        if length & 0xC0:
            raise ValueError("bad label type")
        pos += 1 + length


def parse_query(data: bytes) -> Query:
    """Read a query. Malformed: drop it; FormError: answer FORMERR."""
    if len(data) < 12:
        raise Malformed("shorter than a header")
    _ident, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    if flags & QR:
        raise Malformed("a response")
    if qd != 1:
        raise FormError(data[:2], flags)
    n = len(data)
    pos, labels = 12, []
    try:
        while True:
            if pos >= n:
                raise ValueError
            length = data[pos]
            if length == 0:
                pos += 1
                break
            if length & 0xC0 or pos + 1 + length > n:
                raise ValueError
            labels.append(data[pos + 1:pos + 1 + length])
            pos += 1 + length
        if pos + 4 > n or pos - 12 > 255:
            raise ValueError
        qtype, qclass = struct.unpack_from(">HH", data, pos)
        qend = pos = pos + 4
        edns, udp_size, do, version = False, UDP_PLAIN, False, 0
        for i in range(an + ns + ar):
            start = pos
            pos = skip_name(data, pos)
            if pos + 10 > n:
                raise ValueError
            rtype, rclass, ttl, rdlength = _RR.unpack_from(data, pos)
            pos += 10 + rdlength
            if pos > n:
                raise ValueError
            if rtype == TYPE_OPT and i >= an + ns:
                if edns or data[start] != 0:
                    raise ValueError  # two OPT records, or one not at the root
                edns, udp_size = True, rclass
                do, version = bool(ttl & 0x8000), (ttl >> 16) & 0xFF
    except (ValueError, struct.error):
        raise FormError(data[:2], flags) from None
    name = b".".join(labels).decode("latin-1").lower()
    return Query(data, flags, qend, qtype, qclass, name, edns, udp_size, do, version)


def opt_record(do: bool, ext_rcode: int = 0) -> bytes:
    return (b"\x00" + _U16.pack(TYPE_OPT) + _U16.pack(EDNS_SIZE)
            + bytes((ext_rcode, 0)) + _U16.pack(0x8000 if do else 0) + b"\x00\x00")


def _flags(q: Query, rcode: int, aa: bool) -> int:
    return (QR | (q.flags & 0x7800) | (AA if aa else 0) | (q.flags & (RD | CD)) | RA
            | (rcode & 0xF))


def respond(q: Query, rcode: int = NOERROR, records: list[bytes] | None = None,
            aa: bool = True, tcp: bool = False) -> bytes:
    """An answer of the resolver's own (body without the ID): the client's question echoed
    as it wrote it, these answer records, an OPT if the query had one. Too big for the
    client: TC set and no answer records (it asks again over TCP)."""
    records = records or []
    ext = 0
    if rcode > 15:
        ext, rcode = rcode >> 4, rcode & 0xF
    opt = opt_record(q.do, ext) if q.edns else b""
    question = q.data[12:q.qend]
    flags = _flags(q, rcode, aa)
    body = (_COUNTS.pack(flags, 1, len(records), 0, 1 if opt else 0) + question
            + b"".join(records) + opt)
    if len(body) + 2 > q.limit(tcp):
        body = _COUNTS.pack(flags | TC, 1, 0, 0, 1 if opt else 0) + question + opt
    return body


def error_body(e: FormError, rcode: int = FORMERR) -> bytes:
    """FORMERR (or another rcode) for a query whose question cannot be read: the header
    alone."""
    flags = QR | (e.flags & 0x7800) | (e.flags & RD) | RA | rcode
    return _COUNTS.pack(flags, 0, 0, 0, 0)


def address_record(ip: str, ttl: int = 0) -> bytes:
    """An A (or AAAA) record whose name points at the question's (offset 12)."""
    if ":" in ip:
        return b"\xc0\x0c" + _RR.pack(TYPE_AAAA, CLASS_IN, ttl, 16) + \
            socket.inet_pton(socket.AF_INET6, ip)
    return b"\xc0\x0c" + _RR.pack(TYPE_A, CLASS_IN, ttl, 4) + socket.inet_aton(ip)


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if not raw or len(raw) > 63:
            raise ValueError(f"bad label in {name!r}")
        out += bytes((len(raw),)) + raw
    return out + b"\x00"


def ptr_record(name: str, ttl: int = 0) -> bytes:
    rdata = encode_name(name)
    return b"\xc0\x0c" + _RR.pack(TYPE_PTR, CLASS_IN, ttl, len(rdata)) + rdata


def reverse_ipv4(name: str) -> str | None:
    """The address of an in-addr.arpa name (lowercased, no trailing dot), or None."""
    if not name.endswith(".in-addr.arpa"):
        return None
    parts = name[:-len(".in-addr.arpa")].split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 and str(int(p)) == p
                                  for p in parts):
        return None
    return ".".join(reversed(parts))


# -- forwarding --------------------------------------------------------------------------


def upstream_query(q: Query, ident: int) -> bytes:
    """What is sent upstream for a client's query: a fresh ID, the client's RD and CD, its
    question, and the resolver's own OPT (its size; the client's DO, none of its options)."""
    flags = q.flags & (RD | CD)
    return (_HEADER.pack(ident, flags, 1, 0, 0, 1) + q.data[12:q.qend]
            + opt_record(q.do))


class Answer:
    """A forwarded answer as kept: the body without the ID and without the upstream's OPT,
    the offsets (in the body) and values of its TTLs, and how long it may be kept."""

    __slots__ = ("body", "ttl_offsets", "ttls", "ttl", "ext_rcode", "qend")

    def __init__(self, body: bytes, ttl_offsets: list[int], ttls: list[int], ttl: int,
                 ext_rcode: int, qend: int) -> None:
        self.body, self.ttl_offsets, self.ttls, self.ttl = body, ttl_offsets, ttls, ttl
        self.ext_rcode, self.qend = ext_rcode, qend

    @property
    def rcode(self) -> int:
        return _U16.unpack_from(self.body)[0] & 0xF

    def reply(self, q: Query, elapsed: int = 0, tcp: bool = False) -> bytes:
        """The answer for a client (with its ID): TTLs lowered by the seconds it was kept,
        the client's question in its own case, its RD, an OPT if it sent one; truncated if
        it is too big for the client."""
        body = bytearray(self.body)
        if elapsed:
            for off, ttl in zip(self.ttl_offsets, self.ttls, strict=True):
                _UINT32.pack_into(body, off, max(ttl - elapsed, 0))
        body[10:self.qend] = q.data[12:q.qend]
        body[0] = (body[0] & ~0x01) | ((q.flags >> 8) & 0x01)  # RD as the client's
        body[1] |= 0x80  # RA
        if q.edns:
            _U16.pack_into(body, 8, _U16.unpack_from(body, 8)[0] + 1)  # ARCOUNT
            body += opt_record(q.do, self.ext_rcode)
        if len(body) + 2 > q.limit(tcp):
            flags = _U16.unpack_from(body)[0]
            opt = opt_record(q.do, self.ext_rcode) if q.edns else b""
            body = bytearray(_COUNTS.pack(flags | TC, 1, 0, 0, 1 if opt else 0)
                             + q.data[12:q.qend] + opt)
        return q.ident + bytes(body)


def check_answer(data: bytes, sent: bytes) -> None:
    """ValueError unless data answers the query sent (same ID and question, any case)."""
    if len(data) < 12 or data[:2] != sent[:2] or not data[2] & 0x80:
        raise ValueError("not the answer to this query")
    qend = len(sent) - 11  # the sent query ends with the 11 bytes of its OPT
    if data[4:6] != b"\x00\x01" or data[12:qend].lower() != sent[12:qend].lower():
        raise ValueError("not the question asked")


def truncated(data: bytes) -> bool:
    return len(data) >= 4 and bool(data[2] & (TC >> 8))


def keep(data: bytes, cap: int = 300) -> Answer:
    """An upstream's answer (already checked against the query) made into an Answer: its
    OPT removed, its TTLs found. Its ttl is how long it may be cached: the least TTL of its
    records, or for a negative answer the SOA's (the least of its TTL and its minimum);
    0 if it must not be (no SOA, SERVFAIL...), never more than cap. ValueError if it
    cannot be read."""
    try:
        return _keep(data, cap)
    except _OptNotLast:  # rare: written again without it, by dnspython
        import dns.message

        try:
            message = dns.message.from_wire(data)
            message.use_edns(False)
            wire = message.to_wire(max_size=65535)
        except Exception as e:
            raise ValueError(f"unreadable answer: {e}") from None
        return _keep(wire, cap)
    except struct.error:
        raise ValueError("truncated record") from None


class _OptNotLast(ValueError):
    pass


def _keep(data: bytes, cap: int) -> Answer:
    _ident, flags, qd, an, ns, ar = _HEADER.unpack_from(data)
    n = len(data)
    pos = 12
    for _ in range(qd):
        pos = skip_name(data, pos) + 4
    qend = pos
    if qd != 1 or qend > n:
        raise ValueError("not one question")
    offsets: list[int] = []
    ttls: list[int] = []
    opt: tuple[int, int, int] | None = None  # start, end, ttl field
    negative_ttl: int | None = None
    for i in range(an + ns + ar):
        start = pos
        pos = skip_name(data, pos)
        rtype, _rclass, ttl, rdlength = _RR.unpack_from(data, pos)
        ttl_at = pos + 4
        pos += 10 + rdlength
        if pos > n:
            raise ValueError("record past the end")
        if rtype == TYPE_OPT:
            if opt is not None or i < an + ns:
                raise ValueError("misplaced OPT")
            opt = (start, pos, ttl)
            continue
        ttl &= 0x7FFFFFFF
        offsets.append(ttl_at - 2)
        ttls.append(ttl)
        if an <= i < an + ns and rtype == TYPE_SOA and rdlength >= 22:
            minimum = _UINT32.unpack_from(data, pos - 4)[0]
            negative_ttl = min(ttl, minimum)
    if pos != n and not truncated(data):
        raise ValueError("bytes after the records")
    ext_rcode = 0
    if opt is not None:
        start, end, opt_ttl = opt
        ext_rcode = opt_ttl >> 24
        if end != n:
            raise _OptNotLast("OPT not the last record")
        data = data[:start]
        data = data[:10] + _U16.pack(ar - 1) + data[12:]
    rcode = flags & 0xF
    if rcode not in (NOERROR, NXDOMAIN) or ext_rcode or flags & TC:
        ttl = 0
    elif an:
        ttl = min(ttls)
    else:
        ttl = negative_ttl or 0
    return Answer(data[2:], offsets, ttls, max(0, min(ttl, cap)), ext_rcode, qend - 2)
