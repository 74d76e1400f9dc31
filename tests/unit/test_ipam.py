"""Unit tests for shoal.ipam: default pools, subnet choice, parsing, allocation, MACs."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal import ipam
from shoal.errors import Conflict, InvalidArgument

N = IPv4Network
A = IPv4Address


# -- default pools -------------------------------------------------------------------------


def test_candidate_order_starts_like_docker() -> None:
    cands = list(ipam.candidate_subnets())
    assert cands[:6] == [
        N("172.17.0.0/16"),
        N("172.18.0.0/16"),
        N("172.19.0.0/16"),
        N("172.20.0.0/16"),
        N("172.21.0.0/16"),
        N("172.22.0.0/16"),
    ]


def test_candidate_full_list() -> None:
    expected = [N(f"172.{i}.0.0/16") for i in range(17, 32)]
    expected += [N(f"192.168.{16 * i}.0/20") for i in range(16)]
    cands = list(ipam.candidate_subnets())
    assert cands == expected
    assert len(cands) == 3 + 4 + 4 + 4 + 16


def test_candidates_switch_to_192_168_after_172() -> None:
    cands = list(ipam.candidate_subnets())
    assert cands[14] == N("172.31.0.0/16")
    assert cands[15] == N("192.168.0.0/20")
    assert cands[16] == N("192.168.16.0/20")
    assert cands[-1] == N("192.168.240.0/20")


def test_candidates_are_distinct_and_disjoint() -> None:
    cands = list(ipam.candidate_subnets())
    assert len(set(cands)) == len(cands)
    for i, a in enumerate(cands):
        for b in cands[i + 1:]:
            assert not a.overlaps(b)


# -- choose_subnet ---------------------------------------------------------------------------


def test_choose_subnet_nothing_taken() -> None:
    assert ipam.choose_subnet([]) == N("172.17.0.0/16")


def test_choose_subnet_skips_taken_networks() -> None:
    assert ipam.choose_subnet([N("172.17.0.0/16")]) == N("172.18.0.0/16")
    assert ipam.choose_subnet([N("172.17.0.0/16"), N("172.18.0.0/16")]) == N("172.19.0.0/16")


def test_choose_subnet_skips_host_address_given_as_network() -> None:
    # a host address 172.17.0.5/32 (or the /24 it sits in) makes 172.17.0.0/16 unusable
    assert ipam.choose_subnet([N("172.17.0.5/32")]) == N("172.18.0.0/16")
    assert ipam.choose_subnet([N("172.18.3.0/24"), N("172.17.200.0/24")]) == N("172.19.0.0/16")


def test_choose_subnet_skips_wider_route() -> None:
    # a route to 172.16.0.0/12 covers every 172 candidate
    assert ipam.choose_subnet([N("172.16.0.0/12")]) == N("192.168.0.0/20")
    # a /15 covers two candidates at once
    assert ipam.choose_subnet([N("172.17.0.0/16"), N("172.18.0.0/15")]) == N("172.20.0.0/16")


def test_choose_subnet_skips_partially_overlapping_192_168() -> None:
    taken = [N("172.16.0.0/12"), N("192.168.1.0/24")]
    assert ipam.choose_subnet(taken) == N("192.168.16.0/20")


def test_choose_subnet_unrelated_networks_do_not_matter() -> None:
    taken = [N("10.0.0.0/8"), N("192.168.1.0/24"), N("127.0.0.0/8"), N("169.254.0.0/16")]
    assert ipam.choose_subnet(taken) == N("172.17.0.0/16")


def test_choose_subnet_ignores_default_route() -> None:
    assert ipam.choose_subnet([N("0.0.0.0/0")]) == N("172.17.0.0/16")
    assert ipam.choose_subnet([N("0.0.0.0/0"), N("172.17.0.0/16")]) == N("172.18.0.0/16")


def test_choose_subnet_accepts_a_generator() -> None:
    taken = (n for n in [N("172.17.0.0/16"), N("172.18.0.0/16")])
    assert ipam.choose_subnet(taken) == N("172.19.0.0/16")


def test_choose_subnet_exhausted() -> None:
    with pytest.raises(Conflict) as exc:
        ipam.choose_subnet([N("172.16.0.0/12"), N("192.168.0.0/16")])
    assert "--subnet" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_choose_subnet_exhausted_by_every_candidate() -> None:
    with pytest.raises(Conflict, match="--subnet"):
        ipam.choose_subnet(list(ipam.candidate_subnets()))


def test_choose_subnet_last_candidate() -> None:
    taken = list(ipam.candidate_subnets())[:-1]
    assert ipam.choose_subnet(taken) == N("192.168.240.0/20")


# -- parse_subnet ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("172.30.0.0/16", "172.30.0.0/16"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("192.168.5.0/24", "192.168.5.0/24"),
        ("10.1.2.4/30", "10.1.2.4/30"),
        ("10.1.2.3/32", "10.1.2.3/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("10.0.0.0/255.0.0.0", "10.0.0.0/8"),
    ],
)
def test_parse_subnet_valid(text: str, expected: str) -> None:
    result = ipam.parse_subnet(text)
    assert isinstance(result, IPv4Network)
    assert result == N(expected)


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "172.30.0.0/", "172.30.0.0/33", "172.30.0.0/-1", "300.1.1.0/24",
     "1.2.3/24", "172.30.0.0/16/2", " 172.30.0.0/16", "172.30.0.0/16 ", "172.30.0.0/x",
     "172.30.0.0\n/16"],
)
def test_parse_subnet_rejects_garbage(text: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        ipam.parse_subnet(text)
    assert repr(text) in str(exc.value)
    assert "IPv4 CIDR" in str(exc.value)


@pytest.mark.parametrize("text", ["fd00::/64", "::/0", "2001:db8::/32", "::1"])
def test_parse_subnet_rejects_ipv6(text: str) -> None:
    with pytest.raises(InvalidArgument, match="IPv6 is not supported"):
        ipam.parse_subnet(text)


def test_parse_subnet_rejects_missing_prefix() -> None:
    with pytest.raises(InvalidArgument) as exc:
        ipam.parse_subnet("172.30.0.0")
    assert "prefix length" in str(exc.value)
    assert "172.30.0.0/24" in str(exc.value)


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("172.30.0.1/16", "172.30.0.0/16"),
        ("10.1.2.3/8", "10.0.0.0/8"),
        ("192.168.1.130/25", "192.168.1.128/25"),
        ("10.0.0.1/255.255.255.0", "10.0.0.0/24"),
    ],
)
def test_parse_subnet_rejects_host_bits(text: str, suggestion: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        ipam.parse_subnet(text)
    assert f"it should be {suggestion}" in str(exc.value)


def test_parse_subnet_names_what_was_wrong() -> None:
    with pytest.raises(InvalidArgument, match="invalid ip-range 'x'"):
        ipam.parse_subnet("x", "ip-range")
    with pytest.raises(InvalidArgument, match="invalid subnet 'x'"):
        ipam.parse_subnet("x")


@given(st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_parse_subnet_roundtrip(addr: int, prefix: int) -> None:
    net = N(f"{A(addr)}/{prefix}", strict=False)
    assert ipam.parse_subnet(str(net)) == net
    if A(addr) != net.network_address:
        with pytest.raises(InvalidArgument, match=f"it should be {net}"):
            ipam.parse_subnet(f"{A(addr)}/{prefix}")


@given(st.text(max_size=40))
def test_parse_subnet_only_raises_invalid_argument(text: str) -> None:
    try:
        result = ipam.parse_subnet(text)
    except InvalidArgument:
        return
    assert isinstance(result, IPv4Network)


# -- parse_address ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["172.30.0.5", "0.0.0.0", "255.255.255.255", "10.0.0.1"])
def test_parse_address_valid(text: str) -> None:
    result = ipam.parse_address(text)
    assert isinstance(result, IPv4Address)
    assert str(result) == text


@pytest.mark.parametrize(
    "text", ["", "x", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4/32", " 1.2.3.4", "01.2.3.4"]
)
def test_parse_address_rejects_garbage(text: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        ipam.parse_address(text)
    assert repr(text) in str(exc.value)
    assert "IPv4 address" in str(exc.value)


@pytest.mark.parametrize("text", ["::1", "fd00::5", "::ffff:1.2.3.4"])
def test_parse_address_rejects_ipv6(text: str) -> None:
    with pytest.raises(InvalidArgument, match="IPv6 is not supported"):
        ipam.parse_address(text)


def test_parse_address_names_what_was_wrong() -> None:
    with pytest.raises(InvalidArgument, match="invalid gateway 'nope'"):
        ipam.parse_address("nope", "gateway")


# -- network_config --------------------------------------------------------------------------


def test_network_config_default_gateway_is_first_address() -> None:
    assert ipam.network_config(N("172.18.0.0/16"), None, None) == (
        N("172.18.0.0/16"), A("172.18.0.1"), None,
    )
    assert ipam.network_config(N("10.9.8.64/26"), None, None)[1] == A("10.9.8.65")


def test_network_config_keeps_explicit_gateway_and_range() -> None:
    subnet, gw, rng = ipam.network_config(N("10.1.0.0/16"), A("10.1.255.254"), N("10.1.4.0/24"))
    assert (subnet, gw, rng) == (N("10.1.0.0/16"), A("10.1.255.254"), N("10.1.4.0/24"))


def test_network_config_range_equal_to_subnet_is_fine() -> None:
    assert ipam.network_config(N("10.1.0.0/24"), None, N("10.1.0.0/24"))[2] == N("10.1.0.0/24")


@pytest.mark.parametrize("gateway", ["10.2.0.1", "10.1.0.0", "10.1.255.255", "192.168.1.1"])
def test_network_config_rejects_unusable_gateway(gateway: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        ipam.network_config(N("10.1.0.0/16"), A(gateway), None)
    msg = str(exc.value)
    assert f"gateway {gateway}" in msg
    assert "10.1.0.1 and 10.1.255.254" in msg


@pytest.mark.parametrize("ip_range", ["10.2.0.0/24", "10.0.0.0/8", "10.0.0.0/15"])
def test_network_config_rejects_range_outside_subnet(ip_range: str) -> None:
    with pytest.raises(InvalidArgument, match=f"ip-range {ip_range} is not inside"):
        ipam.network_config(N("10.1.0.0/16"), None, N(ip_range))


@pytest.mark.parametrize("prefix", [31, 32])
def test_network_config_rejects_tiny_subnets(prefix: int) -> None:
    with pytest.raises(InvalidArgument, match="/30"):
        ipam.network_config(N(f"10.1.0.0/{prefix}"), None, None)


def test_network_config_accepts_slash_30() -> None:
    assert ipam.network_config(N("10.1.0.0/30"), None, None)[1] == A("10.1.0.1")


# -- allocate --------------------------------------------------------------------------------


def _alloc(subnet: str, used: list[str] = (), last: str | None = None,  # type: ignore[assignment]
           ip_range: str | None = None, gateway: str | None = None) -> IPv4Address:
    net = N(subnet)
    gw = A(gateway) if gateway else net.network_address + 1
    return ipam.allocate(net, gw, N(ip_range) if ip_range else None, [A(u) for u in used],
                         A(last) if last else None, "testnet")


def test_allocate_first_address_skips_network_and_gateway() -> None:
    assert _alloc("172.18.0.0/16") == A("172.18.0.2")


def test_allocate_next_after_last() -> None:
    assert _alloc("172.18.0.0/16", used=["172.18.0.2"], last="172.18.0.2") == A("172.18.0.3")
    # an address released before `last` is not reused at once
    assert _alloc("172.18.0.0/16", used=["172.18.0.3"], last="172.18.0.3") == A("172.18.0.4")
    assert _alloc("172.18.0.0/16", used=[], last="172.18.0.9") == A("172.18.0.10")


def test_allocate_wraps_around() -> None:
    # last is the final usable address: wrap to the start, skipping network and gateway
    assert _alloc("10.0.0.0/29", last="10.0.0.6") == A("10.0.0.2")
    # last is the broadcast address (should not happen, but must not break)
    assert _alloc("10.0.0.0/29", last="10.0.0.7") == A("10.0.0.2")
    # wrap and skip used addresses at the start
    assert _alloc("10.0.0.0/29", used=["10.0.0.2", "10.0.0.3", "10.0.0.6"],
                  last="10.0.0.6") == A("10.0.0.4")


def test_allocate_skips_used() -> None:
    used = ["172.18.0.2", "172.18.0.3", "172.18.0.5"]
    assert _alloc("172.18.0.0/16", used=used) == A("172.18.0.4")
    assert _alloc("172.18.0.0/16", used=used, last="172.18.0.4") == A("172.18.0.6")


def test_allocate_skips_a_gateway_that_is_not_first() -> None:
    assert _alloc("10.0.0.0/29", gateway="10.0.0.6") == A("10.0.0.1")
    assert _alloc("10.0.0.0/29", gateway="10.0.0.6", last="10.0.0.5") == A("10.0.0.1")


def test_allocate_never_broadcast() -> None:
    assert _alloc("10.0.0.0/30", used=[]) == A("10.0.0.2")
    with pytest.raises(Conflict):
        _alloc("10.0.0.0/30", used=["10.0.0.2"])


def test_allocate_respects_ip_range() -> None:
    assert _alloc("10.1.0.0/16", ip_range="10.1.5.0/24") == A("10.1.5.0")
    assert _alloc("10.1.0.0/16", ip_range="10.1.5.0/24", last="10.1.5.7") == A("10.1.5.8")
    # wraps inside the range, not the subnet
    assert _alloc("10.1.0.0/16", ip_range="10.1.5.0/24", last="10.1.5.255") == A("10.1.5.0")
    # `last` outside the range restarts at the range's start
    assert _alloc("10.1.0.0/16", ip_range="10.1.5.0/24", last="10.1.0.9") == A("10.1.5.0")


def test_allocate_range_at_subnet_start_skips_network_and_gateway() -> None:
    assert _alloc("10.1.0.0/24", ip_range="10.1.0.0/28") == A("10.1.0.2")


def test_allocate_range_at_subnet_end_skips_broadcast() -> None:
    with pytest.raises(Conflict):
        _alloc("10.1.0.0/24", ip_range="10.1.0.254/31", used=["10.1.0.254"])
    assert _alloc("10.1.0.0/24", ip_range="10.1.0.254/31") == A("10.1.0.254")


def test_allocate_exhausted() -> None:
    with pytest.raises(Conflict) as exc:
        _alloc("10.0.0.0/29", used=[f"10.0.0.{i}" for i in range(2, 7)], last="10.0.0.4")
    msg = str(exc.value)
    assert "testnet" in msg
    assert "10.0.0.0/29" in msg
    with pytest.raises(Conflict, match="10.1.5.0/30"):
        _alloc("10.1.0.0/16", ip_range="10.1.5.0/30",
               used=["10.1.5.0", "10.1.5.1", "10.1.5.2", "10.1.5.3"])


def test_allocate_fills_every_address_once() -> None:
    net, gw = N("10.0.0.0/28"), A("10.0.0.1")
    used: list[IPv4Address] = []
    last = None
    for _ in range(13):
        last = ipam.allocate(net, gw, None, used, last, "n")
        used.append(last)
    assert sorted(used) == [A(f"10.0.0.{i}") for i in range(2, 15)]
    with pytest.raises(Conflict):
        ipam.allocate(net, gw, None, used, last, "n")


def test_allocate_ignores_used_addresses_outside_the_pool() -> None:
    assert _alloc("10.0.0.0/24", used=["192.168.0.2", "10.0.1.2"]) == A("10.0.0.2")


# -- check_static ----------------------------------------------------------------------------


def _static(addr: str, used: list[str] = ()) -> IPv4Address:  # type: ignore[assignment]
    return ipam.check_static(A(addr), N("10.1.0.0/16"), A("10.1.0.1"), [A(u) for u in used],
                             "mynet")


def test_check_static_accepts_free_address() -> None:
    assert _static("10.1.2.3", used=["10.1.2.4"]) == A("10.1.2.3")


@pytest.mark.parametrize("addr", ["10.2.0.5", "10.1.0.0", "10.1.255.255", "8.8.8.8"])
def test_check_static_rejects_outside_or_reserved(addr: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        _static(addr)
    assert addr in str(exc.value)
    assert "mynet" in str(exc.value)


def test_check_static_rejects_gateway() -> None:
    with pytest.raises(Conflict, match="gateway of network mynet"):
        _static("10.1.0.1")


def test_check_static_rejects_address_in_use() -> None:
    with pytest.raises(Conflict, match="already in use on network mynet"):
        _static("10.1.2.3", used=["10.1.2.2", "10.1.2.3"])


def test_check_static_accepts_generator_of_used() -> None:
    used = (a for a in [A("10.1.2.3")])
    with pytest.raises(Conflict):
        ipam.check_static(A("10.1.2.3"), N("10.1.0.0/16"), A("10.1.0.1"), used, "n")


# -- mac_for ---------------------------------------------------------------------------------


def test_mac_for_docker_example() -> None:
    assert ipam.mac_for(A("172.17.0.2")) == "02:42:ac:11:00:02"
    assert ipam.mac_for(A("192.168.16.255")) == "02:42:c0:a8:10:ff"
    assert ipam.mac_for(A("0.0.0.0")) == "02:42:00:00:00:00"


MAC_RE = re.compile(r"02:42(:[0-9a-f]{2}){4}")


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_mac_for_injective_and_well_formed(a: int, b: int) -> None:
    ma, mb = ipam.mac_for(A(a)), ipam.mac_for(A(b))
    for mac in (ma, mb):
        assert MAC_RE.fullmatch(mac)
        assert mac.startswith("02:42:")
        assert len(mac.split(":")) == 6
    assert (ma == mb) == (a == b)
    # the address is recoverable from the MAC
    assert A(bytes(int(x, 16) for x in ma.split(":")[2:])) == A(a)


# -- properties ------------------------------------------------------------------------------


@st.composite
def ipam_setup(draw: st.DrawFn) -> tuple[IPv4Network, IPv4Address, IPv4Network | None,
                                         set[IPv4Address], IPv4Address | None]:
    prefix = draw(st.integers(20, 30))
    base = draw(st.integers(0, 2**32 - 1))
    subnet = N(f"{A(base)}/{prefix}", strict=False)
    first, last_host = int(subnet.network_address) + 1, int(subnet.broadcast_address) - 1
    gateway = A(draw(st.integers(first, last_host)))
    ip_range = None
    if draw(st.booleans()):
        rprefix = draw(st.integers(prefix, 32))
        rbase = draw(st.integers(int(subnet.network_address), int(subnet.broadcast_address)))
        ip_range = N(f"{A(rbase)}/{rprefix}", strict=False)
    lo, hi = int(subnet.network_address), int(subnet.broadcast_address)
    used = draw(st.sets(st.integers(lo, hi).map(A), max_size=min(64, hi - lo + 1)))
    last = draw(st.none() | st.integers(lo - 4, hi + 4).filter(lambda x: 0 <= x < 2**32).map(A))
    return subnet, gateway, ip_range, used, last


@settings(max_examples=300)
@given(ipam_setup())
def test_allocate_property(setup: tuple) -> None:  # type: ignore[type-arg]
    subnet, gateway, ip_range, used, last = setup
    try:
        addr = ipam.allocate(subnet, gateway, ip_range, used, last, "n")
    except Conflict:
        pool = ip_range or subnet
        free = [a for a in (A(i) for i in range(int(pool.network_address),
                                                 int(pool.broadcast_address) + 1))
                if a not in used and a != gateway
                and a not in (subnet.network_address, subnet.broadcast_address)]
        assert free == []
        return
    assert addr not in used
    assert addr != gateway
    assert addr != subnet.network_address
    assert addr != subnet.broadcast_address
    assert addr in subnet
    if ip_range is not None:
        assert addr in ip_range


@settings(max_examples=200)
@given(ipam_setup())
def test_allocate_is_next_free_after_last(setup: tuple) -> None:  # type: ignore[type-arg]
    subnet, gateway, ip_range, used, last = setup
    pool = ip_range or subnet
    try:
        addr = ipam.allocate(subnet, gateway, ip_range, used, last, "n")
    except Conflict:
        return
    lo, hi = int(pool.network_address), int(pool.broadcast_address)
    start = int(last) + 1 if last is not None and lo <= int(last) <= hi else lo
    # every address strictly between the start and the result (going round) is unavailable
    i = start
    while i != int(addr):
        if i > hi:
            i = lo
            continue
        a = A(i)
        assert a in used or a == gateway or a in (subnet.network_address,
                                                   subnet.broadcast_address)
        i += 1


_some_net = st.builds(
    lambda a, p: N(f"{A(a)}/{p}", strict=False), st.integers(0, 2**32 - 1), st.integers(0, 32)
)
_near_pool_net = st.builds(
    lambda a, p: N(f"{A(a)}/{p}", strict=False),
    st.one_of(st.integers(int(A("172.16.0.0")), int(A("172.31.255.255"))),
              st.integers(int(A("192.168.0.0")), int(A("192.168.255.255")))),
    st.integers(8, 32),
)


@settings(max_examples=300)
@given(st.lists(st.one_of(_some_net, _near_pool_net), max_size=30))
def test_choose_subnet_property(taken: list[IPv4Network]) -> None:
    try:
        result = ipam.choose_subnet(taken)
    except Conflict:
        real = [t for t in taken if t.prefixlen > 0]
        assert all(any(c.overlaps(t) for t in real) for c in ipam.candidate_subnets())
        return
    assert result in list(ipam.candidate_subnets())
    for t in taken:
        if t.prefixlen > 0:
            assert not result.overlaps(t)
    # it is the first free candidate
    for cand in ipam.candidate_subnets():
        if cand == result:
            break
        assert any(cand.overlaps(t) for t in taken if t.prefixlen > 0)
