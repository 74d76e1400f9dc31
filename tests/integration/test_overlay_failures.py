"""Overlay networks when things fail (issue 12, "Failures"), in the multi-host lab: a host
that dies, the etcd cluster stopped and started again, the watcher killed, shoal commands
killed at their crash points during overlay operations, and allocations racing from every
host. What is checked is what a user (or another host) would see: the cluster's keys in
etcd, the local stores' remote endpoints, the VXLAN devices' forwarding entries, the kernel's
links, and pings between containers."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from shoal.store.etcd import EtcdStore
from shoal.store.protocol import GlobalStoreError

from .overlay_lab import overlay_lab

PREFIX = "/shoal/v1/"
SUBNET = "10.50.0.0/16"
HOST_TTL_BOUND = 30.0  # the bound on a dead host's lease (HOST_TTL is 15 s)
PROPAGATION = 10.0  # how long a watcher may take to mirror a change (issue: 1 s)


# -- reading a host's state -----------------------------------------------------------------

def cluster_keys(via: Any, prefix: str = PREFIX) -> dict[str, Any]:
    """The cluster's keys (key -> KeyValue), read in-process through `via`'s etcd member from
    inside its namespace, as that host sees them."""
    with via.entered(), EtcdStore(f"etcd://{via.address}:2379", timeout=3.0) as store:
        kvs, _ = store.get_prefix(prefix)
    return {kv.key: kv for kv in kvs}


def settled_keys(via: Any) -> dict[str, Any] | None:
    """cluster_keys, or None while the store is electing a leader (a dead host's member
    was the leader)."""
    try:
        return cluster_keys(via)
    except GlobalStoreError:
        return None


def records_of(keys: dict[str, Any], host_id: str) -> list[str]:
    """The keys that belong to a host: its hosts/ record, its blocks, its endpoints."""
    out = []
    for key, kv in keys.items():
        if key == f"{PREFIX}hosts/{host_id}":
            out.append(key)
        elif key.startswith((f"{PREFIX}blocks/", f"{PREFIX}endpoints/")):
            if json.loads(kv.value).get("host") == host_id:
                out.append(key)
    return sorted(out)


def query(host: Any, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of the host's local store (read-only; the host's shoal may be writing)."""
    db = sqlite3.connect(f"file:{host.root}/shoal.db?mode=ro", uri=True, timeout=10)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def meta(host: Any, name: str) -> str | None:
    rows = query(host, "SELECT value FROM meta WHERE key=?", name)
    return rows[0][0] if rows else None


def host_id(host: Any) -> str:
    value = meta(host, "cluster")
    assert value, f"{host.name} has not joined the cluster"
    return str(json.loads(value)["host"])


def remote_ips(host: Any) -> set[str]:
    """The other hosts' endpoints this host's watcher mirrored (table remote_endpoints)."""
    return {ip for (ip,) in query(host, "SELECT ip FROM remote_endpoints")}


def fdb(host: Any, network_id: str) -> dict[str, str]:
    """The static forwarding entries of the network's VXLAN device: MAC -> remote host."""
    res = host.in_ns(host.ns, "bridge", "-j", "fdb", "show", "dev", f"vx-{network_id[:12]}")
    assert res.returncode == 0, res.stderr
    return {e["mac"]: e["dst"] for e in json.loads(res.stdout or "[]") if e.get("dst")}


def overlay_links(host: Any) -> set[str]:
    return {n for n in host.links() if n.startswith(("ov-", "vx-", "vov"))}


def network_id(host: Any, name: str) -> str:
    return str(host.shoal_json("network", "inspect", name)[0]["Id"])


def mac_of(host: Any, ctr: str, network: str) -> str:
    data = host.shoal_json("inspect", ctr)[0]
    return str(data["NetworkSettings"]["Networks"][network]["MacAddress"])


def watcher_pid(host: Any) -> int | None:
    value = meta(host, "watcher")
    return int(value.split()[0]) if value else None


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode != 0, res.stdout
    err = res.stderr.strip()
    assert err and "\n" not in err, err
    return err


def sleeper(host: Any, name: str, network: str, *opts: str) -> str:
    host.shoal("run", "-d", "--name", name, "--network", network, *opts, "--", "sleep", "1000")
    return str(host.ip_of(name, network))


def wait_remotes(hosts: list[Any], expected: dict[Any, set[str]]) -> None:
    for h in hosts:
        h.wait_for(lambda h=h: remote_ips(h) == expected[h], PROPAGATION,
                   f"{h.name}'s remote endpoints to be {sorted(expected[h])}")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Any]:
    with overlay_lab(tmp_path) as made:
        yield made


