"""The hosts of a cluster, as the global store knows them:

    hosts/<host id>  ->  {"address": <underlay IPv4>}

on the host's lease, so that a host that stops keeping its lease alive (killed, its machine
gone) leaves the cluster when the lease expires: its record, its address blocks
(ipam/blocks.py) and its endpoints go with it, all deleted by the store in one change.
HOST_TTL is that time: 15 s (the issue's bound is 30 s); whoever keeps the lease alive (the
host's watcher) does so every KEEPALIVE seconds, a third of it.

The address a host is reached at (its VXLAN packets' source and destination) is
`--advertise-addr`, else the one its kernel would send from to reach the store
(`route_source`: a UDP socket's connect chooses it, and sends nothing)."""

from __future__ import annotations

from ipaddress import IPv4Address

from ..errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..store.protocol import GlobalStore

HOSTS_PREFIX = "/shoal/v1/hosts/"
HOST_TTL = 15.0
KEEPALIVE = HOST_TTL / 3


def parse_address(text: str) -> IPv4Address:
    """--advertise-addr's value: an IPv4 address a host can be reached at."""
    try:
        addr = IPv4Address(text)
    except ValueError:
        raise InvalidArgument(f"invalid --advertise-addr {text!r}: give this host's IPv4 "
                              "address on the network the other hosts reach it by") from None
    if addr.is_unspecified or addr.is_multicast or addr.is_loopback:
        raise InvalidArgument(f"invalid --advertise-addr {text}: other hosts cannot reach "
                              "it there; give this host's address on the shared network")
    return addr


def route_source(host: str, port: int) -> IPv4Address:
    """The address this host's kernel sends from to reach host:port (no packet is sent)."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((host, port))
            return IPv4Address(sock.getsockname()[0])
    except OSError as e:
        raise InvalidArgument(f"cannot tell this host's address toward the store {host}:"
                              f"{port} ({e.strerror or e}); give --advertise-addr") from None


def register(store: GlobalStore, host_id: str, address: IPv4Address,
             ttl: float = HOST_TTL) -> int:
    """Put the host's record on a new lease; the lease (to keep alive). A record the host
    left on an older lease is taken over by this one."""
    from .. import jsonwire

    if not host_id or "/" in host_id:
        raise InvalidArgument(f"invalid host id {host_id!r}")
    lease = store.grant(ttl)
    store.put(HOSTS_PREFIX + host_id, jsonwire.dumps({"address": str(address)}).encode(),
              lease=lease)
    return lease


def hosts(store: GlobalStore) -> dict[str, IPv4Address]:
    """Every host of the cluster and its address (records that cannot be read are left
    out)."""
    from .. import jsonwire

    kvs, _ = store.get_prefix(HOSTS_PREFIX)
    out = {}
    for kv in kvs:
        try:
            out[kv.key[len(HOSTS_PREFIX):]] = IPv4Address(jsonwire.loads(kv.value)["address"])
        except (ValueError, KeyError, TypeError):
            continue
    return out
