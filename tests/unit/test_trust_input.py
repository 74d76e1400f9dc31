"""Input shoal refuses and output it keeps on one line (issue 7, items 5, 11, 13, 14)."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal import ipam, names, render
from shoal.drivers import bridge
from shoal.errors import InvalidArgument
from shoal.model import Container


def make_ctr(cmd: list[str]) -> Container:
    return Container(id="c" * 64, name="web", created="2024-05-01T10:00:00.123456000Z",
                     hostname="cccccccccccc", cmd=cmd, env=[], network_mode="bridge")


@pytest.mark.parametrize("name", ["vshbr0", "vsh", "sh-x", "shoal0"])
def test_reserved_bridge_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        bridge.check_user_bridge_name(name)
    assert "reserved" in str(exc.value) and "-o shoal.bridge.name" in str(exc.value)


@pytest.mark.parametrize("name", ["br-lab", "shoal1", "vs", "shx", "docker0"])
def test_other_bridge_names_are_fine(name: str) -> None:
    assert bridge.check_user_bridge_name(name) == name


@pytest.mark.parametrize("cidr", ["0.0.0.0/8", "0.1.0.0/16", "127.0.0.0/8", "127.0.0.0/30",
                                  "224.0.0.0/4", "239.255.0.0/16", "240.0.0.0/4",
                                  "255.255.255.255/32", "0.0.0.0/0", "128.0.0.0/1"])
def test_unusable_subnets_are_refused(cidr: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        ipam.check_usable(IPv4Network(cidr))
    assert "choose another --subnet" in str(exc.value)


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "172.17.0.0/16", "192.168.0.0/24",
                                  "1.0.0.0/8", "126.0.0.0/8", "128.0.0.0/2",
                                  "223.255.255.0/24"])
def test_usable_subnets_pass(cidr: str) -> None:
    ipam.check_usable(IPv4Network(cidr))


def test_ids_and_owner_marks() -> None:
    assert names.is_id(names.new_id())
    assert not names.is_id("a" * 63) and not names.is_id("A" * 64) and not names.is_id("x.txt")
    mark = names.owner_mark("/var/lib/shoal")
    assert mark == "shoal root=/var/lib/shoal"
    assert names.marked_root(mark) == "/var/lib/shoal"
    assert names.marked_root(None) is None and names.marked_root("uplink to isp") is None
    long = names.owner_mark("/" + "d" * 400)
    assert len(long.encode()) <= names.IFALIASZ


@given(st.lists(st.text(), min_size=1, max_size=4))
def test_ps_command_has_no_control_characters(cmd: list[str]) -> None:
    for trunc in (True, False):
        text = render.ps_row(make_ctr(cmd=cmd), "created", trunc=trunc)["Command"]
        assert all(ch.isprintable() or ch == " " for ch in text), repr(text)


def test_ps_command_escapes_as_docker_quotes() -> None:
    row = render.ps_row(make_ctr(cmd=["sh", "-c", "a\n\tb\x1b"]), "created", trunc=False)
    assert row["Command"] == "sh -c 'a\\n\\tb\\x1b'"
    assert render.printable("plain text") == "plain text"
