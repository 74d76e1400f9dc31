"""Published ports that stay safe: conntrack entries flushed when a port or an address is
released or published, host ports held against host processes (and refused when a host
process has them), and hairpin to a container's own published port (issue 7, items 3, 4, 18)."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from .harness import HOST_ADDR, Host
from .servers import TCP

PY = sys.executable


def _bridge_nf(host: Host, on: bool) -> None:
    """Bridge netfilter in this test's host namespace only (per namespace on new kernels)."""
    key = "net.bridge.bridge-nf-call-iptables"
    res = host.in_ns(host.ns, "sysctl", "-w", f"{key}={int(on)}")
    if res.returncode != 0:
        pytest.skip(f"bridge netfilter is not available here ({res.stderr.strip()}); "
                    "try: modprobe br_netfilter")


def _tcp_server(host: Host, name: str, port: int, *args: str) -> None:
    host.shoal("run", "-d", "--name", name, *args, "--", PY, "-c", TCP, str(port))
    host.wait_for(lambda: host.fetch(host.sandbox(name), "127.0.0.1", port) is not None,
                  what=f"{name} to listen")


# -- item 18: hairpin to one's own published port ------------------------------------------------


@pytest.mark.parametrize("bridge_nf", [True, False], ids=["br_netfilter", "no-br_netfilter"])
def test_container_reaches_its_own_published_port_through_the_host_address(
        fw_host: Host, bridge_nf: bool) -> None:
    host = fw_host
    _bridge_nf(host, bridge_nf)
    _tcp_server(host, "web", 8000, "-p", "8090:8000")
    # the container itself, through the host's address (Docker answers there)
    assert host.fetch(host.sandbox("web"), HOST_ADDR, 8090) is not None
    # and another container on the same network, as before
    host.shoal("run", "-d", "--name", "client", "--", "sleep", "60")
    assert host.fetch(host.sandbox("client"), HOST_ADDR, 8090) is not None


def test_every_bridge_port_is_in_hairpin_mode(host: Host) -> None:
    host.shoal("run", "-d", "--name", "a", "--", "sleep", "60")
    host.shoal("network", "create", "lab")
    host.shoal("run", "-d", "--name", "b", "--network", "lab", "--", "sleep", "60")
    host.shoal("network", "connect", "lab", "a")
    ports = [p for p in host.ip_json("-d", "link", "show") if p["ifname"].startswith("vsh")]
    assert len(ports) == 3
    assert all(p["linkinfo"]["info_slave_data"]["hairpin"] for p in ports)


# -- item 3: stale conntrack entries -------------------------------------------------------------

# answers every datagram with its own name, so the sender sees who answered
NAMED_UDP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(100); s.sendto(sys.argv[2].encode(), peer)
"""

# keeps sending from one source port (one flow) and appends every answer to a file
SENDER = """
import socket, sys, time
addr, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.05)
s.bind(('0.0.0.0', 40999))
end = time.monotonic() + 120
with open(out, 'a') as f:
    while time.monotonic() < end:
        try:
            s.sendto(b'ping', (addr, port))
            f.write(s.recv(100).decode() + '\\n'); f.flush()
        except OSError:
            pass
        time.sleep(0.05)
"""


def _udp_server(host: Host, name: str, *args: str) -> None:
    host.shoal("run", "-d", "--name", name, *args, "--", PY, "-c", NAMED_UDP, "53", name)


def _answers(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def _conntrack_lines(host: Host) -> list[str]:
    """The host namespace's IPv4 entries, from the conntrack tool if installed, else from
    /proc/net/nf_conntrack (both independent of shoal's own netlink code)."""
    if shutil.which("conntrack"):
        res = host.in_ns(host.ns, "conntrack", "-L", "-f", "ipv4")
        return [line for line in res.stdout.splitlines() if "src=" in line]
    res = host.in_ns(host.ns, "cat", "/proc/net/nf_conntrack")
    return [line for line in res.stdout.splitlines() if line.startswith("ipv4")]


def test_removed_containers_flow_does_not_reach_the_next_holder_of_its_address(
        host: Host, tmp_path: Path) -> None:
    host.shoal("network", "create", "--subnet", "10.20.0.0/24", "lab")
    _udp_server(host, "dns", "--network", "lab", "--ip", "10.20.0.10", "-p", "5353:53/udp")
    out = str(tmp_path / "answers")
    host.background(host.outside, PY, "-c", SENDER, HOST_ADDR, "5353", out)
    host.wait_for(lambda: "dns" in _answers(out), what="the flow to reach dns")
    assert any("10.20.0.10" in line for line in _conntrack_lines(host))

    host.shoal("rm", "-f", "dns")
    # the sender keeps going; nothing of its flow points at the old address any more
    time.sleep(0.3)
    assert not any("10.20.0.10" in line for line in _conntrack_lines(host))
    # an unrelated container given the same address, publishing nothing, gets none of it
    _udp_server(host, "other", "--network", "lab", "--ip", "10.20.0.10")
    host.wait_for(lambda: host.fetch(host.sandbox("other"), "127.0.0.1", 53, "udp")
                  == "other", what="other to answer")
    seen = len(_answers(out))
    time.sleep(1.5)
    assert "other" not in _answers(out)[seen:]
    assert not any("10.20.0.10" in line and "sport=40999" in line
                   for line in _conntrack_lines(host))


def test_udp_port_published_while_a_client_sends_reaches_that_client(
        host: Host, tmp_path: Path) -> None:
    host.shoal("network", "ls")  # shoal's firewall is in place (conntrack is on)
    out = str(tmp_path / "answers")
    host.background(host.outside, PY, "-c", SENDER, HOST_ADDR, "5354", out)
    # the client's flow is tracked (to the host itself, where nothing answers)
    host.wait_for(lambda: any("dport=5354" in line for line in _conntrack_lines(host)),
                  what="the client's flow to be tracked")
    _udp_server(host, "dns", "-p", "5354:53/udp")
    host.wait_for(lambda: "dns" in _answers(out), timeout=5, what="the client to reach dns")


def test_stopped_containers_outbound_entries_are_flushed(host: Host) -> None:
    host.background(host.outside, PY, "-c", NAMED_UDP, "7001", "outside")
    host.shoal("run", "-d", "--name", "c", "--", "sleep", "60")
    addr = host.ip_of("c", "bridge")
    assert host.fetch(host.sandbox("c"), "198.51.100.1", 7001, "udp") == "outside"
    assert any(f"src={addr}" in line for line in _conntrack_lines(host))
    host.shoal("stop", "-t", "0", "c")
    assert not any(addr in line for line in _conntrack_lines(host))
