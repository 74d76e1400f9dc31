"""shoal-cni's agent (plugins/cni/agent.py): after the first ADD it serves ADD, DEL and CHECK
with shoal's modules imported once; the answers are the ones the executable gives itself;
a killed, stopped, idle or outdated agent never fails a request; its socket is root's."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .cni import env_for, namespace, shoal_cni
from .harness import SRC, Host
from .test_cni import address, conf, ping


def _agent(host: Host) -> int | None:
    """The pid of the agent serving this host's run directory, if one runs."""
    lock = Path(host.run_dir, "cni", "agent.lock")
    try:
        pid = int(lock.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"shoal.plugins.cni.agent" in cmdline else None


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _started(host: Host) -> int:
    """Wait for the agent the last in-process call started; its pid."""
    found: list[int] = []

    def up() -> bool:
        pid = _agent(host)
        if pid is not None and Path(host.run_dir, "cni", "agent.sock").exists():
            found.append(pid)
            return True
        return False
    host.wait_for(up, timeout=30, what="shoal-cni's agent to listen")
    return found[-1]


def _popen(host: Host, command: str, config: dict[str, Any], cid: str, ns: str,
           **env: str) -> subprocess.Popen[bytes]:
    import json

    proc = subprocess.Popen(["nsenter", f"--net={host.ns}", sys.executable, "-m",
                             "shoal.plugins.cni"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env_for(host, command, cid, ns, "eth0", **env))
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(config).encode())
    proc.stdin.close()
    proc.stdin = None  # (communicate() then only reads)
    return proc


def test_the_agent_serves_the_calls_after_the_first(host: Host, tmp_path: Path) -> None:
    first = namespace(tmp_path, "a1.ns")
    out = shoal_cni(host, "ADD", conf(), "a1", first)
    assert out.rc == 0, out
    pid = _started(host)
    # a stopped agent holds the next ADD back: the call is the agent's
    os.kill(pid, signal.SIGSTOP)
    try:
        second = namespace(tmp_path, "a2.ns")
        proc = _popen(host, "ADD", conf(), "a2", second)
        try:
            proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        assert proc.returncode is None, proc.communicate()
    finally:
        os.kill(pid, signal.SIGCONT)
    out_b, err_b = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out_b, err_b)
    import json

    res = json.loads(out_b)
    assert ping(host, first, address(res))
    # DEL and CHECK through it too, and the answers are the executable's own
    check = shoal_cni(host, "CHECK", {**conf(), "prevResult": res}, "a2", second)
    assert check.rc == 0, check
    assert shoal_cni(host, "DEL", conf(), "a2", second).rc == 0
    assert "eth0" not in host.links(ns=second)
    assert _agent(host) == pid  # one agent served them all
    doctor = host.shoal("doctor", check=False).stdout
    assert f"shoal-cni's agent (pid {pid}) serves this run directory" in doctor, doctor


def test_errors_come_back_as_the_executable_gives_them(host: Host, tmp_path: Path) -> None:
    ns = namespace(tmp_path, "e1.ns")
    assert shoal_cni(host, "ADD", conf(), "e1", ns).rc == 0
    _started(host)
    bad = conf(ipam={"type": "dhcp"})
    through_agent = shoal_cni(host, "ADD", bad, "e2", namespace(tmp_path, "e2.ns"))
    alone = shoal_cni(host, "ADD", bad, "e3", namespace(tmp_path, "e3.ns"),
                      SHOAL_CNI_AGENT="0")
    assert through_agent.rc == alone.rc == 1
    assert through_agent.json["code"] == alone.json["code"] == 7
    assert through_agent.json["msg"] == alone.json["msg"]
    # an address in use is shoal's refusal, with shoal's words, either way
    taken = conf(runtimeConfig={"ips": ["10.90.0.50/24"]}, capabilities={"ips": True})
    assert shoal_cni(host, "ADD", taken, "e4", namespace(tmp_path, "e4.ns")).rc == 0
    again = shoal_cni(host, "ADD", taken, "e5", namespace(tmp_path, "e5.ns"))
    alone = shoal_cni(host, "ADD", taken, "e6", namespace(tmp_path, "e6.ns"),
                      SHOAL_CNI_AGENT="0")
    assert again.rc == alone.rc == 1 and again.json == alone.json, (again, alone)


def test_a_killed_agent_is_replaced_and_no_call_fails(host: Host, tmp_path: Path) -> None:
    assert shoal_cni(host, "ADD", conf(), "k1", namespace(tmp_path, "k1.ns")).rc == 0
    pid = _started(host)
    os.kill(pid, signal.SIGKILL)
    host.wait_for(lambda: not os.path.exists(f"/proc/{pid}") or _state(pid) == "Z",
                  what="the agent to die")
    ns = namespace(tmp_path, "k2.ns")
    out = shoal_cni(host, "ADD", conf(), "k2", ns)  # done by the executable itself
    assert out.rc == 0, out
    assert ping(host, ns, "10.90.0.1")
    assert _started(host) != pid  # and a new agent serves the next


