"""Unit tests for shoal.store: the SQLite state database (no root, no kernel)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.errors import Conflict, NotFound, ShoalError
from shoal.model import EXITED, RUNNING, Container, Endpoint, Network, Sandbox
from shoal.store import SCHEMA_VERSION, Store, decode_json

T0 = "2024-05-01T10:00:00.000000000Z"
T1 = "2024-05-01T10:00:01.000000000Z"


def hexid(prefix: str) -> str:
    return (prefix + "0" * 64)[:64]


def make_net(id_: str, name: str, subnet: str = "172.18.0.0/16", **kw: object) -> Network:
    net = IPv4Network(subnet)
    return Network(id=id_, name=name, driver="bridge", created=T0, subnet=net,
                   gateway=net.network_address + 1, bridge="sh-" + id_[:12], **kw)  # type: ignore[arg-type]


def make_ctr(id_: str, name: str, **kw: object) -> Container:
    return Container(id=id_, name=name, created=T0, hostname=id_[:12], cmd=["sleep", "9"],
                     env=["A=1"], network_mode="mynet", **kw)  # type: ignore[arg-type]


def make_ep(id_: str, ctr: str, net: str, ip: str | None, ifname: str = "eth0") -> Endpoint:
    """An endpoint of the container's own sandbox (which has the container's id)."""
    addr = IPv4Address(ip) if ip else None
    return Endpoint(id=id_, sandbox_id=ctr, network_id=net, ifname=ifname, ip=addr,
                    mac="02:42:00:00:00:01" if ip else None)


def own_sandbox(store: Store, ctr_id: str) -> None:
    store.add_sandbox(Sandbox(id=ctr_id, path="", owned=True, created=T0, owner=ctr_id))


def addresses(store: Store, network_id: str) -> list[IPv4Address]:
    """The addresses the network's endpoints hold, as the store returns them."""
    return [e.ip for e in store.endpoints(network_id=network_id) if e.ip is not None]


@pytest.fixture
def root(tmp_path: Path) -> str:
    return str(tmp_path / "state")


@pytest.fixture
def store(root: str) -> Iterator[Store]:
    s = Store(root)
    yield s
    s.close()


NET_A = hexid("aaa1")
NET_B = hexid("aab2")
CTR_A = hexid("ccc1")
CTR_B = hexid("ccd2")


# -- networks --------------------------------------------------------------------------------


def test_network_roundtrip(store: Store) -> None:
    net = make_net(NET_A, "mynet", ip_range=IPv4Network("172.18.5.0/24"), internal=True,
                   labels={"a": "b"}, options={"shoal.bridge.name": "br0"},
                   last_ip=IPv4Address("172.18.5.7"))
    store.add_network(net)
    got = store.network("mynet")
    assert got == net
    assert isinstance(got.subnet, IPv4Network)
    assert isinstance(got.gateway, IPv4Address)
    assert got.internal is True


def test_network_without_subnet_roundtrip(store: Store) -> None:
    net = Network(id=NET_A, name="host", driver="host", created=T0)
    store.add_network(net)
    assert store.network("host") == net


def test_network_lookup_by_name_id_and_prefix(store: Store) -> None:
    store.add_network(make_net(NET_A, "first"))
    store.add_network(make_net(NET_B, "second", "10.1.0.0/16"))
    assert store.network("first").id == NET_A
    assert store.network(NET_A).name == "first"
    assert store.network(NET_B[:12]).name == "second"
    assert store.network("aaa").name == "first"
    assert store.network("aab").name == "second"
    assert store.network_by_id(NET_B).name == "second"
    assert [n.name for n in store.networks()] == ["first", "second"]


def test_network_ambiguous_prefix(store: Store) -> None:
    store.add_network(make_net(NET_A, "first"))
    store.add_network(make_net(NET_B, "second", "10.1.0.0/16"))
    with pytest.raises(NotFound) as exc:
        store.network("aa")
    assert "ambiguous" in str(exc.value)
    assert "'aa'" in str(exc.value)


