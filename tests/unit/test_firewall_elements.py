"""The firewall's typed elements (shoal.rules) and their two renderings: the same elements
as nftables set elements (firewall/nftables_rules.py) and as iptables rules
(firewall/iptables_rules.py); what the engine's Netfilter hands the backends, from a real
store. No root, no kernel."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

import pytest

from shoal.errors import FirewallError
from shoal.firewall import iptables_rules as ipt
from shoal.firewall import nftables_rules as nft
from shoal.model import Container, Endpoint, Network, PublishedPort, Sandbox
from shoal.netfilter import Netfilter, net_rule, port_rule
from shoal.rules import (
    Elements,
    HostLink,
    IsolatedPort,
    NetworkElement,
    PortMapping,
    desired,
    merge,
    port_elements,
    port_mapping,
)
from shoal.store import Store

T0 = "2024-05-01T10:00:00.000000000Z"
DEFAULT = NetworkElement(4, "shoal0", IPv4Network("172.17.0.0/16"))
VAULT = NetworkElement(4, "sh-aaaaaaaaaaaa", IPv4Network("172.18.0.0/16"), internal=True)
QUIET = NetworkElement(4, "sh-bbbbbbbbbbbb", IPv4Network("172.19.0.0/16"), icc=False)
WEB = PortMapping(4, "tcp", "0.0.0.0", 8080, "172.17.0.2", 80)
DNS = PortMapping(4, "udp", "127.0.0.1", 5353, "172.17.0.3", 53)
V6_NET = NetworkElement(6, "sh-cccccccccccc", IPv6Network("fd00:1::/64"))
V6_PORT = PortMapping(6, "tcp", "::", 8080, "fd00:1::2", 80)


# -- the elements ------------------------------------------------------------------------------


def test_a_published_port_from_the_stores_row_carries_its_family() -> None:
    assert port_mapping("tcp", "0.0.0.0", 8080, "172.17.0.2", 80) == WEB
    assert WEB.every_address and not DNS.every_address
    six = port_mapping("tcp", "::", 8080, "fd00:1::2", 80)
    assert six == V6_PORT and six.family == 6 and six.every_address
    assert port_elements([("udp", "127.0.0.1", 5353, "172.17.0.3", 53)]) == Elements(ports=[DNS])


def test_desired_groups_typed_elements_by_kind() -> None:
    got = desired([DEFAULT, QUIET], [WEB, DNS], ["vsh0123456789ab"], ["eth0"])
    assert got.networks == {DEFAULT, QUIET}
    assert got.ports == {WEB, DNS}
    assert got.isolated == {IsolatedPort("vsh0123456789ab")}
    assert got.host_links == {HostLink("eth0")}
    assert got.families() == {4}


def test_added_and_removed_are_set_differences_and_empty_is_false() -> None:
    old = desired([DEFAULT], [WEB, DNS], [])
    new = desired([DEFAULT], [WEB, DNS._replace(host_port=5354)], ["vsh0123456789ab"])
    added, removed = new - old, old - new
    assert added == Elements(ports=[DNS._replace(host_port=5354)],
                             isolated=[IsolatedPort("vsh0123456789ab")])
    assert removed == Elements(ports=[DNS])
    assert not (new - new) and not Elements() and bool(added)
    assert merge(old, added) - removed == new and (old | added) - removed == new
    assert removed.only_ports and not added.only_ports


def test_one_familys_part_keeps_the_link_names_of_every_family() -> None:
    both = desired([DEFAULT, V6_NET], [WEB, V6_PORT], ["vsh0123456789ab"], ["eth0"])
    assert both.families() == {4, 6}
    four, six = both.family(4), both.family(6)
    assert four.networks == {DEFAULT} and four.ports == {WEB}
    assert six.networks == {V6_NET} and six.ports == {V6_PORT}
    for part in (four, six):
        assert part.isolated == both.isolated and part.host_links == both.host_links
    assert four | six == both


# -- each backend renders the same elements --------------------------------------------------


def test_both_backends_render_every_element_of_one_state() -> None:
    state = desired([DEFAULT, VAULT, QUIET], [WEB, DNS], ["vsh0123456789ab"], ["eth0"])
    sets = nft.set_elements(state)
    assert sets["bridges"] == {'"shoal0"', '"sh-aaaaaaaaaaaa"', '"sh-bbbbbbbbbbbb"'}
    assert sets["internal"] == {'"sh-aaaaaaaaaaaa"'}
    assert sets["masq_subnets"] == {"172.17.0.0/16", "172.19.0.0/16"}
    assert sets["icc"] == {'"shoal0" . "shoal0"', '"sh-aaaaaaaaaaaa" . "sh-aaaaaaaaaaaa"'}
    assert sets["ports_any"] == {"tcp . 8080 : 172.17.0.2 . 80"}
    assert sets["ports_ip"] == {"127.0.0.1 . udp . 5353 : 172.17.0.3 . 53"}
    assert sets["no_icc_ports"] == {'"vsh0123456789ab"'}
    assert sets["host_links"] == {'"eth0"'}
    tables = ipt.iptables_tables(state)
    assert sorted(r for r in tables["nat"] if "-j DNAT" in r) == [
        "-A SHOAL -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT "
        "--to-destination 172.17.0.3:53",
        "-A SHOAL -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80"]
    for n in (DEFAULT, VAULT, QUIET):
        assert (f"-A SHOAL-POSTROUTING -s {n.subnet} ! -o {n.bridge} -j MASQUERADE"
                in tables["nat"]) is (not n.internal)
        assert (f"-A SHOAL-FORWARD -i {n.bridge} -o {n.bridge} -j "
                f"{'ACCEPT' if n.icc else 'DROP'}") in tables["filter"]
    assert "-A SHOAL-FORWARD -i eth0 -o eth0 -j DROP" in tables["filter"]
    assert ipt.ebtables_restore(state) == (
        "*filter\n:SHOAL-ICC RETURN\n-A SHOAL-ICC -i vsh0123456789ab -j DROP\nCOMMIT\n")


def test_both_backends_render_one_change_of_ports() -> None:
    added, removed = Elements(ports=[WEB]), Elements(ports=[DNS])
    assert nft.delta(added, removed) == (
        "delete element ip shoal ports_ip { 127.0.0.1 . udp . 5353 : 172.17.0.3 . 53 }\n"
        "add element ip shoal ports_any { tcp . 8080 : 172.17.0.2 . 80 }\n")
    assert ipt.iptables_port_delta(added, removed) == (
        "*nat\n"
        "-D SHOAL -d 127.0.0.1/32 -p udp -m udp --dport 5353 -j DNAT "
        "--to-destination 172.17.0.3:53\n"
        "-A SHOAL -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80\n"
        "COMMIT\n")


def test_a_change_of_networks_is_a_delta_for_nftables_and_a_rewrite_for_iptables() -> None:
    added = Elements(networks=[QUIET], isolated=[IsolatedPort("vsh0123456789ab")])
    assert nft.delta(added, Elements()).splitlines() == [
        'add element ip shoal bridges { "sh-bbbbbbbbbbbb" }',
        "add element ip shoal masq_subnets { 172.19.0.0/16 }",
        "add element ip shoal hairpin_subnets { 172.19.0.0/16 }",
        'add element bridge shoal no_icc_ports { "vsh0123456789ab" }']
    assert ipt.iptables_port_delta(added, Elements()) is None


def test_the_iptables_order_of_networks_is_that_of_their_subnets_not_of_the_sets() -> None:
    """A set has no order: the rules of networks come in the order of their subnets, so the
    same state always gives the same chains."""
    a = NetworkElement(4, "sh-zzzzzzzzzzzz", IPv4Network("10.9.0.0/24"))
    b = NetworkElement(4, "sh-aaaaaaaaaaab", IPv4Network("172.100.0.0/16"))
    c = NetworkElement(4, "sh-mmmmmmmmmmmm", IPv4Network("172.20.0.0/16"))
    rules = ipt.iptables_tables(desired([b, c, a], [], []))["filter"]
    iso2 = [r for r in rules if r.startswith("-A SHOAL-ISOLATION-2")]
    assert iso2 == [f"-A SHOAL-ISOLATION-2 -o {n.bridge} -j DROP" for n in (a, c, b)]


def test_the_nft_presence_check_takes_one_unchanged_element_of_each_set() -> None:
    present = desired([DEFAULT, VAULT], [WEB, DNS], [])
    added = Elements(ports=[PortMapping(4, "tcp", "0.0.0.0", 7000, "172.17.0.9", 80)])
    lines = nft.delta(added, Elements(networks=[DEFAULT]), present).splitlines()
    check = lines[:lines.index('delete element ip shoal bridges { "shoal0" }')]
    # shoal0 is removed: the other bridge is the one checked; each set is checked once
    assert check == [
        'delete element ip shoal bridges { "sh-aaaaaaaaaaaa" }',
        'add element ip shoal bridges { "sh-aaaaaaaaaaaa" }',
        'delete element ip shoal internal { "sh-aaaaaaaaaaaa" }',
        'add element ip shoal internal { "sh-aaaaaaaaaaaa" }',
        'delete element ip shoal icc { "sh-aaaaaaaaaaaa" . "sh-aaaaaaaaaaaa" }',
        'add element ip shoal icc { "sh-aaaaaaaaaaaa" . "sh-aaaaaaaaaaaa" }',
        "delete element ip shoal ports_any { tcp . 8080 : 172.17.0.2 . 80 }",
        "add element ip shoal ports_any { tcp . 8080 : 172.17.0.2 . 80 }",
        "delete element ip shoal ports_ip { 127.0.0.1 . udp . 5353 : 172.17.0.3 . 53 }",
        "add element ip shoal ports_ip { 127.0.0.1 . udp . 5353 : 172.17.0.3 . 53 }"]


@pytest.mark.parametrize("elements", [Elements(networks=[V6_NET]), Elements(ports=[V6_PORT])])
def test_both_renderers_refuse_ipv6_elements_with_one_clear_line(elements: Elements) -> None:
    """IPv6 is not there yet: its elements are refused by name, never written as IPv4."""
    renders = [nft.full, ipt.iptables_restore, lambda e: nft.delta(e, Elements())]
    if elements.only_ports:  # (a change of networks is no port delta: a rewrite follows)
        renders.append(lambda e: ipt.iptables_port_delta(e, Elements()))
    for render in renders:
        with pytest.raises(FirewallError, match=r"^IPv6 is not supported yet by the \w+ backend$"):
            render(elements)


def test_ten_thousand_ports_are_typed_and_rendered_quickly() -> None:
    """The 10,000-port path (bench/ports.py: < 2 s for the whole run): building the typed
    elements from the store's rows and rendering them stays in milliseconds."""
    import time

    rows = [("tcp", "0.0.0.0", 20000 + i, "172.17.0.2", 20000 + i) for i in range(10_000)]
    start = time.perf_counter()
    elements = port_elements(rows)
    script = nft.delta(elements, Elements())
    took = time.perf_counter() - start
    assert len(elements.ports) == 10_000 and script.count(" : ") == 10_000
    assert took < 0.25, f"{took * 1000:.0f} ms"


