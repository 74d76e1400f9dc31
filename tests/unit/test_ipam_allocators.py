"""The local address allocator (shoal.ipam.addresses.StoreAddresses) over a real store:
addresses continue after the last one given, across allocators and store reopenings, an
address held by an endpoint is never handed out, and --ip is checked against the store."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from shoal import ipam
from shoal.errors import Conflict, InvalidArgument
from shoal.ipam.addresses import StoreAddresses
from shoal.model import Container, Endpoint, Network, Sandbox, now
from shoal.names import new_id
from shoal.store import Store

A = IPv4Address


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(str(tmp_path / "root"))
    yield s
    s.close()


def add_network(store: Store, subnet: str = "10.40.0.0/29") -> Network:
    net = IPv4Network(subnet)
    rec = Network(new_id(), "n", "bridge", now(), subnet=net, gateway=net.network_address + 1,
                  bridge="br-n")
    store.add_network(rec)
    return rec


def plug(store: Store, net: Network, ip: IPv4Address) -> Endpoint:
    ctr = Container(new_id(), f"c{ip}", now(), None, ["true"], [], "bridge")
    store.add_container(ctr)
    store.add_sandbox(Sandbox(ctr.id, "", True, ctr.created))
    ep = Endpoint(new_id(), ctr.id, net.id, "eth0", ip, ipam.mac_for(ip))
    store.add_endpoint(ep)
    return ep


def test_addresses_continue_after_the_last_one_given(store: Store) -> None:
    net = add_network(store)
    first = StoreAddresses(store).allocate(net)
    plug(store, net, first)
    # a new allocator (another command) continues where the store says
    second = StoreAddresses(store).allocate(store.network_by_id(net.id))
    assert (first, second) == (A("10.40.0.2"), A("10.40.0.3"))
    assert store.network_by_id(net.id).last_ip == second and net.last_ip == first


def test_a_released_address_is_not_reused_at_once(store: Store) -> None:
    net = add_network(store)
    alloc = StoreAddresses(store)
    eps = [plug(store, net, alloc.allocate(net)) for _ in range(3)]
    store.delete_endpoint(eps[0].id)  # 10.40.0.2 is free again
    assert alloc.allocate(net) == A("10.40.0.5")


def test_held_addresses_are_skipped_and_a_full_network_is_a_conflict(store: Store) -> None:
    net = add_network(store)  # /29: .2 to .6 for containers
    plug(store, net, A("10.40.0.3"))  # taken by --ip
    alloc = StoreAddresses(store)
    got = []
    for _ in range(4):
        ip = alloc.allocate(net)
        plug(store, net, ip)
        got.append(ip)
    assert got == [A("10.40.0.2"), A("10.40.0.4"), A("10.40.0.5"), A("10.40.0.6")]
    with pytest.raises(Conflict, match="no free address left in network n"):
        alloc.allocate(net)


def test_a_requested_address_is_checked_against_the_store(store: Store) -> None:
    net = add_network(store)
    alloc = StoreAddresses(store)
    plug(store, net, A("10.40.0.4"))
    assert alloc.allocate(net, A("10.40.0.5")) == A("10.40.0.5")
    assert store.network_by_id(net.id).last_ip is None  # (--ip moves nothing)
    with pytest.raises(Conflict, match="already in use"):
        alloc.allocate(net, A("10.40.0.4"))
    with pytest.raises(Conflict, match="gateway"):
        alloc.allocate(net, A("10.40.0.1"))
    with pytest.raises(InvalidArgument, match="not a usable address"):
        alloc.allocate(net, A("10.40.0.7"))
