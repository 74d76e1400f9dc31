"""Addresses per network: Docker's default pools, subnet choice, address allocation and the
MAC address derived from an IP, as pure functions (no I/O); and `StoreAddresses`, the
address allocator of one host (`shoal.ipam.protocol.AddressAllocator`), which asks those
functions with the taken addresses read from the local store."""

from __future__ import annotations

import ipaddress
from collections.abc import Container, Iterable, Iterator
from ipaddress import IPv4Address, IPv4Network

from ..errors import Conflict, InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..model import Network
    from ..store.protocol import LocalStore

# Docker's default address pools, in the order it hands them out: (pool, size of each subnet).
DEFAULT_POOLS: tuple[tuple[str, int], ...] = (
    ("172.17.0.0/16", 16),
    ("172.18.0.0/16", 16),
    ("172.19.0.0/16", 16),
    ("172.20.0.0/14", 16),
    ("172.24.0.0/14", 16),
    ("172.28.0.0/14", 16),
    ("192.168.0.0/16", 20),
)

MAX_PREFIX = 30  # a subnet needs room for a gateway and at least one container


def candidate_subnets() -> Iterator[IPv4Network]:
    """Every subnet of the default pools, in allocation order."""
    for pool, size in DEFAULT_POOLS:
        yield from IPv4Network(pool).subnets(new_prefix=size)


def choose_subnet(taken: Iterable[IPv4Network]) -> IPv4Network:
    """The first default-pool subnet that overlaps none of `taken`."""
    taken = [t for t in taken if t.prefixlen > 0]  # a default route overlaps everything
    for cand in candidate_subnets():
        if not any(cand.overlaps(t) for t in taken):
            return cand
    raise Conflict(
        "no free subnet left in the default address pools; pass --subnet CIDR "
        "or remove unused networks (shoal network prune)"
    )


def parse_subnet(text: str, what: str = "subnet") -> IPv4Network:
    """Parse a CIDR such as 172.30.0.0/16; the host part must be zero."""
    try:
        addr = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgument(
            f"invalid {what} {text!r}: expected an IPv4 CIDR such as 172.30.0.0/16"
        ) from None
    if addr.version != 4:
        raise InvalidArgument(f"invalid {what} {text!r}: IPv6 is not supported yet; use IPv4")
    if "/" not in text:
        raise InvalidArgument(f"invalid {what} {text!r}: give a prefix length, e.g. {text}/24")
    if ipaddress.ip_address(text.split("/")[0]) != addr.network_address:
        raise InvalidArgument(f"invalid {what} {text!r}: it should be {addr}")
    assert isinstance(addr, IPv4Network)
    return addr


# Ranges a bridge network cannot use: packets to them are never routed to a bridge as
# unicast (loopback, multicast, "this network", the reserved class E and the broadcast).
UNUSABLE = (
    ("0.0.0.0/8", '"this network", never a destination'),
    ("127.0.0.0/8", "loopback"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved, with the broadcast address 255.255.255.255"),
)


def check_usable(subnet: IPv4Network) -> None:
    """Refuse a subnet that overlaps a range no bridge network can use."""
    for cidr, label in UNUSABLE:
        if subnet.overlaps(ipaddress.IPv4Network(cidr)):
            raise InvalidArgument(f"subnet {subnet} overlaps {cidr} ({label}), which a network "
                                  "cannot use; choose another --subnet")


def parse_address(text: str, what: str = "IP address") -> IPv4Address:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidArgument(
            f"invalid {what} {text!r}: expected an IPv4 address such as 172.30.0.5"
        ) from None
    if addr.version != 4:
        raise InvalidArgument(f"invalid {what} {text!r}: IPv6 is not supported yet; use IPv4")
    assert isinstance(addr, IPv4Address)
    return addr


def network_config(
    subnet: IPv4Network, gateway: IPv4Address | None, ip_range: IPv4Network | None
) -> tuple[IPv4Network, IPv4Address, IPv4Network | None]:
    """Check a network's IPAM settings and fill in the default gateway (the first address)."""
    if subnet.prefixlen > MAX_PREFIX:
        raise InvalidArgument(
            f"subnet {subnet} is too small: use a prefix of /{MAX_PREFIX} or shorter"
        )
    if gateway is None:
        gateway = subnet.network_address + 1
    elif gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address):
        raise InvalidArgument(
            f"gateway {gateway} is not a usable address of subnet {subnet}; "
            f"pick one between {subnet.network_address + 1} and {subnet.broadcast_address - 1}"
        )
    if ip_range is not None and not ip_range.subnet_of(subnet):
        raise InvalidArgument(f"ip-range {ip_range} is not inside subnet {subnet}")
    return subnet, gateway, ip_range


