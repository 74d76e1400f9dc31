"""`shoal doctor` names each broken link of the path, with its fix."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import pytest

from .harness import OUTSIDE_ADDR, Host
from .servers import TCP
from .test_firewall import PY, _outside_server, _tcp_server


def _doctor(host: Host, *args: str) -> tuple[int, str]:
    res = host.shoal("doctor", *args, check=False)
    assert "Traceback" not in res.stderr
    return res.returncode, res.stdout


def _failures(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("FAIL")]


def _setup(host: Host) -> dict[str, str]:
    _tcp_server(host, "web", 8000, args=("-p", "8080:8000"))
    info = host.shoal_json("inspect", "web")[0]
    return {"sandbox": info["NetworkSettings"]["SandboxKey"],
            "veth": "vsh" + info["NetworkSettings"]["Networks"]["bridge"]["EndpointID"][:12]}


def test_healthy_host_checks_out(host: Host) -> None:
    _setup(host)
    _outside_server(host, 7000)
    code, out = _doctor(host, "web", "--to", f"{OUTSIDE_ADDR}:7000")
    assert code == 0, out
    assert "everything checks out" in out and "web connects to" in out


BREAKAGES = [
    # (how to break it, what doctor must say, what the fix must mention)
    ("eth0-down", "eth0 is down", "ip link set eth0 up"),
    ("address", "eth0 lacks its address 172.17.0.2", "ip addr add 172.17.0.2/16"),
    ("route", "no default route through the gateway 172.17.0.1", "ip route replace default"),
    ("veth-down", "is down", "ip link set vsh"),
    ("veth-nomaster", "is not plugged into bridge shoal0", "master shoal0"),
    ("bridge-down", "bridge shoal0 is down", "ip link set shoal0 up"),
    ("gateway", "lacks its gateway address 172.17.0.1/16", "ip addr add 172.17.0.1/16"),
    ("forwarding", "IP forwarding is off", "sysctl -w net.ipv4.ip_forward=1"),
    ("flushed", "shoal's firewall rules are missing", "shoal system reload-firewall"),
    # (shoal's accepts go there at its next change of the firewall; native nft rules in
    # iptables-nft's table, the advice before, make iptables refuse that table)
    ("foreign-drop", "ip filter FORWARD drops forwarded traffic", "shoal system reload-firewall"),
    ("port-taken", "host port 8080/tcp is also bound", "publish another host port"),
    ("shadowed", "is shadowed by ip other", "remove that rule"),
    ("namespace", "is not mounted", "shoal system reconcile"),
]


@pytest.mark.parametrize(("breakage", "message", "fix"), BREAKAGES,
                         ids=[b[0] for b in BREAKAGES])
def test_doctor_names_each_broken_link(host: Host, breakage: str, message: str,
                                       fix: str) -> None:
    where = _setup(host)
    sandbox, veth = where["sandbox"], where["veth"]
    inside = ["nsenter", f"--net={sandbox}", "ip"]
    steps = {
        "eth0-down": [inside + ["link", "set", "eth0", "down"]],
        "address": [inside + ["addr", "del", "172.17.0.2/16", "dev", "eth0"]],
        "route": [inside + ["route", "del", "default"]],
        "veth-down": [["ip", "link", "set", veth, "down"]],
        "veth-nomaster": [["ip", "link", "set", veth, "nomaster"]],
        "bridge-down": [["ip", "link", "set", "shoal0", "down"]],
        "gateway": [["ip", "addr", "del", "172.17.0.1/16", "dev", "shoal0"]],
        "forwarding": [["sysctl", "-w", "net.ipv4.ip_forward=0"]],
        "flushed": [["nft", "flush", "ruleset"]],
        "foreign-drop": [["nft", "add table ip filter; add chain ip filter FORWARD "
                                 "{ type filter hook forward priority 0; policy drop; }"]],
        "port-taken": [],
        "shadowed": [["nft", "add table ip other; add chain ip other pre { type nat hook "
                             "prerouting priority -150; }; add rule ip other pre tcp dport 8080 "
                             "dnat to 10.9.9.9"]],
        "namespace": [["umount", sandbox]],
    }[breakage]
    for cmd in steps:
        if cmd[0] in ("nsenter", "umount"):  # acting from outside the host namespace
            subprocess.run(cmd, check=True, capture_output=True)
        else:
            host.in_ns(host.ns, *cmd, check=True)
    if breakage == "port-taken":  # a host process on the published port (SO_REUSEADDR)
        # shoal holds the port while the container's supervisor lives: with it killed, a
        # host process can take the port
        cid = host.shoal_json("inspect", "web")[0]["Id"]
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
                if cid.encode() in f.read() and pid != str(os.getpid()):
                    os.kill(int(pid), signal.SIGKILL)
        host.background(host.ns, PY, "-c", TCP, "8080")
        host.wait_for(lambda: host.fetch(host.ns, "127.0.0.1", 8080) is not None,
                      what="host process")
    code, out = _doctor(host, "web")
    assert code == 1, out
    failures = _failures(out)
    hit = [line for line in failures if message in line]
    assert hit, out
    line_no = out.splitlines().index(hit[0])
    assert fix in out.splitlines()[line_no + 1], out
