"""The cluster's records of overlay networks and endpoints (cluster/networks.py,
cluster/endpoints.py) on MemoryStore: a name and a VNI are the cluster's once, even when
hosts race; a VNI a dead creator left is taken back; records that cannot be read are passed
over; and BlockLeases.claim_block for --ip."""

from __future__ import annotations

import threading
from ipaddress import IPv4Address, IPv4Network

import pytest

from shoal.cluster import endpoints, networks
from shoal.errors import Conflict, InvalidArgument
from shoal.ipam import blocks
from shoal.model import Network, RemoteEndpoint
from shoal.store import protocol
from shoal.store.memory import MemoryStore


def _net(name: str = "ov", id_: str = "a" * 64, **kw: object) -> Network:
    return Network(id=id_, name=name, driver="overlay", created="2026-12-03T00:00:00Z",
                   subnet=IPv4Network("10.50.0.0/16"), gateway=IPv4Address("10.50.0.1"),
                   bridge="ov-" + id_[:12], **kw)


def test_create_takes_the_first_free_vni_and_records_the_network() -> None:
    store = MemoryStore()
    first = networks.create(store, _net("one", "1" * 64))
    second = networks.create(store, _net("two", "2" * 64))
    assert networks.vni_of(first) == networks.FIRST_VNI
    assert networks.vni_of(second) == networks.FIRST_VNI + 1
    got, _ = networks.networks(store)
    assert [(n.name, n.id, str(n.subnet), str(n.gateway), n.options) for n in got] == [
        ("one", "1" * 64, "10.50.0.0/16", "10.50.0.1", {networks.VNI_OPTION: "4096"}),
        ("two", "2" * 64, "10.50.0.0/16", "10.50.0.1", {networks.VNI_OPTION: "4097"})]
    assert got[0].bridge is None and got[0].last_ip is None  # per host, never shared


def test_a_name_is_the_clusters_once() -> None:
    store = MemoryStore()
    networks.create(store, _net("ov", "1" * 64))
    with pytest.raises(Conflict, match="network with name ov already exists in the cluster"):
        networks.create(store, _net("ov", "2" * 64))
    vnis, _ = store.get_prefix(networks.VNI_PREFIX)
    assert len(vnis) == 1  # the loser's VNI was given back


def test_racing_creators_of_one_name_one_wins_and_no_vni_leaks() -> None:
    store = MemoryStore()
    results: list[object] = []
    barrier = threading.Barrier(6)

    def create(i: int) -> None:
        barrier.wait()
        try:
            results.append(networks.create(store, _net("ov", f"{i}" * 64)))
        except Conflict as e:
            results.append(e)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [r for r in results if isinstance(r, Network)]
    assert len(won) == 1
    got, _ = networks.networks(store)
    assert [n.id for n in got] == [won[0].id]  # type: ignore[attr-defined]
    vnis, _ = store.get_prefix(networks.VNI_PREFIX)
    assert len(vnis) == 1


def test_racing_creators_of_different_names_get_different_vnis() -> None:
    store = MemoryStore()
    barrier = threading.Barrier(8)

    def create(i: int) -> None:
        barrier.wait()
        networks.create(store, _net(f"ov{i}", f"{i}" * 64))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got, _ = networks.networks(store)
    assert len({networks.vni_of(n) for n in got}) == 8


def test_a_given_vni_taken_is_a_conflict_but_one_a_dead_creator_left_is_taken_back() -> None:
    store = MemoryStore()
    networks.create(store, _net("one", "1" * 64, options={networks.VNI_OPTION: "5000"}))
    with pytest.raises(Conflict, match="VNI 5000 is taken by another overlay network"):
        networks.create(store, _net("two", "2" * 64, options={networks.VNI_OPTION: "5000"}))
    # a creator that died between taking the VNI and writing its network
    protocol.create(store, f"{networks.VNI_PREFIX}6000", b'{"network": "dead"}')
    net = networks.create(store, _net("three", "3" * 64, options={networks.VNI_OPTION: "6000"}))
    assert networks.vni_of(net) == 6000


@pytest.mark.parametrize("text", ["0", "16777216", "x", "-1", "4096,4097"])
def test_a_bad_vni_is_a_clear_error(text: str) -> None:
    with pytest.raises(InvalidArgument, match=f"invalid VNI '{text}'"):
        networks.parse_vni(text)


