"""The embedded resolver's server: one thread, one epoll loop over every sandbox's
listening sockets (UDP and TCP), the forwarder's sockets and the control socket.

The listener a query arrives on says which sandbox asks (each sandbox has its own sockets,
made in its namespace by listen.py). The hot path is a UDP query for a container's name:
the answer's bytes after the ID are kept per listener, keyed by the query's own bytes after
its ID (so its flags, its EDNS and its question in the case it was written, 0x20, are all
in the key), and the reply is the client's ID and those bytes: one dict hit, no parsing.
A name with several addresses keeps one body per rotation and answers them in turn (the
round robin of Docker's resolver). changed() drops every kept body, and so does the first
packet after the table was changed without it: no answer is older than the table.

What it answers:
- a name of the table (on a network the asker shares): its addresses, AA and RA set, RD
  as asked, TTL 0; another type for that name: NOERROR without records (NODATA), never
  forwarded; a PTR of a container's address: its name;
- another name: forwarded (forward.Forwarder), or REFUSED when the asker may not forward
  (a container only on --internal networks: Docker answers those with an error too);
  SERVFAIL when there is no upstream or none answered;
- a UDP answer bigger than the client takes (512 bytes without EDNS): TC set, no records;
  EDNS in the query: an OPT in the answer (size wire.EDNS_SIZE);
- malformed: dropped, or FORMERR when its header is readable; opcode other than QUERY:
  NOTIMP; EDNS version above 0: BADVERS.

TCP: non-blocking accept, 2-byte length framing, several queries on one connection, closed
after IDLE seconds without a query; a client that does not read its answers is dropped."""

from __future__ import annotations

import os
import socket
import struct
import time
from itertools import cycle
from typing import Any

from . import batch as batching
from . import wire
from .batch import Batch
from .forward import Forwarder, HostServers
from .loop import Loop
from .table import NameTable

BUDGET = 256  # UDP packets read from one socket before the others get their turn
FAST_ENTRIES = 4096  # kept bodies per listener (random-case queries cannot grow it more)
ROTATIONS = 64  # kept bodies for one name with many addresses
IDLE = 10.0  # seconds a TCP connection may stay without a query
TCP_PER_LISTENER = 64
OUT_LIMIT = 1 << 20  # bytes of answers a TCP client may leave unread


class _Listener:
    __slots__ = ("sandbox_id", "udp", "tcp", "fast", "conns")

    def __init__(self, sandbox_id: str, udp: socket.socket, tcp: socket.socket | None
                 ) -> None:
        self.sandbox_id, self.udp, self.tcp = sandbox_id, udp, tcp
        self.fast: dict[bytes, Any] = {}  # query bytes after the ID -> cycle of bodies
        self.conns: set[_Conn] = set()


class _Conn:
    __slots__ = ("sock", "listener", "inbuf", "out", "last", "waiting", "eof", "closed")

    def __init__(self, sock: socket.socket, listener: _Listener) -> None:
        self.sock, self.listener = sock, listener
        self.inbuf = b""
        self.out = b""
        self.last = time.monotonic()
        self.waiting = 0  # its queries being forwarded
        self.eof = self.closed = False