# -- what Netfilter hands the backends, from the store -----------------------------------------

NET_ID, CTR_ID, EP_ID = "a" * 64, "c" * 64, "e" * 64


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(str(tmp_path / "state"))
    yield s
    s.close()


def populate(store: Store, icc: bool = True) -> Network:
    from ipaddress import IPv4Address

    net = Network(id=NET_ID, name="n", driver="bridge", created=T0,
                  subnet=IPv4Network("172.18.0.0/16"), gateway=IPv4Address("172.18.0.1"),
                  bridge="sh-aaaaaaaaaaaa",
                  options={} if icc else {"shoal.bridge.enable_icc": "false"})
    store.add_network(net)
    store.add_container(Container(id=CTR_ID, name="c", created=T0, hostname="h", cmd=["x"],
                                  env=[], network_mode="n", status="running"))
    store.add_sandbox(Sandbox(id=CTR_ID, path="", owned=True, created=T0))
    store.add_endpoint(Endpoint(id=EP_ID, sandbox_id=CTR_ID, network_id=NET_ID,
                                ifname="eth0", ip=IPv4Address("172.18.0.2"),
                                mac="02:42:ac:12:00:02"))
    store.add_ports([PublishedPort(sandbox_id=CTR_ID, network_id=NET_ID, proto="tcp",
                                   host_ip=IPv4Address("0.0.0.0"), host_port=8080,
                                   container_port=80, dest_ip=IPv4Address("172.18.0.2")),
                     PublishedPort(sandbox_id=CTR_ID, network_id=NET_ID, proto="udp",
                                   host_ip=IPv4Address("127.0.0.1"), host_port=53,
                                   container_port=53, dest_ip=IPv4Address("172.18.0.2"))])
    return store.network_by_id(NET_ID)


