"""The bridge port of every endpoint is put in hairpin mode, in the same batch that plugs it
into the bridge (issue 7, item 18): the exact rtnetlink message. No root, no kernel."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Interface

import pytest

from shoal.kernel import links
from shoal.kernel import netlink as nl


def a(kind: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, int, bytes, str], ...]] = []

    def call(self, *requests: tuple[int, int, bytes, str]) -> None:
        self.calls.append(requests)

    def batch(self, requests: list[tuple[int, int, bytes, str]]) -> list[None]:
        self.call(*requests)
        return [None] * len(requests)


def test_the_host_end_is_plugged_then_put_in_hairpin_mode(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(links, "ipv6_enabled", lambda: False)  # (no sysctl written)
    sandbox, host = Recorder(), Recorder()
    links.add_veth_endpoint(
        sandbox, host, 7, "eth0", "vsh0123456789ab", "02:42:ac:11:00:02",  # type: ignore[arg-type]
        IPv4Interface("172.17.0.2/16"), IPv4Address("172.17.0.1"), 5, first=True, fresh=True)
    (plug, hairpin), = host.calls  # one batch, in this order
    assert plug[0] == nl.RTM_NEWLINK and plug[1] == 0
    kind, flags, body, _desc = hairpin
    assert (kind, flags) == (nl.RTM_NEWLINK, 0)
    # ifinfomsg (any index: found by name), IFLA_IFNAME, IFLA_LINKINFO { IFLA_INFO_SLAVE_KIND
    # "bridge", IFLA_INFO_SLAVE_DATA { IFLA_BRPORT_MODE 1 } }
    expected = (struct.pack("=BxHiII", 0, 0, 0, 0, 0) + a(3, b"vsh0123456789ab\0")
                + a(18, a(4, b"bridge\0") + a(5, a(4, b"\x01"))))
    assert body == expected
