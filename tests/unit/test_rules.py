"""Unit tests for shoal.rules (the typed elements of a state) as the backends render them:
the nftables sets and transactions (firewall/nftables_rules.py) and the iptables chains
(firewall/iptables_rules.py)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal import rules
from shoal.firewall import iptables_rules as ipt_rules
from shoal.firewall import nftables_rules as nft_rules
from shoal.firewall.nftables_rules import SETS
from shoal.ports import ANY
from shoal.rules import Elements, NetworkElement, PortMapping

LOOP = IPv4Address("127.0.0.1")


def net(bridge: str, subnet: str, *, internal: bool = False, icc: bool = True
        ) -> NetworkElement:
    return NetworkElement(4, bridge, IPv4Network(subnet), internal=internal, icc=icc)


def port(proto: str, host_ip: IPv4Address, host_port: int, dest: str, dest_port: int
         ) -> PortMapping:
    return PortMapping(4, proto, str(host_ip), host_port, dest, dest_port)


def nft(elements: Elements) -> dict[str, set[str]]:
    """The nftables sets these elements fill, as nft writes their elements."""
    return {name: values for name, values in nft_rules.set_elements(elements).items() if values}


def ports(*items: PortMapping) -> Elements:
    return Elements(ports=items)


DEFAULT = net("shoal0", "172.17.0.0/16")
VAULT = net("sh-aaaaaaaaaaaa", "172.18.0.0/16", internal=True)
QUIET = net("sh-bbbbbbbbbbbb", "172.19.0.0/16", icc=False)
WEB = port("tcp", ANY, 8080, "172.17.0.2", 80)
DNS = port("udp", LOOP, 5353, "172.17.0.3", 53)


# -- elements ----------------------------------------------------------------------------------


def test_network_elements_of_a_plain_network() -> None:
    assert nft(rules.network_elements(DEFAULT)) == {
        "bridges": {'"shoal0"'},
        "masq_subnets": {"172.17.0.0/16"},
        "hairpin_subnets": {"172.17.0.0/16"},
        "icc": {'"shoal0" . "shoal0"'},
    }


def test_a_network_without_masquerade_keeps_its_hairpin() -> None:
    """enable_ip_masquerade=false: its subnet is not masqueraded beyond the host, but a
    container's connection to a published port through the host still is (as Docker)."""
    quiet = rules.NetworkElement(4, "sh-cccccccccccc", IPv4Network("172.21.0.0/16"),
                                 masquerade=False)
    got = nft(rules.network_elements(quiet))
    assert "masq_subnets" not in got
    assert got["hairpin_subnets"] == {"172.21.0.0/16"}
    nat = ipt_rules.iptables_tables(rules.network_elements(quiet))["nat"]
    assert "-A SHOAL-POSTROUTING -s 172.21.0.0/16 ! -o sh-cccccccccccc -j MASQUERADE" not in nat
    assert any("-s 172.21.0.0/16 -d 172.21.0.0/16" in line for line in nat)


def test_network_elements_internal_is_not_masqueraded() -> None:
    got = nft(rules.network_elements(VAULT))
    assert got["internal"] == {'"sh-aaaaaaaaaaaa"'}
    assert got["bridges"] == {'"sh-aaaaaaaaaaaa"'}
    assert "masq_subnets" not in got and "hairpin_subnets" not in got
    assert got["icc"] == {'"sh-aaaaaaaaaaaa" . "sh-aaaaaaaaaaaa"'}


def test_network_elements_icc_off_is_not_in_icc() -> None:
    got = nft(rules.network_elements(QUIET))
    assert "icc" not in got
    assert got["bridges"] == {'"sh-bbbbbbbbbbbb"'}
    assert got["masq_subnets"] == {"172.19.0.0/16"}
    assert "internal" not in got


def test_port_elements_any_goes_to_ports_any() -> None:
    assert nft(ports(WEB)) == {"ports_any": {"tcp . 8080 : 172.17.0.2 . 80"}}


