"""The multi-host lab itself (bench/overlay_lab.py), before any overlay test relies on it:
three hosts that reach each other on the underlay only through its /24, an etcd cluster with
one member in each host's namespace, a shoal of its own on each host, a host that dies
completely while the other two keep the store's quorum, and a store that stops and starts
again on its data."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal.store.etcd import EtcdStore
from shoal.store.protocol import GlobalStoreError

from .overlay_lab import lab_bench, overlay_lab

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Any]:
    with overlay_lab(tmp_path) as made:
        yield made


def skip_or_bench() -> Any:
    why = lab_bench.available()
    if why is not None:
        pytest.skip(why)
    return lab_bench


def ns_inode(path: str) -> int:
    return int(os.readlink(path).split("[")[1].rstrip("]"))


def start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/PID/stat): tells a PID reused by another
    process from the one that had it. None when no process runs with the PID (a zombie runs
    nothing: it waits for its parent to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def members_seen(client_url: str) -> list[dict[str, Any]]:
    """The cluster's member list as one member answers it (call in the lab namespace)."""
    request = urllib.request.Request(client_url + "/v3/cluster/member/list", data=b"{}",
                                     method="POST")
    with _OPENER.open(request, timeout=5) as resp:
        return json.loads(resp.read())["members"]


def test_hosts_reach_each_other_on_the_underlay_only(lab: Any) -> None:
    hosts = lab.hosts
    assert [h.address for h in hosts] == ["10.77.0.10", "10.77.0.11", "10.77.0.12"]
    for h in hosts:
        for other in hosts:
            if other is not h:
                res = h.in_ns(h.ns, "ping", "-c1", "-W2", other.address)
                assert res.returncode == 0, f"{h.name} -> {other.name}: {res.stdout}"
        # the underlay is a connected /24 on ul0; the default route stays the host's eth0
        routes = h.ip_json("route", "show")
        assert {(r["dst"], r["dev"]) for r in routes} == {
            ("default", "eth0"), ("198.51.100.0/24", "eth0"), ("10.77.0.0/24", "ul0")}
        addrs = {a["ifname"]: [i["local"] for i in a["addr_info"] if i["family"] == "inet"]
                 for a in h.ip_json("addr", "show")}
        assert addrs["ul0"] == [h.address] and addrs["eth0"] == ["198.51.100.2"]
    # the underlay is not the host's outside: nothing there answers for it
    outside = hosts[0].in_ns(hosts[0].outside, "ping", "-c1", "-W1", hosts[1].address)
    assert outside.returncode != 0


def test_etcd_has_one_member_in_each_host_namespace(lab: Any) -> None:
    assert lab.store_url == "etcd://10.77.0.10:2379,10.77.0.11:2379,10.77.0.12:2379"
    with lab.entered():
        assert lab.etcd.healthy()
        seen = members_seen(lab.member(lab.hosts[2]).client_url)
    assert sorted(tuple(m["peerURLs"]) for m in seen) == [
        (f"http://{h.address}:2380",) for h in lab.hosts]
    inodes = []
    for h in lab.hosts:
        member = lab.member(h)
        assert member.pid is not None
        assert ns_inode(f"/proc/{member.pid}/ns/net") == os.stat(h.ns).st_ino
        assert os.path.basename(os.readlink(f"/proc/{member.pid}/exe")) == "etcd"
        assert h.listening(h.ns, 2379) and h.listening(h.ns, 2380)
        inodes.append(os.stat(h.ns).st_ino)
    assert len(set(inodes)) == 3


def test_a_key_put_through_host_1s_member_is_read_through_host_3s(lab: Any) -> None:
    first, _, third = lab.hosts
    with first.entered(), EtcdStore(f"etcd://{first.address}:2379") as store:
        rev = store.put("/lab/k", b"from h1")
    with third.entered(), EtcdStore(f"etcd://{third.address}:2379") as store:
        got = store.get("/lab/k")
    assert got is not None and got.value == b"from h1" and got.mod_revision == rev


