"""Overlay networks across hosts (issue 12), for real: three host namespaces on one underlay,
a three-member etcd cluster with one member in each (tests/integration/overlay_lab.py), shoal
in each host with its own root. What a user sees: a network created on one host is every
host's, containers on different hosts reach each other by address and by name, isolation
holds, outbound and published ports go through a container's own host, and a removed
container is gone from every host (test_overlay_failures.py races 30 runs on three hosts)."""

from __future__ import annotations

import json
import sqlite3
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from .harness import OUTSIDE_ADDR
from .overlay_lab import overlay_lab


def run(host: Any, name: str, network: str = "ov", *opts: str) -> str:
    return host.shoal("run", "-d", "--name", name, "--network", network, *opts, "--",
                      "sleep", "1000").stdout.strip()


def remotes(host: Any) -> dict[str, tuple[str, str]]:
    """The remote endpoints a host's watcher mirrored: ip -> (mac, host address)."""
    db = sqlite3.connect(f"file:{host.root}/shoal.db?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT ip, mac, address FROM remote_endpoints").fetchall()
    finally:
        db.close()
    return {ip: (mac, address) for ip, mac, address in rows}


def vxlan_entries(host: Any, network: str = "ov") -> tuple[set[str], set[str]]:
    """(MACs with a forwarding entry, IPs with a permanent neighbour entry) on the
    network's VXLAN device in a host."""
    net_id = host.shoal_json("network", "inspect", network)[0]["Id"]
    dev = f"vx-{net_id[:12]}"
    fdb = host.in_ns(host.ns, "bridge", "fdb", "show", "dev", dev).stdout
    macs = {line.split()[0] for line in fdb.splitlines() if " dst " in line}
    neigh = host.in_ns(host.ns, "ip", "-4", "neigh", "show", "dev", dev, "nud",
                       "permanent").stdout
    return macs, {line.split()[0] for line in neigh.splitlines() if line.strip()}


def dig(host: Any, ctr: str, *args: str) -> list[str]:
    res = host.in_container(ctr, "dig", "+short", "+time=2", "+tries=1", "@127.0.0.11",
                            *args, check=False)
    return [line for line in res.stdout.splitlines() if line and not line.startswith(";")]


def test_a_network_created_on_one_host_is_every_hosts(tmp_path: Path) -> None:
    with overlay_lab(tmp_path) as lab:
        h1, h2, h3 = lab.hosts
        out = h1.shoal("network", "create", "-d", "overlay", "--subnet", "10.50.0.0/16",
                       "ov").stdout.strip()
        seen = []
        for host in (h1, h2, h3):
            ls = host.shoal("network", "ls", "--format", "json").stdout
            rows = [json.loads(line) for line in ls.splitlines() if line.strip()]
            assert {"ov": ("overlay", "global")} == {
                r["Name"]: (r["Driver"], r["Scope"]) for r in rows if r["Name"] == "ov"}
            info = host.shoal_json("network", "inspect", "ov")[0]
            seen.append(info)
            assert info["Id"] == out and info["Scope"] == "global"
            assert info["Attachable"] is True and info["Driver"] == "overlay"
            assert info["IPAM"]["Config"] == [{"Subnet": "10.50.0.0/16",
                                               "Gateway": "10.50.0.1"}]
            assert info["Options"]["com.docker.network.driver.overlay.vxlanid_list"] == "4096"
            dev = host.ip_json("-d", "link", "show", f"vx-{out[:12]}")[0]
            assert dev["mtu"] == 1450 and dev["linkinfo"]["info_data"]["id"] == 4096
            assert dev["linkinfo"]["info_data"]["port"] == 4789
            assert dev["linkinfo"]["info_data"]["local"] == host.address
            assert not dev["linkinfo"]["info_data"].get("learning", False)
            assert dev["master"] == f"ov-{out[:12]}"
        # a name is the cluster's once
        res = h2.shoal("network", "create", "-d", "overlay", "--subnet", "10.60.0.0/16", "ov",
                       check=False)
        assert res.returncode != 0 and res.stderr.strip() == (
            "shoal: network with name ov already exists")
        # a second overlay gets the next VNI
        h3.shoal("network", "create", "-d", "overlay", "--subnet", "10.60.0.0/16", "ov2")
        assert h1.shoal_json("network", "inspect", "ov2")[0]["Options"][
            "com.docker.network.driver.overlay.vxlanid_list"] == "4097"
        # removed on one host: gone from every host, kernel side too
        h2.shoal("network", "rm", "ov")
        for host in (h1, h2, h3):
            host.wait_for(lambda h=host: "ov" not in h.shoal("network", "ls").stdout.split(),
                          what="ov removed everywhere")
            host.wait_for(lambda h=host: not any(n.startswith(f"vx-{out[:12]}")
                                                 or n.startswith(f"ov-{out[:12]}")
                                                 for n in h.links()),
                          what="ov's links removed")