def test_an_agent_that_dies_holding_a_request_leaves_it_to_the_executable(
        host: Host, tmp_path: Path) -> None:
    assert shoal_cni(host, "ADD", conf(), "d1", namespace(tmp_path, "d1.ns")).rc == 0
    pid = _started(host)
    os.kill(pid, signal.SIGSTOP)
    ns = namespace(tmp_path, "d2.ns")
    proc = _popen(host, "ADD", conf(), "d2", ns)
    time.sleep(0.5)  # (the request is in the agent's socket: it cannot take it while stopped)
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    assert ping(host, ns, "10.90.0.1")
    members = host.shoal_json("network", "inspect", "cninet")[0]["Containers"]
    assert sorted(m["Name"] for m in members.values()) == ["cni:d1", "cni:d2"]


def test_an_idle_agent_exits_and_takes_its_socket(host: Host, tmp_path: Path) -> None:
    out = shoal_cni(host, "ADD", conf(), "i1", namespace(tmp_path, "i1.ns"),
                    SHOAL_CNI_AGENT_IDLE="1")
    assert out.rc == 0, out
    pid = _started(host)
    host.wait_for(lambda: not os.path.exists(f"/proc/{pid}") or _state(pid) == "Z",
                  timeout=30, what="the idle agent to exit")
    assert not Path(host.run_dir, "cni", "agent.sock").exists()
    assert "shoal-cni's agent" not in host.shoal("doctor", check=False).stdout
    # and the next call works without it
    assert shoal_cni(host, "ADD", conf(), "i2", namespace(tmp_path, "i2.ns")).rc == 0


def test_the_agent_is_root_s_alone(host: Host, tmp_path: Path) -> None:
    assert shoal_cni(host, "ADD", conf(), "r1", namespace(tmp_path, "r1.ns")).rc == 0
    _started(host)
    directory = Path(host.run_dir, "cni")
    st = directory.stat()
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o700
    sock = (directory / "agent.sock").lstat()
    assert sock.st_uid == 0 and sock.st_mode & 0o077 == 0
    # another user cannot reach it at all
    code = (f"import socket; s = socket.socket(socket.AF_UNIX); "
            f"s.connect({str(directory / 'agent.sock')!r})")
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode != 0 and "PermissionError" in res.stderr, res.stderr


def test_shoal_code_changed_on_disk_is_not_served_by_the_old_agent(host: Host,
                                                                     tmp_path: Path) -> None:
    """An upgrade: the agent that imported the old code declines and exits; the executable
    runs the new code itself and starts an agent of the new code."""
    copy = tmp_path / "src"
    shutil.copytree(Path(SRC) / "shoal", copy / "shoal",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(copy)}
    assert shoal_cni(host, "ADD", conf(), "u1", namespace(tmp_path, "u1.ns"), **env).rc == 0
    old = _started(host)
    assert f"{copy}".encode() in Path(f"/proc/{old}/cmdline").read_bytes()
    module = copy / "shoal" / "plugins" / "cni" / "commands.py"
    stamp = module.stat().st_mtime_ns + 10**9
    os.utime(module, ns=(stamp, stamp))
    ns = namespace(tmp_path, "u2.ns")
    out = shoal_cni(host, "ADD", conf(), "u2", ns, **env)
    assert out.rc == 0, out
    assert ping(host, ns, "10.90.0.1")
    host.wait_for(lambda: not os.path.exists(f"/proc/{old}") or _state(old) == "Z",
                  what="the outdated agent to exit")
    assert _started(host) != old


def test_an_add_whose_caller_died_is_undone(host: Host, tmp_path: Path) -> None:
    """The runtime and the executable are killed while the agent holds their ADD: the agent
    does it, cannot answer, and undoes it (the runtime never saw the result)."""
    first = namespace(tmp_path, "w1.ns")
    assert shoal_cni(host, "ADD", conf(), "w1", first).rc == 0
    pid = _started(host)
    os.kill(pid, signal.SIGSTOP)
    ns = namespace(tmp_path, "w2.ns")
    try:
        proc = _popen(host, "ADD", conf(), "w2", ns)
        time.sleep(0.5)  # (sent: the request waits in the agent's socket)
        proc.kill()
        proc.wait()
    finally:
        os.kill(pid, signal.SIGCONT)
    # the agent answers one request at a time: once this one is answered, w2's is done
    assert shoal_cni(host, "ADD", conf(), "w3", namespace(tmp_path, "w3.ns")).rc == 0
    assert _agent(host) == pid
    assert "eth0" not in host.links(ns=ns)
    members = host.shoal_json("network", "inspect", "cninet")[0]["Containers"]
    assert sorted(m["Name"] for m in members.values()) == ["cni:w1", "cni:w3"]
