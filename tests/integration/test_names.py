"""Names: the embedded resolver at 127.0.0.11 in every container on a user-defined network.

The upstream DNS server is dnsmasq in the test's outside namespace (198.51.100.1), which the
harness's resolv.conf (SHOAL_RESOLV_CONF) names; it answers example.test and NXDOMAIN for
everything else, so a name the resolver does not own gets a quick, definite answer."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import OUTSIDE_ADDR, Host

pytestmark = pytest.mark.skipif(not shutil.which("dig") or not shutil.which("dnsmasq"),
                                reason="needs dig and dnsmasq (run: make test)")

UPSTREAM_ANSWER = "192.0.2.7"  # what dnsmasq answers for example.test


@pytest.fixture
def dns_host(host: Host) -> Iterator[Host]:
    """A host whose outside namespace runs a DNS server (the 'internet's' resolver)."""
    proc = start_dnsmasq(host, OUTSIDE_ADDR)
    UPSTREAMS[host.base] = proc
    try:
        yield host
    finally:
        UPSTREAMS.pop(host.base, None)
        proc.kill()
        proc.wait()


UPSTREAMS: dict[Path, subprocess.Popen[str]] = {}  # each dns_host's dnsmasq


def start_dnsmasq(host: Host, addr: str) -> subprocess.Popen[str]:
    proc = host.background(host.outside, "dnsmasq", "--no-daemon", "--no-resolv",
                           "--no-hosts", "--bind-interfaces", f"--listen-address={addr}",
                           "--except-interface=lo", f"--address=/example.test/{UPSTREAM_ANSWER}",
                           "--local-ttl=600", "--local=/#/", "--log-facility=-", "--user=root")
    host.wait_for(lambda: UPSTREAM_ANSWER in host.in_ns(
        host.outside, "dig", "+short", "+time=1", "+tries=1", f"@{addr}", "example.test"
    ).stdout or proc.poll() is not None, what="dnsmasq")
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else "dnsmasq died"
    return proc


def dig(host: Host, ctr: str, *args: str, server: str = "127.0.0.11") -> list[str]:
    res = host.in_container(ctr, "dig", "+short", "+time=2", "+tries=1", f"@{server}", *args,
                            check=False)
    return [line for line in res.stdout.splitlines() if line and not line.startswith(";")]


def dig_full(host: Host, ctr: str, *args: str) -> str:
    return host.in_container(ctr, "dig", "+time=2", "+tries=1", "@127.0.0.11", *args,
                             check=False).stdout


def run(host: Host, name: str, *opts: str, network: str = "app") -> str:
    return host.shoal("run", "-d", "--name", name, "--network", network, *opts, "--",
                      "sleep", "1000").stdout.strip()


def resolver_pid(host: Host) -> int | None:
    """The resolver's pid as the state records it (meta row "resolver": "PID START")."""
    db = sqlite3.connect(f"file:{host.root}/shoal.db?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key='resolver'").fetchone()
    finally:
        db.close()
    return int(row[0].split()[0]) if row and row[0] else None


# -- what containers resolve ------------------------------------------------------------------


def test_names_aliases_short_id_and_hostname(dns_host: Host) -> None:
    host = dns_host
    host.shoal("network", "create", "app")
    web = run(host, "web", "--network-alias", "www", "--hostname", "webhost")
    run(host, "client")
    ip = host.ip_of("web", "app")
    for name in ("web", "WEB", "www", "webhost", web[:12], "web."):
        assert dig(host, "client", name) == [ip], name
    # container names are answered with TTL 0: a restarted container's address is seen at once
    answer = dig_full(host, "client", "web")
    assert "status: NOERROR" in answer and "flags: qr aa rd ra" in answer
    line = next(x for x in answer.splitlines() if x.startswith("web.") and "\tA\t" in x)
    assert line.split()[1] == "0"
    # through the container's own resolv.conf, as any program resolves
    assert host.in_container("client", "getent", "hosts", "www").stdout.split()[0] == ip
    # an own name has no AAAA: NOERROR with no answer, not forwarded (no NXDOMAIN)
    aaaa = dig_full(host, "client", "web", "AAAA")
    assert "status: NOERROR" in aaaa and "ANSWER: 0" in aaaa


def test_shared_alias_rotates_and_ptr_names_the_container(dns_host: Host) -> None:
    host = dns_host
    host.shoal("network", "create", "app")
    run(host, "db1", "--network-alias", "db")
    run(host, "db2", "--network-alias", "db")
    run(host, "client")
    ips = {host.ip_of("db1", "app"), host.ip_of("db2", "app")}
    firsts = set()
    for _ in range(4):
        got = dig(host, "client", "db")
        assert set(got) == ips and len(got) == 2
        firsts.add(got[0])
    assert firsts == ips, "the answers do not rotate"
    ip1 = host.ip_of("db1", "app")
    assert dig(host, "client", "-x", ip1) == ["db1."]


def test_names_are_scoped_to_shared_networks(dns_host: Host) -> None:
    host = dns_host
    host.shoal("network", "create", "a")
    host.shoal("network", "create", "b")
    run(host, "on-a", network="a")
    run(host, "on-b", network="b")
    run(host, "on-both", network="a")
    host.shoal("network", "connect", "--alias", "bee", "b", "on-both")
    assert dig(host, "on-a", "on-b") == []  # not on a network on-a shares
    assert dig(host, "on-a", "on-both") == [host.ip_of("on-both", "a")]
    assert dig(host, "on-b", "on-both") == [host.ip_of("on-both", "b")]
    # the alias was given on b only
    assert dig(host, "on-b", "bee") == [host.ip_of("on-both", "b")]
    assert dig(host, "on-a", "bee") == []
    # on-both reaches on-b by name once connected, and not after disconnect
    assert dig(host, "on-both", "on-b") == [host.ip_of("on-b", "b")]
    host.shoal("network", "disconnect", "b", "on-both")
    assert dig(host, "on-both", "on-b") == []
    assert dig(host, "on-b", "bee") == []


def test_default_bridge_has_no_embedded_dns(dns_host: Host) -> None:
    host = dns_host
    run(host, "plain", network="bridge")
    run(host, "other", network="bridge")
    assert resolver_pid(host) is None, "the resolver started for the default bridge"
    res = host.in_container("plain", "dig", "+short", "+time=1", "+tries=1", "@127.0.0.11",
                            "other", check=False)
    assert host.ip_of("other", "bridge") not in res.stdout
    # its resolv.conf points at the host's servers, which answer the outside's names
    assert host.in_container("plain", "getent", "hosts", "example.test").stdout.split()[0] == \
        UPSTREAM_ANSWER


# -- forwarding -------------------------------------------------------------------------------


def test_forwarding_to_the_hosts_servers_and_dns(dns_host: Host) -> None:
    host = dns_host
    host.shoal("network", "create", "app")
    run(host, "client")
    assert dig(host, "client", "example.test") == [UPSTREAM_ANSWER]
    nx = dig_full(host, "client", "nothing.example.invalid")
    assert "status: NXDOMAIN" in nx
    # --dns: that server, not the host's (the host's file now names a dead one)
    Path(host.resolv_conf).write_text("nameserver 198.51.100.9\n")
    run(host, "own", "--dns", OUTSIDE_ADDR)
    assert dig(host, "own", "example.test") == [UPSTREAM_ANSWER]


def test_dead_upstream_is_skipped_quickly(dns_host: Host) -> None:
    host = dns_host
    host.shoal("network", "create", "app")
    # 198.51.100.1 port 53 answers; 198.51.100.2 is the host itself, where nothing listens
    # on 53 (an ICMP port unreachable), 198.51.100.9 is nobody (silence)
    run(host, "c1", "--dns", "198.51.100.2", "--dns", OUTSIDE_ADDR)
    run(host, "c2", "--dns", "198.51.100.9", "--dns", OUTSIDE_ADDR)
    for ctr in ("c1", "c2"):
        start = time.monotonic()
        assert dig(host, ctr, "example.test") == [UPSTREAM_ANSWER], ctr
        assert time.monotonic() - start < 2.0, f"{ctr}: the dead upstream was not skipped"
    # once marked down, the next query goes to the live server first
    start = time.monotonic()
    assert dig(host, "c2", "www.example.test") == [UPSTREAM_ANSWER]
    assert time.monotonic() - start < 0.5


def test_answers_are_cached_for_their_ttl(dns_host: Host) -> None:
    host = dns_host
    host.shoal("network", "create", "app")
    run(host, "client")
    first = dig_full(host, "client", "example.test")
    assert UPSTREAM_ANSWER in first
    # dnsmasq gone: the cached answer is still served, its TTL counting down
    upstream = UPSTREAMS[host.base]
    upstream.kill()
    upstream.wait()
    again = dig_full(host, "client", "example.test")
    assert UPSTREAM_ANSWER in again
    ttls = [int(line.split()[1]) for line in again.splitlines()
            if line.startswith("example.test.") and "\tA\t" in line]
    assert ttls and ttls[0] <= 600


def test_resolv_conf_changed_while_running(dns_host: Host) -> None:
    host = dns_host
    Path(host.resolv_conf).write_text("nameserver 198.51.100.9\n")
    host.shoal("network", "create", "app")
    run(host, "client")
    assert dig(host, "client", "example.test") == []
    # no shoal command: the resolver sees the file change by itself
    Path(host.resolv_conf).write_text(f"# changed\nnameserver {OUTSIDE_ADDR}\n")
    host.wait_for(lambda: dig(host, "client", "example.test") == [UPSTREAM_ANSWER],
                  timeout=5, what="the new resolv.conf to be used")


def test_loopback_upstream_of_the_host_works(host: Host) -> None:
    """A loopback resolver of the host (systemd-resolved's 127.0.0.53) is reachable: the
    resolver forwards from the host's namespace."""
    proc = host.background(host.ns, "dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts",
                           "--bind-interfaces", "--listen-address=127.0.0.53",
                           f"--address=/example.test/{UPSTREAM_ANSWER}", "--local=/#/",
                           "--user=root")
    try:
        host.wait_for(lambda: UPSTREAM_ANSWER in host.in_ns(
            host.ns, "dig", "+short", "+time=1", "@127.0.0.53", "example.test").stdout,
            what="dnsmasq on 127.0.0.53")
        Path(host.resolv_conf).write_text("nameserver 127.0.0.53\n")
        host.shoal("network", "create", "app")
        run(host, "client")
        assert dig(host, "client", "example.test") == [UPSTREAM_ANSWER]
    finally:
        proc.kill()
        proc.wait()


def test_internal_network_resolves_only_containers(dns_host: Host) -> None:
    host = dns_host
    host.shoal("network", "create", "--internal", "inner")
    run(host, "a", network="inner")
    run(host, "b", network="inner")
    assert dig(host, "a", "b") == [host.ip_of("b", "inner")]
    out = dig_full(host, "a", "example.test")
    assert UPSTREAM_ANSWER not in out and "status: REFUSED" in out


# -- port 53 ------------------------------------------------------------------------------


def test_host_process_on_port_53_does_not_collide(dns_host: Host) -> None:
    host = dns_host
    squatter = host.background(host.ns, sys.executable, "-c", (
        "import socket, time\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', 53))\n"
        "t = socket.socket(); t.bind(('0.0.0.0', 53)); t.listen()\n"
        "print('up', flush=True); time.sleep(1000)\n"))
    try:
        assert squatter.stdout and squatter.stdout.readline().strip() == "up"
        host.shoal("network", "create", "app")
        run(host, "web")
        run(host, "client")
        assert dig(host, "client", "web") == [host.ip_of("web", "app")]
        assert host.listening(host.ns, 53) and squatter.poll() is None
    finally:
        squatter.kill()
        squatter.wait()


def test_containers_may_use_port_53_themselves(dns_host: Host) -> None:
    host = dns_host
    host.shoal("network", "create", "app")
    run(host, "client")
    server = ("import socket\n"
              "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', 53))\n"
              "t = socket.socket(); t.bind(('0.0.0.0', 53)); t.listen()\n"
              "print('bound', flush=True)\n")
    host.shoal("run", "-d", "--name", "own-dns", "--network", "app", "--", sys.executable,
               "-c", server + "import time; time.sleep(1000)")
    host.wait_for(lambda: "bound" in host.shoal("logs", "own-dns").stdout, what="port 53 bound")
    # and its own queries still reach the embedded resolver
    assert dig(host, "own-dns", "client") == [host.ip_of("client", "app")]


# -- the resolver's life --------------------------------------------------------------------


def test_name_resolves_when_run_returns_and_stops_when_rm_returns(dns_host: Host) -> None:
    host = dns_host
    host.shoal("network", "create", "app")
    run(host, "client")
    for i in range(3):
        run(host, f"fresh{i}")
        assert dig(host, "client", f"fresh{i}") == [host.ip_of(f"fresh{i}", "app")]
        host.shoal("rm", "-f", f"fresh{i}")
        assert dig(host, "client", f"fresh{i}") == []
        assert "NXDOMAIN" in dig_full(host, "client", f"fresh{i}")


def test_resolver_lives_while_needed(dns_host: Host) -> None:
    host = dns_host
    host.shoal("network", "create", "app")
    assert resolver_pid(host) is None
    run(host, "one")
    pid = resolver_pid(host)
    assert pid is not None and Path(f"/proc/{pid}").exists()
    run(host, "two")
    assert resolver_pid(host) == pid  # one resolver for every container
    host.shoal("rm", "-f", "one")
    assert resolver_pid(host) == pid
    host.shoal("rm", "-f", "two")
    assert resolver_pid(host) is None
    host.wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="the resolver to end")