def test_containers_on_three_hosts_reach_each_other_by_address_and_name(
        tmp_path: Path) -> None:
    with overlay_lab(tmp_path) as lab:
        h1, h2, h3 = lab.hosts
        h1.shoal("network", "create", "-d", "overlay", "--subnet", "10.50.0.0/16", "ov")
        hosts = {"c1": h1, "c2": h2, "c3": h3}
        for name, host in hosts.items():
            run(host, name, "ov", "--network-alias", "svc")
        ips = {name: host.ip_of(name, "ov") for name, host in hosts.items()}
        assert len(set(ips.values())) == 3
        assert all(IPv4Address(ip) in IPv4Network("10.50.0.0/16") for ip in ips.values())
        for name, host in hosts.items():
            for other, ip in ips.items():
                if other != name:
                    host.wait_for(lambda h=host, n=name, i=ip: h.ping_ok(n, i),
                                  what=f"{name} pings {other} at {ip}")
                    # by name, through each host's own embedded resolver
                    assert dig(host, name, other) == [ip]
            assert sorted(dig(host, name, "svc")) == sorted(ips.values())
            # the MTU leaves room for VXLAN's 50 bytes
            link = json.loads(host.in_container(name, "ip", "-j", "link", "show", "eth0").stdout)
            assert link[0]["mtu"] == 1450
        # TCP across hosts, with a full-size segment
        h2.background(h2.sandbox("c2"), "python3", "-c", (
            "import socket; s = socket.create_server(('0.0.0.0', 7000)); c, _ = s.accept(); "
            "d = b''\nwhile len(d) < 100000: d += c.recv(65536)\nc.sendall(b'ok')"))
        h2.wait_for(lambda: h2.listening(h2.sandbox("c2"), 7000), what="server in c2")
        res = h1.in_container("c1", "python3", "-c", (
            f"import socket; s = socket.create_connection(('{ips['c2']}', 7000), timeout=5); "
            "s.sendall(b'x' * 100000); print(s.recv(10).decode())"))
        assert res.stdout.strip() == "ok"
        # every remote endpoint is a static entry on each host's VXLAN device
        for name, host in hosts.items():
            others = {ips[o] for o in hosts if o != name}
            assert set(remotes(host)) == others
            macs, neigh = vxlan_entries(host)
            assert neigh == others and len(macs) == 2


def test_a_removed_container_is_gone_from_every_host(tmp_path: Path) -> None:
    with overlay_lab(tmp_path) as lab:
        h1, h2, h3 = lab.hosts
        h1.shoal("network", "create", "-d", "overlay", "--subnet", "10.50.0.0/16", "ov")
        run(h1, "c1")
        run(h3, "c3")
        run(h2, "c2")
        ip2 = h2.ip_of("c2", "ov")
        for host in (h1, h3):
            host.wait_for(lambda h=host: ip2 in remotes(h), what="c2 known")
            assert ip2 in vxlan_entries(host)[1]
        h2.shoal("rm", "-f", "c2")
        for host, ctr in ((h1, "c1"), (h3, "c3")):
            host.wait_for(lambda h=host: ip2 not in remotes(h), what="c2 forgotten")
            macs, neigh = vxlan_entries(host)
            assert ip2 not in neigh and len(macs) == 1
            assert dig(host, ctr, "c2") == []
            assert not host.ping_ok(ctr, ip2)