def test_network_unknown(store: Store) -> None:
    store.add_network(make_net(NET_A, "first"))
    with pytest.raises(NotFound, match="no such network: nope"):
        store.network("nope")
    with pytest.raises(NotFound, match="no such network: bbb"):
        store.network("bbb")  # hex, but no id starts with it
    with pytest.raises(NotFound, match="no such network"):
        store.network_by_id(NET_B)


def test_name_is_not_a_prefix(store: Store) -> None:
    store.add_network(make_net(NET_A, "frontend"))
    with pytest.raises(NotFound):
        store.network("front")


def test_like_wildcards_are_not_patterns(store: Store) -> None:
    store.add_network(make_net(NET_A, "first"))
    for ref in ("%", "_", "a%", "a_a"):
        with pytest.raises(NotFound):
            store.network(ref)


def test_duplicate_network_name_is_conflict(store: Store) -> None:
    store.add_network(make_net(NET_A, "mynet"))
    with pytest.raises(Conflict):
        store.add_network(make_net(NET_B, "mynet", "10.1.0.0/16"))


def test_update_and_delete_network(store: Store) -> None:
    store.add_network(make_net(NET_A, "mynet"))
    store.update_network(NET_A, last_ip=IPv4Address("172.18.0.9"), labels={"x": "y"})
    got = store.network(NET_A)
    assert got.last_ip == IPv4Address("172.18.0.9")
    assert got.labels == {"x": "y"}
    store.delete_network(NET_A)
    with pytest.raises(NotFound):
        store.network("mynet")
    assert store.networks() == []


# -- containers ------------------------------------------------------------------------------


def test_container_roundtrip_and_lookup(store: Store) -> None:
    ctr = make_ctr(CTR_A, "web", status=RUNNING, pid=123, pid_start=456, auto_remove=True,
                   started_at=T1, workdir="/srv")
    store.add_container(ctr)
    store.add_container(make_ctr(CTR_B, "db"))
    assert store.container("web") == ctr
    assert store.container(CTR_A) == ctr
    assert store.container(CTR_A[:12]) == ctr
    assert store.container("ccd").name == "db"
    assert store.container_by_id(CTR_A) == ctr
    assert store.container_by_id(hexid("f")) is None
    assert {c.name for c in store.containers()} == {"web", "db"}


def test_container_ambiguous_and_unknown(store: Store) -> None:
    store.add_container(make_ctr(CTR_A, "web"))
    store.add_container(make_ctr(CTR_B, "db"))
    with pytest.raises(NotFound, match="container id prefix 'cc' is ambiguous"):
        store.container("cc")
    with pytest.raises(NotFound, match="no such container: nope"):
        store.container("nope")


def test_duplicate_container_name_is_conflict(store: Store) -> None:
    store.add_container(make_ctr(CTR_A, "web"))
    with pytest.raises(Conflict):
        store.add_container(make_ctr(CTR_B, "web"))


def test_update_container(store: Store) -> None:
    store.add_container(make_ctr(CTR_A, "web"))
    store.update_container(CTR_A, status=EXITED, exit_code=3, finished_at=T1, pid=None)
    got = store.container("web")
    assert (got.status, got.exit_code, got.finished_at, got.pid) == (EXITED, 3, T1, None)


# -- endpoints -------------------------------------------------------------------------------


@pytest.fixture
def populated(store: Store) -> Store:
    store.add_network(make_net(NET_A, "mynet"))
    store.add_container(make_ctr(CTR_A, "web"))
    store.add_container(make_ctr(CTR_B, "db"))
    own_sandbox(store, CTR_A)
    own_sandbox(store, CTR_B)
    return store


