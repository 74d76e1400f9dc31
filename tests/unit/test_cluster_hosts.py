"""The cluster's host records (cluster/hosts.py) on MemoryStore: a host is listed with its
address while its lease lives and is gone when it expires; a host that registers again takes
its record over; --advertise-addr refuses what other hosts cannot reach."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from shoal.cluster import hosts
from shoal.errors import InvalidArgument
from shoal.store.memory import ManualClock, MemoryStore


def test_a_host_is_listed_while_its_lease_lives() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    a = hosts.register(store, "a", IPv4Address("192.0.2.1"))
    hosts.register(store, "b", IPv4Address("192.0.2.2"))
    assert hosts.hosts(store) == {"a": IPv4Address("192.0.2.1"), "b": IPv4Address("192.0.2.2")}
    clock.advance(hosts.HOST_TTL * 0.6)
    store.keep_alive(a)  # a's watcher keeps it; b's is dead
    clock.advance(hosts.HOST_TTL * 0.6)
    assert hosts.hosts(store) == {"a": IPv4Address("192.0.2.1")}
    assert hosts.KEEPALIVE * 3 == hosts.HOST_TTL <= 30


def test_registering_again_takes_the_record_over() -> None:
    clock = ManualClock()
    store = MemoryStore(clock=clock)
    hosts.register(store, "a", IPv4Address("192.0.2.1"))
    clock.advance(5)
    new = hosts.register(store, "a", IPv4Address("192.0.2.9"))  # restarted, moved
    clock.advance(hosts.HOST_TTL - 2)  # the first lease has expired, the new one not
    store.keep_alive(new)
    assert hosts.hosts(store) == {"a": IPv4Address("192.0.2.9")}


@pytest.mark.parametrize("text, why", [
    ("example", "invalid --advertise-addr 'example': give this host's IPv4 address"),
    ("0.0.0.0", "other hosts cannot reach it there"),
    ("127.0.0.1", "other hosts cannot reach it there"),
    ("224.0.0.5", "other hosts cannot reach it there"),
])
def test_advertise_addr_refuses_what_others_cannot_reach(text: str, why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        hosts.parse_address(text)
    assert hosts.parse_address("10.1.2.3") == IPv4Address("10.1.2.3")


def test_a_bad_host_id_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        hosts.register(MemoryStore(), "a/b", IPv4Address("192.0.2.1"))
