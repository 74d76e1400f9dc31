"""Golden tests: the exact ruleset shoal writes, for a set of states, with both backends.

Each state is rendered as the nftables full transaction (tests/golden/nftables/<state>.nft) and
as the iptables-restore input (tests/golden/iptables/<state>.rules); the files are checked in so
a reviewer sees exactly what shoal writes. After an intended change of the rules, regenerate
them with

    SHOAL_REGEN_GOLDEN=1 .venv/bin/python -m pytest -q tests/unit/test_rules_golden.py

and review the diff of tests/golden before committing it.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from shoal import rules
from shoal.firewall import iptables_rules, nftables_rules
from shoal.kernel.vxlan import VXLAN_PORT
from shoal.ports import ANY
from shoal.rules import NetworkElement, PortMapping

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
REGEN = os.environ.get("SHOAL_REGEN_GOLDEN") == "1"


def net(bridge: str, subnet: str, *, internal: bool = False, icc: bool = True,
        masquerade: bool = True) -> NetworkElement:
    return NetworkElement(4, bridge, IPv4Network(subnet), internal=internal, icc=icc,
                          masquerade=masquerade)


def port(proto: str, host_ip: IPv4Address | str, host_port: int, dest_ip: str,
         dest_port: int) -> PortMapping:
    return PortMapping(4, proto, str(IPv4Address(host_ip)), host_port,
                       str(IPv4Address(dest_ip)), dest_port)


class State:
    def __init__(self, networks: list[NetworkElement], ports: list[PortMapping] | None = None,
                 no_icc_ports: list[str] | None = None, host_links: list[str] | None = None,
                 cluster_hosts: list[str] | None = None) -> None:
        self.networks = networks
        self.ports = ports or []
        self.no_icc_ports = no_icc_ports or []
        self.host_links = host_links or []
        self.cluster_hosts = cluster_hosts  # None: the host is in no cluster


DEFAULT = net("shoal0", "172.17.0.0/16")
INTERNAL = net("sh-1a2b3c4d5e6f", "172.18.0.0/16", internal=True)
QUIET = net("sh-0c1c0ff00001", "172.18.0.0/16", icc=False)

STATES: dict[str, State] = {
    "default-bridge-only": State([DEFAULT]),
    "ports-any-and-loopback": State([DEFAULT], [
        port("tcp", ANY, 8080, "172.17.0.2", 80),
        port("udp", "127.0.0.1", 5353, "172.17.0.2", 53),
        port("sctp", ANY, 9000, "172.17.0.3", 9000),
    ]),
    "port-range": State([DEFAULT], [
        port("tcp", ANY, p, "172.17.0.2", p) for p in range(9000, 9005)
    ]),
    "internal-network": State([DEFAULT, INTERNAL]),
    # enable_ip_masquerade=false: no masquerade out of the host for its subnet, but the
    # hairpin to a published port still is
    "no-masquerade": State([DEFAULT, net("sh-0d0e0f101112", "172.20.0.0/16", masquerade=False)],
                           [port("tcp", ANY, 8086, "172.20.0.2", 80)]),
    "icc-off": State([DEFAULT, QUIET], [port("tcp", ANY, 8085, "172.18.0.2", 8000)],
                     no_icc_ports=["vsh3f2e1d0c0b0a", "vsh9a8b7c6d5e4f"]),
    # the internal network sits between the two others, so the order of the iptables rules
    # of every network relative to the internal one shows
    "several-networks": State(
        [DEFAULT, net("sh-aaaaaaaaaaaa", "172.18.0.0/16", internal=True),
         net("sh-bbbbbbbbbbbb", "172.19.0.0/16")],
        [port("tcp", ANY, 8080, "172.17.0.2", 80),
         port("tcp", "127.0.0.1", 8443, "172.19.0.2", 443),
         port("udp", ANY, 5000, "172.19.0.3", 5000)],
    ),
    # shoal turned IP forwarding on: nothing is routed between the host's links of that time
    "forward-drop": State([DEFAULT], [port("tcp", ANY, 8080, "172.17.0.2", 80)],
                          host_links=["eth0", "wlan0"]),
    # a host in a cluster (issue 12): VXLAN's port takes datagrams from its hosts only
    "cluster-hosts": State([DEFAULT], [port("udp", ANY, 5000, "172.17.0.2", 5000)],
                           cluster_hosts=["10.77.0.11", "10.77.0.9", "10.77.0.10"]),
    # in a cluster whose host list is empty: nothing passes
    "cluster-no-hosts": State([DEFAULT], cluster_hosts=[]),
}


def elements(state: State) -> rules.Elements:
    return rules.desired(state.networks, state.ports, state.no_icc_ports, state.host_links,
                         None if state.cluster_hosts is None else VXLAN_PORT,
                         state.cluster_hosts or ())


def render_nft(state: State) -> str:
    return nftables_rules.full(elements(state))


def render_iptables(state: State) -> str:
    return iptables_rules.iptables_restore(elements(state))


BACKENDS: dict[str, tuple[str, Callable[[State], str]]] = {
    "nftables": ("nft", render_nft),
    "iptables": ("rules", render_iptables),
}

# a container with `-p 8081:80` starts and one with `-p 127.0.0.1:5353:53/udp` is removed
DELTA_BEFORE = [port("tcp", ANY, 8080, "172.17.0.2", 80),
                port("udp", "127.0.0.1", 5353, "172.17.0.3", 53)]
DELTA_AFTER = [port("tcp", ANY, 8080, "172.17.0.2", 80),
               port("tcp", ANY, 8081, "172.17.0.4", 80)]
DELTA_FILE = "nftables/delta-add-tcp-8081-remove-udp-127.0.0.1-5353.nft"
IPT_DELTA_FILE = "iptables/delta-add-tcp-8081-remove-udp-127.0.0.1-5353.rules"


def _delta() -> tuple[rules.Elements, rules.Elements]:
    old = rules.desired([DEFAULT], DELTA_BEFORE, [])
    new = rules.desired([DEFAULT], DELTA_AFTER, [])
    return new - old, old - new


def render_delta() -> str:
    return nftables_rules.delta(*_delta())


def render_iptables_delta() -> str:
    script = iptables_rules.iptables_port_delta(*_delta())
    assert script is not None
    return script


def check_golden(relpath: str, actual: str) -> None:
    path = GOLDEN / relpath
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    if not path.exists():
        pytest.fail(f"{path} is missing; create it with SHOAL_REGEN_GOLDEN=1 and review it")
    expected = path.read_text()
    if actual != expected:
        diff = "".join(difflib.unified_diff(
            expected.splitlines(keepends=True), actual.splitlines(keepends=True),
            fromfile=f"golden/{relpath}", tofile="rendered"))
        pytest.fail(f"the rendered ruleset differs from golden/{relpath} (regenerate with "
                    f"SHOAL_REGEN_GOLDEN=1 if the change is intended):\n{diff}",
                    pytrace=False)


@pytest.mark.parametrize("state", sorted(STATES))
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_ruleset_matches_golden(backend: str, state: str) -> None:
    ext, render = BACKENDS[backend]
    check_golden(f"{backend}/{state}.{ext}", render(STATES[state]))


def test_nft_delta_matches_golden() -> None:
    check_golden(DELTA_FILE, render_delta())


def test_iptables_delta_matches_golden() -> None:
    check_golden(IPT_DELTA_FILE, render_iptables_delta())


def test_no_stale_golden_files() -> None:
    """Every checked-in file is one a test compares: none describes a state no longer tested."""
    expected = {f"{backend}/{state}.{ext}" for backend, (ext, _) in BACKENDS.items()
                for state in STATES} | {DELTA_FILE, IPT_DELTA_FILE}
    present = {str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*") if p.is_file()}
    if REGEN:
        for stale in present - expected:
            (GOLDEN / stale).unlink()
        return
    assert present == expected


@pytest.mark.parametrize("state", sorted(STATES))
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_rendering_is_deterministic(backend: str, state: str) -> None:
    """The order in which networks' elements are gathered (sets) never shows in the output."""
    _, render = BACKENDS[backend]
    s = STATES[state]
    shuffled = State(s.networks, list(reversed(s.ports)), list(reversed(s.no_icc_ports)),
                     list(reversed(s.host_links)),
                     None if s.cluster_hosts is None else list(reversed(s.cluster_hosts)))
    assert render(shuffled) == render(s)
