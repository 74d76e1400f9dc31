"""A sandbox owns what runs in it: processes end with their container (cgroups), orphans are
repaired by the next command, shared sandboxes live as long as their last user, the bridge's
MAC and the default route stay put, reconcile re-creates what the state says exists, and
`stop` records the signal that ended a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .harness import HOST_ADDR, OUTSIDE_ADDR, Host
from .servers import TCP

PY = sys.executable
BG = "sleep 1000 >/dev/null 2>&1 &"  # a background child that outlives its parent


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return False
    return raw[raw.rindex(b")") + 2:].split()[0] not in (b"Z", b"X")


def _pids_in_netns(path: str) -> list[int]:
    """Processes in the network namespace mounted at `path` (found without shoal's help)."""
    inode = os.stat(path).st_ino
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/net") == f"net:[{inode}]":
                    out.append(int(entry))
            except OSError:
                pass
    return out


def _supervisor_of(host: Host, name: str) -> int:
    pid = host.shoal_json("inspect", name)[0]["State"]["Pid"]
    out = subprocess.run(["ps", "-o", "ppid=", "-p", str(pid)], capture_output=True,
                         text=True).stdout
    return int(out.strip())


def _names(host: Host, *flags: str) -> list[str]:
    out = host.shoal("ps", *flags, "--format", "json").stdout
    return [json.loads(line)["Names"] for line in out.splitlines()]


def _container_cgroups(host: Host) -> list[str]:
    return [g for g in host.cgroups() if Path(g).name != "supervisors"]


def _state(host: Host, name: str) -> dict[str, object]:
    return host.shoal_json("inspect", name)[0]["State"]


def _veth(host: Host, name: str, network: str) -> str:
    info = host.shoal_json("inspect", name)[0]
    return "vsh" + info["NetworkSettings"]["Networks"][network]["EndpointID"][:12]


def _gone(host: Host, pids: list[int], sandbox: str, veth: str) -> None:
    host.wait_for(lambda: not [p for p in pids if _alive(p)], timeout=15,
                  what=f"the container's processes {pids} to end")
    host.wait_for(lambda: veth not in host.links(), what=f"{veth} to go")
    assert not os.path.exists(sandbox)


# -- item 6: processes end with their container ------------------------------------------------

@pytest.mark.parametrize("how", ["exit", "stop", "rm", "reconcile"])
def test_every_process_of_a_container_ends_with_it(host: Host, how: str) -> None:
    host.shoal("network", "create", "--subnet", "10.77.0.0/24", "lab")
    go = host.base / "go"
    main = (f"while [ ! -e {go} ]; do sleep 0.05; done; exit 3" if how == "exit"
            else "exec sleep 1000")
    host.shoal("run", "-d", "--name", "c", "--network", "lab", "--ip", "10.77.0.10", "--",
               "sh", "-c", f"{BG} {PY} -m http.server 7000 >/dev/null 2>&1 & {main}")
    # and something started with exec, left running in the background
    started = host.in_container("c", "sh", "-c", f"{BG} echo $!").stdout.strip()
    sandbox, veth = host.sandbox("c"), _veth(host, "c", "lab")
    host.wait_for(lambda: host.tcp_ok("c", "127.0.0.1", 7000), what="the child's server")
    pids = _pids_in_netns(sandbox)
    assert int(started) in pids and len(pids) >= 4  # sh, sleep, server, exec's sleep

    if how == "exit":
        go.touch()
        host.wait_for(lambda: _state(host, "c")["Status"] == "exited", what="the exit")
        assert "Exited (3)" in host.shoal("ps", "-a").stdout
    elif how == "stop":
        host.shoal("stop", "-t", "1", "c")
    elif how == "rm":
        host.shoal("rm", "-f", "c")
    else:  # nobody watches any more: the supervisor and the main process are killed
        os.kill(_supervisor_of(host, "c"), signal.SIGKILL)
        os.kill(int(_state(host, "c")["Pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        assert "container c: its process is gone" in host.shoal("system", "reconcile").stdout
    _gone(host, pids, sandbox, veth)
    assert _container_cgroups(host) == []

    # the address, handed out again, is answered by the new container only
    if how != "rm":
        host.shoal("rm", "c")
    host.shoal("run", "-d", "--name", "new", "--network", "lab", "--ip", "10.77.0.10", "--",
               "sleep", "1000")
    host.shoal("run", "-d", "--name", "client", "--network", "lab", "--", "sleep", "1000")
    assert host.ping_ok("client", "10.77.0.10")
    assert not host.tcp_ok("client", "10.77.0.10", 7000)  # nobody serves there any more


def test_main_process_exit_releases_the_network_while_a_child_ignores_sigterm(host: Host
                                                                              ) -> None:
    host.shoal("run", "-d", "--name", "c", "-p", "8080:7000", "--", "sh", "-c",
               f"trap '' TERM; {BG} sleep 0.5; exit 0")
    sandbox, veth = host.sandbox("c"), _veth(host, "c", "bridge")
    pids = _pids_in_netns(sandbox)
    host.wait_for(lambda: _state(host, "c")["Status"] == "exited", what="the exit")
    _gone(host, pids, sandbox, veth)
    assert "Exited (0)" in host.shoal("ps", "-a").stdout
    assert host.shoal("port", "c").stdout.strip() == ""  # its port is released
    host.shoal("run", "-d", "--name", "d", "-p", "8080:7000", "--", "sleep", "1000")


# -- item 7: orphans are repaired by the next mutating command ---------------------------------

def test_a_killed_foreground_run_is_repaired_by_the_next_command(host: Host) -> None:
    host.shoal("network", "ls")  # the state exists before the polling below starts
    cmd = ["nsenter", f"--net={host.ns}", PY, "-m", "shoal", "--root", host.root,
           "--run-dir", host.run_dir, "run", "--rm", "--name", "fg", "-p", "8080:7000", "--",
           "sh", "-c", f"{BG} exec {PY} -m http.server 7000"]
    cli = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=host.env(), cwd=str(host.base))
    try:
        host.wait_for(lambda: "fg" in _names(host),
                      timeout=20, what="fg to run")
        sandbox = host.sandbox("fg")
        pids = _pids_in_netns(sandbox)
        veth = _veth(host, "fg", "bridge")
        cli.kill()  # the CLI is the foreground container's supervisor
    finally:
        cli.kill()
        cli.wait(timeout=30)
    # no `system reconcile`: the next command takes the port
    host.shoal("run", "-d", "--name", "web", "-p", "8080:7000", "--", PY, "-c", TCP, "7000")
    _gone(host, pids, sandbox, veth)
    assert "fg" not in _names(host, "-a")  # --rm honoured
    host.wait_for(lambda: host.tcp_ok("web", "127.0.0.1", 7000), what="web to listen")
    assert host.fetch(host.outside, HOST_ADDR, 8080, timeout=5) == OUTSIDE_ADDR


def test_a_container_whose_supervisor_died_is_killed_by_the_next_command(host: Host) -> None:
    host.shoal("run", "-d", "--name", "web", "-p", "8080:7000", "--", "sh", "-c",
               f"{BG} exec sleep 1000")
    sandbox, veth = host.sandbox("web"), _veth(host, "web", "bridge")
    pids = _pids_in_netns(sandbox)
    os.kill(_supervisor_of(host, "web"), signal.SIGKILL)  # as the OOM killer would
    res = host.shoal("run", "-d", "--name", "web2", "-p", "8080:7000", "--", "sleep", "1000",
                     check=False)
    assert res.returncode == 0, res.stderr
    _gone(host, pids, sandbox, veth)
    state = _state(host, "web")
    assert state["Status"] == "exited" and state["ExitCode"] == 137
    assert host.shoal("system", "reconcile").stdout.strip() == "nothing to repair"


# -- item 8: a shared sandbox lives until its last container stops ----------------------------

def test_a_shared_sandbox_outlives_its_owner(host: Host) -> None:
    host.shoal("network", "create", "--subnet", "10.78.0.0/24", "lab")
    host.shoal("run", "-d", "--name", "x", "--network", "lab", "--ip", "10.78.0.10", "--",
               "sleep", "1000")
    host.shoal("run", "-d", "--name", "y", "--network", "container:x", "--", "sleep", "1000")
    sandbox = host.sandbox("x")
    y_pid = int(_state(host, "y")["Pid"])  # type: ignore[call-overload]
    host.shoal("stop", "-t", "1", "x")
    assert _alive(y_pid)  # stopping x killed only x's processes
    assert _state(host, "y")["Running"]
    assert host.ping_ok("y", "10.78.0.1") and host.ping_ok("y", OUTSIDE_ADDR)
    assert "10.78.0.10" in host.ip("-br", "addr", ns=sandbox)
    # x's address is not handed out while y uses it
    res = host.shoal("run", "-d", "--name", "z", "--network", "lab", "--ip", "10.78.0.10",
                     "--", "sleep", "1000", check=False)
    assert res.returncode != 0 and "10.78.0.10" in res.stderr
    host.shoal("system", "reconcile")  # changes nothing of it
    assert host.ping_ok("y", OUTSIDE_ADDR)
    res = host.shoal("rm", "x", check=False)
    assert res.returncode != 0 and "y" in res.stderr
    host.shoal("stop", "-t", "1", "y")  # the last user: now the address goes
    host.wait_for(lambda: not [n for n in host.links() if n.startswith("vsh")],
                  what="x's veth to go")
    assert not os.path.exists(sandbox)
    host.shoal("run", "-d", "--name", "z", "--network", "lab", "--ip", "10.78.0.10", "--",
               "sleep", "1000")


def test_a_shared_sandbox_of_a_removed_owner_goes_with_its_last_user(host: Host) -> None:
    host.shoal("run", "-d", "--rm", "--name", "x", "--", "sleep", "1000")
    host.shoal("run", "-d", "--name", "y", "--network", "container:x", "--", "sleep", "1000")
    ip = host.ip_of("x", "bridge")
    host.shoal("stop", "-t", "1", "x")
    assert "x" in _names(host, "-a")
    assert host.ping_ok("y", "172.17.0.1")
    host.shoal("rm", "-f", "y")
    assert "x" not in _names(host, "-a")
    members = host.shoal_json("network", "inspect", "bridge")[0]["Containers"]
    assert ip not in str(members)  # nothing left of it
    host.wait_for(lambda: not [n for n in host.links() if n.startswith("vsh")],
                  what="x's veth to go")


# -- item 9: the bridge's MAC is fixed ----------------------------------------------------------

def _gateway_mac_seen_from(host: Host, ctr: str, gateway: str) -> str:
    assert host.ping_ok(ctr, gateway)
    for entry in host.ip_json("neigh", "show", gateway, ns=host.sandbox(ctr)):
        return str(entry["lladdr"])
    raise AssertionError("no neighbour entry for the gateway")


def test_the_gateway_mac_does_not_change_when_a_container_stops(host: Host) -> None:
    for name in ("a", "b", "c"):
        host.shoal("run", "-d", "--name", name, "--", "sleep", "1000")
    assert host.links()["shoal0"]["address"] == "02:42:ac:11:00:01"
    before = _gateway_mac_seen_from(host, "c", "172.17.0.1")
    assert before == "02:42:ac:11:00:01"
    host.shoal("stop", "-t", "1", "a", "b")
    assert host.links()["shoal0"]["address"] == before
    host.shoal("network", "create", "--subnet", "10.79.0.0/24", "lab")
    net = host.shoal_json("network", "inspect", "lab")[0]
    bridge = "sh-" + net["Id"][:12]
    assert host.links()[bridge]["address"] == "02:42:0a:4f:00:01"
    host.ip("link", "del", bridge)
    host.shoal("system", "reconcile")  # made again: with the same MAC
    assert host.links()[bridge]["address"] == "02:42:0a:4f:00:01"


# -- item 10: the default route moves to a remaining network ----------------------------------

def test_disconnecting_the_default_routes_network_moves_the_route(host: Host) -> None:
    host.shoal("network", "create", "--subnet", "10.80.0.0/24", "first")
    host.shoal("network", "create", "--internal", "--subnet", "10.81.0.0/24", "closed")
    host.shoal("network", "create", "--subnet", "10.82.0.0/24", "second")
    host.shoal("run", "-d", "--name", "c", "--network", "first", "--", "sleep", "1000")
    host.shoal("network", "connect", "closed", "c")
    host.shoal("network", "connect", "second", "c")
    assert host.ping_ok("c", OUTSIDE_ADDR)
    host.shoal("network", "disconnect", "first", "c")
    routes = host.ip_json("route", "show", "default", ns=host.sandbox("c"))
    assert [(r["gateway"], r["dev"]) for r in routes] == [("10.82.0.1", "eth2")]
    assert host.ping_ok("c", OUTSIDE_ADDR)
    doctor = host.shoal("doctor", "c", check=False)
    assert doctor.returncode == 0, doctor.stdout
    host.shoal("network", "disconnect", "second", "c")  # only the internal one is left
    assert host.ip_json("route", "show", "default", ns=host.sandbox("c")) == []


# -- item 11: reconcile re-creates an endpoint deleted by hand --------------------------------

def test_reconcile_recreates_a_veth_deleted_by_hand(host: Host) -> None:
    host.shoal("network", "create", "--subnet", "10.83.0.0/24", "lab")
    host.shoal("run", "-d", "--name", "c", "--network", "lab", "-p", "8080:7000", "--",
               PY, "-c", TCP, "7000")
    host.shoal("network", "connect", "bridge", "c")
    veth = _veth(host, "c", "lab")
    host.ip("link", "del", veth)
    doctor = host.shoal("doctor", "c", check=False)
    assert doctor.returncode == 1
    assert "c: eth0 (network lab) is missing" in doctor.stdout
    fixes = [line.strip() for line in doctor.stdout.splitlines() if "fix:" in line]
    assert fixes == ["fix: shoal system reconcile (it creates the endpoint again)"], doctor.stdout
    out = host.shoal("system", "reconcile").stdout
    assert "container c: its endpoint eth0 on network lab was missing; created again" in out
    nets = host.shoal_json("inspect", "c")[0]["NetworkSettings"]["Networks"]
    assert set(nets) == {"lab", "bridge"} and nets["lab"]["IPAddress"] == "10.83.0.2"
    assert veth in host.links() and host.links()[veth]["master"].startswith("sh-")
    routes = host.ip_json("route", "show", "default", ns=host.sandbox("c"))
    assert [(r["gateway"], r["dev"]) for r in routes] == [("10.83.0.1", "eth0")]
    host.wait_for(lambda: host.tcp_ok("c", "127.0.0.1", 7000), what="the server")
    assert host.fetch(host.outside, HOST_ADDR, 8080, timeout=5) == OUTSIDE_ADDR
    assert host.shoal("doctor", "c", check=False).returncode == 0
    assert host.shoal("system", "reconcile").stdout.strip() == "nothing to repair"


# -- item 14: stop without a supervisor records the signal that ended the process -------------

@pytest.mark.parametrize(("command", "code"), [
    (["sleep", "1000"], 143),  # died of the SIGTERM
    (["sh", "-c", "trap '' TERM; exec sleep 1000"], 137),  # ignored it: SIGKILL
])
def test_stop_without_a_supervisor_records_the_signal(host: Host, command: list[str],
                                                      code: int) -> None:
    host.shoal("run", "-d", "--name", "c", "--", *command)
    time.sleep(0.2)  # (the trap is set)
    os.kill(_supervisor_of(host, "c"), signal.SIGKILL)
    host.shoal("stop", "-t", "1", "c")
    state = _state(host, "c")
    assert state["Status"] == "exited" and state["ExitCode"] == code, state
    assert f"Exited ({code})" in host.shoal("ps", "-a").stdout


def test_cleanup_finds_the_cgroups_of_this_hosts_shoal(host: Host) -> None:
    host.shoal("run", "-d", "--name", "c", "--", "sleep", "1000")
    cid = host.shoal_json("inspect", "c")[0]["Id"]
    groups = _container_cgroups(host)
    assert [Path(g).name for g in groups] == [cid]
    supervisors = Path(host.cgroups()[0]).parent / "supervisors"
    assert str(_supervisor_of(host, "c")) in (supervisors / "cgroup.procs").read_text().split()
    procs = Path(groups[0], "cgroup.procs").read_text().split()
    assert str(_state(host, "c")["Pid"]) in procs
