"""The VXLAN guard (issue 12) as a pure function of the state: with no cluster (no meta row
`cluster.hosts`) no rule at all; in one, UDP to the VXLAN port in the host's input path is
dropped unless it comes from a registered host, in both backends' syntax; and what Netfilter
hands the backends when the watcher changes the hosts. No root, no kernel."""

from __future__ import annotations

import json
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from shoal import rules
from shoal.errors import FirewallError, InvalidArgument
from shoal.firewall import Backend
from shoal.firewall import iptables_rules as ipt
from shoal.firewall import nftables_rules as nft
from shoal.kernel.vxlan import VXLAN_PORT
from shoal.netfilter import CLUSTER_HOSTS, Netfilter
from shoal.rules import ClusterHost, Elements, NetworkElement, PortMapping, VxlanGuard
from shoal.store import Store

DEFAULT = NetworkElement(4, "shoal0", IPv4Network("172.17.0.0/16"))
WEB = PortMapping(4, "udp", "0.0.0.0", 5000, "172.17.0.2", 5000)
H1, H2, H3 = "10.77.0.9", "10.77.0.10", "10.77.0.11"
GUARD_RULE = f"add rule ip shoal input udp dport {VXLAN_PORT} ip saddr != @cluster_hosts drop"
JUMP = f"-A SHOAL-INPUT -p udp -m udp --dport {VXLAN_PORT} -j SHOAL-VXLAN"


def state(hosts: list[str] | None) -> Elements:
    """A host with the default bridge and one published UDP port, in no cluster (None) or in
    one with these hosts."""
    return rules.desired([DEFAULT], [WEB], [], None,
                         None if hosts is None else VXLAN_PORT, hosts or ())


def nft_rule_lines(elements: Elements) -> list[str]:
    return [line for line in nft.full(elements).splitlines() if line.startswith("add rule")]


def guard_words(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if str(VXLAN_PORT) in line or "cluster_hosts" in line or "SHOAL-VXLAN" in line]


# -- the elements ------------------------------------------------------------------------------


def test_no_cluster_no_guard_even_with_hosts_given() -> None:
    assert state(None) == rules.desired([DEFAULT], [WEB], [])
    assert not state(None).guards and not state(None).cluster_hosts
    assert rules.desired([], [], [], None, None, [H1]) == Elements()


def test_a_cluster_is_a_guard_and_its_hosts() -> None:
    got = state([H2, H1])
    assert got.guards == {VxlanGuard(VXLAN_PORT)}
    assert got.cluster_hosts == {ClusterHost(4, H1), ClusterHost(4, H2)}
    assert state([]).guards == {VxlanGuard(VXLAN_PORT)} and state([]).cluster_hosts == set()
    # a host joining is a change of cluster hosts only
    added, removed = state([H1, H3]) - state([H1]), state([H1]) - state([H1, H3])
    assert added == Elements(cluster_hosts=[ClusterHost(4, H3)]) and not removed
    assert added.only_cluster_hosts and not added.only_ports
    # entering the cluster adds the guard itself
    assert (state([]) - state(None)).guards == {VxlanGuard(VXLAN_PORT)}
    assert not (state([H1]) - state(None)).only_cluster_hosts
    assert rules.merge(state([H1]), state([H2])) == state([H1, H2])
    assert state([H1]).family(4) == state([H1]) and state([H1]).family(6).cluster_hosts == set()


# -- nftables ----------------------------------------------------------------------------------


def test_nft_no_cluster_has_no_rule_nor_set() -> None:
    text = nft.full(state(None))
    # the only mention: the guard's set deleted, in case a previous apply left one
    assert guard_words(text) == ["add set ip shoal cluster_hosts { type ipv4_addr; }",
                                 "delete set ip shoal cluster_hosts"]
    assert "cluster_hosts" not in nft.set_elements(state(None))
    assert nft_rule_lines(state(None)) == [line for line in nft_rule_lines(state([H1]))
                                           if line != GUARD_RULE]


@pytest.mark.parametrize("hosts", [[], [H1], [H3, H1, H2]])
def test_nft_cluster_drops_vxlan_from_others_in_the_input_chain(hosts: list[str]) -> None:
    text = nft.full(state(hosts))
    lines = text.splitlines()
    assert guard_words(text)[:2] == ["add set ip shoal cluster_hosts { type ipv4_addr; }",
                                     "flush set ip shoal cluster_hosts"]
    assert "delete set ip shoal cluster_hosts" not in text
    # one rule, in shoal's input chain (the host's own input path), after the chain's flush
    assert [line for line in lines if str(VXLAN_PORT) in line] == [GUARD_RULE]
    assert lines.index(GUARD_RULE) > lines.index("flush chain ip shoal input")
    elements = [line for line in lines if line.startswith("add element ip shoal cluster_hosts")]
    if hosts:
        assert elements == [f"add element ip shoal cluster_hosts {{ {', '.join(sorted(hosts))} }}"]
    else:
        assert elements == []  # an empty set: every VXLAN datagram is dropped
    # the rest of the ruleset is that of the same host in no cluster
    rest = [line for line in nft_rule_lines(state(hosts)) if line != GUARD_RULE]
    assert rest == nft_rule_lines(state(None))


