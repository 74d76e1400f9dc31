"""Firewall backends: they apply the typed elements `shoal.rules` computes from the state,
each rendering them in its own syntax (nftables_rules.py, iptables_rules.py).

Both take the same calls: `apply_full(elements)` makes shoal's rules exactly those of every
element of the state, in one transaction; `apply_delta(added, removed)` applies a change of
elements in one transaction (nftables: any change; iptables: a change of published ports, as
DNAT rules deleted and appended) and returns False when only a full apply can make it;
`remove()` deletes everything shoal owns; `show()` prints it in the backend's own syntax.
Neither ever changes the policy of a chain shoal does not own. What shoal adds to other
firewalls' chains (accepts for its bridges) is `shoal.firewall.neighbours`' job."""

from __future__ import annotations

from ..errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..rules import Elements

BACKENDS = ("nftables", "iptables")


class Backend:
    name = ""

    def apply_full(self, elements: Elements) -> None:
        raise NotImplementedError

    def apply_delta(self, added: Elements, removed: Elements,
                    present: Elements | None = None) -> bool:
        """`present`: elements the kernel must still hold (a backend may check one of each of
        its sets, as a cheap check that nobody flushed them); when one is missing the delta
        fails and a full apply follows."""
        raise NotImplementedError

    def remove(self) -> None:
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
