"""Unit tests for shoal.names: name validation, interface names, ids and random names."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal import names
from shoal.drivers import bridge
from shoal.errors import InvalidArgument

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
HEX64 = re.compile(r"[0-9a-f]{64}")

# every character, surrogates included (argv decoded with surrogateescape carries them)
any_char = st.one_of(st.characters(), st.characters(categories=["Cs"]))


# -- validate_name ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a", "Z", "0", "web", "web-1", "web_1", "web.1", "a.b-c_d", "9lives", "A" * 128,
     "x--", "x..", "x__", "my.net", "a-"],
)
def test_validate_name_accepts(name: str) -> None:
    assert names.validate_name(name, "container") == name


@pytest.mark.parametrize(
    "name",
    ["-a", "_a", ".a", ".", "..", "../x", "a/b", "/a", "a b", " a", "a ", "a\tb", "a\nb",
     "a\n", "\n", ";rm -rf", "a;b", "'a'", '"a"', "a'b", "a\"b", "`a`", "$(a)", "a$b",
     "é", "aé", "café", "名前", "a\x00b", "a:b", "a@b", "a+b", "a*", "a,b", "a=b"],
)
def test_validate_name_rejects(name: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        names.validate_name(name, "container")
    msg = str(exc.value)
    assert "container name" in msg
    assert "\n" not in msg


def test_validate_name_rejects_empty() -> None:
    with pytest.raises(InvalidArgument, match="network name must not be empty"):
        names.validate_name("", "network")


def test_validate_name_rejects_overlong() -> None:
    with pytest.raises(InvalidArgument, match="longer than 128"):
        names.validate_name("a" * 129, "container")
    with pytest.raises(InvalidArgument, match="longer than 128"):
        names.validate_name("a" * 10_000, "container")


def test_validate_name_overlong_message_is_short() -> None:
    with pytest.raises(InvalidArgument) as exc:
        names.validate_name("b" * 10_000, "container")
    assert len(str(exc.value)) < 200


def test_validate_name_rejects_unicode_digits_and_letters() -> None:
    # str.isalnum() would accept these; Docker's ASCII-only pattern must not
    for name in ("٣", "a٣", "ａ", "x\u00b2", "\u212a", "\u017f"):  # ٣, fullwidth a, ², Kelvin, ſ
        with pytest.raises(InvalidArgument):
            names.validate_name(name, "container")


@given(st.text(alphabet=any_char, max_size=140))
def test_validate_name_total(name: str) -> None:
    try:
        result = names.validate_name(name, "container")
    except InvalidArgument as e:
        assert "\n" not in str(e)
        assert not (NAME_RE.fullmatch(name) and len(name) <= 128)
        return
    assert result == name
    assert NAME_RE.fullmatch(name)
    assert name.isascii()
    assert 1 <= len(name) <= 128


@given(st.from_regex(NAME_RE, fullmatch=True).filter(lambda s: len(s) <= 128))
def test_validate_name_accepts_every_pattern_match(name: str) -> None:
    assert names.validate_name(name, "network") == name


# -- validate_ifname -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["eth0", "br0", "a", "x" * 15, "my-br_1.2", "sh-0123456789ab"])
def test_validate_ifname_accepts(name: str) -> None:
    assert names.validate_ifname(name) == name


@pytest.mark.parametrize("name", ["x" * 16, "abcdefghijklmnop", "sh-0123456789abc"])
def test_validate_ifname_rejects_too_long(name: str) -> None:
    with pytest.raises(InvalidArgument, match="at most 15"):
        names.validate_ifname(name, "bridge")


def test_validate_ifname_counts_bytes_not_characters() -> None:
    name = "é" * 8  # 8 characters, 16 bytes
    assert len(name) <= 15
    with pytest.raises(InvalidArgument, match="16 bytes"):
        names.validate_ifname(name)
    # short multi-byte names are rejected too (not in [a-zA-Z0-9_.-])
    with pytest.raises(InvalidArgument):
        names.validate_ifname("brü")


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a/b", "/", "br 0", " br0", "br0 ", "br\t0", "br\n", "br:0",
             "br\x00", "br@0"],
)
def test_validate_ifname_rejects_bad_characters(name: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        names.validate_ifname(name, "bridge")
    assert "bridge name" in str(exc.value)


def test_validate_ifname_rejects_undecodable_argv_bytes() -> None:
    # `shoal network create -o shoal.bridge.name=$'\xff' n` gives a surrogate-escaped string
    with pytest.raises(InvalidArgument):
        names.validate_ifname("br\udcff")
    with pytest.raises(InvalidArgument):
        names.validate_ifname("\udcff" * 20)


@given(st.text(alphabet=any_char, max_size=30))
def test_validate_ifname_total(name: str) -> None:
    try:
        result = names.validate_ifname(name)
    except InvalidArgument:
        return
    assert result == name
    assert 1 <= len(name.encode()) <= 15
    assert name not in (".", "..")
    assert "/" not in name and ":" not in name
    assert not any(c.isspace() for c in name)


# -- ids and kernel names ----------------------------------------------------------------------


def test_new_id_is_64_hex_and_unique() -> None:
    ids = {names.new_id() for _ in range(200)}
    assert len(ids) == 200
    for i in ids:
        assert HEX64.fullmatch(i)


def test_short_id() -> None:
    full = "0123456789abcdef" * 4
    assert names.short_id(full) == "0123456789ab"


hex_ids = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


@given(hex_ids)
def test_bridge_name(nid: str) -> None:
    name = bridge.bridge_name(nid)
    assert name == "sh-" + nid[:12]
    assert len(name.encode()) <= 15
    assert name == bridge.bridge_name(nid)
    assert names.validate_ifname(name) == name
    assert name != bridge.DEFAULT_BRIDGE


@given(hex_ids)
def test_host_veth_name(eid: str) -> None:
    name = bridge.host_veth_name(eid)
    assert name == "vsh" + eid[:12]
    assert len(name.encode()) <= 15
    assert name == bridge.host_veth_name(eid)
    assert names.validate_ifname(name) == name


def test_kernel_names_differ_for_different_ids() -> None:
    a, b = "a" * 64, "b" * 64
    assert bridge.bridge_name(a) != bridge.bridge_name(b)
    assert bridge.host_veth_name(a) != bridge.host_veth_name(b)
    # bridges and host veths never share a name
    assert bridge.bridge_name(a) != bridge.host_veth_name(a)


def test_kernel_names_from_new_ids() -> None:
    for _ in range(50):
        nid = names.new_id()
        assert len(bridge.bridge_name(nid)) == 15
        assert len(bridge.host_veth_name(nid)) == 15


def test_random_name() -> None:
    seen = set()
    for _ in range(300):
        name = names.random_name()
        assert NAME_RE.fullmatch(name)
        assert re.fullmatch(r"[a-z]+_[a-z]+", name)
        assert names.validate_name(name, "container") == name
        seen.add(name)
    assert len(seen) > 1


@pytest.mark.parametrize("name", ["-rf", "-", ".hidden", "_x", "-o"])
def test_validate_ifname_needs_a_letter_or_digit_first(name: str) -> None:
    # such names would read as options to ip and iptables
    with pytest.raises(InvalidArgument, match="starting with a letter or digit"):
        names.validate_ifname(name, "bridge")