def test_nft_hosts_joining_and_leaving_are_element_changes() -> None:
    added, removed = state([H1, H3]) - state([H1, H2]), state([H1, H2]) - state([H1, H3])
    assert not nft.needs_full(added, removed)
    assert nft.delta(added, removed).splitlines() == [
        f"delete element ip shoal cluster_hosts {{ {H2} }}",
        f"add element ip shoal cluster_hosts {{ {H3} }}",
    ]
    # with the presence check, a host that stays is deleted and added again (the delta fails
    # where someone flushed the set: a full apply follows)
    checked = nft.delta(added, removed, state([H1, H2])).splitlines()
    assert checked[-2:] == nft.delta(added, removed).splitlines()
    assert [line for line in checked[:-2] if "cluster_hosts" in line] == [
        f"delete element ip shoal cluster_hosts {{ {H1} }}",
        f"add element ip shoal cluster_hosts {{ {H1} }}"]
    # turning the guard on or off changes the skeleton: a full apply
    assert nft.needs_full(state([]) - state(None), Elements())
    assert nft.needs_full(Elements(), state([H1]) - state(None))


def test_nft_refuses_an_ipv6_cluster_host() -> None:
    v6 = Elements(guards=[VxlanGuard(VXLAN_PORT)], cluster_hosts=[ClusterHost(6, "fd00::1")])
    with pytest.raises(FirewallError, match="IPv6"):
        nft.full(v6)
    with pytest.raises(FirewallError, match="IPv6"):
        nft.delta(Elements(cluster_hosts=v6.cluster_hosts), Elements())


# -- iptables ----------------------------------------------------------------------------------


def test_iptables_no_cluster_has_no_rule_nor_chain() -> None:
    assert guard_words(ipt.iptables_restore(state(None))) == []
    assert ipt.chains(state(None)) == ipt.IPT_CHAINS


@pytest.mark.parametrize("hosts", [[], [H1], [H3, H1, H2]])
def test_iptables_cluster_returns_for_hosts_and_drops_the_rest(hosts: list[str]) -> None:
    text = ipt.iptables_restore(state(hosts))
    in_order = sorted(hosts, key=lambda a: tuple(map(int, a.split("."))))
    assert guard_words(text) == [":SHOAL-VXLAN - [0:0]", JUMP,
                                 *(f"-A SHOAL-VXLAN -s {h}/32 -j RETURN" for h in in_order),
                                 "-A SHOAL-VXLAN -j DROP"]
    assert ipt.chains(state(hosts))["filter"][-1] == "SHOAL-VXLAN"
    # only in shoal's own chains, hooked as before (INPUT jumps to SHOAL-INPUT, nothing else)
    assert ipt.IPT_JUMPS["filter"] == (("FORWARD", "-j SHOAL-FORWARD"),
                                       ("INPUT", "-j SHOAL-INPUT"))
    filt = ipt.iptables_tables(state(hosts))["filter"]
    assert [line for line in filt if "SHOAL-VXLAN" in line or "4789" in line] == \
        guard_words(text)[1:]
    # the rest is that of the same host in no cluster
    assert [line for line in filt if line not in guard_words(text)] == \
        ipt.iptables_tables(state(None))["filter"]


def test_iptables_hosts_joining_and_leaving_touch_their_rules_only() -> None:
    added, removed = state([H1, H3]) - state([H1, H2]), state([H1, H2]) - state([H1, H3])
    assert ipt.iptables_port_delta(added, removed) is None
    assert ipt.iptables_hosts_delta(added, removed) == (
        f"*filter\n-D SHOAL-VXLAN -s {H2}/32 -j RETURN\n"
        f"-I SHOAL-VXLAN 1 -s {H3}/32 -j RETURN\nCOMMIT\n")
    # what a delta deletes is exactly the line a full apply wrote
    full = ipt.iptables_tables(state([H1, H2]))["filter"]
    assert f"-A SHOAL-VXLAN -s {H2}/32 -j RETURN" in full
    # the guard on or off, or anything but hosts: a rewrite
    assert ipt.iptables_hosts_delta(state([]) - state(None), Elements()) is None
    assert ipt.iptables_hosts_delta(Elements(ports=[WEB]), Elements()) is None
    v6 = Elements(cluster_hosts=[ClusterHost(6, "fd00::1")])
    with pytest.raises(FirewallError, match="IPv6"):
        ipt.iptables_hosts_delta(v6, Elements())


# -- Netfilter: the meta row and what reaches the backend ---------------------------------------


