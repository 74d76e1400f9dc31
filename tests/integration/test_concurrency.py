"""Many shoal commands at once: one writer at a time, nothing handed out twice."""

from __future__ import annotations

import subprocess
import sys

from .harness import Host


def _many(host: Host, argv_list: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    base = ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal", "--root", host.root,
            "--run-dir", host.run_dir]
    procs = [subprocess.Popen(base + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=host.env()) for argv in argv_list]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_fifty_concurrent_runs_on_one_network(host: Host) -> None:
    host.shoal("network", "create", "crowd")
    results = _many(host, [["run", "-d", "--network", "crowd", "--", "sleep", "120"]] * 50)
    assert [r.returncode for r in results] == [0] * 50, [r.stderr for r in results if r.stderr]
    members = host.shoal_json("network", "inspect", "crowd")[0]["Containers"]
    addrs = {m["IPv4Address"] for m in members.values()}
    assert len(members) == 50 and len(addrs) == 50
    names = [m["Name"] for m in members.values()]
    first, last = names[0], names[-1]
    assert host.ping_ok(first, next(iter(members.values()))["IPv4Address"].split("/")[0])
    assert host.ping_ok(last, list(members.values())[0]["IPv4Address"].split("/")[0])


def test_concurrent_network_creates_never_share_a_subnet(host: Host) -> None:
    host.shoal("network", "ls")
    results = _many(host, [["network", "create", f"n{i}"] for i in range(10)])
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    subnets = [host.shoal_json("network", "inspect", f"n{i}")[0]["IPAM"]["Config"][0]["Subnet"]
               for i in range(10)]
    assert len(set(subnets)) == 10


def test_concurrent_publish_all_never_shares_a_host_port(host: Host) -> None:
    host.shoal("network", "ls")
    results = _many(host, [["run", "-d", "--name", f"p{i}", "--expose", "80", "-P", "--",
                            "sleep", "120"] for i in range(10)])
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    ports = [host.shoal("port", f"p{i}", "80").stdout.strip() for i in range(10)]
    assert len(set(ports)) == 10


def test_readers_are_not_blocked_by_a_writer(host: Host) -> None:
    host.shoal("network", "ls")
    writer = subprocess.Popen(
        ["nsenter", f"--net={host.ns}", sys.executable, "-c",
         "import sys, time; sys.path.insert(0, sys.argv[3]); from shoal.store import Store; "
         "s = Store(sys.argv[1]); cm = s.locked(); cm.__enter__(); print('locked', flush=True); "
         "time.sleep(float(sys.argv[2]))", host.root, "600", host.env()["PYTHONPATH"]],
        stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "locked"
    # the writer holds the lock for ten minutes: a reader that waited for it would time out
    host.shoal("network", "ls", timeout=30)
    host.shoal("ps", "-a", timeout=30)
    host.shoal("network", "inspect", "bridge", timeout=30)
    writer.kill()
    writer.wait()