def test_endpoint_roundtrip(populated: Store) -> None:
    ep = make_ep(hexid("e1"), CTR_A, NET_A, "172.18.0.2")
    ep.aliases = ["www", "front"]
    ep.requested_ip = IPv4Address("172.18.0.2")
    populated.add_endpoint(ep)
    assert populated.endpoints(sandbox_id=CTR_A) == [ep]
    assert populated.endpoints(network_id=NET_A) == [ep]
    assert populated.endpoints(sandbox_id=CTR_B) == []


def test_two_endpoints_cannot_share_an_address(populated: Store) -> None:
    populated.add_endpoint(make_ep(hexid("e1"), CTR_A, NET_A, "172.18.0.2"))
    with pytest.raises(Conflict, match="172.18.0.2 is already in use"):
        populated.add_endpoint(make_ep(hexid("e2"), CTR_B, NET_A, "172.18.0.2"))
    assert [e.sandbox_id for e in populated.endpoints(network_id=NET_A)] == [CTR_A]


def test_same_address_on_different_networks_is_fine(populated: Store) -> None:
    populated.add_network(make_net(NET_B, "other", "10.1.0.0/16"))
    populated.add_endpoint(make_ep(hexid("e1"), CTR_A, NET_A, "172.18.0.2"))
    populated.add_endpoint(make_ep(hexid("e2"), CTR_B, NET_B, "172.18.0.2"))
    assert len(populated.endpoints()) == 2


def test_address_conflict_inside_transaction_rolls_back(populated: Store) -> None:
    populated.add_endpoint(make_ep(hexid("e1"), CTR_A, NET_A, "172.18.0.2"))
    ctr = make_ctr(hexid("ce3"), "third")
    with pytest.raises(Conflict), populated.transaction():
        populated.add_container(ctr)
        own_sandbox(populated, ctr.id)
        populated.add_endpoint(make_ep(hexid("e3"), ctr.id, NET_A, "172.18.0.2"))
    assert populated.container_by_id(ctr.id) is None
    assert not populated.db.in_transaction


def test_endpoints_without_address_do_not_clash(populated: Store) -> None:
    populated.add_endpoint(make_ep(hexid("e1"), CTR_A, NET_A, None))
    populated.add_endpoint(make_ep(hexid("e2"), CTR_B, NET_A, None))
    assert len(populated.endpoints(network_id=NET_A)) == 2
    assert addresses(populated, NET_A) == []


def test_release_address_keeps_endpoint(populated: Store) -> None:
    ep = make_ep(hexid("e1"), CTR_A, NET_A, "172.18.0.2")
    populated.add_endpoint(ep)
    populated.update_endpoint(ep.id, ip=None, mac=None)
    assert addresses(populated, NET_A) == []
    assert populated.endpoints(sandbox_id=CTR_A)[0].ip is None
    # the address is free for another endpoint now
    populated.add_endpoint(make_ep(hexid("e2"), CTR_B, NET_A, "172.18.0.2"))


def test_endpoints_ordered_by_ifname(populated: Store) -> None:
    populated.add_network(make_net(NET_B, "other", "10.1.0.0/16"))
    populated.add_endpoint(make_ep(hexid("e2"), CTR_A, NET_B, "10.1.0.2", ifname="eth1"))
    populated.add_endpoint(make_ep(hexid("e1"), CTR_A, NET_A, "172.18.0.2", ifname="eth0"))
    assert [e.ifname for e in populated.endpoints(sandbox_id=CTR_A)] == ["eth0", "eth1"]


def test_deleting_container_cascades_to_endpoints(populated: Store) -> None:
    populated.add_endpoint(make_ep(hexid("e1"), CTR_A, NET_A, "172.18.0.2"))
    populated.add_endpoint(make_ep(hexid("e2"), CTR_B, NET_A, "172.18.0.3"))
    populated.delete_container(CTR_A)
    assert populated.endpoints(sandbox_id=CTR_A) == []
    assert [e.sandbox_id for e in populated.endpoints(network_id=NET_A)] == [CTR_B]
    assert addresses(populated, NET_A) == [IPv4Address("172.18.0.3")]


