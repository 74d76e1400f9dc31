"""Where the resolver sends the queries for names it does not own: the host's servers (its
resolv.conf, re-read when it changes) or a container's --dns servers, from the host's
namespace, with a cache of their answers.

Each attempt is a new connected UDP socket (so a fresh random source port) with a random
ID; an upstream that refuses (ICMP unreachable: ECONNREFUSED on the connected socket) or
says nothing for TIMEOUT seconds is skipped for the next at once, and marked down for
DOWN_FOR seconds (tried last). A truncated answer, or a query that came over TCP, goes
over TCP. When every upstream failed, the client gets SERVFAIL.

The cache is keyed by (lowercased name, type, class, DO, CD, upstreams) and keeps an answer
for the least TTL of its records (a negative one for its SOA's minimum), at most CACHE_CAP
seconds; a hit is the kept bytes with the client's ID and question and the TTLs lowered by
the seconds it was kept (wire.Answer.reply)."""

from __future__ import annotations

import errno
import ipaddress
import os
import resource
import socket
import struct
import time
from collections.abc import Callable

from . import wire
from .loop import Loop, Timer

TIMEOUT = 0.8  # seconds an upstream has to answer over UDP (twice that over TCP)
DOWN_FOR = 30.0  # how long a failed upstream is tried last
CACHE_CAP = 300  # the longest an answer is kept
CACHE_ENTRIES = 10000
MAX_PENDING = 4096  # queries being forwarded at once; beyond that: SERVFAIL

Upstream = tuple[str, int]
Reply = Callable[[bytes], None]


def parse_server(spec: str) -> Upstream | None:
    """'IP', 'IP:PORT', '[IPv6]:PORT' or 'IPv6' as (ip, port); None if it is not one."""
    host, port = spec.strip(), 53
    if host.startswith("["):
        host, bracket, rest = host[1:].partition("]")
        if not bracket:
            return None
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None
            port = int(rest[1:])
    elif host.count(":") == 1:
        host, _, text = host.partition(":")
        if not text.isdigit():
            return None
        port = int(text)
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if not 0 < port < 65536:
        return None
    return (host if "%" in host else str(ip)), port


class HostServers:
    """The host's nameservers from its resolv.conf (loopback ones too: the resolver runs in
    the host's namespace and reaches them), read again when the file changes (checked with
    one stat per call). A missing or unreadable file: no servers."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._signature: tuple[int, int, int] | None = None
        self._servers: list[Upstream] = []

    def set_path(self, path: str) -> None:
        if path != self.path:
            self.path, self._signature = path, None

    def servers(self) -> list[Upstream]:
        try:
            st = os.stat(self.path)
        except OSError:
            self._signature, self._servers = None, []
            return []
        signature = (st.st_mtime_ns, st.st_ino, st.st_size)
        if signature != self._signature:
            self._signature = signature
            try:
                with open(self.path, encoding="utf-8", errors="replace") as f:
                    text = f.read(1 << 20)
            except OSError:
                text = ""
            self._servers = read_resolv_conf(text)
        return list(self._servers)


def read_resolv_conf(text: str) -> list[Upstream]:
    out: list[Upstream] = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            server = parse_server(words[1])
            if server is not None and server not in out:
                out.append(server)
    return out


class _NoSocket(Exception):  # noqa: N818
    pass


class _Pending:
    """A client's query being forwarded."""

    __slots__ = ("query", "reply", "tcp", "owner", "key", "order", "next", "attempt",
                 "done")

    def __init__(self, query: wire.Query, reply: Reply, tcp: bool, owner: str,
                 key: tuple[object, ...], order: list[Upstream]) -> None:
        self.query, self.reply, self.tcp, self.owner, self.key = query, reply, tcp, owner, key
        self.order, self.next = order, 0
        self.attempt: _Attempt | None = None
        self.done = False