class Server:
    def __init__(self, table: NameTable, host_servers: HostServers,
                 timeout: float | None = None, idle: float = IDLE) -> None:
        self.table, self.host_servers, self.idle = table, host_servers, idle
        self.loop = Loop()
        self.forwarder = (Forwarder(self.loop, host_servers) if timeout is None
                          else Forwarder(self.loop, host_servers, timeout=timeout))
        self._listeners: dict[str, _Listener] = {}
        self._generation = table.generation
        self._counts = {"queries": 0, "answered": 0, "fast_hits": 0, "local": 0,
                        "dropped": 0, "formerr": 0, "errors": 0,
                        "tcp_queries": 0}
        self._sweeping = False
        # UDP many datagrams per system call where the C library has recvmmsg
        # (SHOAL_DNS_BATCH=0: one recvfrom and one sendto per query, as before)
        self._batch = (Batch() if batching.available()
                       and os.environ.get("SHOAL_DNS_BATCH", "1") != "0" else None)

    # -- the resolver's side -------------------------------------------------------------

    def add_listener(self, sandbox_id: str, udp: socket.socket,
                     tcp: socket.socket | None) -> None:
        old = self._listeners.get(sandbox_id)
        if old is not None and old.udp is udp and old.tcp is tcp:
            return
        self.remove_listener(sandbox_id)
        listener = _Listener(sandbox_id, udp, tcp)
        self._listeners[sandbox_id] = listener
        self.loop.add_reader(udp.fileno(), lambda: self._udp_ready(listener))
        if tcp is not None:
            self.loop.add_reader(tcp.fileno(), lambda: self._accept(listener))

    def remove_listener(self, sandbox_id: str) -> None:
        """Close a sandbox's sockets (they keep its namespace alive) and forget its
        connections and the queries it has being forwarded."""
        listener = self._listeners.pop(sandbox_id, None)
        if listener is None:
            return
        for conn in list(listener.conns):
            self._close(conn)
        self.forwarder.cancel(sandbox_id)
        for sock in (listener.udp, listener.tcp):
            if sock is not None:
                self.loop.remove(sock.fileno())
                sock.close()
        listener.fast.clear()

    def listeners(self) -> list[str]:
        return list(self._listeners)

    def changed(self) -> None:
        """The table changed: drop every kept answer."""
        self._generation = self.table.generation
        for listener in self._listeners.values():
            listener.fast.clear()

    def add_reader(self, sock: socket.socket, callback: Any) -> None:
        self.loop.add_reader(sock.fileno(), callback)

    def remove_reader(self, sock: socket.socket) -> None:
        self.loop.remove(sock.fileno())

    def run(self) -> None:
        if not self._sweeping:
            self._sweeping = True
            self.loop.call_later(1.0, self._sweep)
        self.loop.run()

    def stop(self) -> None:
        self.loop.stop()

    def stats(self) -> dict[str, int]:
        out = dict(self._counts)
        out.update(self.forwarder.stats)
        out["errors"] += self.loop.errors
        out["listeners"] = len(self._listeners)
        out["tcp_connections"] = sum(len(ln.conns) for ln in self._listeners.values())
        out["pending"] = self.forwarder.pending()
        out["cached"] = self.forwarder.cached()
        return out

    # -- UDP -----------------------------------------------------------------------------

    def _udp_ready(self, listener: _Listener) -> None:
        if self.table.generation != self._generation:
            self.changed()  # the table was changed and changed() not called: now
        if self._batch is not None:
            self._udp_batch(listener, self._batch)
            return
        sock = listener.udp
        recv, send, fast = sock.recvfrom, sock.sendto, listener.fast
        n = hits = sent = 0
        try:
            for _ in range(BUDGET):
                try:
                    data, addr = recv(4096)
                except (BlockingIOError, InterruptedError):
                    break
                n += 1
                try:
                    reply = data[:2] + next(fast[data[2:]])
                    hits += 1
                except KeyError:
                    reply = self._udp_slow(listener, data, addr)
                    if reply is None:
                        continue
                try:
                    send(reply, addr)
                    sent += 1
                except OSError:
                    self._counts["dropped"] += 1
        finally:
            counts = self._counts
            counts["queries"] += n
            counts["fast_hits"] += hits
            counts["answered"] += sent

    def _udp_batch(self, listener: _Listener, batch: Batch) -> None:
        """_udp_ready's loop, COUNT datagrams per system call (dns/batch.py)."""
        fd, fast, slow = listener.udp.fileno(), listener.fast, self._udp_slow
        n = hits = sent = dropped = 0
        try:
            for _ in range(BUDGET // batch.count):
                got = batch.receive(fd)
                if not got:
                    break
                n += got
                for i in range(got):
                    data = batch.message(i)
                    try:
                        reply = data[:2] + next(fast[data[2:]])
                        hits += 1
                    except KeyError:
                        reply = slow(listener, data, batch.sender(i))
                        if reply is None:
                            continue
                    if not batch.reply(i, reply):
                        try:
                            listener.udp.sendto(reply, batch.sender(i))
                            sent += 1
                        except OSError:
                            dropped += 1
                done, lost = batch.send(fd)
                sent, dropped = sent + done, dropped + lost
                if got < batch.count:
                    break
        finally:
            counts = self._counts
            counts["queries"] += n
            counts["fast_hits"] += hits
            counts["answered"] += sent
            counts["dropped"] += dropped

    def _udp_slow(self, listener: _Listener, data: bytes, addr: Any) -> bytes | None:
        try:
            q = self._parse(data)
            if q is None:
                return None
            if isinstance(q, bytes):
                return q
            bodies = self._local(listener.sandbox_id, q, tcp=False)
            if bodies is not None:
                turns = cycle(bodies)
                if len(listener.fast) >= FAST_ENTRIES:
                    listener.fast.clear()
                listener.fast[data[2:]] = turns
                return q.ident + next(turns)
            sock = listener.udp

            def reply(answer: bytes) -> None:
                try:
                    sock.sendto(answer, addr)
                    self._counts["answered"] += 1
                except OSError:
                    self._counts["dropped"] += 1

            self._forward(listener, q, reply, tcp=False)
        except Exception:  # one packet must not stop the loop, nor the packets after it
            self._counts["errors"] += 1
        return None

    def _parse(self, data: bytes) -> wire.Query | bytes | None:
        """The query; or the FORMERR for it; or None (dropped)."""
        try:
            return wire.parse_query(data)
        except wire.Malformed:
            self._counts["dropped"] += 1
            return None
        except wire.FormError as e:
            self._counts["formerr"] += 1
            return e.ident + wire.error_body(e)

    # -- answers -------------------------------------------------------------------------

    def _local(self, sandbox_id: str, q: wire.Query, tcp: bool) -> list[bytes] | None:
        bodies = local_answer(self.table, sandbox_id, q, tcp)
        if bodies is not None:
            self._counts["local"] += 1
        return bodies

    def _forward(self, listener: _Listener, q: wire.Query, reply: Any, tcp: bool) -> None:
        view = self.table.view(listener.sandbox_id)
        assert view is not None  # (_local answered REFUSED otherwise)
        generation = self._generation

        def answered(data: bytes) -> None:
            if self.table.generation != generation:  # changed while it was away
                bodies = self._local(listener.sandbox_id, q, tcp)
                if bodies is not None:
                    data = q.ident + bodies[0]
            reply(data)

        self.forwarder.resolve(q, view.upstreams, answered, tcp, listener.sandbox_id)

    # -- TCP -----------------------------------------------------------------------------

    def _accept(self, listener: _Listener) -> None:
        assert listener.tcp is not None
        for _ in range(64):
            try:
                sock, _addr = listener.tcp.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ECONNABORTED, EMFILE...
                self._counts["dropped"] += 1
                return
            if len(listener.conns) >= TCP_PER_LISTENER:
                self._oldest(listener)
            sock.setblocking(False)
            conn = _Conn(sock, listener)
            listener.conns.add(conn)
            self.loop.add_reader(sock.fileno(), lambda c=conn: self._readable(c))

    def _oldest(self, listener: _Listener) -> None:
        self._close(min(listener.conns, key=lambda c: c.last))

    def _readable(self, conn: _Conn) -> None:
        try:
            chunk = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not chunk:
            conn.eof = True
            self.loop.remove(conn.sock.fileno())
            if conn.out:
                self.loop.set_writer(conn.sock.fileno(), lambda: self._writable(conn))
            self._close_if_done(conn)
            return
        conn.last = time.monotonic()
        conn.inbuf += chunk
        while len(conn.inbuf) >= 2 and not conn.closed:
            length = struct.unpack_from(">H", conn.inbuf)[0]
            if len(conn.inbuf) < 2 + length:
                break
            data, conn.inbuf = conn.inbuf[2:2 + length], conn.inbuf[2 + length:]
            self._tcp_query(conn, data)

    def _tcp_query(self, conn: _Conn, data: bytes) -> None:
        self._counts["queries"] += 1
        self._counts["tcp_queries"] += 1
        try:
            q = self._parse(data)
            if q is None:
                self._close(conn)  # not DNS: the stream cannot be trusted further
                return
            if isinstance(q, bytes):
                self._send(conn, q)
                return
            bodies = self._local(conn.listener.sandbox_id, q, tcp=True)
            if bodies is not None:
                self._send(conn, q.ident + bodies[0])
                return
            conn.waiting += 1

            def reply(answer: bytes) -> None:
                conn.waiting -= 1
                self._send(conn, answer)
                self._close_if_done(conn)

            self._forward(conn.listener, q, reply, tcp=True)
        except Exception:
            self._counts["errors"] += 1
            self._close(conn)

    def _send(self, conn: _Conn, answer: bytes) -> None:
        if conn.closed:
            return
        self._counts["answered"] += 1
        conn.out += struct.pack(">H", len(answer)) + answer
        if len(conn.out) > OUT_LIMIT:
            self._close(conn)
            return
        self._writable(conn)

    def _writable(self, conn: _Conn) -> None:
        if conn.closed:
            return
        try:
            sent = conn.sock.send(conn.out) if conn.out else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        fd = conn.sock.fileno()
        self.loop.set_writer(fd, (lambda: self._writable(conn)) if conn.out else None)
        if not conn.out:
            self._close_if_done(conn)

    def _close_if_done(self, conn: _Conn) -> None:
        if conn.eof and not conn.out and not conn.waiting:
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        conn.listener.conns.discard(conn)
        self.loop.remove(conn.sock.fileno())
        conn.sock.close()

    def _sweep(self) -> None:
        """Every second: close the TCP connections idle for self.idle seconds."""
        self.loop.call_later(1.0, self._sweep)
        limit = time.monotonic() - self.idle
        for listener in self._listeners.values():
            for conn in [c for c in listener.conns if c.last < limit and not c.waiting]:
                self._close(conn)


def local_answer(table: NameTable, sandbox_id: str, q: wire.Query, tcp: bool = False
                 ) -> list[bytes] | None:
    """The resolver's own answer to a sandbox's query: bodies (without the ID), one per
    rotation of the addresses; None if the query is to be forwarded. Pure."""
    view = table.view(sandbox_id)
    if view is None:
        return [wire.respond(q, wire.REFUSED, aa=False, tcp=tcp)]
    if q.version > 0:
        return [wire.respond(q, wire.BADVERS, aa=False, tcp=tcp)]
    if q.flags & 0x7800:
        return [wire.respond(q, wire.NOTIMP, aa=False, tcp=tcp)]
    if q.qclass in (wire.CLASS_IN, wire.TYPE_ANY):
        addresses = table.lookup(sandbox_id, q.name)
        if addresses is not None:
            if q.qtype == wire.TYPE_ANY:
                wanted = addresses
            elif q.qtype in (wire.TYPE_A, wire.TYPE_AAAA):
                wanted = [ip for ip in addresses if (":" in ip) == (q.qtype == wire.TYPE_AAAA)]
            else:
                wanted = []
            if not wanted:
                return [wire.respond(q, tcp=tcp)]  # NODATA: the name has no such record
            return [wire.respond(q, records=[wire.address_record(ip) for ip in
                                             wanted[i:] + wanted[:i]], tcp=tcp)
                    for i in range(min(len(wanted), ROTATIONS))]
        if q.qtype in (wire.TYPE_PTR, wire.TYPE_ANY):
            ip = wire.reverse_ipv4(q.name)
            name = table.reverse(sandbox_id, ip) if ip is not None else None
            if name is not None:
                return [wire.respond(q, records=[wire.ptr_record(name)], tcp=tcp)]
    if not view.forward:
        # a container only on --internal networks: nothing leaves, and it is told so
        return [wire.respond(q, wire.REFUSED, aa=False, tcp=tcp)]
    return None