def test_cascade_survives_reopen(root: str) -> None:
    s = Store(root)
    s.add_network(make_net(NET_A, "mynet"))
    s.add_container(make_ctr(CTR_A, "web"))
    own_sandbox(s, CTR_A)
    s.add_endpoint(make_ep(hexid("e1"), CTR_A, NET_A, "172.18.0.2"))
    s.close()
    s = Store(root)  # foreign keys are per connection
    s.delete_container(CTR_A)
    assert s.endpoints() == []
    s.close()


def test_deleting_network_deletes_its_endpoints(populated: Store) -> None:
    populated.add_endpoint(make_ep(hexid("e1"), CTR_A, NET_A, "172.18.0.2"))
    populated.delete_network(NET_A)
    assert populated.endpoints() == []
    assert populated.container("web").name == "web"


def test_deleting_a_sandbox_deletes_its_endpoints_not_its_container(populated: Store) -> None:
    populated.add_endpoint(make_ep(hexid("e1"), CTR_A, NET_A, "172.18.0.2"))
    populated.delete_sandbox(CTR_A)
    assert populated.endpoints() == []
    assert populated.sandbox_by_id(CTR_A) is None
    assert populated.container("web").name == "web"


def test_a_handed_in_sandbox_has_its_own_id_and_path(populated: Store) -> None:
    sb = Sandbox(id=hexid("5b"), path="/run/netns/cni-1", owned=False, created=T0,
                 owner="cni:abc")
    populated.add_sandbox(sb)
    assert populated.sandbox_by_id(sb.id) == sb
    assert populated.sandbox_by_owner("cni:abc") == sb
    assert [s.id for s in populated.sandboxes(owned=False)] == [sb.id]
    populated.add_endpoint(make_ep(hexid("e1"), sb.id, NET_A, "172.18.0.2"))
    populated.delete_container(CTR_A)  # another container's removal leaves it alone
    assert [e.sandbox_id for e in populated.endpoints()] == [sb.id]


def test_endpoint_needs_existing_sandbox(populated: Store) -> None:
    with pytest.raises(Conflict):
        populated.add_endpoint(make_ep(hexid("e1"), hexid("dead"), NET_A, "172.18.0.2"))
    assert populated.endpoints() == []


# -- meta and transactions -----------------------------------------------------------------


def test_meta(store: Store) -> None:
    assert store.get_meta("builtins") is None
    store.set_meta("builtins", "1")
    store.set_meta("builtins", "2")
    assert store.get_meta("builtins") == "2"


def test_transaction_rolls_back_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.add_network(make_net(NET_A, "mynet"))
        raise RuntimeError("boom")
    assert store.networks() == []


def test_nested_transaction_is_one_transaction(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        store.add_network(make_net(NET_A, "one"))
        with store.transaction():
            store.add_network(make_net(NET_B, "two", "10.1.0.0/16"))
        raise RuntimeError("boom")
    assert store.networks() == []


def test_state_persists_across_connections(root: str) -> None:
    s = Store(root)
    s.add_network(make_net(NET_A, "mynet"))
    s.close()
    s = Store(root)
    assert s.network("mynet").id == NET_A
    s.close()


def test_lock_is_reentrant(store: Store, root: str) -> None:
    with store.locked():
        with store.locked():
            assert store._lock_depth == 2
        assert store._lock_fd is not None
    assert store._lock_fd is None
    assert stat.S_IMODE(os.stat(os.path.join(root, "lock")).st_mode) & 0o077 == 0


# -- opening the database ------------------------------------------------------------------


def test_schema_version_is_set(store: Store) -> None:
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_is_refused(root: str) -> None:
    Store(root).close()
    db = sqlite3.connect(os.path.join(root, "shoal.db"))
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ShoalError) as exc:
        Store(root)
    assert "newer" in str(exc.value)
    assert "upgrade shoal" in str(exc.value)


