"""What the host and null drivers share: a network that is a mode, not a place. Their one
network is built in (`host`, `none`); it has no subnet, no kernel object and no endpoints, so
every kernel operation is empty."""

from __future__ import annotations

from ..errors import Conflict
from .api import LOCAL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..checks import Check
    from ..kernel.netlink import Netlink
    from ..model import Endpoint, Network
    from .api import HostHandles


class ModeDriver:
    name = ""
    builtin_name = ""
    scope = LOCAL
    sandbox = ""
    user_networks = False
    addresses = False
    names = False

    def validate(self, h: HostHandles, net: Network, others: list[Network]) -> Network:
        raise Conflict(f"only one instance of the {self.name!r} network is allowed: use the "
                       f"built-in network '{self.builtin_name}'")

    def builtin(self, net: Network) -> Network:
        return net

    def create_network(self, h: HostHandles, net: Network) -> None:
        pass

    def delete_network(self, h: HostHandles, net: Network) -> None:
        pass

    def max_endpoints(self, net: Network) -> tuple[int, str] | None:
        return None

    def port_name(self, ep: Endpoint) -> str | None:
        return None

    def owns_link(self, name: str) -> bool:
        return False

    def icc(self, net: Network) -> bool:
        return True

    def masquerade(self, net: Network) -> bool:
        return True

    def host_binding_ip(self, net: Network) -> str | None:
        return None

    def join(self, h: HostHandles, sandbox: Netlink, net: Network, ep: Endpoint, first: bool,
             fresh: bool = False) -> None:
        raise Conflict(f"containers cannot be connected to network {net.name}; it is a "
                       f"network mode: use shoal run --network {net.name}")

    def leave(self, h: HostHandles, sandbox: Netlink | None, net: Network,
              ep: Endpoint) -> None:
        pass

    def endpoint_present(self, h: HostHandles, net: Network, ep: Endpoint) -> bool:
        return True

    def repair(self, h: HostHandles, net: Network) -> str | None:
        return None

    def gc(self, h: HostHandles, nets: list[Network], live: list[Endpoint]) -> list[str]:
        return []

    def foreign_root(self, h: HostHandles) -> str | None:
        return None

    def diagnose(self, h: HostHandles, net: Network, ep: Endpoint | None,
                 who: str) -> list[Check]:
        return []
