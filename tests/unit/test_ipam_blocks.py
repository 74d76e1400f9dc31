"""Address blocks leased by hosts in a global store (ipam/blocks.py), on MemoryStore: every
block has one holder even when hosts race, a dead host's blocks come free with its lease,
a full subnet is a clear error. (The same module on a real etcd cluster:
tests/integration/test_etcd_blocks.py.)"""

from __future__ import annotations

import threading
from ipaddress import IPv4Address, IPv4Network

import pytest

from shoal.errors import Conflict
from shoal.ipam import blocks
from shoal.store import protocol
from shoal.store.memory import ManualClock, MemoryStore

NET = "0123456789abcdef" * 4
SUBNET = IPv4Network("10.50.0.0/22")  # 16 blocks of /26


def _leases(store: MemoryStore, host: str, ttl: float = 30) -> blocks.BlockLeases:
    return blocks.BlockLeases(store, NET, SUBNET, host, store.grant(ttl))


def test_hosts_get_distinct_blocks_until_the_subnet_is_full() -> None:
    store = MemoryStore()
    a, b = _leases(store, "host-a"), _leases(store, "host-b")
    got = [a.claim(), b.claim(), a.claim()]
    assert len(set(got)) == 3 and all(g.prefixlen == 26 and g.subnet_of(SUBNET) for g in got)
    assert a.mine() == sorted([got[0], got[2]]) and b.mine() == [got[1]]
    assert a.holders() == {got[0]: "host-a", got[1]: "host-b", got[2]: "host-a"}
    for _ in range(13):
        b.claim()
    with pytest.raises(Conflict) as e:
        a.claim()
    assert str(e.value) == (f"network {NET[:12]} has no free address block: its subnet "
                            "10.50.0.0/22 is leased out in /26 blocks to 2 host(s); create it "
                            "with a larger --subnet")


def test_racing_hosts_never_share_a_block() -> None:
    store = MemoryStore()
    hosts = [_leases(store, f"host-{i}") for i in range(4)]
    won: list[tuple[str, IPv4Network]] = []
    lock = threading.Lock()
    start = threading.Barrier(len(hosts))

    def claim_all(h: blocks.BlockLeases) -> None:
        start.wait()
        while True:
            try:
                block = h.claim()
            except Conflict:
                return
            with lock:
                won.append((h.host, block))
    threads = [threading.Thread(target=claim_all, args=(h,)) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(b for _, b in won) == blocks.blocks(SUBNET)  # each exactly once
    assert {b: h for h, b in won} == hosts[0].holders()


class _Beaten:
    """A store where another host creates the first key this host tries, just before it."""

    def __init__(self, store: MemoryStore, rival: str) -> None:
        self.store, self.rival, self.beaten = store, rival, False

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def put(self, key: str, value: bytes, **kw: object) -> int | None:
        if not self.beaten and kw.get("if_revision") == 0:
            self.beaten = True
            protocol.create(self.store, key, b'{"host": "%s"}' % self.rival.encode())
        return self.store.put(key, value, **kw)  # type: ignore[arg-type]


def test_a_block_taken_between_listing_and_create_is_passed_over() -> None:
    store = MemoryStore()
    beaten = _Beaten(store, "host-b")
    a = blocks.BlockLeases(beaten, NET, SUBNET, "host-a", store.grant(30))  # type: ignore
    mine = a.claim()
    holders = a.holders()
    assert holders[mine] == "host-a"
    assert sorted(holders.values()) == ["host-a", "host-b"]


def test_a_dead_host_s_blocks_come_free_with_its_lease() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    dead = blocks.BlockLeases(store, NET, SUBNET, "dead", store.grant(10))
    alive = blocks.BlockLeases(store, NET, SUBNET, "alive", store.grant(10))
    first = dead.claim()
    alive.claim()
    clock.advance(6)
    store.keep_alive(alive.lease)  # the living host keeps its lease, the dead one does not
    clock.advance(6)
    assert list(alive.holders().values()) == ["alive"]
    assert first not in alive.holders()


def test_release_gives_back_only_the_host_s_own_block() -> None:
    store = MemoryStore()
    a, b = _leases(store, "a"), _leases(store, "b")
    block = a.claim()
    assert not b.release(block)
    assert a.release(block) and a.holders() == {}
    assert not a.release(block)


def test_addresses_and_sizes() -> None:
    small = IPv4Network("10.9.0.0/28")
    assert blocks.blocks(small) == [small]  # smaller than a block: one block, itself
    assert blocks.blocks(SUBNET)[1] == IPv4Network("10.50.0.64/26")
    first = blocks.blocks(SUBNET)[0]
    usable = blocks.addresses(first, SUBNET, [IPv4Address("10.50.0.1")])
    assert usable[0] == IPv4Address("10.50.0.2") and len(usable) == 62
    last = blocks.blocks(SUBNET)[-1]
    assert blocks.addresses(last, SUBNET)[-1] == IPv4Address("10.50.3.254")
    assert blocks.key(NET, first) == f"/shoal/v1/blocks/{NET}/10.50.0.0-26"
