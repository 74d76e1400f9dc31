"""Published ports that stay safe: conntrack entries flushed when a port or an address is
released or published, host ports held against host processes (and refused when a host
process has them), and hairpin to a container's own published port (issue 7, items 3, 4, 18)."""

from __future__ import annotations

import sys

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