PORTS = {PortMapping(4, "tcp", "0.0.0.0", 8080, "172.18.0.2", 80),
         PortMapping(4, "udp", "127.0.0.1", 53, "172.18.0.2", 53)}


def test_netfilter_gives_a_containers_typed_elements(store: Store) -> None:
    net = populate(store, icc=False)
    nf = Netfilter(store)
    ctr = store.container_by_id(CTR_ID)
    assert ctr is not None
    veth = IsolatedPort("vsh" + EP_ID[:12])
    assert nf.container_elements(ctr) == Elements(ports=PORTS, isolated=[veth])
    assert nf.container_elements(ctr, ports_only=True) == Elements(ports=PORTS)
    rows = store.port_rows(CTR_ID, NET_ID)
    (ep,) = store.endpoints(sandbox_id=CTR_ID)
    assert nf.endpoint_elements(net, ep, rows) == Elements(ports=PORTS, isolated=[veth])
    assert nf.endpoint_elements(net, ep, plugged=False) == Elements()
    assert nf.network_elements(net) == Elements(networks=[net_rule(net)])
    assert net_rule(net) == NetworkElement(4, "sh-aaaaaaaaaaaa", IPv4Network("172.18.0.0/16"),
                                           internal=False, icc=False)
    # the whole state, as a full apply writes it
    assert nf.state() == Elements(networks=[net_rule(net)], ports=PORTS, isolated=[veth])
    assert {port_rule(p) for p in store.ports()} == PORTS


