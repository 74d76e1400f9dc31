"""The embedded resolver's server for real: a Server in the test's host namespace, asked
with dig and dnspython, forwarding to small DNS servers in the outside namespace (standing
in for the internet: 198.51.100.1, and 198.51.100.3 added by the test)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import OUTSIDE_ADDR, SRC, Host

OTHER_UPSTREAM = "198.51.100.3"

# A DNS server for the outside namespace: example.test is ANSWER (TTL 60), big.test has
# 100 addresses (truncated over UDP), other names are NXDOMAIN (SOA minimum 30). It prints
# "udp NAME" or "tcp NAME" for each query.
UPSTREAM = r"""
import socket, sys, threading
import dns.message, dns.rcode, dns.rrset, dns.exception
addr, answer = sys.argv[1], sys.argv[2]
def respond(data, limit):
    q = dns.message.from_wire(data)
    r = dns.message.make_response(q)
    name = q.question[0].name
    text = name.to_text().lower()
    if text == "example.test.":
        r.answer.append(dns.rrset.from_text(name, 60, "IN", "A", answer))
    elif text == "big.test.":
        r.answer.append(dns.rrset.from_text(name, 60, "IN", "A",
                                            *[f"192.0.2.{i}" for i in range(1, 101)]))
    else:
        r.set_rcode(dns.rcode.NXDOMAIN)
        r.authority.append(dns.rrset.from_text("test.", 600, "IN", "SOA",
                                               "ns.test. admin.test. 1 2 3 4 30"))
    try:
        return r.to_wire(max_size=limit)
    except dns.exception.TooBig:
        r.answer = []
        r.flags |= dns.flags.TC
        return r.to_wire()
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 53)); s.listen(16)
    while True:
        c, _ = s.accept()
        data = c.recv(2); n = int.from_bytes(data, "big")
        q = b""
        while len(q) < n:
            q += c.recv(n - len(q))
        print("tcp", dns.message.from_wire(q).question[0].name, flush=True)
        out = respond(q, 65535); c.sendall(len(out).to_bytes(2, "big") + out); c.close()
threading.Thread(target=tcp, daemon=True).start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((addr, 53))
print("ready", flush=True)
while True:
    data, peer = u.recvfrom(4096)
    q = dns.message.from_wire(data)
    print("udp", q.question[0].name, flush=True)
    u.sendto(respond(data, max(512, q.payload if q.edns >= 0 else 512)), peer)
"""

# The server under test, in the host namespace: a table of a few containers, a listener
# (127.0.0.1, random ports) per asking sandbox, and a control socket: "remove ID",
# "put-late" (a new container named late), "stats".
SERVER = r"""
import json, os, socket, sys
from shoal.dns.table import Entry, NameTable, View
from shoal.dns.forward import HostServers
from shoal.dns.server import Server
ctl_path, resolv = sys.argv[1], sys.argv[2]
def v(sid, net, ip, names, forward=True, upstreams=()):
    return View(sandbox_id=sid, entries=[Entry(network_id=net, ip=ip, names=names, ptr=names[0])],
                networks=[net], forward=forward, upstreams=list(upstreams))
table = NameTable()
for view in (v("client", "n1", "10.1.0.2", ["client"]),
             v("web1", "n1", "10.1.0.3", ["web1", "web"]),
             v("web2", "n1", "10.1.0.4", ["web2", "web"]),
             v("other", "n2", "10.2.0.5", ["other"]),
             v("inner", "n1", "10.1.0.9", ["inner"], forward=False),
             v("custom", "n1", "10.1.0.10", ["custom"],
               upstreams=["198.51.100.1:5999", "198.51.100.1"]),
             v("blackhole", "n1", "10.1.0.11", ["blackhole"],
               upstreams=["198.51.100.77", "198.51.100.1:53"])):
    table.put(view)