def test_delete_removes_the_record_its_vni_and_its_blocks() -> None:
    store = MemoryStore()
    net = networks.create(store, _net())
    leases = blocks.BlockLeases(store, net.id, IPv4Network("10.50.0.0/16"), "h1",
                                store.grant(30))
    leases.claim()
    other = networks.create(store, _net("other", "b" * 64))
    networks.delete(store, net)
    got, _ = networks.networks(store)
    assert [n.name for n in got] == ["other"]
    assert store.get_prefix(f"{blocks.BLOCKS_PREFIX}{net.id}/")[0] == []
    vnis, _ = store.get_prefix(networks.VNI_PREFIX)
    assert [kv.key for kv in vnis] == [f"{networks.VNI_PREFIX}{networks.vni_of(other)}"]


def test_a_record_that_cannot_be_read_is_passed_over() -> None:
    store = MemoryStore()
    store.put(networks.NETWORKS_PREFIX + "junk", b"{not json")
    store.put(networks.NETWORKS_PREFIX + "novni", b'{"id": "x", "name": "novni"}')
    networks.create(store, _net())
    got, _ = networks.networks(store)
    assert [n.name for n in got] == ["ov"]


def test_endpoint_records_round_trip_and_bad_ones_are_none() -> None:
    ep = RemoteEndpoint(id="e" * 64, network_id="n" * 64, host="h1",
                        address=IPv4Address("10.77.0.10"), ip=IPv4Address("10.50.0.2"),
                        mac="02:42:0a:32:00:02", names=["web", "alias"])
    store = MemoryStore()
    store.put(endpoints.key(ep.network_id, ep.id), endpoints.encode(ep))
    kv = store.get(endpoints.key(ep.network_id, ep.id))
    assert kv is not None and endpoints.decode(kv) == ep
    bad = [b"{", b'{"host": "h"}', b'{"host": "h", "address": "x", "ip": "10.0.0.1", '
           b'"mac": "02:42:0a:00:00:01"}', b'{"host": "h", "address": "10.0.0.1", "ip": '
           b'"10.0.0.2", "mac": "02:42:0a:00:00:01", "names": [1]}']
    for value in bad:
        assert endpoints.decode(protocol.KeyValue(kv.key, value, 1, 1, 1)) is None
    assert endpoints.split(endpoints.ENDPOINTS_PREFIX + "net/ep") == ("net", "ep")
    assert endpoints.split(endpoints.ENDPOINTS_PREFIX + "net") is None
    assert endpoints.split(endpoints.ENDPOINTS_PREFIX + "net/ep/x") is None


def test_claim_block_for_an_address_asked_for() -> None:
    store = MemoryStore()
    subnet = IPv4Network("10.50.0.0/24")
    a = blocks.BlockLeases(store, "n", subnet, "host-a", store.grant(30))
    b = blocks.BlockLeases(store, "n", subnet, "host-b", store.grant(30))
    block = IPv4Network("10.50.0.64/26")
    assert a.claim_block(block) == block
    assert a.claim_block(block) == block  # its own already
    with pytest.raises(Conflict, match="address block 10.50.0.64/26 of network n is leased "
                                       "by host host-a"):
        b.claim_block(block)
    with pytest.raises(InvalidArgument, match="not an address block"):
        b.claim_block(IPv4Network("10.50.0.0/25"))


def test_free_vnis_deletes_only_the_hosts_own_vnis_of_no_network() -> None:
    store = MemoryStore()
    kept = networks.create(store, _net("kept", "k" * 64), host="h1")
    # creators killed between the VNI and the record: one of h1, one of h2, one unsigned
    for vni, value in ((5000, b'{"network": "gone1", "host": "h1"}'),
                       (5001, b'{"network": "gone2", "host": "h2"}'),
                       (5002, b'{"network": "gone3"}')):
        store.put(f"{networks.VNI_PREFIX}{vni}", value)
    assert networks.free_vnis(store, "h1") == [5000]
    left = {kv.key for kv in store.get_prefix(networks.VNI_PREFIX)[0]}
    assert left == {f"{networks.VNI_PREFIX}{v}" for v in
                    (networks.vni_of(kept), 5001, 5002)}


def test_release_vni_deletes_a_removed_networks_vni_only_while_it_names_it() -> None:
    store = MemoryStore()
    net = networks.create(store, _net())
    store.delete(networks.NETWORKS_PREFIX + net.name)  # (a rm killed after the record)
    assert networks.release_vni(store, net)
    assert store.get_prefix(networks.VNI_PREFIX)[0] == []
    # taken meanwhile by a new network: not the removed one's to delete
    again = networks.create(store, _net("again", "b" * 64,
                                        options={networks.VNI_OPTION: str(networks.vni_of(net))}))
    assert not networks.release_vni(store, net)
    assert store.get(f"{networks.VNI_PREFIX}{networks.vni_of(again)}") is not None
