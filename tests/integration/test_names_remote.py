"""Names of other hosts' containers (issue 12's remote endpoints) at the embedded resolver.

The watcher that mirrors other hosts' endpoints into this host's store is not needed here:
the test writes the rows itself as the watcher does, from a process of its own with an
Engine (so the store's on_unlocking hook tells the resolver), under store.locked() and in a
transaction. The network is a user-defined bridge: a remote row may name any network whose
driver serves names, and the resolver treats them alike."""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import OUTSIDE_ADDR, Host
from .test_names import dig, dig_full, resolver_pid, run, start_dnsmasq

pytestmark = pytest.mark.skipif(not shutil.which("dig") or not shutil.which("dnsmasq"),
                                reason="needs dig and dnsmasq (run: make test)")

# what the "other host" announced of its container: name, short id, hostname, an alias
REMOTE_ID = "e" * 64
REMOTE_NAMES = ["remote-web", "ab12cd34ef56", "rweb-host", "shared"]

WRITE = """
import json, sys
from shoal.controller import Engine
from shoal.model import RemoteEndpoint

root, run_dir, op, network, rows = json.loads(sys.argv[1])
engine = Engine.open(root, run_dir)
store = engine.store
with store.locked():  # as the watcher writes: the resolver is told before this returns
    with store.transaction():
        net = store.network(network).id
        for row in rows:
            if op == "put":
                store.put_remote(RemoteEndpoint(network_id=net, host="host-b",
                                                address="192.0.2.2", mac="02:42:0a:58:00:c8",
                                                **row))
            else:
                store.delete_remote(row["id"])
print(json.dumps(engine.repairs))
engine.close()
"""


@pytest.fixture
def dns_host(host: Host) -> Iterator[Host]:
    """A host whose 'internet' has a DNS server (as test_names.py's): a name the resolver
    does not own is forwarded there and gets a definite NXDOMAIN."""
    proc = start_dnsmasq(host, OUTSIDE_ADDR)
    try:
        yield host
    finally:
        proc.kill()
        proc.wait()


def write_remote(host: Host, op: str, network: str, *rows: dict[str, object]) -> None:
    """Put (or delete) remote endpoints in the host's store, as its watcher would."""
    args = json.dumps([host.root, host.run_dir, op, network, list(rows)])
    code = f"import sys; sys.argv[1:] = [{args!r}]\n" + WRITE
    res = host.python(code)
    assert json.loads(res.stdout.splitlines()[-1]) == [], res.stdout  # resolver was told


def remote(ip: str, names: list[str] = REMOTE_NAMES, id_: str = REMOTE_ID) -> dict[str, object]:
    return {"id": id_, "ip": ip, "names": names}


def nxdomain(host: Host, ctr: str, name: str) -> bool:
    return "status: NXDOMAIN" in dig_full(host, ctr, name)


def test_remote_names_resolve_on_their_network_only_and_go_with_their_row(
        dns_host: Host) -> None:
    host = dns_host
    host.shoal("network", "create", "--subnet", "10.88.0.0/24", "ov")
    host.shoal("network", "create", "other")
    run(host, "client", network="ov")
    run(host, "db1", "--network-alias", "shared", network="ov")
    run(host, "stranger", network="other")
    local = host.ip_of("db1", "ov")
    write_remote(host, "put", "ov", remote("10.88.0.200"))
    for name in ("remote-web", "REMOTE-WEB", "remote-web.", "ab12cd34ef56", "rweb-host"):
        assert dig(host, "client", name) == ["10.88.0.200"], name
    # an alias shared by a local and a remote container: both addresses
    assert sorted(dig(host, "client", "shared")) == sorted([local, "10.88.0.200"])
    assert dig(host, "client", "-x", "10.88.0.200") == ["remote-web."]
    assert host.shoal("resolve", "remote-web").stdout.splitlines() == [
        "10.88.0.200\tremote-web\tov"]
    # not on ov: neither the names nor the address are answered (forwarded: NXDOMAIN)
    assert dig(host, "stranger", "remote-web") == []
    assert nxdomain(host, "stranger", "remote-web")
    assert dig(host, "stranger", "shared") == []
    assert "remote-web" not in dig_full(host, "stranger", "-x", "10.88.0.200")
    # the remote container got no listener, and doctor finds nothing wrong
    status = host.shoal("doctor")
    assert ("answers at 127.0.0.11:53 in 3 sandbox(es), with the names of 1 container(s) of "
            "other hosts;") in status.stdout
    # a changed row (its container restarted with another address) is answered at once
    write_remote(host, "put", "ov", remote("10.88.0.201"))
    assert dig(host, "client", "remote-web") == ["10.88.0.201"]
    assert dig(host, "client", "-x", "10.88.0.201") == ["remote-web."]
    # deleted: gone when the writer's lock is released
    write_remote(host, "delete", "ov", {"id": REMOTE_ID})
    assert dig(host, "client", "remote-web") == []
    assert nxdomain(host, "client", "remote-web")
    assert dig(host, "client", "shared") == [local]


def test_several_remote_endpoints_share_an_alias(dns_host: Host) -> None:
    host = dns_host
    host.shoal("network", "create", "--subnet", "10.88.0.0/24", "ov")
    run(host, "client", network="ov")
    write_remote(host, "put", "ov",
                 remote("10.88.0.210", ["api-1", "api"], "a" * 64),
                 remote("10.88.0.211", ["api-2", "API"], "b" * 64))
    assert sorted(dig(host, "client", "api")) == ["10.88.0.210", "10.88.0.211"]
    assert dig(host, "client", "api-2") == ["10.88.0.211"]
    write_remote(host, "delete", "ov", {"id": "a" * 64})
    assert dig(host, "client", "api") == ["10.88.0.211"]
    assert nxdomain(host, "client", "api-1")


def test_remote_names_alone_start_no_resolver_and_a_new_one_loads_them(dns_host: Host
                                                                        ) -> None:
    host = dns_host
    host.shoal("network", "create", "--subnet", "10.88.0.0/24", "ov")
    write_remote(host, "put", "ov", remote("10.88.0.200"))
    assert resolver_pid(host) is None  # no local container needs one
    run(host, "client", network="ov")  # the resolver starts: it reads every remote row
    assert resolver_pid(host) is not None
    assert dig(host, "client", "remote-web") == ["10.88.0.200"]
    host.shoal("rm", "-f", "client")
    assert resolver_pid(host) is None  # the remote rows do not keep it running


def test_remote_names_are_served_again_after_the_resolver_is_killed(dns_host: Host) -> None:
    host = dns_host
    host.shoal("network", "create", "--subnet", "10.88.0.0/24", "ov")
    run(host, "client", network="ov")
    write_remote(host, "put", "ov", remote("10.88.0.200"))
    assert dig(host, "client", "remote-web") == ["10.88.0.200"]
    pid = resolver_pid(host)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    host.wait_for(lambda: not Path(f"/proc/{pid}/status").exists()
                  or "zombie" in Path(f"/proc/{pid}/status").read_text(), what="kill")
    out = host.shoal("system", "reconcile").stdout
    assert "embedded resolver" in out and "started again" in out
    assert resolver_pid(host) not in (None, pid)
    assert dig(host, "client", "remote-web") == ["10.88.0.200"]
    assert dig(host, "client", "-x", "10.88.0.200") == ["remote-web."]
    # and the new one follows changes as the old one did
    write_remote(host, "delete", "ov", {"id": REMOTE_ID})
    assert nxdomain(host, "client", "remote-web")