server = Server(table, HostServers(resolv), idle=1.0)
ports = {}
for sid in ("client", "inner", "custom", "blackhole"):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
    u.bind(("127.0.0.1", 0))
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    t.bind(("127.0.0.1", u.getsockname()[1])); t.listen(16)  # dig asks TCP on -p too
    server.add_listener(sid, u, t)
    ports[sid] = [u.getsockname()[1], t.getsockname()[1]]
ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
ctl.bind(ctl_path); ctl.listen(4)
def control():
    conn, _ = ctl.accept()
    conn.setblocking(True)
    words = conn.recv(1000).decode().split()
    if words[0] == "remove":
        server.remove_listener(words[1])
    elif words[0] == "put-late":
        table.put(v("late", "n1", "10.1.0.12", ["late", "example.test"]))
        server.changed()
    conn.sendall(json.dumps(server.stats()).encode())
    conn.close()
server.add_reader(ctl, control)
print(json.dumps(ports), flush=True)
server.run()
"""


class Resolver:
    def __init__(self, host: Host, ports: dict[str, list[int]], ctl: str) -> None:
        self.host, self.ports, self.ctl = host, ports, ctl

    def dig(self, sandbox: str, *args: str, timeout: float = 2) -> subprocess.CompletedProcess[str]:
        return self.host.in_ns(self.host.ns, "dig", "@127.0.0.1", "-p",
                               str(self.ports[sandbox][0]), "+tries=1",
                               f"+time={int(timeout)}", *args)

    def short(self, sandbox: str, *args: str) -> list[str]:
        return self.dig(sandbox, "+short", *args).stdout.split()

    def control(self, line: str) -> dict[str, int]:
        code = ("import socket, sys; s = socket.socket(socket.AF_UNIX); "
                f"s.connect({self.ctl!r}); s.sendall({line!r}.encode()); "
                "print(s.recv(100000).decode())")
        return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                         text=True, check=True, timeout=10).stdout)

    def ask(self, sandbox: str, code: str) -> str:
        """Run dnspython code in the host namespace with PORT, TCP_PORT and dns imported."""
        prelude = ("import dns.message, dns.query, dns.flags, dns.rcode, sys\n"
                   f"PORT, TCP_PORT = {self.ports[sandbox][0]}, {self.ports[sandbox][1]}\n")
        return self.host.python(prelude + code).stdout


def start(host: Host, procs: list[subprocess.Popen[str]], *cmd: str) -> str:
    proc = host.background(*cmd)
    procs.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        why = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"{cmd[1:]} did not start: {why}")
    return line


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()  # by its PID
    proc.wait(timeout=10)


@pytest.fixture
def resolver(host: Host) -> Iterator[tuple[Resolver, list[subprocess.Popen[str]]]]:
    procs: list[subprocess.Popen[str]] = []
    try:
        host.ip("addr", "add", f"{OTHER_UPSTREAM}/24", "dev", "uplink", ns=host.outside)
        upstream = str(host.base / "upstream.py")
        Path(upstream).write_text(UPSTREAM)
        start(host, procs, host.outside, sys.executable, upstream, OUTSIDE_ADDR, "192.0.2.7")
        start(host, procs, host.outside, sys.executable, upstream, OTHER_UPSTREAM,
              "192.0.2.8")
        script = str(host.base / "server.py")
        Path(script).write_text(SERVER)
        ctl = str(host.base / "ctl.sock")
        ports = json.loads(start(host, procs, host.ns, "env", f"PYTHONPATH={SRC}",
                                 sys.executable, script, ctl, host.resolv_conf))
        yield Resolver(host, ports, ctl), procs
    finally:
        for proc in procs:
            stop(proc)


def test_own_names_are_answered_on_the_askers_networks(resolver: tuple[Resolver, list]) -> None:
    r, _ = resolver
    assert r.short("client", "web1") == ["10.1.0.3"]
    assert r.short("client", "WEB1.") == ["10.1.0.3"]
    first, second = r.short("client", "web"), r.short("client", "web")
    assert sorted(first) == ["10.1.0.3", "10.1.0.4"] and second == first[::-1]  # in turn
    out = r.dig("client", "web1", "+noall", "+answer", "+comments").stdout
    assert "flags: qr aa rd ra" in out and "status: NOERROR" in out
    answer = [line.split() for line in out.splitlines() if line and line[0] != ";"]
    assert answer == [["web1.", "0", "IN", "A", "10.1.0.3"]]
    aaaa = r.dig("client", "web1", "AAAA").stdout
    assert "status: NOERROR" in aaaa and "ANSWER: 0" in aaaa
    assert r.short("client", "-x", "10.1.0.3") == ["web1."]
    other = r.dig("client", "other").stdout  # only on n2: forwarded, and not known there
    assert "status: NXDOMAIN" in other
    inner = r.dig("inner", "example.test").stdout  # --internal only: nothing leaves
    assert "status: REFUSED" in inner
    assert r.short("inner", "web1") == ["10.1.0.3"]


def test_the_question_comes_back_in_the_clients_case(resolver: tuple[Resolver, list]) -> None:
    r, _ = resolver
    out = r.ask("client", """