@pytest.mark.parametrize("host_ip", [LOOP, IPv4Address("10.0.0.5")])
def test_port_elements_specific_address_goes_to_ports_ip(host_ip: IPv4Address) -> None:
    p = port("udp", host_ip, 5353, "172.17.0.3", 53)
    assert nft(ports(p)) == {"ports_ip": {f"{host_ip} . udp . 5353 : 172.17.0.3 . 53"}}


def test_no_icc_port_elements_are_quoted_in_the_bridge_family_set() -> None:
    assert nft(rules.no_icc_port_elements("vsh0123456789ab")) == {
        "no_icc_ports": {'"vsh0123456789ab"'}}
    assert SETS["no_icc_ports"][0] == "bridge"


def test_desired_gathers_every_set() -> None:
    got = nft_rules.set_elements(
        rules.desired([DEFAULT, VAULT, QUIET], [WEB, DNS], ["vsh0123456789ab"]))
    assert set(got) == set(SETS)
    assert got["bridges"] == {'"shoal0"', '"sh-aaaaaaaaaaaa"', '"sh-bbbbbbbbbbbb"'}
    assert got["internal"] == {'"sh-aaaaaaaaaaaa"'}
    assert got["masq_subnets"] == {"172.17.0.0/16", "172.19.0.0/16"}
    assert got["icc"] == {'"shoal0" . "shoal0"', '"sh-aaaaaaaaaaaa" . "sh-aaaaaaaaaaaa"'}
    assert got["ports_any"] == {"tcp . 8080 : 172.17.0.2 . 80"}
    assert got["ports_ip"] == {"127.0.0.1 . udp . 5353 : 172.17.0.3 . 53"}
    assert got["no_icc_ports"] == {'"vsh0123456789ab"'}


def test_desired_of_nothing_is_every_set_empty() -> None:
    assert rules.desired([], [], []) == Elements() and not rules.desired([], [], [])
    assert nft_rules.set_elements(rules.desired([], [], [])) == {name: set() for name in SETS}


def test_merge_does_not_alias_its_parts() -> None:
    part = rules.network_elements(DEFAULT)
    merged = rules.merge(part)
    merged.networks.add(net("other", "10.0.0.0/24"))
    assert part.networks == {DEFAULT}


# -- nftables ----------------------------------------------------------------------------------


def test_nft_delta_deletes_before_it_adds() -> None:
    added = rules.merge(ports(port("tcp", ANY, 8081, "172.17.0.4", 80)),
                        rules.no_icc_port_elements("vsh0123456789ab"))
    removed = rules.merge(ports(DNS), rules.network_elements(VAULT))
    lines = nft_rules.delta(added, removed).splitlines()
    verbs = [line.split()[0] for line in lines]
    assert verbs == ["delete"] * 4 + ["add"] * 2
    assert "delete element ip shoal ports_ip { 127.0.0.1 . udp . 5353 : 172.17.0.3 . 53 }" \
        in lines
    assert "delete element ip shoal internal { \"sh-aaaaaaaaaaaa\" }" in lines
    assert lines[-2:] == ["add element ip shoal ports_any { tcp . 8081 : 172.17.0.4 . 80 }",
                          'add element bridge shoal no_icc_ports { "vsh0123456789ab" }']


def test_nft_delta_lists_a_sets_elements_sorted_on_one_line() -> None:
    added = ports(port("udp", ANY, 9, "172.17.0.2", 9), port("tcp", ANY, 80, "172.17.0.2", 80))
    assert nft_rules.delta(added, Elements()) == (
        "add element ip shoal ports_any "
        "{ tcp . 80 : 172.17.0.2 . 80, udp . 9 : 172.17.0.2 . 9 }\n")


