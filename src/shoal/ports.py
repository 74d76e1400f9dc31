"""Published ports: parsing `docker run -p/--expose` specs and choosing random host ports from
the kernel's ephemeral range. Pure functions; no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from ipaddress import IPv4Address

from .errors import Conflict, InvalidArgument
from .records import Record

PROTOCOLS = ("tcp", "udp", "sctp")
ANY = IPv4Address("0.0.0.0")


class Binding(Record):
    """One published port: host (address, port) to container port, for one protocol.
    host_ip ANY means every address of the host; host_port None means 'pick one'.
    ip_given: the spec named the host address (else the network's default one applies:
    Docker's host_binding_ipv4)."""

    container_port: int
    proto: str = "tcp"
    host_ip: IPv4Address = ANY
    host_port: int | None = None
    ip_given: bool = False


def _port(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()):  # str.isdigit alone takes '²' and '١'
        raise InvalidArgument(f"invalid {what} {text!r}: expected a number from 1 to 65535")
    value = int(text)
    if not 1 <= value <= 65535:
        raise InvalidArgument(f"invalid {what} {value}: ports go from 1 to 65535")
    return value


def _range(text: str, what: str) -> list[int]:
    lo_text, sep, hi_text = text.partition("-")
    lo = _port(lo_text, what)
    if not sep:
        return [lo]
    hi = _port(hi_text, what)
    if hi < lo:
        raise InvalidArgument(f"invalid {what} range {text!r}: the end is below the start")
    return list(range(lo, hi + 1))


def _proto(spec: str) -> tuple[str, str]:
    body, sep, proto = spec.rpartition("/")
    if not sep:
        return spec, "tcp"
    proto = proto.lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(
            f"invalid protocol {proto!r} in {spec!r}: use tcp, udp or sctp"
        )
    return body, proto


def _is_ipv6(text: str) -> bool:
    """An IPv6 address written without brackets (`-p fd00::1:8080:80`); a spec of colons
    alone (`::::80`) is only one with too many of them."""
    from ipaddress import IPv6Address

    if not text.strip(":"):
        return False
    try:
        IPv6Address(text)
    except ValueError:
        return False
    return True


def parse_publish(spec: str) -> list[Binding]:
    """`-p` as docker run takes it: [IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTO]."""
    if not spec or any(c.isspace() for c in spec):
        raise InvalidArgument(f"invalid port spec {spec!r}: e.g. -p 8080:80 or -p 80/udp")
    body, proto = _proto(spec)
    if body.startswith("[") or (body.count(":") > 2 and _is_ipv6(body.rsplit(":", 2)[0])):
        raise InvalidArgument(f"invalid port spec {spec!r}: IPv6 is not supported yet "
                              "(IPv6 host addresses); use an IPv4 address")
    parts = body.split(":")
    if len(parts) > 3:
        raise InvalidArgument(f"invalid port spec {spec!r}: use [IP:][HOST_PORT:]CONTAINER_PORT")
    host_ip, ip_given = ANY, False
    if len(parts) == 3:
        ip_text = parts.pop(0)
        ip_given = bool(ip_text)
        if ip_text:
            try:
                host_ip = IPv4Address(ip_text)
            except ValueError:
                raise InvalidArgument(
                    f"invalid host address {ip_text!r} in port spec {spec!r}: expected IPv4"
                ) from None
    container = _range(parts[-1], "container port")
    host: list[int] | None = None
    if len(parts) == 2 and parts[0]:
        host = _range(parts[0], "host port")
        if len(host) != len(container) and not (len(container) == 1 and len(host) > 1):
            raise InvalidArgument(
                f"invalid port spec {spec!r}: the host range has {len(host)} ports and the "
                f"container range {len(container)}; they must be the same length"
            )
        if len(container) == 1 and len(host) > 1:
            # docker: -p 8000-8010:80 takes one free host port from the range
            raise InvalidArgument(
                f"port spec {spec!r}: a host port range for one container port is not "
                "supported; give one host port or an equal range"
            )
    return [
        Binding(container_port=c, proto=proto, host_ip=host_ip,
                host_port=host[i] if host else None, ip_given=ip_given)
        for i, c in enumerate(container)
    ]


def parse_expose(spec: str) -> list[tuple[int, str]]:
    """`--expose 80[-90][/proto]`."""
    body, proto = _proto(spec)
    return [(p, proto) for p in _range(body, "exposed port")]


def overlap(a: IPv4Address, b: IPv4Address) -> bool:
    """Whether one host port and protocol published on host addresses `a` and `b` clash: the
    same address, or one of them is ANY (0.0.0.0 takes the port on every address)."""
    return a == b or ANY in (a, b)


def parse_port_range(text: str) -> tuple[int, int]:
    """/proc/sys/net/ipv4/ip_local_port_range."""
    lo, hi = (int(x) for x in text.split())
    return lo, hi


def parse_reserved(text: str) -> set[int]:
    """/proc/sys/net/ipv4/ip_local_reserved_ports: '8080,9000-9010'."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def free_ports(proto: str, port_range: tuple[int, int], unavailable: Iterable[tuple[int, str]]
               ) -> Iterator[int]:
    """The host ports of the ephemeral range for `proto` that are not `unavailable`
    (reserved, or published by shoal), lowest first."""
    taken = {port for port, p in unavailable if p == proto}
    lo, hi = port_range
    return (port for port in range(lo, hi + 1) if port not in taken)


def no_free_port(proto: str, port_range: tuple[int, int]) -> Conflict:
    lo, hi = port_range
    return Conflict(
        f"no free {proto} host port left in the ephemeral range {lo}-{hi}; "
        "unpublish some ports or widen net.ipv4.ip_local_port_range"
    )


def pick_host_ports(
    count: int, proto: str, port_range: tuple[int, int], unavailable: Iterable[tuple[int, str]]
) -> list[int]:
    """`count` free host ports for `proto` from the ephemeral range, lowest first. Ports listed
    in `unavailable` (reserved, published by shoal, or a host process listening) are skipped."""
    out: list[int] = []
    if count <= 0:
        return out
    for port in free_ports(proto, port_range, unavailable):
        out.append(port)
        if len(out) == count:
            return out
    raise no_free_port(proto, port_range)