for name in ("wEb1.", "WeB1.", "wEb1."):
    a = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=PORT, timeout=2)
    print(a.question[0].name, a.answer[0].ttl, a.flags & dns.flags.AA != 0)
""")
    assert out.split("\n")[:3] == ["wEb1. 0 True", "WeB1. 0 True", "wEb1. 0 True"]


def test_forwarded_answers_are_cached_with_lower_ttls(resolver: tuple[Resolver, list]) -> None:
    r, procs = resolver
    first = r.dig("client", "example.test", "+noall", "+answer").stdout.split()
    assert first[-1] == "192.0.2.7" and first[1] == "60"
    stop(procs[0])  # the upstream is gone: the cache answers
    time.sleep(1.2)
    started = time.monotonic()
    second = r.dig("client", "EXAMPLE.test", "+noall", "+answer").stdout.split()
    assert second[0] == "EXAMPLE.test." and second[-1] == "192.0.2.7"
    assert 55 <= int(second[1]) < 60
    assert time.monotonic() - started < 1.5
    stats = r.control("stats")
    assert stats["cache_hits"] >= 1 and stats["forwarded"] == 1
    # a name not cached now fails: SERVFAIL, after the dead upstream's timeout
    assert "status: SERVFAIL" in r.dig("client", "fresh.test", timeout=4).stdout


def test_negative_answers_are_forwarded_and_kept(resolver: tuple[Resolver, list]) -> None:
    r, procs = resolver
    assert "status: NXDOMAIN" in r.dig("client", "nothing.test").stdout
    stop(procs[0])
    assert "status: NXDOMAIN" in r.dig("client", "nothing.test").stdout


def test_a_dead_upstream_is_skipped(resolver: tuple[Resolver, list]) -> None:
    r, _ = resolver
    started = time.monotonic()
    assert r.short("custom", "example.test") == ["192.0.2.7"]  # first one refuses: ICMP
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    assert r.short("blackhole", "example.test", "+time=3") == ["192.0.2.7"]  # says nothing
    assert time.monotonic() - started < 2.0
    # then it is marked down and tried last: the next name is answered at once
    started = time.monotonic()
    assert "status: NXDOMAIN" in r.dig("blackhole", "nothing.test").stdout
    assert time.monotonic() - started < 0.7


def test_tcp_queries_and_truncated_answers(resolver: tuple[Resolver, list]) -> None:
    r, procs = resolver
    assert r.short("client", "+tcp", "web2") == ["10.1.0.4"]
    assert r.short("client", "+tcp", "example.test") == ["192.0.2.7"]
    out = r.ask("client", """
import socket
s = socket.create_connection(("127.0.0.1", TCP_PORT), timeout=3)
for name in ("web1.", "web2.", "client."):   # several queries on one connection
    dns.query.send_tcp(s, dns.message.make_query(name, "A"))
    a, _ = dns.query.receive_tcp(s)
    print(a.answer[0][0])