def test_netfilter_offers_unchanged_elements_for_the_presence_check(store: Store) -> None:
    net = populate(store)
    nf = Netfilter(store)
    web, dns = sorted(PORTS)
    present = nf.present(Elements(ports=[web]), Elements(), [net])
    assert present == Elements(networks=[net_rule(net)], ports=[dns])
    # every port changes: none of them is offered
    assert nf.present(Elements(), Elements(ports=PORTS), [net]).ports == set()


def test_each_backend_knows_only_its_own_syntax() -> None:
    """The iptables backend renders typed elements, never nftables' strings (it used to parse
    map elements back), and nothing outside the nftables backend (and doctor, which reads
    the kernel's sets) knows the names of shoal's nft sets."""
    import ast
    from pathlib import Path

    import shoal

    src = Path(shoal.__file__).parent
    for name in ("firewall/iptables.py", "firewall/iptables_rules.py", "rules.py",
                 "netfilter.py"):
        tree = ast.parse((src / name).read_text())
        imported = {node.module or "" for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom)}
        if name != "netfilter.py":  # (which opens an nft context for other firewalls' tables)
            assert not any("nftables" in module for module in imported), name
        strings = {node.value for node in ast.walk(tree)
                   if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        assert not strings & {"ports_any", "ports_ip", "masq_subnets", "no_icc_ports"}, name
