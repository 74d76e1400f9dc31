"""Network sysctls of the namespace this process is in (/proc/sys/net follows the reader's
network namespace)."""

from __future__ import annotations

IP_FORWARD = "net/ipv4/ip_forward"
PORT_RANGE = "net/ipv4/ip_local_port_range"
RESERVED_PORTS = "net/ipv4/ip_local_reserved_ports"


def read(key: str) -> str:
    with open(f"/proc/sys/{key}") as f:
        return f.read().strip()


def write(key: str, value: str) -> None:
    with open(f"/proc/sys/{key}", "w") as f:
        f.write(value)


def route_localnet(ifname: str) -> str:
    return f"net/ipv4/conf/{ifname}/route_localnet"

