"""`shoal doctor` is right about shoal's rules and other firewalls: each check is tested with
the link broken and with it whole, on the backends where it applies."""

from __future__ import annotations

import pytest

from .harness import HOST_ADDR, OUTSIDE_ADDR, Host
from .test_firewall import _outside_server, _tcp_server
from .test_neighbours import FIREWALLD, FOREIGN, _drop

# (kind of other firewall, how doctor names its chain)
LABELS = {"iptables-nft": "ip filter FORWARD", "iptables-legacy": "iptables-legacy's ip filter",
          "firewalld": "inet firewalld filter_FORWARD"}


def _doctor(host: Host, *args: str) -> tuple[int, str]:
    res = host.shoal(*args, "doctor", check=False)
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, res.stdout


def _fail_and_fix(out: str, what: str) -> tuple[str, str]:
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("FAIL") and what in line:
            fix = lines[i + 1].strip()
            assert fix.startswith("fix: "), out
            return line, fix[len("fix: "):]
    raise AssertionError(f"no FAIL naming {what!r}:\n{out}")


def _web(host: Host) -> None:
    _outside_server(host, 7000)
    _tcp_server(host, "web", 8000, args=("-p", "8080:8000"))


def _reachable(host: Host) -> bool:
    return (host.fetch(host.sandbox("web"), OUTSIDE_ADDR, 7000, timeout=1) == HOST_ADDR
            and host.fetch(host.outside, HOST_ADDR, 8080, timeout=1) == OUTSIDE_ADDR)


# -- published ports and shoal's own rules ------------------------------------------------------


def test_iptables_backend_port_is_not_shadowed_by_shoals_own_rule(iptables_host: Host) -> None:
    host = iptables_host
    _web(host)
    code, out = _doctor(host)
    assert code == 0 and "shadowed" not in out and "everything checks out" in out, out
    # a DNAT of another owner in iptables' own PREROUTING still is
    host.in_ns(host.ns, "iptables", "-t", "nat", "-I", "PREROUTING", "-p", "tcp", "--dport",
               "8080", "-j", "DNAT", "--to-destination", "10.9.9.9", check=True)
    code, out = _doctor(host)
    assert code == 1
    line, fix = _fail_and_fix(out, "is shadowed by ip nat PREROUTING")
    assert "remove that rule" in fix


@pytest.mark.parametrize(("kind", "name", "example"), [
    ("set", "bridges", '"shoal0"'), ("map", "ports_any", "tcp . 8080 : 172.17.0.2 . 8000"),
    ("set", "masq_subnets", "172.17.0.0/16")])
def test_a_flushed_set_is_named_and_reload_repairs_it(host: Host, kind: str, name: str,
                                                      example: str) -> None:
    _web(host)
    assert _doctor(host)[0] == 0
    host.in_ns(host.ns, "nft", "flush", kind, "ip", "shoal", name, check=True)
    code, out = _doctor(host)
    assert code == 1
    line, fix = _fail_and_fix(out, f"{kind} ip shoal {name} lacks")
    assert example in line and fix == "shoal system reload-firewall"
    assert "rules are in place" not in out
    host.shoal("system", "reload-firewall")
    code, out = _doctor(host)
    assert code == 0, out


def test_an_element_shoal_does_not_know_is_named(host: Host) -> None:
    _web(host)
    host.in_ns(host.ns, "nft", "add element ip shoal bridges { \"sh-000000000000\" }",
               check=True)
    code, out = _doctor(host)
    assert code == 1
    _fail_and_fix(out, "set ip shoal bridges holds 1 elements its state does not have")


# -- other firewalls ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_other_firewall_started_later_is_named_and_its_fix_works(fw_host: Host,
                                                                 kind: str) -> None:
    host = fw_host
    _web(host)
    _drop(host, kind)
    if kind == "iptables-nft" and host.backend == "iptables":
        # shoal's own chain: SHOAL-FORWARD comes first and decides shoal's traffic
        assert _doctor(host)[0] == 0 and _reachable(host)
        return
    assert not _reachable(host)
    code, out = _doctor(host)
    assert code == 1
    line, fix = _fail_and_fix(out, f"{LABELS[kind]}")
    assert "drops forwarded traffic" in line and "containers to the outside" in line
    assert "the outside to published ports" in line
    assert fix.startswith("shoal system reload-firewall")
    host.shoal("system", "reload-firewall")
    code, out = _doctor(host)
    assert code == 0, out
    assert f"{LABELS[kind]}" in out and "accepts shoal's" in out
    assert _reachable(host)