def test_isolation_between_overlays_and_local_networks(tmp_path: Path) -> None:
    with overlay_lab(tmp_path) as lab:
        h1, h2, _ = lab.hosts
        h1.shoal("network", "create", "-d", "overlay", "--subnet", "10.50.0.0/16", "ov")
        h1.shoal("network", "create", "-d", "overlay", "--subnet", "10.60.0.0/16", "other")
        h2.shoal("network", "create", "--subnet", "10.70.0.0/16", "local")
        run(h1, "a")
        run(h2, "b")
        run(h2, "x", "other")
        run(h2, "l", "local")
        ip_a, ip_b = h1.ip_of("a", "ov"), h2.ip_of("b", "ov")
        h2.wait_for(lambda: h2.ping_ok("b", ip_a), what="b pings a")
        # another overlay on the same host as b, and a local bridge there: no way to a
        assert not h2.ping_ok("x", ip_a)
        assert not h2.ping_ok("x", ip_b)
        assert not h2.ping_ok("l", ip_b)
        assert not h2.ping_ok("l", ip_a)
        assert dig(h2, "x", "a") == [] and dig(h2, "l", "b") == []


def test_outbound_and_published_ports_go_through_the_containers_own_host(
        tmp_path: Path) -> None:
    with overlay_lab(tmp_path) as lab:
        h1, h2, _ = lab.hosts
        h1.shoal("network", "create", "-d", "overlay", "--subnet", "10.50.0.0/16", "ov")
        run(h1, "a")
        h2.shoal("run", "-d", "--name", "web", "--network", "ov", "-p", "8080:80", "--",
                 "python3", "-c", "import socket; s = socket.create_server(('0.0.0.0', 80))\n"
                 "while True: c, a = s.accept(); c.sendall(b'web ' + a[0].encode()); c.close()")
        h2.wait_for(lambda: h2.listening(h2.sandbox("web"), 80), what="web listens")
        # from host 2's outside world, at host 2's address
        assert h2.fetch(h2.outside, "198.51.100.2", 8080) == f"web {OUTSIDE_ADDR}"
        # and from a container on host 1, across the overlay, at its overlay address
        assert h1.fetch(h1.sandbox("a"), h2.ip_of("web", "ov"), 80) == (
            f"web {h1.ip_of('a', 'ov')}")
        # nothing is published on host 1
        assert h1.fetch(h1.outside, "198.51.100.2", 8080) is None
        # outbound from a container on host 1 leaves through host 1, masqueraded
        srv = h1.background(h1.outside, "python3", "-c", (
            "import socket; s = socket.create_server(('0.0.0.0', 9000)); c, a = s.accept(); "
            "c.sendall(a[0].encode())"))
        try:
            h1.wait_for(lambda: h1.listening(h1.outside, 9000), what="outside server")
            res = h1.in_container("a", "python3", "-c", (
                f"import socket; s = socket.create_connection(('{OUTSIDE_ADDR}', 9000), "
                "timeout=5); print(s.recv(100).decode())"))
            assert res.stdout.strip() == "198.51.100.2"
        finally:
            srv.kill()
            srv.wait()


