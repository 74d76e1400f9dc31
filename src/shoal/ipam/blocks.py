"""Address blocks of a multi-host network, leased by hosts in the global store: as flannel
and Calico do, a host takes a block of the network's subnet (a /26 by default, 64
addresses) and hands out its addresses itself, so most containers get an address with no
round trip to the store; it takes another block when its own are full.

Keys (under the global store's prefix):

    blocks/<network id>/<first address>-<prefix length>  ->  {"host": <host id>}

written with create-if-absent (`protocol.create`: the key's revision must be 0) and on the
host's lease, so that two hosts never hold one block even when they race for it, and a
dead host's blocks are released when its lease expires (the store deletes them).

Which block a host tries first is spread by a hash of its id, so that hosts starting
together do not all race for the first one; the rest are tried in order after it.
Only this module knows the keys' shape; it needs nothing but a GlobalStore."""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv4Network

from ..errors import Conflict, InvalidArgument
from ..store import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..store.protocol import GlobalStore

BLOCKS_PREFIX = "/shoal/v1/blocks/"
BLOCK_PREFIX = 26  # 64 addresses a block


def block_size(subnet: IPv4Network, prefix: int = BLOCK_PREFIX) -> int:
    """The prefix length of the network's blocks: `prefix`, or the subnet itself if it is
    smaller than one block."""
    return max(prefix, subnet.prefixlen)


def blocks(subnet: IPv4Network, prefix: int = BLOCK_PREFIX) -> list[IPv4Network]:
    return list(subnet.subnets(new_prefix=block_size(subnet, prefix)))


def key(network_id: str, block: IPv4Network) -> str:
    return f"{BLOCKS_PREFIX}{network_id}/{block.network_address}-{block.prefixlen}"


def _block_of(network_id: str, name: str) -> IPv4Network | None:
    """The block a key names (None for a key of another shape)."""
    rest = name[len(BLOCKS_PREFIX) + len(network_id) + 1:]
    first, _, length = rest.partition("-")
    try:
        return IPv4Network(f"{first}/{length}")
    except ValueError:
        return None


def addresses(block: IPv4Network, subnet: IPv4Network, reserved: Iterable[IPv4Address] = ()
              ) -> list[IPv4Address]:
    """The addresses of a block a container may get: neither the subnet's network nor its
    broadcast address, nor a reserved one (the gateway)."""
    skip = {subnet.network_address, subnet.broadcast_address, *reserved}
    return [a for a in block if a not in skip]


class BlockLeases:
    """One host's blocks of one network in a global store."""

    def __init__(self, store: GlobalStore, network_id: str, subnet: IPv4Network,
                 host: str, lease: int, prefix: int = BLOCK_PREFIX) -> None:
        if not host:
            raise InvalidArgument("a block's holder needs a host id")
        self.store, self.network_id, self.subnet = store, network_id, subnet
        self.host, self.lease, self.prefix = host, lease, prefix

    def holders(self) -> dict[IPv4Network, str]:
        """Every leased block of the network and the host that holds it."""
        from .. import jsonwire

        kvs, _ = self.store.get_prefix(f"{BLOCKS_PREFIX}{self.network_id}/")
        out = {}
        for kv in kvs:
            block = _block_of(self.network_id, kv.key)
            if block is None:
                continue
            try:
                out[block] = str(jsonwire.loads(kv.value)["host"])
            except (ValueError, KeyError, TypeError):
                out[block] = ""  # unreadable: held by someone, never taken over
        return out

    def mine(self) -> list[IPv4Network]:
        return sorted(b for b, h in self.holders().items() if h == self.host)

    def claim(self) -> IPv4Network:
        """Lease one more block for this host: the first free one from this host's starting
        point on. Racing hosts each get a different one (the store's create-if-absent
        decides). Conflict when every block is held."""
        from .. import jsonwire

        every = blocks(self.subnet, self.prefix)
        start = int.from_bytes(hashlib.sha256(self.host.encode()).digest()[:4], "big") % \
            len(every)
        value = jsonwire.dumps({"host": self.host}).encode()
        held = self.holders()
        for i in range(len(every)):
            block = every[(start + i) % len(every)]
            if block in held:
                continue
            if protocol.create(self.store, key(self.network_id, block), value,
                               lease=self.lease) is not None:
                return block
            # another host took it between the listing and the create: try the next
        hosts = sorted({h for h in self.holders().values() if h})
        size = block_size(self.subnet, self.prefix)
        raise Conflict(f"network {self.network_id[:12]} has no free address block: its "
                       f"subnet {self.subnet} is leased out in /{size} blocks to "
                       f"{len(hosts)} host(s); create it with a larger --subnet")

    def claim_block(self, block: IPv4Network) -> IPv4Network:
        """Lease this block (for an address asked for with --ip); it is this host's already
        if it holds it. Conflict naming the holder if another host does."""
        from .. import jsonwire

        if block not in blocks(self.subnet, self.prefix):
            raise InvalidArgument(f"{block} is not an address block of {self.subnet}")
        value = jsonwire.dumps({"host": self.host}).encode()
        if protocol.create(self.store, key(self.network_id, block), value,
                           lease=self.lease) is not None:
            return block
        holder = self.holders().get(block)
        if holder == self.host:
            return block
        raise Conflict(f"address block {block} of network {self.network_id[:12]} is leased "
                       f"by host {holder or '(unknown)'}: an address in it can only be given "
                       "on that host; pick another --ip or leave it out")

    def release(self, block: IPv4Network) -> bool:
        """Give a block back (its last container left); only if this host holds it."""
        from .. import jsonwire

        kv = self.store.get(key(self.network_id, block))
        if kv is None:
            return False
        try:
            holder = jsonwire.loads(kv.value).get("host")
        except (ValueError, AttributeError):
            return False
        if holder != self.host:
            return False
        return self.store.delete(kv.key, if_revision=kv.mod_revision) is not None
