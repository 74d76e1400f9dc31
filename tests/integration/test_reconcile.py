"""Repairs: processes that died unwatched, leftovers with shoal's names, a host restart."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from .harness import HOST_ADDR, OUTSIDE_ADDR, Host
from .servers import TCP
from .test_firewall import PY, _tcp_server


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def _supervisor_of(host: Host, name: str) -> int:
    out = subprocess.run(["ps", "-o", "ppid=", "-p", str(host.shoal_json("inspect", name)[0]
                                                        ["State"]["Pid"])],
                         capture_output=True, text=True).stdout
    return int(out.strip())


def test_unsupervised_death_is_repaired(host: Host) -> None:
    _tcp_server(host, "web", 8000, args=("-p", "8080:8000"))
    info = host.shoal_json("inspect", "web")[0]
    peer = "vsh" + info["NetworkSettings"]["Networks"]["bridge"]["EndpointID"][:12]
    supervisor = _supervisor_of(host, "web")
    _kill(supervisor)  # the supervisor first, so nobody records the exit
    _kill(info["State"]["Pid"])
    host.wait_for(lambda: host.shoal_json("inspect", "web")[0]["State"]["Status"] == "exited",
                  what="ps to see the process gone")
    out = host.shoal("system", "reconcile").stdout
    assert "container web: its process is gone; marked exited" in out
    host.wait_for(lambda: peer not in host.links(), what="veth removal")
    assert os.listdir(os.path.join(host.run_dir, "netns")) == []
    assert "8080" not in host.in_ns(host.ns, "nft", "list", "ruleset").stdout
    # its port and address are free again
    _tcp_server(host, "web2", 8000, args=("-p", "8080:8000"))
    assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
    assert host.shoal("system", "reconcile").stdout.strip() == "nothing to repair"


def test_leftovers_with_shoals_names_are_removed_and_others_kept(host: Host) -> None:
    host.shoal("network", "ls")
    host.ip("link", "add", "vsh0123456789ab", "type", "veth", "peer", "name", "keepme0")
    host.ip("link", "add", "sh-0123456789ab", "type", "bridge")
    host.ip("link", "add", "mybridge", "type", "bridge")
    stale = os.path.join(host.run_dir, "netns", "f" * 64)
    os.makedirs(os.path.dirname(stale), exist_ok=True)
    open(stale, "w").close()
    subprocess.run(["unshare", f"--net={stale}", "true"], check=True)
    out = host.shoal("system", "reconcile").stdout
    assert "removed veth vsh0123456789ab" in out and "removed bridge sh-0123456789ab" in out
    assert "removed namespace ffffffffffff" in out
    links = host.links()
    assert "vsh0123456789ab" not in links and "keepme0" not in links  # its peer goes with it
    assert "sh-0123456789ab" not in links and "mybridge" in links and "shoal0" in links
    assert not os.path.exists(stale) and stale not in host.mounts()


def test_host_restart_restores_networks_and_marks_containers_exited(host: Host) -> None:
    host.shoal("network", "create", "app")
    host.shoal("run", "-d", "--name", "web", "--network", "app", "-p", "8080:8000", "--",
               PY, "-c", TCP, "8000")
    host.shoal("run", "-d", "--rm", "--name", "temp", "--", "sleep", "60")
    host.restart_host(["app"])

    ps = host.shoal("ps", "-a").stdout
    assert "web" in ps and "Exited" in ps and "temp" not in ps  # --rm removed it
    links = host.links()
    assert "shoal0" in links and any(n.startswith("sh-") for n in links)
    assert "map ports_any" in host.in_ns(host.ns, "nft", "list", "ruleset").stdout
    # network inspect lists running containers only (as Docker), and no address stays
    # allocated to a container that does not run
    assert host.shoal_json("network", "inspect", "app")[0]["Containers"] == {}
    web = host.shoal_json("inspect", "web")[0]["NetworkSettings"]["Networks"]["app"]
    assert (web["IPAddress"], web["EndpointID"]) == ("", "")
    # the restored network works, and the old host port is free
    _tcp_server(host, "web2", 8000, args=("-p", "8080:8000"), network="app")
    assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
    # and names: the embedded resolver (killed with everything) is back with the first
    # container on a user-defined network
    looked_up = host.shoal("run", "--rm", "--network", "app", "--", "getent", "hosts",
                           "web2").stdout.split()
    assert looked_up[:2] == [host.ip_of("web2", "app"), "web2"]


def test_system_prune(host: Host) -> None:
    host.shoal("network", "create", "unused")
    host.shoal("network", "create", "used")
    host.shoal("run", "--name", "done", "--", "true")
    host.shoal("run", "-d", "--name", "alive", "--network", "used", "--", "sleep", "60")
    out = host.shoal("system", "prune", "-f").stdout
    lines = out.splitlines()
    assert "Deleted Containers:" in lines and "unused" in lines and "used" not in lines
    names = host.shoal("ps", "-a").stdout
    assert "alive" in names and "done" not in names.split()
    nets = host.shoal("network", "ls").stdout
    assert "unused" not in nets and "used" in nets


def test_firewall_flushed_by_hand_is_rewritten_by_the_next_change(fw_host: Host) -> None:
    host = fw_host
    _tcp_server(host, "web", 8000, args=("-p", "8080:8000"))
    if host.backend == "nftables":
        host.in_ns(host.ns, "nft", "flush", "ruleset", check=True)
    else:
        host.in_ns(host.ns, "iptables", "-t", "nat", "-F", check=True)
    host.shoal("rm", "-f", "web")  # removing its rules finds them gone: all are rewritten
    _tcp_server(host, "web2", 8000, args=("-p", "8081:8000"))
    assert host.fetch(host.outside, HOST_ADDR, 8081) == OUTSIDE_ADDR


def test_run_directory_deleted_while_containers_run(host: Host) -> None:
    _tcp_server(host, "web", 8000, args=("-p", "8080:8000"))
    sandbox = host.sandbox("web")
    for point in sorted(host.mounts(), key=len, reverse=True):
        if point.startswith(host.run_dir):
            subprocess.run(["umount", "-l", point], check=True)
    shutil.rmtree(host.run_dir)
    out = host.shoal("system", "reconcile").stdout
    assert "container web: its namespace mount was gone; mounted again" in out
    assert sandbox in host.mounts()
    assert host.in_container("web", "hostname").returncode == 0
    assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR
    host.shoal("network", "create", "later")
    host.shoal("network", "connect", "later", "web")  # works on the re-mounted sandbox
    assert "eth1" in host.links(ns=sandbox)
    host.shoal("rm", "-f", "web")
    host.wait_for(lambda: not [n for n in host.links() if n.startswith("vsh")],
                  what="veth removal")


def test_bridge_deleted_by_hand_is_recreated_on_use(host: Host) -> None:
    host.shoal("network", "ls")
    host.ip("link", "del", "shoal0")
    _tcp_server(host, "web", 8000, args=("-p", "8080:8000"))
    assert "shoal0" in host.links()
    assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR


@pytest.mark.parametrize(("backend", "package"), [("iptables", "iptables"),
                                                  ("nftables", "nftables")])
def test_missing_firewall_tool_is_a_clear_error(host: Host, backend: str, package: str
                                                ) -> None:
    # shoal looks for its tools in /usr/sbin, /usr/bin, /sbin and /bin whatever the PATH:
    # the tools are made missing by an empty /usr/sbin in a mount namespace of the test's own
    env = {**host.env(), "SHOAL_FIREWALL_BACKEND": backend,
           "SHOAL_LIBNFTABLES": "/nonexistent/libnftables.so"}
    shoal = [shutil.which("nsenter") or "nsenter", f"--net={host.ns}", PY, "-m", "shoal",
             "--root", host.root, "--run-dir", host.run_dir, "network", "ls"]
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                          'mount -t tmpfs none /usr/sbin && exec "$@"', "sh", *shoal],
                         capture_output=True, text=True, env=env, timeout=60)
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0 and len(lines) == 1, res.stderr
    assert f"apt-get install {package}" in lines[0] and "Traceback" not in res.stderr


def test_state_and_run_directories_are_private(host: Host) -> None:
    host.shoal("run", "-d", "--name", "c", "--", "sleep", "60")
    for path in (host.root, host.run_dir, os.path.join(host.root, "shoal.db")):
        assert os.stat(path).st_mode & 0o077 == 0, oct(os.stat(path).st_mode)