def test_nft_full_declares_every_set_and_adds_the_elements_last() -> None:
    script = nft_rules.full(rules.desired([DEFAULT], [WEB], []))
    lines = script.splitlines()
    for name, (family, decl) in SETS.items():
        kind = "map" if ":" in decl else "set"
        assert f"add {kind} {family} shoal {name} {{ {decl} }}" in lines
        assert f"flush {kind} {family} shoal {name}" in lines
    first_element = next(i for i, line in enumerate(lines) if line.startswith("add element"))
    assert all(line.startswith("add element") for line in lines[first_element:])
    assert lines[first_element:] == [
        'add element ip shoal bridges { "shoal0" }',
        'add element ip shoal icc { "shoal0" . "shoal0" }',
        "add element ip shoal masq_subnets { 172.17.0.0/16 }",
        "add element ip shoal hairpin_subnets { 172.17.0.0/16 }",
        "add element ip shoal ports_any { tcp . 8080 : 172.17.0.2 . 80 }",
    ]
    # the user chain is created but never flushed
    assert "add chain ip shoal user" in lines
    assert not any(line.startswith("flush chain ip shoal user") for line in lines)


@pytest.mark.parametrize("host_links", [[], ["eth0", "eth1"]])
def test_nft_forward_policy_is_accept_and_only_host_links_are_not_routed(
        host_links: list[str]) -> None:
    """shoal's forward chain never drops by policy (other engines' traffic passes it); when
    shoal turned forwarding on, only what goes between the host's own links is dropped."""
    script = nft_rules.full(rules.desired([], [], [], host_links))
    lines = script.splitlines()
    forward = [line for line in lines if line.startswith("add chain ip shoal forward")]
    assert forward == ["add chain ip shoal forward { type filter hook forward priority filter; "
                       "policy accept; }"]
    assert "add rule ip shoal forward iifname @host_links oifname @host_links drop" in lines
    added = [line for line in lines if line.startswith("add element ip shoal host_links")]
    assert added == ([f"add element ip shoal host_links {{ {', '.join(map(repr, host_links))} }}"
                      .replace("'", '"')] if host_links else [])


def test_iptables_never_sets_a_policy_and_drops_only_between_host_links() -> None:
    script = ipt_rules.iptables_restore(rules.desired([DEFAULT], [], [], ["eth0", "eth1"]))
    assert "-P " not in script
    drops = [line for line in script.splitlines() if line.startswith("-A SHOAL-FORWARD -i eth")]
    assert drops == [f"-A SHOAL-FORWARD -i {a} -o {b} -j DROP"
                     for a in ("eth0", "eth1") for b in ("eth0", "eth1")]
    assert "-i eth" not in ipt_rules.iptables_restore(rules.desired([DEFAULT], [], []))


def test_nft_delta_checks_present_elements_first() -> None:
    present = rules.network_elements(net("shoal0", "172.17.0.0/16", internal=True, icc=False))
    added = ports(port("tcp", ANY, 80, "172.17.0.2", 80))
    # (an internal network with icc off fills two sets: each is checked)
    assert nft_rules.delta(added, Elements(), present).splitlines() == [
        'delete element ip shoal bridges { "shoal0" }',
        'add element ip shoal bridges { "shoal0" }',
        'delete element ip shoal internal { "shoal0" }',
        'add element ip shoal internal { "shoal0" }',
        "add element ip shoal ports_any { tcp . 80 : 172.17.0.2 . 80 }"]


def test_nft_remove_deletes_both_tables() -> None:
    assert nft_rules.remove() == ("add table ip shoal\ndelete table ip shoal\n"
                                  "add table bridge shoal\ndelete table bridge shoal\n")


# -- iptables ----------------------------------------------------------------------------------

THIRD = net("sh-cccccccccccc", "172.20.0.0/16")
PORTS = [WEB, DNS, port("sctp", ANY, 9000, "172.20.0.2", 9000),
         port("tcp", IPv4Address("10.0.0.5"), 443, "172.20.0.3", 8443)]


def ipt() -> dict[str, list[str]]:
    return ipt_rules.iptables_tables(rules.desired([DEFAULT, VAULT, QUIET, THIRD], PORTS, []))


