"""The allocators' protocols: what the controller asks of IPAM.

`AddressAllocator` hands out a network's addresses (`shoal.ipam.addresses.StoreAddresses`
on one host; a multi-host network's allocator will keep them in the global store).
`HostPortAllocator` picks and holds the host ports a container publishes
(`shoal.ipam.hostports.HostPorts`). Both are called inside the caller's store transaction,
under its write lock, and record what they hand out in it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import socket
    from ipaddress import IPv4Address

    from ..model import Network, PublishedPort
    from ..ports import Binding


class AddressAllocator(Protocol):
    def allocate(self, net: Network, requested: IPv4Address | None = None) -> IPv4Address:
        """An address of `net` for a new endpoint: `requested` if it is free and usable
        (else Conflict or InvalidArgument), or the next free one (Conflict when none is
        left). It counts as taken once the endpoint holding it is stored."""
        ...


class HostPortAllocator(Protocol):
    def allocate(self, sandbox_id: str, net: Network, dest_ip: IPv4Address,
                 bindings: list[Binding], host_addresses: set[IPv4Address],
                 sockets: list[socket.socket]) -> list[PublishedPort]:
        """The published ports of a sandbox (a starting container's) on `net` (its address
        `dest_ip`): the host ports asked for, or free ones for bindings without; each held
        by a bound socket appended to `sockets`, and stored. Conflicts (with published
        ports, or a host process's) raise before anything is stored; on an error no socket
        is left open."""
        ...