class Recorder(Backend):
    """A backend that records what it is asked (no kernel); the nftables backend's answer to
    a delta (a full apply for the guard itself)."""

    name = "nftables"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Elements, Elements | None]] = []
        self.refuse = False

    def apply_full(self, elements: Elements) -> None:
        if self.refuse:
            raise FirewallError("nftables refused to apply shoal's ruleset: test")
        self.calls.append(("full", elements, None))

    def apply_delta(self, added: Elements, removed: Elements,
                    present: Elements | None = None) -> bool:
        if nft.needs_full(added, removed):
            return False
        self.calls.append(("delta", added, removed))
        return True


@pytest.fixture
def nf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Netfilter]:
    store = Store(str(tmp_path / "state"))
    out = Netfilter(store)
    recorder = Recorder()
    out._backend = recorder
    # (the parts that ask the kernel: other firewalls, the nftables generation)
    monkeypatch.setattr(out, "sync_neighbours", lambda nets=None: None)
    monkeypatch.setattr(out, "_others_untouched", lambda: True)
    monkeypatch.setattr(out, "_note_generation", lambda: None)
    yield out
    store.close()


def calls(nf: Netfilter) -> list[tuple[str, Elements, Elements | None]]:
    backend = nf.backend
    assert isinstance(backend, Recorder)
    out, backend.calls = backend.calls, []
    return out


def guard(*hosts: str) -> Elements:
    return Elements(guards=[VxlanGuard(VXLAN_PORT)],
                    cluster_hosts=[ClusterHost(4, h) for h in hosts])


def test_state_reads_the_meta_row(nf: Netfilter) -> None:
    assert nf.cluster_hosts() is None and nf.state() == Elements()
    nf.store.set_meta(CLUSTER_HOSTS, "[]")
    assert nf.state() == guard()
    nf.store.set_meta(CLUSTER_HOSTS, json.dumps([H2, H1, H2]))
    assert nf.cluster_hosts() == [H1, H2] and nf.state() == guard(H1, H2)


def test_the_presence_check_includes_a_cluster_host(nf: Netfilter) -> None:
    assert nf.present(Elements(), Elements(), []) == Elements()
    nf.store.set_meta(CLUSTER_HOSTS, json.dumps([H1]))
    assert nf.present(Elements(), Elements(), []) == Elements(cluster_hosts=[ClusterHost(4, H1)])


@pytest.mark.parametrize("row", ["not json", '{"a": 1}', '"10.77.0.9"', '["10.77.0.9", 7]',
                                 '["fd00::1"]', '["10.77.0.300"]'])
def test_a_broken_row_keeps_the_guard_closed(nf: Netfilter, row: str) -> None:
    nf.store.set_meta(CLUSTER_HOSTS, row)
    assert nf.state() == guard()  # no host passes
    assert any(CLUSTER_HOSTS in w and "dropped" in w for w in nf.warnings)


def test_set_cluster_hosts_writes_the_row_and_applies_the_change(nf: Netfilter) -> None:
    with nf.store.locked():
        nf.set_cluster_hosts([H2, H1])  # entering the cluster: a full apply
        assert json.loads(nf.store.get_meta(CLUSTER_HOSTS) or "") == [H1, H2]
        assert calls(nf) == [("full", guard(H1, H2), None)]
        nf.set_cluster_hosts([H1, H3])  # one joins, one leaves: a delta
        assert calls(nf) == [("delta", Elements(cluster_hosts=[ClusterHost(4, H3)]),
                              Elements(cluster_hosts=[ClusterHost(4, H2)]))]
        nf.set_cluster_hosts([H3, H1])  # no change: nothing asked of the kernel
        assert calls(nf) == []
        nf.set_cluster_hosts([])  # an empty cluster: a delta, the guard stays
        assert json.loads(nf.store.get_meta(CLUSTER_HOSTS) or "") == []
        assert calls(nf) == [("delta", Elements(), guard(H1, H3) - guard())]
        nf.set_cluster_hosts(None)  # out of the cluster: a full apply without the guard
        assert nf.store.get_meta(CLUSTER_HOSTS) is None
        assert calls(nf) == [("full", Elements(), None)]


def test_set_cluster_hosts_refuses_bad_addresses_before_writing(nf: Netfilter) -> None:
    with nf.store.locked():
        nf.set_cluster_hosts([H1])
        calls(nf)
        for bad in (["10.77.0.300"], ["fd00::1"], [H1, 7], H1):
            with pytest.raises(InvalidArgument, match="IPv4"):
                nf.set_cluster_hosts(bad)  # type: ignore[arg-type]
        assert json.loads(nf.store.get_meta(CLUSTER_HOSTS) or "") == [H1]
        assert calls(nf) == []


def test_a_kernel_refusal_rolls_the_row_back(nf: Netfilter) -> None:
    backend = nf.backend
    assert isinstance(backend, Recorder)
    backend.refuse = True
    with nf.store.locked(), pytest.raises(FirewallError):
        nf.set_cluster_hosts([H1])
    assert nf.store.get_meta(CLUSTER_HOSTS) is None
