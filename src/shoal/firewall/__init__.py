"""Firewall backends: they apply the ruleset `shoal.rules` computes from the state.

Both take the same calls: `apply_full(state)` makes shoal's rules exactly those of the state,
in one transaction; `apply_delta(added, removed)` applies a change of set elements in one
transaction (nftables: any change; iptables: a change of published ports, as DNAT rules
deleted and appended) and returns False when only a full apply can make it;
`remove()` deletes everything shoal owns; `show()` prints it in the backend's own syntax."""

from __future__ import annotations

from ..errors import InvalidArgument
from ..records import Record
from ..rules import Elements, NetRule, PortRule

BACKENDS = ("nftables", "iptables")


class FirewallState(Record):
    networks: list[NetRule]
    ports: list[PortRule]
    no_icc_ports: list[str]
    drop_forward: bool = False


class Backend:
    name = ""

    def apply_full(self, state: FirewallState) -> None:
        raise NotImplementedError

    def apply_delta(self, added: Elements, removed: Elements) -> bool:
        raise NotImplementedError

    def remove(self, restore_forward_policy: bool = False) -> None:
        raise NotImplementedError

    def show(self) -> str:
        raise NotImplementedError


def backend(name: str) -> Backend:
    if name == "nftables":
        from .nftables import Nftables

        return Nftables()
    if name == "iptables":
        from .iptables import Iptables

        return Iptables()
    raise InvalidArgument(f"unknown firewall backend {name!r}: use nftables or iptables")