def test_iptables_a_dnat_rule_per_port() -> None:
    dnat = [r for r in ipt()["nat"] if "-j DNAT" in r]
    assert sorted(dnat) == sorted([
        "-A SHOAL -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80",
        "-A SHOAL -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT "
        "--to-destination 172.17.0.3:53",
        "-A SHOAL -p sctp -m sctp --dport 9000 -j DNAT --to-destination 172.20.0.2:9000",
        "-A SHOAL -d 10.0.0.5/32 -p tcp -m tcp --dport 443 -j DNAT "
        "--to-destination 172.20.0.3:8443",
    ])


def test_iptables_dnat_has_a_destination_only_for_a_specific_host_address() -> None:
    for p in PORTS:
        (rule,) = [r for r in ipt()["nat"] if f"--dport {p.host_port} " in r]
        assert (" -d " in rule) is (p.host_ip != str(ANY))


def test_iptables_masquerade_outbound_only_for_non_internal_networks() -> None:
    nat = ipt()["nat"]
    for n in (DEFAULT, VAULT, QUIET, THIRD):
        outbound = f"-A SHOAL-POSTROUTING -s {n.subnet} ! -o {n.bridge} -j MASQUERADE"
        assert (outbound in nat) is (not n.internal)
        # localhost and hairpin to a published port: every bridge
        assert f"-A SHOAL-POSTROUTING -s 127.0.0.0/8 -o {n.bridge} -j MASQUERADE" in nat
        assert (f"-A SHOAL-POSTROUTING -s {n.subnet} -d {n.subnet} -o {n.bridge} "
                "-m conntrack --ctstate DNAT -j MASQUERADE") in nat
    assert sum("! -o" in r for r in nat) == 3


def test_iptables_isolation_rules_for_every_bridge() -> None:
    flt = ipt()["filter"]
    iso = [r for r in flt if r.startswith("-A SHOAL-ISOLATION ")]
    iso2 = [r for r in flt if r.startswith("-A SHOAL-ISOLATION-2 ")]
    # internal networks first: nothing crosses their bridge, not even DNATed traffic
    internal = [n.bridge for n in (DEFAULT, VAULT, QUIET, THIRD) if n.internal]
    assert internal
    head = [rule for b in internal for rule in (
        f"-A SHOAL-ISOLATION -i {b} ! -o {b} -j DROP",
        f"-A SHOAL-ISOLATION -o {b} ! -i {b} -j DROP")]
    assert iso[:len(head)] == head
    rest = iso[len(head):]
    assert rest[0] == "-A SHOAL-ISOLATION -m conntrack --ctstate DNAT -j RETURN"
    bridges = [n.bridge for n in (DEFAULT, VAULT, QUIET, THIRD)]
    assert rest[1:] == [f"-A SHOAL-ISOLATION -i {b} ! -o {b} -j SHOAL-ISOLATION-2"
                        for b in bridges]
    assert iso2 == [f"-A SHOAL-ISOLATION-2 -o {b} -j DROP" for b in bridges]


def test_iptables_forward_chain_per_network() -> None:
    flt = ipt()["filter"]
    assert flt[:2] == ["-A SHOAL-FORWARD -j SHOAL-USER", "-A SHOAL-FORWARD -j SHOAL-ISOLATION"]
    for n in (DEFAULT, VAULT, QUIET, THIRD):
        b = n.bridge
        mine = [r for r in flt if r.startswith("-A SHOAL-FORWARD ") and f" {b} " in f"{r} "]
        assert mine[0] == (f"-A SHOAL-FORWARD -o {b} -m conntrack --ctstate RELATED,ESTABLISHED "
                           "-j ACCEPT")
        assert mine[-1] == f"-A SHOAL-FORWARD -o {b} -j DROP"
        assert f"-A SHOAL-FORWARD -i {b} -o {b} -j {'ACCEPT' if n.icc else 'DROP'}" in mine
        assert (f"-A SHOAL-FORWARD -i {b} -j DROP" in mine) is n.internal
        assert (f"-A SHOAL-FORWARD -i {b} ! -o {b} -j ACCEPT" in mine) is (not n.internal)


