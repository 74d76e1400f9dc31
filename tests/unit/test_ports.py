"""Unit tests for shoal.ports: `-p`/`--expose` parsing, address clashes and the host-port picker."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from shoal import ports
from shoal.errors import Conflict, InvalidArgument
from shoal.ports import ANY, PROTOCOLS, Binding

LOOP = IPv4Address("127.0.0.1")


def b(container: int, proto: str = "tcp", ip: IPv4Address | None = None,
      host: int | None = None) -> Binding:
    """A binding; `ip` None: the spec named no host address."""
    return Binding(container_port=container, proto=proto, host_ip=ip or ANY, host_port=host,
                   ip_given=ip is not None)


def error(spec: str) -> str:
    """parse_publish's error for `spec`, checked to be one line."""
    with pytest.raises(InvalidArgument) as exc:
        ports.parse_publish(spec)
    msg = str(exc.value)
    assert msg and "\n" not in msg and "\r" not in msg
    return msg


# -- parse_publish: accepted forms -------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", [b(80)]),
        ("8080:80", [b(80, host=8080)]),
        ("127.0.0.1:8080:80", [b(80, ip=LOOP, host=8080)]),
        ("127.0.0.1::80", [b(80, ip=LOOP)]),
        ("8080:80/udp", [b(80, "udp", host=8080)]),
        ("80/udp", [b(80, "udp")]),
        ("80/tcp", [b(80)]),
        ("80/sctp", [b(80, "sctp")]),
        ("8080:80/sctp", [b(80, "sctp", host=8080)]),
        ("0.0.0.0:80:80", [b(80, ip=ANY, host=80)]),  # named: no network default replaces it
        ("10.1.2.3:443:8443/tcp", [b(8443, ip=IPv4Address("10.1.2.3"), host=443)]),
        ("1:1", [b(1, host=1)]),
        ("65535:65535", [b(65535, host=65535)]),
        ("80-80", [b(80)]),
        ("9000-9002", [b(9000), b(9001), b(9002)]),
        ("9000-9002:9000-9002",
         [b(9000, host=9000), b(9001, host=9001), b(9002, host=9002)]),
        ("8000-8001:9000-9001/udp", [b(9000, "udp", host=8000), b(9001, "udp", host=8001)]),
        ("127.0.0.1:9000-9001:80-81",
         [b(80, ip=LOOP, host=9000), b(81, ip=LOOP, host=9001)]),
        ("127.0.0.1::9000-9001/udp", [b(9000, "udp", LOOP), b(9001, "udp", LOOP)]),
    ],
)
def test_parse_publish_accepts_docker_forms(spec: str, expected: list[Binding]) -> None:
    assert ports.parse_publish(spec) == expected


def test_parse_publish_ten_port_range_maps_port_to_port() -> None:
    got = ports.parse_publish("9000-9010:9000-9010")
    assert [(x.host_port, x.container_port) for x in got] == [(p, p) for p in range(9000, 9011)]
    assert {(x.proto, x.host_ip) for x in got} == {("tcp", ANY)}


# -- parse_publish: errors ---------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["0", "0:80", "80:0", "127.0.0.1:0:80", "0-3"])
def test_parse_publish_rejects_port_zero(spec: str) -> None:
    msg = error(spec)
    assert "1 to 65535" in msg and " 0" in msg


@pytest.mark.parametrize("spec", ["65536", "70000:80", "80:65536", "99999999999999999999",
                                  "65535-65536"])
def test_parse_publish_rejects_ports_above_65535(spec: str) -> None:
    assert "1 to 65535" in error(spec)


@pytest.mark.parametrize(
    ("spec", "what"),
    [("http", "container port"), ("abc:80", "host port"), ("80:abc", "container port"),
     ("-1", "container port"), ("+80", "container port"), ("8O", "container port"),
     ("80.0", "container port"), ("0x50", "container port"), ("1e3", "container port"),
     ("²", "container port"), ("١٢", "container port"), ("８０", "container port"),
     ("80:²", "container port"), ("80-", "container port"), ("-", "container port"),
     ("80--90", "container port"), ("80-90-100", "container port")],
)
def test_parse_publish_rejects_non_numbers(spec: str, what: str) -> None:
    msg = error(spec)
    assert f"invalid {what}" in msg and "expected a number" in msg


@pytest.mark.parametrize("spec", ["9000-9002:80-81", "9000:80-81", "1-2:1-3", "1-3:1-2/udp"])
def test_parse_publish_rejects_unequal_ranges(spec: str) -> None:
    assert "same length" in error(spec)


def test_parse_publish_rejects_host_range_for_one_container_port() -> None:
    assert "host port range for one container port" in error("8000-8010:80")


@pytest.mark.parametrize(("spec", "rng"), [("90-80", "'90-80'"), ("9010-9000:80-90", "'9010-9000'"),
                                           ("80-90:90-80", "'90-80'")])
def test_parse_publish_rejects_reversed_ranges(spec: str, rng: str) -> None:
    msg = error(spec)
    assert "below the start" in msg and rng in msg


