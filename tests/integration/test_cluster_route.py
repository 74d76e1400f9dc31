"""cluster/hosts.route_source in the test's namespaces: the address the kernel would send
from toward the store (nothing is sent), and a clear error where there is no route."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from shoal.cluster import hosts
from shoal.errors import InvalidArgument
from shoal.kernel import ns

from .cni import namespace, remove_namespace
from .harness import HOST_ADDR, OUTSIDE_ADDR, Host


def test_the_address_toward_the_store(host: Host) -> None:
    with ns.entered(host.ns):
        assert hosts.route_source(OUTSIDE_ADDR, 2379) == IPv4Address(HOST_ADDR)


def test_no_route_to_the_store_asks_for_advertise_addr(tmp_path: Path) -> None:
    bare = namespace(tmp_path, "bare.ns")  # no link but a loopback that is down
    try:
        with ns.entered(bare), pytest.raises(InvalidArgument) as e:
            hosts.route_source(OUTSIDE_ADDR, 2379)
    finally:
        remove_namespace(bare)
    assert str(e.value).startswith(f"cannot tell this host's address toward the store "
                                   f"{OUTSIDE_ADDR}:2379 (")
    assert str(e.value).endswith("); give --advertise-addr")