def test_each_host_has_a_shoal_of_its_own(lab: Any) -> None:
    for h in lab.hosts:
        h.shoal_local("network", "create", f"net-{h.name}")
    for h in lab.hosts:
        names = h.shoal_local("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert sorted(names) == sorted(["bridge", "host", "none", f"net-{h.name}"])
    roots = {h.root for h in lab.hosts} | {h.run_dir for h in lab.hosts}
    assert len(roots) == 6
    # shoal() hands the lab's store to the CLI, shoal_local() does not
    code = "import os; print(os.environ.get('SHOAL_STORE', '-'))"
    h = lab.hosts[1]
    assert h.python(code).stdout.strip() == lab.store_url
    assert "SHOAL_STORE" not in h.local_env() and h.env()["SHOAL_STORE"] == lab.store_url


def test_a_killed_host_leaves_nothing_and_the_others_keep_quorum(lab: Any) -> None:
    with lab.entered():
        leader = lab.etcd.leader()
    victim = next(h for h in lab.hosts if h.member is leader)  # the harder loss
    survivors = [h for h in lab.hosts if h is not victim]
    victim.shoal_local("run", "-d", "--name", "c", "--", "sleep", "1000")
    pid = victim.shoal_json("inspect", "c")[0]["State"]["Pid"]
    member_pid = leader.pid
    started = {p: start_time(p) for p in (pid, member_pid)}
    assert pid in victim.processes() and member_pid in victim.processes()
    sandbox = victim.sandbox("c")
    assert os.path.exists(sandbox)

    victim.kill()

    assert victim.processes() == []
    for p, when in started.items():
        assert start_time(p) != when, f"pid {p} still runs"
    assert leader.pid is None
    assert not victim.cgroups()
    assert not victim.mounts() and not os.path.exists(victim.ns)
    lab_links = victim.links(lab.ns)
    assert f"ul-{victim.name}" not in lab_links
    assert sorted(n for n in lab_links if n.startswith("ul-h")) == sorted(
        f"ul-{h.name}" for h in survivors)
    # the two members left are a quorum: healthy, with a leader, and they take writes
    lab.wait_etcd()
    with lab.entered():
        assert lab.etcd.leader() is not leader
        url = "etcd://" + ",".join(f"{h.address}:2379" for h in survivors)
        with EtcdStore(url, timeout=3.0) as store:
            rev = store.put("/lab/after", b"2 of 3")
            got = store.get("/lab/after")
    assert got is not None and got.value == b"2 of 3" and got.mod_revision == rev
    a, b = survivors
    assert a.in_ns(a.ns, "ping", "-c1", "-W2", b.address).returncode == 0
    assert a.in_ns(a.ns, "ping", "-c1", "-W1", victim.address).returncode != 0


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_the_store_stops_and_starts_again_on_its_data(lab: Any, kill: bool) -> None:
    with lab.entered(), EtcdStore(lab.store_url, timeout=2.0) as store:
        rev = store.put("/lab/k", b"kept")
        lab.stop_etcd(kill=kill)
        assert all(m.pid is None for m in lab.etcd.members)
        assert not any(h.listening(h.ns, 2379) for h in lab.hosts)
        with pytest.raises(GlobalStoreError, match="cannot reach the store"):
            store.get("/lab/k")
        lab.start_etcd()
        got = store.get("/lab/k")
    assert got is not None and got.value == b"kept" and got.mod_revision == rev
    for h in lab.hosts:
        pid = lab.member(h).pid
        assert pid is not None and ns_inode(f"/proc/{pid}/ns/net") == os.stat(h.ns).st_ino


def leftovers(lab: Any, spaces: set[int]) -> list[str]:
    """What a closed lab left: processes in its namespaces, mounts, its lab namespace."""
    left = [f"pid {p}" for p in lab.hosts[0]._our_processes(spaces)]
    left += [m for h in lab.hosts for m in h.mounts()]
    left += [lab.ns] if os.path.ismount(lab.ns) else []
    return left + [f"etcd {m.name}" for m in lab.etcd.members if m.pid is not None]


def test_the_lab_leaves_nothing_when_its_block_fails(tmp_path: Path) -> None:
    spaces: set[int] = set()
    with pytest.raises(LookupError, match="the block failed"), \
            skip_or_bench().Lab(tmp_path) as lab:
        lab.hosts[0].shoal_local("run", "-d", "--name", "c", "--", "sleep", "1000")
        spaces = {i for h in lab.hosts for i in h.namespaces()}
        assert len(spaces) >= 7  # three hosts, three outsides, a sandbox
        raise LookupError("the block failed")
    assert leftovers(lab, spaces) == []


def test_the_lab_leaves_nothing_when_etcd_does_not_start(tmp_path: Path) -> None:
    # member 2's data directory is a file: that etcd exits at once, and setting up fails
    (tmp_path / "etcd").mkdir(parents=True)
    (tmp_path / "etcd" / "m2.data").write_text("not a directory")
    lab = skip_or_bench().Lab(tmp_path)
    with pytest.raises(RuntimeError, match="etcd member m2 exited"), lab:
        pass
    assert lab.etcd.members[0].proc is not None  # (it got as far as starting them)
    assert leftovers(lab, set()) == []
    assert not any(os.path.exists(h.ns) and os.path.ismount(h.ns) for h in lab.hosts)