def test_resolver_killed_is_restarted_by_the_next_command(dns_host: Host) -> None:
    host = dns_host
    host.shoal("network", "create", "app")
    run(host, "web")
    run(host, "client")
    pid = resolver_pid(host)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    host.wait_for(lambda: not Path(f"/proc/{pid}/status").exists()
                  or "zombie" in Path(f"/proc/{pid}/status").read_text(), what="kill")
    doctor = host.shoal("doctor", check=False)
    assert doctor.returncode != 0 and "the embedded resolver is not running" in doctor.stdout
    host.shoal("network", "create", "other")  # any command that changes something
    new = resolver_pid(host)
    assert new is not None and new != pid
    assert dig(host, "client", "web") == [host.ip_of("web", "app")]
    # and system reconcile repairs it too
    os.kill(new, signal.SIGKILL)
    out = host.shoal("system", "reconcile").stdout
    assert "embedded resolver" in out and "started again" in out
    assert dig(host, "client", "web") == [host.ip_of("web", "app")]
    assert host.shoal("doctor").returncode == 0


def test_rm_racing_queries(dns_host: Host) -> None:
    """Queries in flight while containers come and go are all answered (none dropped)."""
    host = dns_host
    host.shoal("network", "create", "app")
    run(host, "client")
    run(host, "stable")
    stable = host.ip_of("stable", "app")
    code = ("import socket, struct, sys, time\n"
            "import dns.message\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)\n"
            "lost = asked = 0; end = time.monotonic() + float(sys.argv[1])\n"
            "while time.monotonic() < end:\n"
            "    q = dns.message.make_query('stable.', 'A')\n"
            "    s.sendto(q.to_wire(), ('127.0.0.11', 53)); asked += 1\n"
            "    try:\n"
            "        r = dns.message.from_wire(s.recv(4096))\n"
            "        if r.id != q.id or [a.address for x in r.answer for a in x] != "
            f"['{stable}']: lost += 1\n"
            "    except OSError: lost += 1\n"
            "print(asked, lost)\n")
    sandbox = host.sandbox("client")
    querier = subprocess.Popen(["nsenter", f"--net={sandbox}", sys.executable, "-c", code, "6"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=host.env())
    try:
        for i in range(4):
            run(host, f"churn{i}")
            host.shoal("rm", "-f", f"churn{i}")
        out, err = querier.communicate(timeout=60)
    finally:
        querier.kill()
        querier.wait()
    asked, lost = map(int, out.split())
    assert asked > 100 and lost == 0, (asked, lost, err)


def test_shoal_resolve_and_doctor(dns_host: Host) -> None:
    host = dns_host
    host.shoal("network", "create", "app")
    host.shoal("network", "create", "app2")
    run(host, "web", "--network-alias", "www")
    host.shoal("network", "connect", "app2", "web")
    lines = host.shoal("resolve", "www").stdout.splitlines()
    assert lines == [f"{host.ip_of('web', 'app')}\tweb\tapp"]
    both = host.shoal("resolve", "web").stdout.splitlines()
    assert both == [f"{host.ip_of('web', 'app')}\tweb\tapp",
                    f"{host.ip_of('web', 'app2')}\tweb\tapp2"]
    assert host.shoal("resolve", "--network", "app2", "web").stdout.splitlines() == both[1:]
    res = host.shoal("resolve", "nobody", check=False)
    assert res.returncode != 0 and "no container answers to nobody" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    doctor = host.shoal("doctor").stdout
    assert "the embedded resolver (pid" in doctor
    assert f"web: its name resolves at 127.0.0.11 to {host.ip_of('web', 'app')}" in doctor

