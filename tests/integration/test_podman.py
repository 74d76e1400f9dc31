"""shoal-cni under a real Podman (issue 11): Debian's Podman 4.3 on its CNI backend, run in the
test's host namespace and a private mount namespace (bench/podman.py), with the `shoal-cni`
executable the package installs in its plugin directories, and shoal's root and run
directory given to the plugin through the environment (SHOAL_ROOT, SHOAL_RUN_DIR)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import HOST_ADDR, Host, load_bench

podman_mod = load_bench("podman")
IMAGE = podman_mod.IMAGE
SERVE = ("nc", "-ll", "-p", "80", "-e", "echo", "hello")


@pytest.fixture
def podman(host: Host, tmp_path: Path) -> Iterator[Any]:
    why = podman_mod.available()
    if why:
        pytest.skip(why)
    p = podman_mod.Podman(tmp_path, host.ns, host.env(),
                          [podman_mod.shoal_cni_dir(), podman_mod.REFERENCE_PLUGINS])
    try:
        p.start()
        yield p
    finally:
        notes = p.stop()
        assert not notes, notes


def dirs(host: Host) -> dict[str, str]:
    """shoal's root and run directory, in the config rather than in Podman's environment:
    Podman's cleanup process (conmon runs `podman container cleanup` when a container exits,
    and that runs DEL) does not have the environment `podman run` had."""
    return {"root": host.root, "runDir": host.run_dir}


def shoal_cni(host: Host, subnet: str, bridge: str) -> list[dict[str, Any]]:
    """A network config list as one for the reference bridge plugin, with "type" changed
    (and shoal's directories, which a default install does not need)."""
    return [{"type": "shoal-cni", "bridge": bridge, "isGateway": True, "ipMasq": True,
             "hairpinMode": True, "shoal": dirs(host),
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                      "routes": [{"dst": "0.0.0.0/0"}]},
             "capabilities": {"portMappings": True}}]