def test_bad_overlay_requests_are_one_line_errors(tmp_path: Path) -> None:
    with overlay_lab(tmp_path) as lab:
        h1 = lab.hosts[0]
        res = h1.shoal_local("network", "create", "-d", "overlay", "ov", check=False)
        assert res.returncode != 0 and res.stderr.strip() == (
            "shoal: this host is in no cluster: overlay networks need a cluster store; give "
            "--store etcd://HOST:2379[,HOST:2379...] (or set SHOAL_STORE)")
        assert "ov" not in h1.shoal_local("network", "ls").stdout.split()
        for opts, message in [
            (["-o", "encrypted"], "encrypted overlays are not supported"),
            (["-o", "colour=blue"], "unknown overlay option 'colour'"),
            (["-o", "com.docker.network.driver.overlay.vxlanid_list=0"], "invalid VNI '0'"),
            (["--ip-range", "10.50.1.0/24"], "--ip-range is not supported on overlay"),
        ]:
            res = h1.shoal("network", "create", "-d", "overlay", "--subnet", "10.50.0.0/16",
                           *opts, "ov", check=False)
            assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1
            assert message in res.stderr, res.stderr
        res = h1.shoal("--advertise-addr", "127.0.0.1", "network", "ls", check=False)
        assert res.returncode != 0 and "invalid --advertise-addr 127.0.0.1" in res.stderr
        res = h1.shoal("--store", "http://x", "network", "ls", check=False)
        assert res.returncode != 0 and "unknown scheme 'http'" in res.stderr
        # nothing was made by any of them
        assert not any(n.startswith(("ov-", "vx-")) for n in h1.links())
        # an address in another host's block
        h1.shoal("network", "create", "-d", "overlay", "--subnet", "10.50.0.0/16", "ov")
        run(h1, "a")
        ip = h1.ip_of("a", "ov")
        taken = str(IPv4Address(ip) + 1)
        res = lab.hosts[1].shoal("run", "-d", "--network", "ov", "--ip", taken, "--",
                                 "sleep", "1", check=False)
        assert res.returncode != 0 and "is leased by host" in res.stderr
        # and one in a free block is fine
        lab.hosts[1].shoal("run", "-d", "--name", "b", "--network", "ov", "--ip",
                           "10.50.200.7", "--", "sleep", "1000")
        assert lab.hosts[1].ip_of("b", "ov") == "10.50.200.7"
        h1.wait_for(lambda: h1.ping_ok("a", "10.50.200.7"), what="a pings b")


def test_300_containers_over_three_hosts_reach_each_other(tmp_path: Path) -> None:
    import random
    from concurrent.futures import ThreadPoolExecutor

    with overlay_lab(tmp_path) as lab:
        h1 = lab.hosts[0]
        h1.shoal("network", "create", "-d", "overlay", "--subnet", "10.50.0.0/16", "ov")
        names = [(host, f"{host.name}-{i}") for i in range(100) for host in lab.hosts]
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda hn: run(hn[0], hn[1]), names))
        ips: dict[str, tuple[Any, str]] = {}
        for host in lab.hosts:
            for ctr in host.shoal_json("network", "inspect", "ov")[0]["Containers"].values():
                ips[ctr["Name"]] = (host, ctr["IPv4Address"].split("/")[0])
        assert len(ips) == len(names) and len({ip for _, ip in ips.values()}) == len(names)
        # every host knows the other hosts' 200 endpoints, each as a static VXLAN entry
        for host in lab.hosts:
            theirs = {ip for h, ip in ips.values() if h is not host}
            host.wait_for(lambda h=host, t=theirs: set(remotes(h)) == t, timeout=30,
                          what=f"{host.name} knows every remote endpoint")
            macs, neigh = vxlan_entries(host)
            assert neigh == theirs and len(macs) == len(theirs)
        # sampled: 30 pairs across hosts, by address, and some by name
        rng = random.Random(12)
        pairs = [(a, b) for a, b in (rng.sample(sorted(ips), 2) for _ in range(200))
                 if ips[a][0] is not ips[b][0]][:30]
        for a, b in pairs:
            host, _ = ips[a]
            assert host.ping_ok(a, ips[b][1]), f"{a} cannot reach {b} at {ips[b][1]}"
        for a, b in pairs[:5]:
            assert dig(ips[a][0], a, b) == [ips[b][1]]


def test_connect_and_disconnect_a_running_container(tmp_path: Path) -> None:
    with overlay_lab(tmp_path) as lab:
        h1, h2, _ = lab.hosts
        h1.shoal("network", "create", "-d", "overlay", "--subnet", "10.50.0.0/16", "ov")
        run(h1, "a")
        run(h2, "b", "bridge")  # on the default bridge first, then connected
        h2.shoal("network", "connect", "--alias", "bee", "ov", "b")
        ip_b = h2.ip_of("b", "ov")
        h1.wait_for(lambda: h1.ping_ok("a", ip_b), what="a pings b")
        assert dig(h1, "a", "bee") == [ip_b]
        h2.shoal("network", "disconnect", "ov", "b")
        h1.wait_for(lambda: ip_b not in remotes(h1), what="b forgotten on host 1")
        assert not h1.ping_ok("a", ip_b) and dig(h1, "a", "bee") == []
        assert ip_b not in vxlan_entries(h1)[1]