def _usable(subnet: IPv4Network, addr: IPv4Address) -> bool:
    return addr in subnet and addr not in (subnet.network_address, subnet.broadcast_address)


def check_static(
    addr: IPv4Address,
    subnet: IPv4Network,
    gateway: IPv4Address,
    used: Container[IPv4Address],
    network_name: str,
) -> IPv4Address:
    """Check an address the user asked for (--ip)."""
    if not _usable(subnet, addr):
        raise InvalidArgument(
            f"address {addr} is not a usable address of network {network_name} ({subnet})"
        )
    if addr == gateway:
        raise Conflict(f"address {addr} is the gateway of network {network_name}; pick another")
    if addr in used:
        raise Conflict(
            f"address {addr} is already in use on network {network_name}; pick another or "
            "leave out --ip"
        )
    return addr


def allocate(
    subnet: IPv4Network,
    gateway: IPv4Address,
    ip_range: IPv4Network | None,
    used: Container[IPv4Address],
    last: IPv4Address | None,
    network_name: str,
) -> IPv4Address:
    """The next free address after `last` (wrapping), as Docker's allocator hands them out,
    so that an address just released is not reused at once. `used` only needs `in`: the
    engine answers it with one indexed look-up, so an allocation costs the same however many
    addresses are taken (while the pool is not nearly full)."""
    pool = ip_range or subnet
    lo = int(pool.network_address)
    hi = int(pool.broadcast_address)
    reserved = {int(gateway), int(subnet.network_address), int(subnet.broadcast_address)}
    size = hi - lo + 1
    start = int(last) + 1 if last is not None and lo <= int(last) <= hi else lo
    for i in range(size):
        cand = lo + (start - lo + i) % size
        if cand not in reserved and IPv4Address(cand) not in used:
            return IPv4Address(cand)
    raise Conflict(
        f"no free address left in network {network_name} ({pool}); remove a container "
        "or create a network with a larger --subnet"
    )


def mac_for(addr: IPv4Address) -> str:
    """Docker's MAC address for an IP: 02:42 followed by the four bytes of the address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in addr.packed)


# -- the local allocator ------------------------------------------------------------------------


class StoreAddresses:
    """Addresses of the networks in a local store: the taken ones are the store's endpoints',
    and where allocation continues is the network's `last_ip`, both read and written inside
    the caller's transaction (under the write lock), so two allocations never hand out one
    address."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store

    def allocate(self, net: Network, requested: IPv4Address | None = None) -> IPv4Address:
        """`requested` if it is a free, usable address of the network (Conflict or
        InvalidArgument if not), else the next free one after the last given (recorded in
        the network, and in `net` itself)."""
        assert net.subnet is not None and net.gateway is not None
        used = _UsedAddresses(self.store, net.id)
        if requested is not None:
            return check_static(requested, net.subnet, net.gateway, used, net.name)
        addr = allocate(net.subnet, net.gateway, net.ip_range, used, net.last_ip, net.name)
        self.store.update_network(net.id, last_ip=addr)
        net.last_ip = addr
        return addr


class _UsedAddresses:
    """The addresses taken on a network, answered one indexed query at a time."""

    def __init__(self, store: LocalStore, network_id: str) -> None:
        self.store, self.network_id = store, network_id

    def __contains__(self, addr: object) -> bool:
        return isinstance(addr, IPv4Address) and self.store.ip_in_use(self.network_id, addr)
