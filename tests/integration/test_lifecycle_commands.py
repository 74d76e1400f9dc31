"""The lifecycle commands as Docker has them: start, restart, kill, wait, rename, top,
stats --no-stream, and --restart kept by the supervisor (and after a host reboot)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from .harness import HOST_ADDR, OUTSIDE_ADDR, Host
from .servers import TCP

PY = sys.executable


def _web(host: Host, name: str = "web", *opts: str, network: str = "app") -> None:
    host.shoal("run", "-d", "--name", name, "--network", network, *opts, "--",
               PY, "-c", TCP, "8000")
    host.wait_for(lambda: host.fetch(host.sandbox(name), "127.0.0.1", 8000) is not None,
                  what=f"{name} to listen")


def _state(host: Host, name: str) -> dict[str, object]:
    return host.shoal_json("inspect", name)[0]["State"]


def _lookup(host: Host, client: str, name: str) -> list[str]:
    """What `name` resolves to in `client`, through its resolv.conf (127.0.0.11)."""
    res = host.in_container(client, "getent", "hosts", name, check=False)
    return res.stdout.split()[:1]


def _fails(res: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert res.returncode == code, (res.returncode, res.stderr)
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    for word in words:
        assert word in res.stderr, res.stderr


# -- start -----------------------------------------------------------------------------------------


def test_start_brings_back_address_ports_names_and_later_networks(host: Host) -> None:
    host.shoal("network", "create", "--subnet", "10.77.0.0/24", "app")
    host.shoal("network", "create", "--subnet", "10.78.0.0/24", "other")
    _web(host, "web", "--ip", "10.77.0.50", "-p", "8080:8000")
    host.shoal("run", "-d", "--name", "client", "--network", "app", "--", "sleep", "1000")
    assert host.shoal("stop", "-t", "1", "web").stdout == "web\n"
    assert host.fetch(host.outside, HOST_ADDR, 8080) is None
    assert _lookup(host, "client", "web") == []
    host.shoal("network", "connect", "other", "web")  # joined when it starts
    assert host.shoal("start", "web").stdout == "web\n"
    # when start returns: the address asked for, the published port, the name
    assert host.ip_of("web", "app") == "10.77.0.50"
    assert _lookup(host, "client", "web") == ["10.77.0.50"]
    host.wait_for(lambda: host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR,
                  what="the published port after start")
    assert host.ip_of("web", "other").startswith("10.78.0.")
    links = host.links(ns=host.sandbox("web"))
    assert {"eth0", "eth1"} <= set(links)
    route = host.ip("route", "show", "default", ns=host.sandbox("web"))
    assert "10.77.0.1" in route and "eth0" in route
    # start of a running container: nothing changes, its name is printed
    pid = _state(host, "web")["Pid"]
    assert host.shoal("start", "web").stdout == "web\n"
    assert _state(host, "web")["Pid"] == pid
    assert _state(host, "web")["Status"] == "running"


def test_start_gets_an_address_from_ipam_and_random_ports_again(host: Host) -> None:
    host.shoal("run", "-d", "--name", "s", "-p", "8000", "--", "sleep", "1000")
    host.shoal("stop", "-t", "0", "s")
    info = host.shoal_json("inspect", "s")[0]["NetworkSettings"]
    assert info["IPAddress"] == ""
    host.shoal("start", "s")
    info = host.shoal_json("inspect", "s")[0]["NetworkSettings"]
    assert info["IPAddress"].startswith("172.17.")
    assert len(info["Ports"]["8000/tcp"]) == 1
    assert host.shoal("port", "s", "8000").stdout.startswith("0.0.0.0:")


def test_start_with_its_fixed_port_taken_fails_and_leaves_nothing(host: Host) -> None:
    host.shoal("network", "create", "app")
    _web(host, "web", "-p", "8080:8000")
    host.shoal("stop", "-t", "0", "web")
    _web(host, "thief", "-p", "8080:8000")
    netns = os.path.join(host.run_dir, "netns")
    before = sorted(os.listdir(netns))
    res = host.shoal("start", "web", check=False)
    _fails(res, 1, "8080")
    assert _state(host, "web")["Status"] == "exited"
    assert host.shoal_json("inspect", "web")[0]["NetworkSettings"]["Networks"]["app"][
        "IPAddress"] == ""
    assert sorted(os.listdir(netns)) == before
    assert host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR  # the thief's still
    host.shoal("rm", "-f", "thief")
    host.shoal("start", "web")
    host.wait_for(lambda: host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR,
                  what="web's port")


@pytest.mark.parametrize("point", ["start:rows", "run:sandbox", "run:firewall"])
def test_a_start_killed_half_way_leaves_the_container_stopped(host: Host, point: str) -> None:
    from .test_crash import _shoal_crashing, _works, assert_consistent

    host.shoal("network", "create", "app")
    _web(host, "web", "-p", "8080:8000")
    host.shoal("stop", "-t", "0", "web")
    code, err = _shoal_crashing(host, point, "start", "web")
    assert code == -9, (code, err)
    host.shoal("ps", "-a")  # any command repairs first
    assert _state(host, "web")["Status"] == "exited"  # rolled back, not removed
    assert_consistent(host)
    host.shoal("start", "web")
    host.wait_for(lambda: host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR,
                  what="web's port")
    _works(host, 9200)
    assert_consistent(host)


def test_start_and_other_commands_of_a_missing_container(host: Host) -> None:
    for cmd in (("start",), ("restart",), ("kill",), ("wait",), ("top",), ("rename",)):
        args = [*cmd, "nope"] + (["new"] if cmd == ("rename",) else [])
        _fails(host.shoal(*args, check=False), 1, "no such container: nope")


# -- kill, wait, restart ---------------------------------------------------------------------------


def test_kill_with_a_signal_records_128_plus_it_and_wait_prints_it(host: Host) -> None:
    host.shoal("run", "-d", "--name", "a", "--", "sleep", "1000")
    host.shoal("run", "-d", "--name", "b", "--", "sleep", "1000")
    host.shoal("run", "-d", "--name", "c", "--", "sleep", "1000")
    waiter = subprocess.Popen(["nsenter", f"--net={host.ns}", PY, "-m", "shoal", "--root",
                               host.root, "--run-dir", host.run_dir, "wait", "a", "b"],
                              stdout=subprocess.PIPE, text=True, env=host.env())
    assert host.shoal("kill", "-s", "TERM", "a").stdout == "a\n"
    assert host.shoal("kill", "--signal", "SIGHUP", "b").stdout == "b\n"
    out, _ = waiter.communicate(timeout=30)
    assert out == "143\n129\n" and waiter.returncode == 0
    assert host.shoal("kill", "-s", "9", "c").stdout == "c\n"  # KILL: returns once recorded
    assert _state(host, "c")["ExitCode"] == 137 and _state(host, "c")["Status"] == "exited"
    assert host.shoal("wait", "c").stdout == "137\n"
    _fails(host.shoal("kill", "a", check=False), 1, "is not running")
    _fails(host.shoal("kill", "-s", "NOPE", "a", check=False), 2, "invalid signal: NOPE")


def test_wait_sleeps_rather_than_spins(host: Host) -> None:
    host.shoal("run", "-d", "--name", "w", "--", "sh", "-c", "sleep 3; exit 7")
    start = time.monotonic()
    waiter = subprocess.Popen(["nsenter", f"--net={host.ns}", PY, "-m", "shoal", "--root",
                               host.root, "--run-dir", host.run_dir, "wait", "w"],
                              stdout=subprocess.PIPE, text=True, env=host.env())
    out = waiter.stdout.read() if waiter.stdout else ""
    _pid, status, usage = os.wait4(waiter.pid, 0)
    waiter.returncode = os.waitstatus_to_exitcode(status)
    assert out == "7\n" and waiter.returncode == 0
    assert time.monotonic() - start >= 2.5
    cpu = usage.ru_utime + usage.ru_stime
    assert cpu < 1.0, f"shoal wait used {cpu:.2f}s of CPU in 3 s"


def test_restart_runs_it_again(host: Host) -> None:
    host.shoal("network", "create", "app")
    _web(host, "web", "-p", "8080:8000")
    pid = _state(host, "web")["Pid"]
    assert host.shoal("restart", "-t", "1", "web").stdout == "web\n"
    state = _state(host, "web")
    assert state["Status"] == "running" and state["Pid"] != pid
    host.wait_for(lambda: host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR,
                  what="the port after restart")
    host.shoal("stop", "-t", "0", "web")
    assert host.shoal("restart", "web").stdout == "web\n"  # a stopped one is started
    assert _state(host, "web")["Status"] == "running"


# -- rename ----------------------------------------------------------------------------------------


def test_rename_is_answered_at_once_and_the_old_name_is_not(host: Host) -> None:
    host.shoal("network", "create", "app")
    host.shoal("run", "-d", "--name", "web", "--network", "app", "--", "sleep", "1000")
    host.shoal("run", "-d", "--name", "client", "--network", "app", "--", "sleep", "1000")
    ip = host.ip_of("web", "app")
    assert _lookup(host, "client", "web") == [ip]
    assert host.shoal("rename", "web", "api").stdout == ""
    assert _lookup(host, "client", "api") == [ip]
    assert _lookup(host, "client", "web") == []
    assert host.shoal_json("inspect", "api")[0]["Name"] == "/api"
    assert "api" in host.shoal("ps").stdout.split()
    _fails(host.shoal("rename", "api", "client", check=False), 1, "already in use")
    _fails(host.shoal("rename", "api", "api", check=False), 1, "same name")
    _fails(host.shoal("rename", "api", "bad name", check=False), 2, "bad name")


# -- top and stats ---------------------------------------------------------------------------------


def test_top_lists_the_processes_of_the_container(host: Host) -> None:
    host.shoal("run", "-d", "--name", "t", "--", "sh", "-c", "sleep 1001 & sleep 1002")
    host.wait_for(lambda: "sleep 1001" in host.shoal("top", "t").stdout, what="both sleeps")
    lines = host.shoal("top", "t").stdout.splitlines()
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    cmds = [line.split(None, 7)[7] for line in lines[1:]]
    assert sorted(cmds) == ["sh -c sleep 1001 & sleep 1002", "sleep 1001", "sleep 1002"]
    assert lines[0].startswith("UID" + " " * 17 + "PID")  # Docker's 20-wide cells
    custom = host.shoal("top", "t", "-o", "pid,comm").stdout.splitlines()
    assert custom[0].split() == ["PID", "COMMAND"]
    assert sorted(line.split()[1] for line in custom[1:]) == ["sh", "sleep", "sleep"]
    host.shoal("stop", "-t", "0", "t")
    _fails(host.shoal("top", "t", check=False), 1, "is not running")


def test_stats_shows_dockers_columns_and_the_sandboxes_traffic(host: Host) -> None:
    host.shoal("network", "create", "app")
    host.shoal("run", "-d", "--name", "pinger", "--network", "app", "--", "sleep", "1000")
    host.shoal("run", "-d", "--name", "idle", "--", "sleep", "1000")
    gateway = host.shoal_json("network", "inspect", "app")[0]["IPAM"]["Config"][0]["Gateway"]
    assert host.ping_ok("pinger", gateway)
    out = host.shoal("stats", "--no-stream").stdout.splitlines()
    header = out[0]
    titles = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O",
              "BLOCK I/O", "PIDS"]
    positions = [header.index(t) for t in titles]
    assert positions == sorted(positions)
    rows = {line.split()[1]: line for line in out[1:]}
    assert set(rows) == {"pinger", "idle"}
    net = rows["pinger"][positions[5]:positions[6]].strip()
    rx, tx = (part.strip() for part in net.split("/"))
    assert rx != "0B" and tx != "0B" and rx.endswith("B"), net
    assert rows["pinger"][positions[7]:].strip() == "1"
    assert "%" in rows["pinger"][positions[2]:positions[3]]
    assert "iB / " in rows["pinger"][positions[3]:positions[4]]
    one = host.shoal("stats", "--no-stream", "--format", "json", "idle").stdout.splitlines()
    row = json.loads(one[0])
    assert len(one) == 1 and row["Name"] == "idle"
    assert set(row) >= {"ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO",
                        "PIDs"}
    host.shoal("stop", "-t", "0", "idle")
    _fails(host.shoal("stats", "--no-stream", "idle", check=False), 1, "is not running")


# -- --restart -------------------------------------------------------------------------------------


def _runs(host: Host, name: str) -> int:
    return host.shoal("logs", name).stdout.count("run\n")


def test_restart_on_failure_2_restarts_exactly_twice(host: Host) -> None:
    host.shoal("run", "-d", "--name", "f", "--restart", "on-failure:2", "--",
               "sh", "-c", "echo run; exit 3")
    assert host.shoal("wait", "f").stdout == "3\n"
    info = host.shoal_json("inspect", "f")[0]
    assert info["RestartCount"] == 2
    assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure",
                                                   "MaximumRetryCount": 2}
    assert _runs(host, "f") == 3
    # a success is not restarted by on-failure
    host.shoal("run", "-d", "--name", "ok", "--restart", "on-failure", "--",
               "sh", "-c", "echo run")
    assert host.shoal("wait", "ok").stdout == "0\n"
    assert _runs(host, "ok") == 1


def test_restart_always_restarts_until_stopped_and_keeps_its_name(host: Host) -> None:
    host.shoal("network", "create", "app")
    host.shoal("run", "-d", "--name", "client", "--network", "app", "--", "sleep", "1000")
    host.shoal("run", "-d", "--name", "loop", "--network", "app", "--restart", "always",
               "--", "sh", "-c", "echo run; sleep 0.3")
    ip = host.ip_of("loop", "app")
    host.wait_for(lambda: _runs(host, "loop") >= 3, what="two restarts")
    assert _lookup(host, "client", "loop") == [ip]  # the name stays while it restarts
    assert host.ip_of("loop", "app") == ip
    assert host.shoal("stop", "-t", "1", "loop").stdout == "loop\n"
    assert _state(host, "loop")["Status"] == "exited"
    runs = _runs(host, "loop")
    time.sleep(1.5)
    assert _runs(host, "loop") == runs and _state(host, "loop")["Status"] == "exited"
    assert host.shoal_json("inspect", "loop")[0]["RestartCount"] >= 2
    # kill by the user is not undone either; start resets the count
    host.shoal("start", "loop")
    assert host.shoal_json("inspect", "loop")[0]["RestartCount"] == 0
    # (between two runs it is restarting: kill refuses then, as Docker's does)
    host.wait_for(lambda: host.shoal("kill", "loop", check=False).returncode == 0,
                  what="kill to find it running")
    time.sleep(1.0)
    assert _state(host, "loop")["Status"] == "exited"
    assert _state(host, "loop")["ExitCode"] == 137
    # nor is rm -f: nothing of it comes back
    host.shoal("start", "loop")
    host.shoal("rm", "-f", "loop")
    time.sleep(1.0)
    assert "loop" not in host.shoal("ps", "-a").stdout
    assert os.listdir(os.path.join(host.run_dir, "netns")) == [host.sandbox("client")
                                                               .rsplit("/", 1)[1]]


def test_restart_policy_errors_are_dockers(host: Host) -> None:
    _fails(host.shoal("run", "-d", "--rm", "--restart", "always", "--", "true", check=False),
           125, "conflicting options: --restart and --rm")
    _fails(host.shoal("run", "-d", "--restart", "sometimes", "--", "true", check=False),
           125, "invalid restart policy")
    _fails(host.shoal("run", "-d", "--restart", "always:3", "--", "true", check=False),
           125, "only on-failure")
    _fails(host.shoal("run", "--restart", "always", "--", "true", check=False), 125, "-d")
    assert host.shoal("ps", "-a", "-q").stdout == ""
    host.shoal("run", "-d", "--name", "plain", "--", "sleep", "1000")
    policy = host.shoal_json("inspect", "plain")[0]["HostConfig"]["RestartPolicy"]
    assert policy == {"Name": "no", "MaximumRetryCount": 0}


def test_a_reboot_brings_back_always_and_unless_stopped_containers(host: Host) -> None:
    host.shoal("network", "create", "app")
    _web(host, "web", "--restart", "always", "-p", "8080:8000")
    _web(host, "parked", "--restart", "always")  # stopped by the user: back after a reboot
    host.shoal("run", "-d", "--name", "kept", "--network", "app", "--restart",
               "unless-stopped", "--", "sleep", "1000")
    host.shoal("run", "-d", "--name", "off", "--network", "app", "--restart",
               "unless-stopped", "--", "sleep", "1000")
    host.shoal("run", "-d", "--name", "plain", "--network", "app", "--", "sleep", "1000")
    host.shoal("stop", "-t", "0", "off", "parked")
    # the reboot, as test_reconcile simulates one, and the state's boot id is another boot's
    host.restart_host(["app"])
    db = sqlite3.connect(f"{host.root}/shoal.db")
    try:
        with db:
            db.execute("UPDATE meta SET value='an-earlier-boot' WHERE key='boot-id'")
            assert db.total_changes == 1
    finally:
        db.close()

    names = host.shoal("ps", "--format", "json").stdout.splitlines()
    running = sorted(json.loads(line)["Names"] for line in names)
    assert running == ["kept", "parked", "web"]
    assert _state(host, "plain")["Status"] == "exited"
    assert _state(host, "off")["Status"] == "exited"
    host.wait_for(lambda: host.fetch(host.outside, HOST_ADDR, 8080) == OUTSIDE_ADDR,
                  what="web's port after the reboot")
    assert _lookup(host, "kept", "web") == [host.ip_of("web", "app")]
    # the next command is no reboot
    assert "kept" in host.shoal("ps").stdout
    assert host.shoal("system", "reconcile").stdout.strip() == "nothing to repair"
