"""The embedded resolver's names of other hosts' endpoints (the store's remote endpoints):
what the table holds of them, and how the resolver's service follows the store (no root, no
sockets: a real store in a temporary directory, a stand-in for the DNS server)."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from shoal.controller.resolver import REMOTE_KEY, remote_views
from shoal.controller.resolver_main import Service
from shoal.dns.table import Entry, NameTable, View
from shoal.model import Network, RemoteEndpoint
from shoal.store import Store

T0 = "2024-05-01T10:00:00.000000000Z"
OV, OTHER = "1" * 64, "2" * 64


def make_net(id_: str, name: str, subnet: str) -> Network:
    net = IPv4Network(subnet)
    return Network(id=id_, name=name, driver="bridge", created=T0, subnet=net,
                   gateway=net.network_address + 1, bridge="sh-" + id_[:12])


def remote(id_: str, net: str, ip: str, *names: str) -> RemoteEndpoint:
    return RemoteEndpoint(id=id_, network_id=net, host="host-b",
                          address=IPv4Address("192.0.2.2"), ip=IPv4Address(ip),
                          mac="02:42:0a:58:00:02", names=list(names))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(str(tmp_path / "root"))
    with s.transaction():
        s.add_network(make_net(OV, "ov", "10.88.0.0/24"))
        s.add_network(make_net(OTHER, "other", "10.89.0.0/24"))
        s.add_network(make_net("3" * 64, "bridge", "172.17.0.0/16"))  # Docker's default
    yield s
    s.close()


class FakeServer:
    def __init__(self) -> None:
        self.changes = 0

    def changed(self) -> None:
        self.changes += 1

    def stats(self) -> dict[str, int]:
        return {}


def service(store: Store) -> tuple[Service, NameTable, FakeServer]:
    table, server = NameTable(), FakeServer()
    fake: Any = None
    return Service(store, -1, -1, server, table, fake, fake), table, server  # type: ignore[arg-type]


def asker(table: NameTable, *networks: str) -> None:
    table.put(View(sandbox_id="client", entries=[], networks=list(networks)))


def test_remote_views_name_each_endpoint_on_its_network(store: Store) -> None:
    with store.transaction():
        store.put_remote(remote("a" * 64, OV, "10.88.0.9", "web", "ab12", "Web", "www"))
        store.put_remote(remote("b" * 64, OV, "10.88.0.10"))  # no names: nothing to answer
    views = remote_views(store, OV)
    assert views == [View(sandbox_id=REMOTE_KEY + "a" * 64,
                          entries=[Entry(network_id=OV, ip="10.88.0.9",
                                         names=["web", "ab12", "www"], ptr="web")],
                          networks=[], forward=False)]
    assert remote_views(store, OTHER) == []
    assert remote_views(store, "9" * 64) == []  # a network that is gone


def test_the_default_bridge_serves_no_remote_names(store: Store) -> None:
    with store.transaction():
        store.put_remote(remote("a" * 64, "3" * 64, "172.17.0.9", "web"))
    assert remote_views(store, "3" * 64) == []


def test_sync_follows_the_networks_it_is_told_of(store: Store) -> None:
    svc, table, server = service(store)
    asker(table, OV)
    with store.transaction():
        store.put_remote(remote("a" * 64, OV, "10.88.0.9", "web", "api"))
        store.put_remote(remote("b" * 64, OV, "10.88.0.10", "web2", "API"))
    svc.sync([], [OV])
    assert server.changes == 1
    assert sorted(table.addresses("client", "api") or []) == ["10.88.0.10", "10.88.0.9"]
    assert table.reverse("client", "10.88.0.10") == "web2"
    assert svc.status()["remote"] == {OV: 2} and svc.status()["listeners"] == {}
    with store.transaction():
        store.delete_remote("a" * 64)
    svc.sync([], [])  # not told: unchanged (no store read per query or per sync)
    assert table.lookup("client", "web") == ["10.88.0.9"]
    svc.sync([], [OV])
    assert table.lookup("client", "web") is None
    assert table.addresses("client", "api") == ["10.88.0.10"]
    with store.transaction():
        store.delete_remote("b" * 64)
    svc.sync([], [OV])
    assert table.lookup("client", "api") is None and svc.status()["remote"] == {}


def test_names_are_scoped_to_the_remote_endpoints_network(store: Store) -> None:
    svc, table, _ = service(store)
    table.put(View(sandbox_id="on-other", entries=[], networks=[OTHER]))
    asker(table, OV)
    with store.transaction():
        store.put_remote(remote("a" * 64, OV, "10.88.0.9", "web"))
    svc.sync(None)  # everything, as a resolver that starts
    assert table.lookup("client", "web") == ["10.88.0.9"]
    assert table.lookup("on-other", "web") is None
    assert table.reverse("on-other", "10.88.0.9") is None
    # a remote view never asks: it is not a sandbox the table answers
    assert table.lookup(REMOTE_KEY + "a" * 64, "web") is None


def test_full_sync_forgets_what_the_store_no_longer_has(store: Store) -> None:
    svc, table, _ = service(store)
    asker(table, OV, OTHER)
    with store.transaction():
        store.put_remote(remote("a" * 64, OV, "10.88.0.9", "web"))
    svc.sync(None)
    with store.transaction():
        store.delete_network(OV)  # its remote endpoints go with it
    assert store.take_touched_remote() == {OV}
    svc.sync(None)
    assert table.lookup("client", "web") is None and svc.status()["remote"] == {}


def test_an_endpoint_put_again_on_another_network_moves(store: Store) -> None:
    svc, table, _ = service(store)
    asker(table, OV, OTHER)
    with store.transaction():
        store.put_remote(remote("a" * 64, OV, "10.88.0.9", "web"))
    svc.sync([], [OV])
    with store.transaction():
        store.put_remote(remote("a" * 64, OTHER, "10.89.0.9", "web"))
    svc.sync([], [OTHER])
    svc.sync([], [OV])  # the old network's sync keeps it: it is on OTHER now
    assert table.lookup("client", "web") == ["10.89.0.9"]