class _Attempt:
    """One query sent to one upstream, over UDP or TCP."""

    __slots__ = ("server", "sock", "sent", "timer", "tcp", "out", "inbuf")

    def __init__(self, server: Upstream, sock: socket.socket, sent: bytes, tcp: bool) -> None:
        self.server, self.sock, self.sent, self.tcp = server, sock, sent, tcp
        self.timer: Timer | None = None
        self.out = b""
        self.inbuf = b""


class Forwarder:
    def __init__(self, loop: Loop, host_servers: HostServers, timeout: float = TIMEOUT,
                 down_for: float = DOWN_FOR) -> None:
        self.loop, self.host_servers = loop, host_servers
        self.timeout, self.down_for = timeout, down_for
        self._cache: dict[tuple[object, ...], tuple[wire.Answer, float, float]] = {}
        self._down: dict[Upstream, float] = {}  # upstream -> until when it is tried last
        self._pending: set[_Pending] = set()
        # each query being forwarded holds a descriptor: stay well below the process's limit
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.max_pending = MAX_PENDING if soft < 0 else max(16, min(MAX_PENDING,
                                                                   soft // 2 - 64))
        self.stats = {"forwarded": 0, "cache_hits": 0, "upstream_failures": 0,
                      "servfail": 0}

    # -- the server's side ---------------------------------------------------------------

    def servers_for(self, upstreams: list[str]) -> list[Upstream]:
        if upstreams:
            return [s for s in (parse_server(u) for u in upstreams) if s is not None]
        return self.host_servers.servers()

    def resolve(self, q: wire.Query, upstreams: list[str], reply: Reply, tcp: bool,
                owner: str) -> None:
        """Answer q (through reply, with the client's ID) from the cache or an upstream."""
        servers = self.servers_for(upstreams)
        if not servers or len(self._pending) >= self.max_pending:
            self._servfail(q, reply, tcp)
            return
        key = (q.name, q.qtype, q.qclass, q.do, bool(q.flags & wire.CD), tuple(servers))
        now = time.monotonic()
        kept = self._cache.get(key)
        if kept is not None:
            answer, stored, expires = kept
            if now < expires:
                self.stats["cache_hits"] += 1
                reply(answer.reply(q, int(now - stored), tcp))
                return
            del self._cache[key]
        self.stats["forwarded"] += 1
        order = sorted(servers, key=lambda s: self._down.get(s, 0.0) > now)
        pending = _Pending(q, reply, tcp, owner, key, order)
        self._pending.add(pending)
        self._next(pending)

    def cancel(self, owner: str) -> None:
        """Forget the queries of a sandbox (its listener is gone)."""
        for pending in [p for p in self._pending if p.owner == owner]:
            self._end(pending)

    def clear(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        for pending in list(self._pending):
            self._end(pending)

    def pending(self) -> int:
        return len(self._pending)

    def cached(self) -> int:
        return len(self._cache)

    # -- attempts ------------------------------------------------------------------------

    def _next(self, p: _Pending, tcp: bool | None = None, again: Upstream | None = None
              ) -> None:
        """Send p to its next upstream (or to `again`, over TCP after a truncated answer);
        SERVFAIL when none is left."""
        self._drop_attempt(p)
        while again is not None or p.next < len(p.order):
            if again is not None:
                server, again = again, None
            else:
                server = p.order[p.next]
                p.next += 1
            use_tcp = p.tcp if tcp is None else tcp
            try:
                self._start(p, server, use_tcp)
                return
            except _NoSocket:
                break  # out of descriptors: not the upstream's fault
            except OSError:
                self._failed(server)
        self._servfail(p.query, p.reply, p.tcp)
        self._end(p)

    def _start(self, p: _Pending, server: Upstream, tcp: bool) -> None:
        family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
        kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
        try:
            sock = socket.socket(family, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        except OSError as e:
            raise _NoSocket(str(e)) from None
        try:
            sent = wire.upstream_query(p.query, int.from_bytes(os.urandom(2), "big"))
            attempt = _Attempt(server, sock, sent, tcp)
            fd = sock.fileno()
            if tcp:
                attempt.out = struct.pack(">H", len(sent)) + sent
                code = sock.connect_ex(server)
                if code not in (0, errno.EINPROGRESS):
                    raise OSError(code, os.strerror(code))
                self.loop.set_writer(fd, lambda: self._tcp_writable(p, attempt))
                self.loop.add_reader(fd, lambda: self._tcp_readable(p, attempt))
            else:
                sock.connect(server)
                sock.send(sent)
                self.loop.add_reader(fd, lambda: self._udp_readable(p, attempt))
        except BaseException:
            self.loop.remove(sock.fileno())
            sock.close()
            raise
        p.attempt = attempt
        attempt.timer = self.loop.call_later(self.timeout * (2 if tcp else 1),
                                             lambda: self._timed_out(p, attempt))

    def _udp_readable(self, p: _Pending, a: _Attempt) -> None:
        for _ in range(16):
            if p.attempt is not a:
                return
            try:
                data = a.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ECONNREFUSED: nothing listens there
                self._failed(a.server)
                self._next(p)
                return
            try:
                wire.check_answer(data, a.sent)
            except ValueError:
                continue  # not the answer (a late or forged one): wait for it
            if wire.truncated(data):
                self._next(p, tcp=True, again=a.server)
            else:
                self._answered(p, a, data)
            return

    def _tcp_writable(self, p: _Pending, a: _Attempt) -> None:
        if p.attempt is not a:
            return
        try:
            code = a.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
            sent = a.sock.send(a.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._failed(a.server)
            self._next(p)
            return
        a.out = a.out[sent:]
        if not a.out:
            self.loop.set_writer(a.sock.fileno(), None)

    def _tcp_readable(self, p: _Pending, a: _Attempt) -> None:
        if p.attempt is not a:
            return
        try:
            chunk = a.sock.recv(65537)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._failed(a.server)
            self._next(p)
            return
        a.inbuf += chunk
        if len(a.inbuf) < 2:
            return
        length = struct.unpack_from(">H", a.inbuf)[0]
        if len(a.inbuf) < 2 + length:
            return
        data = a.inbuf[2:2 + length]
        try:
            wire.check_answer(data, a.sent)
        except ValueError:
            self._failed(a.server)
            self._next(p)
            return
        self._answered(p, a, data)

    def _timed_out(self, p: _Pending, a: _Attempt) -> None:
        if p.attempt is a and not p.done:
            self._failed(a.server)
            self._next(p)

    def _answered(self, p: _Pending, a: _Attempt, data: bytes) -> None:
        try:
            answer = wire.keep(data, CACHE_CAP)
        except ValueError:
            self._failed(a.server)
            self._next(p)
            return
        if answer.rcode == wire.REFUSED and p.next < len(p.order):
            self._next(p)  # this one will not answer it; another may
            return
        self._down.pop(a.server, None)
        if answer.ttl > 0:
            if len(self._cache) >= CACHE_ENTRIES:
                self._trim()
            now = time.monotonic()
            self._cache[p.key] = (answer, now, now + answer.ttl)
        self._end(p)
        p.reply(answer.reply(p.query, 0, p.tcp))

    # -- bookkeeping ---------------------------------------------------------------------

    def _failed(self, server: Upstream) -> None:
        self.stats["upstream_failures"] += 1
        self._down[server] = time.monotonic() + self.down_for

    def _servfail(self, q: wire.Query, reply: Reply, tcp: bool) -> None:
        self.stats["servfail"] += 1
        reply(q.ident + wire.respond(q, wire.SERVFAIL, aa=False, tcp=tcp))

    def _drop_attempt(self, p: _Pending) -> None:
        a, p.attempt = p.attempt, None
        if a is not None:
            if a.timer is not None:
                a.timer.cancel()
            self.loop.remove(a.sock.fileno())
            a.sock.close()

    def _end(self, p: _Pending) -> None:
        self._drop_attempt(p)
        p.done = True
        self._pending.discard(p)

    def _trim(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_a, _s, expires) in self._cache.items() if expires <= now]:
            del self._cache[key]
        while len(self._cache) >= CACHE_ENTRIES:
            del self._cache[next(iter(self._cache))]