@pytest.mark.parametrize("spec", ["80/icmp", "80/tcpx", "80/", "8080:80/ud", "80/tcp6"])
def test_parse_publish_rejects_unknown_protocols(spec: str) -> None:
    msg = error(spec)
    assert "protocol" in msg and "tcp, udp or sctp" in msg


@pytest.mark.parametrize("spec", ["[::1]:80:80", "[::]:8080:80", "[2001:db8::1]::80/udp"])
def test_parse_publish_rejects_ipv6(spec: str) -> None:
    assert "IPv6" in error(spec)


@pytest.mark.parametrize("spec", ["1.2.3:80:80", "256.0.0.1:80:80", "localhost:80:80",
                                  "01.2.3.4:80:80", "1.2.3.4.5::80", "x::80/udp"])
def test_parse_publish_names_the_bad_host_address(spec: str) -> None:
    msg = error(spec)
    assert f"invalid host address {spec.split(':')[0]!r}" in msg and "IPv4" in msg


@pytest.mark.parametrize("spec", ["", "/", ":", "::", ":::", "/tcp", "foo/bar", "!@#$", "\x00",
                                  "80\x00", "é", "1.2.3.4/24:80:80"])
def test_parse_publish_rejects_garbage(spec: str) -> None:
    error(spec)


@pytest.mark.parametrize("spec", ["1.2.3.4:80:80:80", "a:b:c:d", "::::80", "1:2:3:4/udp"])
def test_parse_publish_rejects_too_many_colons(spec: str) -> None:
    assert "[IP:][HOST_PORT:]CONTAINER_PORT" in error(spec)


@pytest.mark.parametrize("spec", [" 80", "80 ", "8080: 80", "80\t", "\n80", "80/udp\n",
                                  "8080 :80", "80\u00a0", "80\u2028", " "])
def test_parse_publish_rejects_whitespace(spec: str) -> None:
    msg = error(spec)
    assert msg.startswith("invalid port spec")


# -- parse_publish: properties -----------------------------------------------------------------

PORT_CHARS = "0123456789:-/.[]tcpudsxTCP ²١\t"


@given(st.one_of(st.text(), st.text(alphabet=PORT_CHARS, max_size=24)))
@example("²")
@example("80:²")
@example("١")
@example("1-65535")
def test_parse_publish_returns_valid_bindings_or_invalid_argument(spec: str) -> None:
    try:
        got = ports.parse_publish(spec)
    except InvalidArgument as e:
        assert str(e) and "\n" not in str(e)
        return
    assert got
    for x in got:
        assert 1 <= x.container_port <= 65535
        assert x.host_port is None or 1 <= x.host_port <= 65535
        assert x.proto in PROTOCOLS
        assert isinstance(x.host_ip, IPv4Address)


@st.composite
def port_range(draw: st.DrawFn, length: int | None = None) -> tuple[str, list[int]]:
    """A port or range in spec syntax and the ports it stands for."""
    if length is None:
        length = draw(st.integers(1, 12))
    lo = draw(st.integers(1, 65536 - length))
    values = list(range(lo, lo + length))
    if length == 1 and draw(st.booleans()):
        return str(lo), values
    return f"{lo}-{lo + length - 1}", values


@st.composite
def publish_spec(draw: st.DrawFn) -> tuple[str, list[Binding]]:
    container_text, container = draw(port_range())
    host_text, host = "", None
    if draw(st.booleans()):
        host_text, host = draw(port_range(len(container)))
    ip_text = draw(st.one_of(st.none(), st.just(""), st.just("0.0.0.0"),
                             st.ip_addresses(v=4).map(str)))
    proto = draw(st.sampled_from([None, *PROTOCOLS, "TCP", "Udp", "SCTP"]))
    spec = container_text
    if ip_text is not None:
        spec = f"{ip_text}:{host_text}:{spec}"
    elif host is not None:
        spec = f"{host_text}:{spec}"
    if proto is not None:
        spec += f"/{proto}"
    host_ip = IPv4Address(ip_text) if ip_text else ANY
    expected = [
        Binding(container_port=c, proto=(proto or "tcp").lower(), host_ip=host_ip,
                host_port=host[i] if host else None, ip_given=bool(ip_text))
        for i, c in enumerate(container)
    ]
    return spec, expected


@given(publish_spec())
def test_parse_publish_round_trips_generated_specs(case: tuple[str, list[Binding]]) -> None:
    spec, expected = case
    assert ports.parse_publish(spec) == expected


# -- parse_expose ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("80", [(80, "tcp")]), ("80/udp", [(80, "udp")]), ("53/sctp", [(53, "sctp")]),
     ("8000-8002", [(8000, "tcp"), (8001, "tcp"), (8002, "tcp")]),
     ("7-8/UDP", [(7, "udp"), (8, "udp")])],
)
def test_parse_expose(spec: str, expected: list[tuple[int, str]]) -> None:
    assert ports.parse_expose(spec) == expected