def test_iptables_tables_without_networks_or_ports() -> None:
    assert ipt_rules.iptables_tables(Elements()) == {
        "nat": [],
        "filter": ["-A SHOAL-FORWARD -j SHOAL-USER", "-A SHOAL-FORWARD -j SHOAL-ISOLATION",
                   "-A SHOAL-ISOLATION -m conntrack --ctstate DNAT -j RETURN"],
    }


def test_iptables_restore_declares_shoals_chains_but_not_the_user_chain() -> None:
    text = ipt_rules.iptables_restore(rules.desired([DEFAULT], [WEB], []))
    assert text.endswith("COMMIT\n")
    blocks = text.split("COMMIT\n")
    assert blocks[-1] == "" and len(blocks) == 3
    nat, flt = (block.splitlines() for block in blocks[:2])
    assert nat[:3] == ["*nat", ":SHOAL - [0:0]", ":SHOAL-POSTROUTING - [0:0]"]
    assert flt[:5] == ["*filter", ":SHOAL-FORWARD - [0:0]", ":SHOAL-ISOLATION - [0:0]",
                       ":SHOAL-ISOLATION-2 - [0:0]", ":SHOAL-INPUT - [0:0]"]
    assert ":SHOAL-USER" not in text  # declaring it would flush the user's rules
    tables = ipt_rules.iptables_tables(rules.desired([DEFAULT], [WEB], []))
    assert nat[3:] == tables["nat"] and flt[5:] == tables["filter"]
    # the host's loopback services stay closed to containers (route_localnet is on)
    assert (f"-A SHOAL-INPUT -i {DEFAULT.bridge} -d 127.0.0.0/8 -m conntrack "
            "! --ctstate RELATED,ESTABLISHED -j DROP") in tables["filter"]


@given(st.sampled_from(["tcp", "udp", "sctp"]), st.sampled_from(["0.0.0.0", "127.0.0.1",
                                                                  "198.51.100.2"]),
       st.integers(1, 65535), st.ip_addresses(v=4), st.integers(1, 65535))
def test_a_port_is_one_map_element_and_one_dnat_rule(proto: str, host_ip: str, host_port: int,
                                                     dest_ip: IPv4Address, dest_port: int
                                                     ) -> None:
    p = rules.port_mapping(proto, host_ip, host_port, str(dest_ip), dest_port)
    assert p == PortMapping(4, proto, host_ip, host_port, str(dest_ip), dest_port)
    name, element = nft_rules.port_element(p)
    assert nft(ports(p)) == {name: {element}}
    assert (name == "ports_any") is (host_ip == "0.0.0.0")
    # what a delta deletes is exactly the line a full apply wrote
    line = "-A " + ipt_rules.iptables_dnat(p)
    assert line in ipt_rules.iptables_tables(ports(p))["nat"]
    script = ipt_rules.iptables_port_delta(Elements(), ports(p))
    assert script == f"*nat\n-D {ipt_rules.iptables_dnat(p)}\nCOMMIT\n"


def test_iptables_delta_is_only_for_ports() -> None:
    net = NetworkElement(4, "shoal0", IPv4Network("172.17.0.0/16"))
    assert ipt_rules.iptables_port_delta(rules.network_elements(net), Elements()) is None
    assert ipt_rules.iptables_port_delta(
        Elements(), rules.no_icc_port_elements("vsh0123456789ab")) is None
    assert ipt_rules.iptables_port_delta(Elements(), Elements()) == "*nat\nCOMMIT\n"


def test_iptables_delta_gives_way_to_a_rewrite_for_mass_deletions() -> None:
    many = Elements(ports=[port("tcp", ANY, 20000 + i, "172.17.0.2", 20000 + i)
                           for i in range(ipt_rules.IPT_MAX_DELETES + 1)])
    assert ipt_rules.iptables_port_delta(Elements(), many) is None
    assert ipt_rules.iptables_port_delta(many, Elements()) is not None  # appends are cheap
