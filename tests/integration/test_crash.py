"""Crash safety: a shoal command killed with SIGKILL at any step leaves a state the next
command repairs by itself, so that the kernel, the store and the allocations agree and
traffic works for what remains."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .harness import HOST_ADDR, OUTSIDE_ADDR, Host
from .servers import TCP

PY = sys.executable


def _shoal_crashing(host: Host, point: str, *args: str) -> tuple[int, str]:
    """Run shoal with a crash point; (exit status, stderr). Output goes to a file: a command
    started in a container keeps a pipe open after shoal itself was killed."""
    cmd = ["nsenter", f"--net={host.ns}", PY, "-m", "shoal", "--root", host.root,
           "--run-dir", host.run_dir, *args]
    err = host.base / "stderr"
    with open(err, "w") as f:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=f, timeout=60, cwd=str(host.base),
                              env={**host.env(), "SHOAL_CRASH_AT": point})
    return proc.returncode, err.read_text()


def assert_consistent(host: Host) -> None:
    """The kernel matches the store: every shoal veth, bridge, namespace and port rule belongs
    to a running container or a network, and every running container has all of its own."""
    containers = [host.shoal_json("inspect", cid)[0]
                  for cid in host.shoal("ps", "-a", "-q", "--no-trunc").stdout.split()]
    assert all(c["State"]["Status"] in ("running", "exited") for c in containers), containers
    running = [c for c in containers if c["State"]["Running"]]
    veths = {"vsh" + n["EndpointID"][:12]: n for c in running
             for n in c["NetworkSettings"]["Networks"].values() if n["EndpointID"]}
    networks = [host.shoal_json("network", "inspect", n)[0]
                for n in host.shoal("network", "ls", "-q", "--no-trunc").stdout.split()]
    bridges = {n["Options"].get("shoal.bridge.name") or "sh-" + n["Id"][:12]
               for n in networks if n["Driver"] == "bridge"}

    def kernel_matches() -> bool:
        links = host.links()
        have_veths = {name for name in links if name.startswith("vsh")}
        have_bridges = {name for name in links if name.startswith("sh-") or name == "shoal0"}
        return have_veths == set(veths) and have_bridges == bridges
    host.wait_for(kernel_matches, what="kernel links to match the store")
    links = host.links()
    for veth in veths:
        assert links[veth].get("master") in bridges and "UP" in links[veth]["flags"]
    sandboxes = {c["NetworkSettings"]["SandboxKey"] for c in running
                 if c["NetworkSettings"]["SandboxKey"]}
    netns_dir = os.path.join(host.run_dir, "netns")
    files = {os.path.join(netns_dir, f) for f in os.listdir(netns_dir)}
    assert files == sandboxes
    assert {p for p in host.mounts() if p.startswith(netns_dir + "/")} == sandboxes
    ports = sum(len(v or []) for c in running for v in c["NetworkSettings"]["Ports"].values())
    if host.backend == "iptables":
        saved = host.in_ns(host.ns, "iptables-save", check=True).stdout
        assert saved.count("-j DNAT") == ports, saved
    else:
        ruleset = host.in_ns(host.ns, "nft", "list", "ruleset", check=True).stdout
        assert ruleset.count(" : 172.") == ports, ruleset


def _works(host: Host, port: int) -> None:
    host.shoal("run", "-d", "--name", f"probe{port}", "-p", f"{port}:8000", "--",
               PY, "-c", TCP, "8000")
    host.wait_for(lambda: host.fetch(host.outside, HOST_ADDR, port) == OUTSIDE_ADDR,
                  what="a new container's published port")


# (crash point, command, who crashes: the command itself, or the supervisor of `web`,
# which records a detached container's exit)
SCENARIOS = [
    ("network-create:row", ["network", "create", "n2"]),
    ("network-create:bridge", ["network", "create", "n2"]),
    ("network-rm:row", ["network", "rm", "spare"]),
    ("run:rows", ["run", "-d", "--name", "x", "-p", "9100:80", "--", "sleep", "60"]),
    ("run:sandbox", ["run", "-d", "--name", "x", "-p", "9100:80", "--", "sleep", "60"]),
    ("run:firewall", ["run", "-d", "--name", "x", "-p", "9100:80", "--", "sleep", "60"]),
    ("run:spawned", ["run", "--name", "x", "-p", "9100:80", "--", "sleep", "60"]),
    ("stop:released", ["stop", "-t", "1", "web"]),  # crashes web's supervisor
    ("stop:released", ["rm", "-f", "web"]),
    ("connect:row", ["network", "connect", "spare", "web"]),
    ("connect:attached", ["network", "connect", "spare", "web"]),
    ("disconnect:row", ["network", "disconnect", "app", "web"]),
]


@pytest.mark.parametrize(("point", "command"), SCENARIOS,
                         ids=[f"{p}-{c[0]}" for p, c in SCENARIOS])
def test_killed_command_is_repaired_by_the_next_one(fw_host: Host, point: str,
                                                    command: list[str]) -> None:
    host = fw_host
    host.shoal("network", "create", "app")
    host.shoal("network", "create", "spare")
    web = ["run", "-d", "--name", "web", "--network", "app", "-p", "8080:8000", "--",
           PY, "-c", TCP, "8000"]
    if point.startswith("stop:"):
        # the exit of a detached container is recorded by its supervisor: crash that one
        code, err = _shoal_crashing(host, point, *web)
        assert code == 0, err
        host.shoal(*command)
        if command[0] == "stop":  # the crashed supervisor left the sandbox mounted
            assert os.listdir(os.path.join(host.run_dir, "netns"))
    else:
        host.shoal(*web)
        if command[:2] == ["network", "disconnect"]:
            host.shoal("network", "connect", "spare", "web")
        code, err = _shoal_crashing(host, point, *command)
        assert code == -9, (code, err)
    host.shoal("ps", "-a")  # any command repairs first
    assert_consistent(host)
    _works(host, 9200)
    assert_consistent(host)