def shoal_beside(host: Host, podman: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """A shoal command in Podman's mount namespace, where the namespaces it hands in are
    (/run/netns on its private /run): on a real machine both share the host's."""
    cmd = ["nsenter", f"--net={host.ns}", f"--mount={podman.mntns}", sys.executable, "-m",
           "shoal", "--root", host.root, "--run-dir", host.run_dir, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=host.env())


def members(host: Host, net: str) -> dict[str, Any]:
    return host.shoal_json("network", "inspect", net)[0]["Containers"]


def veths(host: Host) -> list[str]:
    """The host namespace's veths but its uplink (eth0): the containers' host ends."""
    return sorted(link["ifname"] for link in host.ip_json("link", "show", "type", "veth")
                  if link["ifname"] != "eth0")


def shoal_ports(host: Host) -> str:
    return host.shoal("system", "firewall", check=False).stdout


def test_podman_containers_on_shoal_networks(host: Host, podman: Any) -> None:
    podman.add_network("front", shoal_cni(host, "10.91.0.0/24", "cni-front0"))
    podman.add_network("back", shoal_cni(host, "10.92.0.0/24", "cni-back0"))
    podman.run("-d", "--name", "one", "--network", "front", IMAGE, "sleep", "300")
    podman.run("-d", "--name", "web", "--network", "front", "-p", "8080:80", IMAGE, *SERVE)
    podman.run("-d", "--name", "other", "--network", "back", IMAGE, "sleep", "300")
    one, web = podman.ip_of("one", "front"), podman.ip_of("web", "front")
    other = podman.ip_of("other", "back")
    assert one.startswith("10.91.0.") and web.startswith("10.91.0.") and one != web
    assert other.startswith("10.92.0.")
    # the address Podman reports is the one in the container
    assert f"inet {one}/24" in podman.exec("one", "ip", "-4", "addr", "show", "eth0").stdout
    # shoal sees Podman's containers as members of its networks
    ids = {json.loads(podman.podman("inspect", n).stdout)[0]["Id"] for n in ("one", "web")}
    listed = members(host, "front")
    assert {m["Name"] for m in listed.values()} == {f"cni:{i}" for i in ids}
    assert sorted(m["IPv4Address"].split("/")[0] for m in listed.values()) == sorted([one, web])
    # they reach each other, the outside reaches the published port through shoal's map,
    # and a container on another network reaches neither
    assert podman.exec("one", "ping", "-c1", "-W2", web).returncode == 0
    host.wait_for(lambda: host.fetch(host.outside, HOST_ADDR, 8080) == "hello",
                  what="the published port from outside")
    assert podman.exec("other", "ping", "-c1", "-W1", one).returncode != 0
    assert podman.exec("one", "ping", "-c1", "-W1", other).returncode != 0
    doctor = shoal_beside(host, podman, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert shoal_beside(host, podman, "system", "reconcile").returncode == 0
    assert len(members(host, "front")) == 2
    # podman rm -f leaves nothing: no veth, no member, no published port
    podman.podman("rm", "-f", "-t", "0", "one", "web", "other")
    assert veths(host) == []
    assert members(host, "front") == {} and members(host, "back") == {}
    assert "8080" not in shoal_ports(host)
    assert host.fetch(host.outside, HOST_ADDR, 8080, timeout=1) is None
    assert shoal_beside(host, podman, "system", "reconcile").returncode == 0
    assert shoal_beside(host, podman, "doctor").returncode == 0


def test_shoal_cni_chained_after_the_reference_bridge(host: Host, podman: Any) -> None:
    """shoal-cni in place of `portmap`: the reference plugin makes the bridge, the veth and the
    address; shoal only publishes the ports, through its maps."""
    podman.add_network("ref", [
        {"type": "bridge", "bridge": "cni-ref0", "isGateway": True, "ipMasq": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.89.0.0/24"}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "shoal-cni", "shoal": dirs(host), "capabilities": {"portMappings": True}}])
    podman.run("-d", "--name", "web", "--network", "ref", "-p", "8080:80", IMAGE, *SERVE)
    host.wait_for(lambda: host.fetch(host.outside, HOST_ADDR, 8080) == "hello",
                  what="the port published by the chained shoal-cni")
    assert "8080" in shoal_ports(host)
    podman.podman("rm", "-f", "-t", "0", "web")
    assert "8080" not in shoal_ports(host)
    assert veths(host) == []
    assert host.fetch(host.outside, HOST_ADDR, 8080, timeout=1) is None


def kill_during_add(podman: Any, argv: list[str]) -> None:
    """Start `podman run`, and SIGKILL it and its plugin the moment shoal-cni is running
    its ADD (as the OOM killer or a stopped service's kill would)."""
    import os
    import signal
    import time

    proc = subprocess.Popen(podman.argv("run", *podman_mod.LIMITS,
                                        f"--cgroup-parent=/{podman.group}", *argv),
                            env=podman.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    plugin = None
    while plugin is None and time.monotonic() < deadline and proc.poll() is None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                env = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if b"shoal-cni" in cmd and b"CNI_COMMAND=ADD" in env:
                plugin = int(entry)
                break
    assert plugin is not None, "shoal-cni's ADD was never seen running"
    time.sleep(0.03)
    # podman is nsenter's child; kill the whole chain: nsenter, podman, the plugin
    victims = [proc.pid, plugin]
    for child in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split():
        victims.append(int(child))
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


@pytest.mark.parametrize("how", ["plugin-crash", "podman-killed"])
def test_an_add_killed_midway_is_repaired(host: Host, podman: Any, how: str) -> None:
    podman.add_network("front", shoal_cni(host, "10.91.0.0/24", "cni-front0"))
    podman.run("-d", "--name", "bystander", "--network", "front", IMAGE, "sleep", "300")
    argv = ["-d", "--name", "victim", "--network", "front", "-p", "8080:80", IMAGE, *SERVE]
    if how == "plugin-crash":
        # shoal-cni SIGKILLs itself once the veth is in the namespace, before the port
        res = podman.run(*argv, check=False, env={"SHOAL_CRASH_AT": "connect:attached"})
        assert res.returncode != 0
    else:
        kill_during_add(podman, argv)
    # what a crash left is repaired by the next command, in the runtime's mount namespace
    assert shoal_beside(host, podman, "system", "reconcile").returncode == 0
    doctor = shoal_beside(host, podman, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    # the runtime's own cleanup (DEL) then leaves nothing, and the network works again
    podman.podman("rm", "-f", "-t", "0", "victim", check=False)
    assert len(veths(host)) == 1 and len(members(host, "front")) == 1
    assert "8080" not in shoal_ports(host)
    podman.run("-d", "--name", "again", "--network", "front", "-p", "8080:80", IMAGE, *SERVE)
    host.wait_for(lambda: host.fetch(host.outside, HOST_ADDR, 8080) == "hello",
                  what="the port published after the repair")
    assert podman.exec("bystander", "ping", "-c1", "-W2",
                       podman.ip_of("again", "front")).returncode == 0