@pytest.mark.parametrize(("spec", "words"),
                         [("0", "exposed port"), ("65536", "exposed port"), ("x", "exposed port"),
                          ("80/icmp", "protocol"), ("90-80", "below the start"),
                          ("", "exposed port"), ("80:80", "exposed port"),
                          (" 80", "exposed port")])
def test_parse_expose_errors(spec: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        ports.parse_expose(spec)
    assert words in str(exc.value) and "\n" not in str(exc.value)


# -- overlap ------------------------------------------------------------------------------------

OTHER = IPv4Address("10.0.0.5")


@pytest.mark.parametrize(
    ("a", "c", "clash"),
    [
        (LOOP, LOOP, True),
        (LOOP, ANY, True),  # 0.0.0.0 overlaps everything
        (ANY, OTHER, True),
        (ANY, ANY, True),
        (LOOP, OTHER, False),
    ],
)
def test_overlap(a: IPv4Address, c: IPv4Address, clash: bool) -> None:
    assert ports.overlap(a, c) is clash
    assert ports.overlap(c, a) is clash


# -- parse_port_range / parse_reserved ----------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"),
                         [("32768\t60999\n", (32768, 60999)), ("1024 65535", (1024, 65535)),
                          ("40000 40000\n", (40000, 40000))])
def test_parse_port_range(text: str, expected: tuple[int, int]) -> None:
    assert ports.parse_port_range(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("8080,9000-9002", {8080, 9000, 9001, 9002}), ("8080,9000-9002\n", {8080, 9000, 9001, 9002}),
     ("", set()), ("\n", set()), ("22", {22}), ("5-5,7", {5, 7})],
)
def test_parse_reserved(text: str, expected: set[int]) -> None:
    assert ports.parse_reserved(text) == expected


# -- pick_host_ports ---------------------------------------------------------------------------


def test_pick_host_ports_takes_the_lowest_free_first() -> None:
    assert ports.pick_host_ports(3, "tcp", (100, 110), []) == [100, 101, 102]


def test_pick_host_ports_skips_unavailable_for_that_proto_only() -> None:
    unavailable = {(100, "tcp"), (102, "tcp"), (101, "udp"), (100, "sctp")}
    assert ports.pick_host_ports(2, "tcp", (100, 110), unavailable) == [101, 103]
    assert ports.pick_host_ports(2, "udp", (100, 110), unavailable) == [100, 102]
    assert ports.pick_host_ports(2, "sctp", (100, 110), unavailable) == [101, 102]


def test_pick_host_ports_can_take_the_whole_range() -> None:
    assert ports.pick_host_ports(3, "udp", (7, 9), [(8, "tcp")]) == [7, 8, 9]


def test_pick_host_ports_zero_is_nothing() -> None:
    assert ports.pick_host_ports(0, "tcp", (100, 100), [(100, "tcp")]) == []


@pytest.mark.parametrize(("count", "unavailable"),
                         [(4, []), (2, [(101, "tcp"), (102, "tcp")]),
                          (1, [(100, "tcp"), (101, "tcp"), (102, "tcp")])])
def test_pick_host_ports_exhausted_names_the_range(
        count: int, unavailable: list[tuple[int, str]]) -> None:
    with pytest.raises(Conflict) as exc:
        ports.pick_host_ports(count, "tcp", (100, 102), unavailable)
    msg = str(exc.value)
    assert "100-102" in msg and "tcp" in msg and "ip_local_port_range" in msg
    assert "\n" not in msg


@given(
    lo=st.integers(1, 65535),
    width=st.integers(0, 40),
    taken=st.sets(st.tuples(st.integers(1, 65535), st.sampled_from(PROTOCOLS)), max_size=40),
    near=st.sets(st.tuples(st.integers(0, 40), st.sampled_from(PROTOCOLS)), max_size=40),
    count=st.integers(1, 45),
    proto=st.sampled_from(PROTOCOLS),
)
def test_pick_host_ports_properties(lo: int, width: int, taken: set[tuple[int, str]],
                                    near: set[tuple[int, str]], count: int, proto: str) -> None:
    hi = min(lo + width, 65535)
    unavailable = taken | {(lo + off, p) for off, p in near}
    free = [p for p in range(lo, hi + 1) if (p, proto) not in unavailable]
    if count > len(free):
        with pytest.raises(Conflict):
            ports.pick_host_ports(count, proto, (lo, hi), unavailable)
        return
    got = ports.pick_host_ports(count, proto, (lo, hi), unavailable)
    assert len(got) == count == len(set(got))
    assert all(lo <= p <= hi and (p, proto) not in unavailable for p in got)
    assert got == free[:count]  # lowest first


def test_free_ports_is_lazy_and_lowest_first() -> None:
    # (the allocator binds each candidate in turn and takes the next one when a host process
    # has it: a lazy iterator, so 10,000 random ports are one pass over the range)
    it = ports.free_ports("udp", (100, 65535), {(100, "udp"), (101, "tcp")})
    assert next(it) == 101 and next(it) == 102
    assert list(ports.free_ports("tcp", (7, 9), [(8, "tcp")])) == [7, 9]