# -- 1. a dead host -------------------------------------------------------------------------

def test_a_dead_hosts_lease_records_and_entries_go_and_nothing_else(lab: Any) -> None:
    h1, h2, h3 = lab.hosts
    h1.shoal("network", "create", "-d", "overlay", "--subnet", SUBNET, "ov")
    ips = [sleeper(h, f"c{h.index + 1}", "ov") for h in lab.hosts]
    wait_remotes(lab.hosts, {h: set(ips) - {ips[h.index]} for h in lab.hosts})
    net = network_id(h1, "ov")
    dead, mac3 = host_id(h3), mac_of(h3, "c3", "ov")
    before = cluster_keys(h1)
    mine = records_of(before, dead)
    assert f"{PREFIX}hosts/{dead}" in mine
    assert any("/blocks/" in k for k in mine) and any("/endpoints/" in k for k in mine)
    assert fdb(h1, net)[mac3] == h3.address and fdb(h2, net)[mac3] == h3.address
    survivors = {h.name: records_of(before, host_id(h)) for h in (h1, h2)}

    h3.kill()

    h1.wait_for(lambda: (keys := settled_keys(h1)) is not None and not records_of(keys, dead),
                HOST_TTL_BOUND,
                "the dead host's records to leave etcd")
    wait_remotes([h1, h2], {h1: {ips[1]}, h2: {ips[0]}})
    for h in (h1, h2):
        h.wait_for(lambda h=h: mac3 not in fdb(h, net), PROPAGATION,
                   f"{h.name}'s VXLAN entry of the dead host's container to go")
    # nothing else was disturbed: the network, the live hosts' records, their traffic
    after = cluster_keys(h1)
    assert f"{PREFIX}networks/ov" in after
    assert {h.name: records_of(after, host_id(h)) for h in (h1, h2)} == survivors
    assert h1.ping_ok("c1", ips[1]) and h2.ping_ok("c2", ips[0])
    assert fdb(h1, net)[mac_of(h2, "c2", "ov")] == h2.address
    assert not h1.ping_ok("c1", ips[2])
    for h in (h1, h2):
        doctor = h.shoal("doctor", check=False).stdout
        assert not [line for line in doctor.splitlines() if line.startswith("FAIL")], doctor


# -- 2. etcd unreachable, then back ---------------------------------------------------------

