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


def listening_ports() -> set[tuple[int, str]]:
    """(port, proto) a process of this namespace listens on (TCP) or is bound to (UDP)."""
    out: set[tuple[int, str]] = set()
    for proto, files in (("tcp", ("tcp", "tcp6")), ("udp", ("udp", "udp6"))):
        for name in files:
            try:
                with open(f"/proc/net/{name}") as f:
                    next(f)
                    for line in f:
                        fields = line.split()
                        # TCP: 0A is LISTEN; UDP: 07 is an unconnected bound socket
                        if fields[3] in ("0A", "07"):
                            out.add((int(fields[1].rsplit(":", 1)[1], 16), proto))
            except (FileNotFoundError, StopIteration):
                continue
    return out