""")
    assert out.split() == ["10.1.0.3", "10.1.0.4", "10.1.0.2"]
    # 100 addresses: the upstream truncates over UDP, the resolver asks it over TCP; dig
    # gets TC over UDP and asks again over TCP
    big = r.short("client", "big.test")
    assert len(big) == 100 and "192.0.2.100" in big
    plain = r.ask("client", """
a = dns.query.udp(dns.message.make_query("big.test", "A"), "127.0.0.1", port=PORT, timeout=2,
                  ignore_trailing=True)
print(bool(a.flags & dns.flags.TC), len(a.answer))
""")
    assert plain.split() == ["True", "0"]
    procs[0].kill()
    upstream_log = procs[0].stdout.read() if procs[0].stdout else ""
    assert "tcp big.test." in upstream_log
    assert "tcp example.test." in upstream_log  # asked over TCP: forwarded over TCP


def test_idle_and_silent_tcp_clients_are_let_go(resolver: tuple[Resolver, list]) -> None:
    r, _ = resolver
    out = r.ask("client", """
import socket, time
silent = socket.create_connection(("127.0.0.1", TCP_PORT), timeout=5)
half = socket.create_connection(("127.0.0.1", TCP_PORT), timeout=5)
half.sendall(b"\\x00\\x30\\x12")  # a length, and not the query: the server waits, not blocks
a = dns.query.tcp(dns.message.make_query("web1", "A"), "127.0.0.1", port=TCP_PORT, timeout=2)
print(a.answer[0][0])
started = time.monotonic()
print(silent.recv(10) == b"", half.recv(10) == b"", round(time.monotonic() - started))
""")
    address, closed_silent, closed_half, waited = out.split()
    assert address == "10.1.0.3" and closed_silent == closed_half == "True"
    assert int(waited) <= 3  # closed after the idle time (1 s here), not at the 5 s timeout


def test_a_changed_resolv_conf_is_followed(resolver: tuple[Resolver, list]) -> None:
    r, _ = resolver
    assert r.short("client", "example.test") == ["192.0.2.7"]
    Path(r.host.resolv_conf).write_text(f"# changed\nnameserver {OTHER_UPSTREAM}\n")
    assert r.short("client", "example.test") == ["192.0.2.8"]


def test_a_table_change_is_seen_at_once(resolver: tuple[Resolver, list]) -> None:
    r, _ = resolver
    assert "status: NXDOMAIN" in r.dig("client", "late").stdout
    assert r.short("client", "example.test") == ["192.0.2.7"]
    r.control("put-late")  # a container named late, with the alias example.test
    assert r.short("client", "late") == ["10.1.0.12"]
    assert r.short("client", "example.test") == ["10.1.0.12"]  # the table before the cache


def test_remove_listener_closes_its_sockets(resolver: tuple[Resolver, list]) -> None:
    r, _ = resolver
    udp, tcp = r.ports["inner"]
    assert r.short("inner", "web1") == ["10.1.0.3"]
    assert r.host.listening(r.host.ns, tcp)
    stats = r.control("remove inner")
    assert stats["listeners"] == 3
    assert not r.host.listening(r.host.ns, tcp)
    udp_bound = r.host.in_ns(r.host.ns, "ss", "-Hlun", f"sport = :{udp}").stdout
    assert udp_bound.strip() == ""
    assert "connection refused" in r.dig("inner", "web1").stdout.lower()
    assert r.short("client", "web1") == ["10.1.0.3"]  # the others go on


def test_garbage_does_not_stop_the_server(resolver: tuple[Resolver, list]) -> None:
    r, _ = resolver
    out = r.ask("client", """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
for junk in (b"", b"\\x01", b"\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x3fab",
             bytes(range(256)) * 3):
    s.sendto(junk, ("127.0.0.1", PORT))
try:
    while True:
        data = s.recv(4096)
        print("got", dns.rcode.to_text(dns.message.from_wire(data, question_only=True).rcode()))
except socket.timeout:
    pass
""")
    assert "got FORMERR" in out
    assert r.short("client", "web1") == ["10.1.0.3"]
    stats = r.control("stats")
    assert stats["errors"] == 0 and stats["dropped"] >= 2