@pytest.mark.parametrize("size", [64, 100, 512, 4096, 65536])
def test_corrupt_database_is_a_shoal_error(root: str, size: int) -> None:
    os.makedirs(root)
    garbage = (b"\xde\xad\xbe\xef not a database " * (size // 16 + 1))[:size]
    with open(os.path.join(root, "shoal.db"), "wb") as f:
        f.write(garbage)
    with pytest.raises(ShoalError) as exc:
        Store(root)
    assert not isinstance(exc.value, sqlite3.Error)
    msg = str(exc.value)
    assert "shoal.db" in msg
    assert "move it aside" in msg
    assert "\n" not in msg


def test_root_directory_is_private(root: str) -> None:
    assert not os.path.exists(root)
    Store(root).close()
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700


def test_database_file_is_private(root: str) -> None:
    s = Store(root)
    s.add_network(make_net(NET_A, "mynet"))  # creates the WAL files too
    for name in os.listdir(root):
        if name.startswith("shoal.db"):
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            assert mode & 0o077 == 0, f"{name} is {oct(mode)}"
    s.close()


def test_database_file_is_private_with_permissive_umask(root: str) -> None:
    old = os.umask(0)
    try:
        s = Store(root)
        s.add_network(make_net(NET_A, "mynet"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    for name in os.listdir(root):
        mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
        assert mode & 0o077 == 0, f"{name} is {oct(mode)}"
    s.close()


# -- JSON columns decoded without the json module ------------------------------------------


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.lists(st.text()) | st.dictionaries(st.text(), st.text()))
def test_json_columns_decode_as_written(value: object) -> None:
    assert decode_json(json.dumps(value)) == value


@given(_json_values)
def test_json_columns_decode_anything_json_does(value: object) -> None:
    text = json.dumps(value)
    assert decode_json(text) == json.loads(text)


@pytest.mark.parametrize("text", ['["a", "b"]', '{"k": "v", "a": ""}', '["]", "{"]', "[]",
                                  "{}", '["a", 1]', '{"a": "b", "c": 1, "d": "e"}',
                                  '[["a"]]', '"x"', '{"a": ["b"]}', '["a",  "b"]'])
def test_json_columns_decode_edge_cases(text: str) -> None:
    assert decode_json(text) == json.loads(text)


def test_reading_the_store_does_not_import_json(store: Store, root: str) -> None:
    """`shoal network ls` stays fast: reading the store needs neither json, re nor ipaddress
    (addresses are parsed when first read)."""
    store.add_network(make_net(NET_A, "a", labels={"team": "x y", "k": ""},
                               options={"shoal.bridge.name": "br-a"}))
    store.add_container(make_ctr(CTR_A, "c"))
    code = ("import sys; from shoal.store import Store; s = Store(sys.argv[1]); "
            "s.networks(); s.containers(); s.close(); "
            "print(sorted(m for m in ('json', 're', 'enum', 'ipaddress') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code, root], capture_output=True,
                         text=True, check=True)
    assert res.stdout.strip() == "[]"


def test_addresses_read_from_the_store_are_parsed_on_first_read(store: Store) -> None:
    net = make_net(NET_A, "a", subnet="10.1.0.0/24")
    store.add_network(net)
    got = store.network("a")
    assert got.__dict__["subnet"] == "10.1.0.0/24"  # kept as the column's text ...
    assert got.subnet == IPv4Network("10.1.0.0/24")  # ... until read
    assert got.__dict__["subnet"] == IPv4Network("10.1.0.0/24")
    assert got == net and got.gateway == IPv4Address("10.1.0.1") and got.ip_range is None


# -- migration -------------------------------------------------------------------------------

# The schema as shoal 0.x wrote it at version 3: endpoints and ports belonged to containers.
SCHEMA_3 = """
CREATE TABLE networks (
    id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, driver TEXT NOT NULL, created TEXT NOT NULL,
    subnet TEXT, gateway TEXT, ip_range TEXT, internal INTEGER NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}', options TEXT NOT NULL DEFAULT '{}',
    bridge TEXT UNIQUE, last_ip TEXT);
CREATE TABLE containers (
    id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, created TEXT NOT NULL, hostname TEXT,
    cmd TEXT NOT NULL, env TEXT NOT NULL, network_mode TEXT NOT NULL, status TEXT NOT NULL,
    pid INTEGER, pid_start INTEGER, supervisor_pid INTEGER, supervisor_start INTEGER,
    exit_code INTEGER NOT NULL DEFAULT 0, started_at TEXT, finished_at TEXT,
    auto_remove INTEGER NOT NULL DEFAULT 0, error TEXT NOT NULL DEFAULT '', workdir TEXT,
    publish TEXT NOT NULL DEFAULT '[]', expose TEXT NOT NULL DEFAULT '[]');
CREATE TABLE endpoints (
    id TEXT PRIMARY KEY,
    container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    network_id TEXT NOT NULL REFERENCES networks(id),
    ifname TEXT NOT NULL, ip TEXT, mac TEXT, aliases TEXT NOT NULL DEFAULT '[]',
    requested_ip TEXT,
    UNIQUE (network_id, ip), UNIQUE (container_id, network_id), UNIQUE (container_id, ifname));
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE ports (
    container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    network_id TEXT NOT NULL REFERENCES networks(id),
    proto TEXT NOT NULL, host_ip TEXT NOT NULL, host_port INTEGER NOT NULL,
    container_port INTEGER NOT NULL, dest_ip TEXT NOT NULL,
    UNIQUE (proto, host_ip, host_port));
CREATE TABLE ops (pid INTEGER NOT NULL, pid_start INTEGER, started TEXT);
PRAGMA user_version=3;
"""


def test_a_version_3_database_gets_sandboxes_and_keeps_every_row(root: str) -> None:
    """Endpoints and ports move to the sandbox of their container (which has its id); a
    container in host mode or sharing another's sandbox gets none."""
    os.makedirs(root, mode=0o700)
    db = sqlite3.connect(os.path.join(root, "shoal.db"))
    db.executescript(SCHEMA_3)
    db.execute("INSERT INTO networks (id, name, driver, created, subnet, gateway, bridge) "
               "VALUES (?, 'mynet', 'bridge', ?, '172.18.0.0/16', '172.18.0.1', 'sh-x')",
               (NET_A, T0))
    for cid, name, mode in ((CTR_A, "web", "mynet"), (CTR_B, "side", f"container:{CTR_A}"),
                            (hexid("ce"), "h", "host")):
        db.execute("INSERT INTO containers (id, name, created, cmd, env, network_mode, status) "
                   "VALUES (?, ?, ?, '[]', '[]', ?, 'running')", (cid, name, T0, mode))
    db.execute("INSERT INTO endpoints (id, container_id, network_id, ifname, ip, mac) VALUES "
               "(?, ?, ?, 'eth0', '172.18.0.2', '02:42:ac:12:00:02')", (hexid("e1"), CTR_A, NET_A))
    db.execute("INSERT INTO ports VALUES (?, ?, 'tcp', '0.0.0.0', 8080, 80, '172.18.0.2')",
               (CTR_A, NET_A))
    db.commit()
    db.close()
    s = Store(root)
    try:
        assert s.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert [(sb.id, sb.owned, sb.path) for sb in s.sandboxes()] == [(CTR_A, True, "")]
        assert s.container("web").labels == {}  # (schema 6: a container's --label)
        assert {c.user for c in s.containers()} == {""}  # (-u came later: root, as before)
        assert [(e.sandbox_id, str(e.ip)) for e in s.endpoints()] == [(CTR_A, "172.18.0.2")]
        assert [tuple(r) for r in s.port_rows(CTR_A)] == [
            ("tcp", "0.0.0.0", 8080, "172.18.0.2", 80)]
        s.delete_container(CTR_A)  # its sandbox goes with it, and so its endpoint and port
        assert s.endpoints() == [] and s.ports() == []
    finally:
        s.close()