@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_with_leave_its_own_suggested_accepts_make_it_check_out(fw_host: Host,
                                                                kind: str) -> None:
    """The doctor judges the chain's rules, not only its policy: after the accepts it
    suggests are added by hand, everything checks out and the traffic flows."""
    host = fw_host
    if kind == "iptables-nft" and host.backend == "iptables":
        pytest.skip("there FORWARD is the iptables backend's own chain")
    _drop(host, kind)
    host.shoal("--other-firewalls", "leave", "network", "ls")
    _web(host)
    assert not _reachable(host)
    code, out = _doctor(host)
    assert code == 1
    _, fix = _fail_and_fix(out, LABELS[kind])
    assert "reload-firewall" not in fix
    host.in_ns(host.ns, "sh", "-c", fix, check=True)
    code, out = _doctor(host)
    assert code == 0, out
    assert _reachable(host)


def test_an_accept_for_one_direction_only_is_judged_as_such(host: Host) -> None:
    host.in_ns(host.ns, "nft", FIREWALLD, check=True)
    host.shoal("--other-firewalls", "leave", "network", "ls")
    _web(host)
    host.in_ns(host.ns, "nft", 'add rule inet firewalld filter_FORWARD iifname "shoal0" accept',
               check=True)
    code, out = _doctor(host)
    assert code == 1
    line, _ = _fail_and_fix(out, LABELS["firewalld"])
    assert "the outside to published ports (shoal0)" in line
    assert "containers to the outside" not in line
    # replies only (as Docker accepts them) do not let new connections to published ports in
    host.in_ns(host.ns, "nft", "add rule inet firewalld filter_FORWARD oifname \"shoal0\" "
               "ct state established,related accept", check=True)
    assert _doctor(host)[0] == 1
    assert host.fetch(host.outside, HOST_ADDR, 8080, timeout=1) is None


def test_a_drop_before_shoals_accepts_is_seen(host: Host) -> None:
    host.in_ns(host.ns, "nft", FIREWALLD, check=True)
    _web(host)
    host.shoal("system", "reload-firewall")
    assert _doctor(host)[0] == 0 and _reachable(host)
    host.in_ns(host.ns, "nft", "insert rule inet firewalld filter_FORWARD drop", check=True)
    assert not _reachable(host)
    code, out = _doctor(host)
    assert code == 1
    _fail_and_fix(out, LABELS["firewalld"])


def test_an_accepting_foreign_chain_is_fine(host: Host) -> None:
    host.in_ns(host.ns, "nft", FIREWALLD.replace("policy drop", "policy accept"), check=True)
    _web(host)
    code, out = _doctor(host)
    assert code == 0, out
    assert _reachable(host)


@pytest.mark.parametrize(("table", "chain"), [("filter", "SHOAL-FORWARD"), ("nat", "SHOAL"),
                                              ("filter", "SHOAL-ISOLATION-2")])
def test_a_flushed_iptables_chain_is_named_and_reload_repairs_it(
        iptables_host: Host, table: str, chain: str) -> None:
    host = iptables_host
    host.shoal("network", "create", "--internal", "vault")
    host.shoal("network", "create", "-o", "shoal.bridge.enable_icc=false", "quiet")
    _web(host)
    code, out = _doctor(host)
    assert code == 0, out  # (iptables-save prints the rules' matches in its own order)
    host.in_ns(host.ns, "iptables", "-t", table, "-F", chain, check=True)
    code, out = _doctor(host)
    assert code == 1
    _, fix = _fail_and_fix(out, f"shoal's chain {chain} ({table}) lacks")
    assert fix == "shoal system reload-firewall"
    host.shoal("system", "reload-firewall")
    assert _doctor(host)[0] == 0