def test_with_etcd_down_traffic_and_bridges_work_overlay_changes_fail_then_converge(
        lab: Any) -> None:
    h1, h2, h3 = lab.hosts
    h1.shoal("network", "create", "-d", "overlay", "--subnet", SUBNET, "ov")
    h1.shoal("network", "create", "-d", "overlay", "--subnet", "10.51.0.0/16", "spare")
    ip1, ip2 = sleeper(h1, "c1", "ov"), sleeper(h2, "c2", "ov")
    wait_remotes([h1, h2], {h1: {ip2}, h2: {ip1}})
    held = {b for (b,) in query(h1, "SELECT block FROM blocks")}

    lab.stop_etcd()

    # an overlay change at once, before the watchers noticed, fails as it does after
    err = one_line_error(h2.shoal("network", "create", "-d", "overlay", "--subnet",
                                  "10.52.0.0/16", "ov2", check=False))
    assert lab.store_url in err, err
    for h in (h1, h2):
        h.wait_for(lambda h=h: meta(h, "cluster.down") is not None, 20,
                   f"{h.name}'s watcher to find the store down")
    # running containers keep talking across hosts
    assert h1.ping_ok("c1", ip2) and h2.ping_ok("c2", ip1)
    # a local bridge network works as without a cluster
    h3.shoal("network", "create", "br")
    b1 = sleeper(h3, "b1", "br")
    sleeper(h3, "b2", "br")
    assert h3.ping_ok("b2", b1)
    # new overlay operations fail with one line that names the store
    for h, args in ((h1, ("network", "create", "-d", "overlay", "--subnet", "10.52.0.0/16",
                          "ov2")),
                    (h2, ("network", "rm", "spare")),
                    # an address outside h1's blocks needs a new block
                    (h1, ("run", "-d", "--name", "far", "--network", "ov", "--ip",
                          "10.50.250.5", "--", "sleep", "1000"))):
        err = one_line_error(h.shoal(*args, check=False))
        assert lab.store_url in err and "cannot be reached" in err, (args, err)
    assert "far" not in h1.shoal("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert {b for (b,) in query(h1, "SELECT block FROM blocks")} == held
    for h in (h1, h2):
        names = h.shoal("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert "spare" in names and "ov2" not in names
    # a run on an overlay whose block has room works here, and is published later
    ip3 = sleeper(h1, "c3", "ov")

    lab.start_etcd()

    wait_remotes([h1, h2], {h1: {ip2}, h2: {ip1, ip3}})
    h2.wait_for(lambda: h2.ping_ok("c2", ip3), PROPAGATION, "c2 to reach c3")
    assert h1.ping_ok("c3", ip2)
    for h in lab.hosts:  # (h3 joined while the store was down: it has the overlays now)
        h.wait_for(lambda h=h: meta(h, "cluster.down") is None, 20,
                   f"{h.name}'s watcher to find the store back")
        names = h.shoal("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert {"ov", "spare"} <= set(names), names
        doctor = h.shoal("doctor", check=False).stdout
        assert not [line for line in doctor.splitlines() if line.startswith("FAIL")], doctor
    # every host's records are back on the lease its watcher keeps alive
    keys = cluster_keys(h1)
    for h in lab.hosts:
        lease = int(meta(h, "cluster.lease") or 0)
        assert {keys[k].lease for k in records_of(keys, host_id(h))} == {lease}, h.name
    # and overlay operations work again
    h2.shoal("network", "rm", "spare")
    h1.shoal("network", "create", "-d", "overlay", "--subnet", "10.52.0.0/16", "ov2")


# -- 3. the watcher killed ------------------------------------------------------------------

def test_a_killed_watcher_is_started_again_and_catches_up(lab: Any) -> None:
    h1, h2, h3 = lab.hosts
    h1.shoal("network", "create", "-d", "overlay", "--subnet", SUBNET, "ov")
    ip1, ip2 = sleeper(h1, "c1", "ov"), sleeper(h2, "c2", "ov")
    sleeper(h1, "gone", "ov")
    wait_remotes([h1, h2], {h1: {ip2}, h2: {ip1, h1.ip_of("gone", "ov")}})
    net = network_id(h2, "ov")
    me = host_id(h2)
    pid = watcher_pid(h2)
    assert pid is not None and alive(pid)

    os.kill(pid, signal.SIGKILL)
    h2.wait_for(lambda: not alive(pid), 10, "the watcher to die")
    # meanwhile the cluster changes: one container more on h1, one less
    ip4 = sleeper(h1, "c4", "ov")
    h1.shoal("rm", "-f", "gone")

    h2.shoal("ps")  # the next command starts it again
    again = watcher_pid(h2)
    assert again is not None and again != pid and alive(again)
    wait_remotes([h2], {h2: {ip1, ip4}})
    macs = fdb(h2, net)
    assert {mac_of(h1, c, "ov") for c in ("c1", "c4")} <= set(macs)
    assert len(macs) == 2, macs
    assert h2.ping_ok("c2", ip4)
    # its endpoint stays in etcd, on the lease the new watcher keeps alive
    lease = int(meta(h2, "cluster.lease") or 0)
    keys = cluster_keys(h1)
    ours = [k for k in records_of(keys, me) if "/endpoints/" in k or "/blocks/" in k
            or "/hosts/" in k]
    assert len(ours) == 3, ours
    assert {keys[k].lease for k in ours} == {lease}
    # entries lost from the kernel (flushed by hand) are programmed again by reconcile
    mac1 = mac_of(h1, "c1", "ov")
    dev = f"vx-{net[:12]}"
    h2.in_ns(h2.ns, "bridge", "fdb", "del", mac1, "dev", dev, "dst", h1.address, check=True)
    h2.in_ns(h2.ns, "ip", "neigh", "del", ip1, "dev", dev, check=True)
    assert mac1 not in fdb(h2, net)
    h2.shoal("system", "reconcile")
    h2.wait_for(lambda: fdb(h2, net).get(mac1) == h1.address, PROPAGATION,
                "c1's forwarding entry on h2 again")
    assert h2.ping_ok("c2", ip1)
    # `system reconcile` starts a killed watcher too, and leaves a live one running
    os.kill(again, signal.SIGKILL)
    h2.wait_for(lambda: not alive(again), 10, "the watcher to die")
    out = h2.shoal("system", "reconcile").stdout
    assert f"the cluster watcher (pid {again}) had died; started again" in out, out
    third = watcher_pid(h2)
    assert third is not None and third != again and alive(third)
    out = h2.shoal("system", "reconcile").stdout
    assert "watcher" not in out, out
    assert watcher_pid(h2) == third
    assert h1.ping_ok("c1", ip2)
    assert h3.shoal("network", "ls", "--format", "{{.Name}}").stdout.split().count("ov") == 1


# -- 4. shoal commands killed at their crash points -----------------------------------------

def shoal_crashing(host: Any, point: str, *args: str) -> int:
    """Run shoal in the host with a crash point (SHOAL_CRASH_AT); its exit status. Output
    goes to a file: a container started by it keeps a pipe open after shoal was killed."""
    cmd = ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal", "--root", host.root,
           "--run-dir", host.run_dir, *args]
    with open(host.base / "crash.out", "w") as out:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                              timeout=60, cwd=str(host.base),
                              env={**host.env(), "SHOAL_CRASH_AT": point}).returncode


def inconsistencies(lab: Any) -> list[str]:
    """Where the cluster's keys, the hosts' local stores and their kernels disagree: a
    network not on every host or not in etcd, a VNI, block or endpoint key of no network, a
    host's endpoints not as it has them, an overlay link no record has, an endpoint of no
    running container."""
    keys = cluster_keys(lab.hosts[0])
    nets = {k[len(f"{PREFIX}networks/"):]: json.loads(kv.value)["id"]
            for k, kv in keys.items() if k.startswith(f"{PREFIX}networks/")}
    ids = set(nets.values())
    out = []
    for k, kv in keys.items():
        if k.startswith(f"{PREFIX}vni/") and json.loads(kv.value)["network"] not in ids:
            out.append(f"{k} names no network")
        for kind in ("blocks", "endpoints"):
            if k.startswith(f"{PREFIX}{kind}/") and k.split("/")[4] not in ids:
                out.append(f"{k} is of no network")
    for h in lab.hosts:
        me = host_id(h)
        local = dict(query(h, "SELECT name, id FROM networks WHERE driver='overlay'"))
        if local != nets:
            out.append(f"{h.name} has overlays {sorted(local)}, the cluster {sorted(nets)}")
        eps = query(h, "SELECT e.id, e.network_id, c.status FROM endpoints e JOIN networks n "
                       "ON e.network_id=n.id LEFT JOIN containers c ON c.id=e.sandbox_id "
                       "WHERE n.driver='overlay'")
        out += [f"{h.name}: endpoint {e[:12]} is of a {status or 'missing'} container"
                for e, _, status in eps if status != "running"]
        links = {f"{p}{i[:12]}" for i in local.values() for p in ("ov-", "vx-")}
        links |= {f"vov{e[:12]}" for e, _, _ in eps}
        if overlay_links(h) != links:
            out.append(f"{h.name} has links {sorted(overlay_links(h) - links)} of no record, "
                       f"lacks {sorted(links - overlay_links(h))}")
        published = {k.split("/")[5] for k in records_of(keys, me) if "/endpoints/" in k}
        if published != {e for e, _, _ in eps}:
            out.append(f"{h.name} publishes {sorted(published)}, has {sorted(e for e, *_ in eps)}")
        held = {f"{PREFIX}blocks/{n}/{b.replace('/', '-')}"
                for n, b in query(h, "SELECT network_id, block FROM blocks")}
        theirs = {k for k in records_of(keys, me) if "/blocks/" in k}
        if held != theirs:
            out.append(f"{h.name} holds blocks {sorted(held)} by its store, "
                       f"{sorted(theirs)} by etcd")
    return out


def wait_consistent(lab: Any, what: str) -> None:
    found: list[str] = []

    def none() -> bool:
        found[:] = inconsistencies(lab)
        return not found
    try:
        lab.hosts[0].wait_for(none, PROPAGATION, what)
    except AssertionError:
        raise AssertionError(f"after {what}: {found}") from None


VNI_OPT = "com.docker.network.driver.overlay.vxlanid_list"


def test_killed_overlay_commands_leave_nothing_the_next_one_does_not_repair(lab: Any) -> None:
    h1, h2, h3 = lab.hosts
    h1.shoal("network", "create", "-d", "overlay", "--subnet", SUBNET, "base")
    ip1, ip2 = sleeper(h1, "c1", "base"), sleeper(h2, "c2", "base")
    h3.shoal("ps")  # (joined)
    wait_consistent(lab, "the first overlay")
    # network create: killed after the VNI, the cluster's record, the local row, the bridge
    for i, point in enumerate(("network-create:vni", "network-create:global",
                               "network-create:row", "network-create:bridge")):
        vni, subnet = str(5000 + i), f"10.{60 + i}.0.0/16"
        create = ("network", "create", "-d", "overlay", "--subnet", subnet, "-o",
                  f"{VNI_OPT}={vni}", f"n{i}")
        assert shoal_crashing(h1, point, *create) == -9, point
        h1.shoal("network", "ls")  # the next command
        wait_consistent(lab, f"a create killed at {point}")
        names = h2.shoal("network", "ls", "--format", "{{.Name}}").stdout.split()
        if f"n{i}" not in names:  # nowhere: it can be made again, with its VNI
            h1.shoal(*create)
            wait_consistent(lab, f"a create again after {point}")
        got = h2.shoal_json("network", "inspect", f"n{i}")[0]["Options"][VNI_OPT]
        assert got == vni, point
        h1.shoal("network", "rm", f"n{i}")
        wait_consistent(lab, f"removing n{i}")
    # network rm: killed after the cluster's record went, after the local row went
    for point in ("network-rm:global", "network-rm:row"):
        h1.shoal("network", "create", "-d", "overlay", "--subnet", "10.70.0.0/16", "-o",
                 f"{VNI_OPT}=6000", "gone")
        wait_consistent(lab, "a network to remove")
        assert shoal_crashing(h1, point, "network", "rm", "gone") == -9, point
        h1.shoal("network", "ls")
        wait_consistent(lab, f"a rm killed at {point}")
        assert "gone" not in h2.shoal("network", "ls", "--format", "{{.Name}}").stdout
    # run -d on an overlay, killed at each step; the address it had is free again after
    base = ip1.rsplit(".", 1)[0]
    for i, point in enumerate(("run:rows", "run:sandbox", "run:firewall", "run:spawned",
                               "run:block")):
        ip = f"{base}.{int(ip1.rsplit('.', 1)[1]) + 10 + i}"
        if point == "run:block":  # an address in a block h1 does not hold yet
            ip = "10.50.250.9"
        # (run:spawned is passed by whoever starts the process: with -d, the supervisor)
        detach = () if point == "run:spawned" else ("-d",)
        run = ("run", *detach, "--name", f"x{i}", "--network", "base", "--ip", ip, "--",
               "sleep", "1000")
        assert shoal_crashing(h1, point, *run) == -9, point
        h1.shoal("ps", "-a")
        wait_consistent(lab, f"a run killed at {point}")
        h1.shoal("rm", "-f", f"x{i}", check=False)
        wait_consistent(lab, f"x{i} removed")
        assert sleeper(h1, f"y{i}", "base", "--ip", ip) == ip
        h2.wait_for(lambda ip=ip: h2.ping_ok("c2", ip), PROPAGATION, f"c2 to reach y{i}")
    wait_consistent(lab, "the runs")
    assert h1.ping_ok("c1", ip2) and h2.ping_ok("c2", ip1)


# -- 5. racing allocations ------------------------------------------------------------------

def test_racing_runs_on_three_hosts_get_distinct_reachable_addresses(lab: Any) -> None:
    per_host = 10
    h1 = lab.hosts[0]
    h1.shoal("network", "create", "-d", "overlay", "--subnet", "10.50.0.0/24", "ov")
    # (h2 and h3 join with these runs, and every host leases its first block in the race)

    def run(job: tuple[Any, int]) -> tuple[Any, str, str]:
        h, n = job
        name = f"r{h.index}-{n}"
        h.shoal("run", "-d", "--name", name, "--network", "ov", "--", "sleep", "1000",
                timeout=180)
        return h, name, h.ip_of(name, "ov")

    jobs = [(h, n) for n in range(per_host) for h in lab.hosts]
    with ThreadPoolExecutor(len(jobs)) as pool:
        got = list(pool.map(run, jobs))
    addresses = [ip for _, _, ip in got]
    assert len(set(addresses)) == len(addresses), sorted(addresses)
    wait_consistent(lab, "the racing runs")
    # each address is in a block its host holds (a /24 in /26 blocks: some hosts took two)
    keys = cluster_keys(h1)
    for h, name, ip in got:
        held = [k.rsplit("/", 1)[1].replace("-", "/") for k in records_of(keys, host_id(h))
                if "/blocks/" in k]
        assert any(ipaddress.ip_address(ip) in ipaddress.ip_network(b) for b in held), \
            (name, ip, held)
    # sampled: each host's containers reach a container of each other host
    for h, name, _ in got[:3]:
        for other, _, ip in got[3:6]:
            if other is not h:
                assert h.ping_ok(name, ip), (name, ip)
