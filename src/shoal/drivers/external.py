"""The external driver: a network whose links another plugin makes, to which shoal adds only
its firewall: published ports through its O(1) maps, hairpin, isolation from shoal's own
networks. It is what shoal-cni's chained mode records after the reference `bridge` plugin
(a drop-in for `portmap`), and `network create -d external -o shoal.external.bridge=BR`
makes one by hand.

The bridge, the veths and the addresses are the other plugin's: shoal never creates,
changes or deletes them, and reconcile never counts them as stale. An endpoint is only a
record of the address the other plugin gave (the runtime's result), so that ports can be
published to it and `network inspect` and `doctor` show it."""

from __future__ import annotations

from ..checks import FAIL, OK, Check
from ..errors import Conflict, InvalidArgument
from ..kernel import links
from ..model import Endpoint, Network
from ..names import validate_ifname
from .api import ENDPOINTS, LOCAL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..kernel.netlink import Netlink
    from .api import HostHandles

BRIDGE_OPTION = "shoal.external.bridge"


class ExternalDriver:
    name = "external"
    scope = LOCAL
    sandbox = ENDPOINTS
    user_networks = True
    addresses = True
    names = False  # the other plugin's containers get their resolv.conf from their runtime

    def validate(self, h: HostHandles, net: Network, others: list[Network]) -> Network:
        """The bridge must exist and carry an IPv4 address: without --subnet, that
        address's subnet is the network's, and the address its gateway."""
        from ipaddress import IPv4Interface

        from .bridge import is_reserved

        unknown = sorted(set(net.options) - {BRIDGE_OPTION})
        if unknown:
            raise InvalidArgument(f"unknown external option {unknown[0]!r}: the only one is "
                                  f"{BRIDGE_OPTION}")
        bridge = net.options.get(BRIDGE_OPTION)
        if not bridge:
            raise InvalidArgument(f"an external network needs -o {BRIDGE_OPTION}=NAME: the "
                                  "bridge another plugin made")
        validate_ifname(bridge, "bridge")
        if is_reserved(bridge):
            raise InvalidArgument(f"bridge {bridge} is one of shoal's own: an external "
                                  "network names a bridge another plugin made")
        for other in others:
            if other.bridge == bridge:
                raise Conflict(f"bridge {bridge} is already used by network {other.name}")
        link = links.get_link(h.host, bridge)
        if link is None:
            raise InvalidArgument(f"there is no link {bridge} on the host: an external "
                                  "network's bridge is made by another plugin first")
        if net.subnet is None:
            own = [a for a in links.addresses(h.host, link.index, family=4)
                   if isinstance(a, IPv4Interface)]
            if not own:
                raise InvalidArgument(f"bridge {bridge} has no IPv4 address: give --subnet "
                                      "and --gateway")
            net = net.replace(subnet=own[0].network, gateway=own[0].ip)
        return net.replace(bridge=bridge)

    def builtin(self, net: Network) -> Network:
        raise InvalidArgument("the external driver has no built-in network")

    def create_network(self, h: HostHandles, net: Network) -> None:
        pass  # the other plugin's bridge

    def delete_network(self, h: HostHandles, net: Network) -> None:
        pass  # stays: it is not shoal's

    def max_endpoints(self, net: Network) -> tuple[int, str] | None:
        return None

    def port_name(self, ep: Endpoint) -> str | None:
        return None  # the other plugin names its veths: icc off cannot name them

    def owns_link(self, name: str) -> bool:
        return False

    def icc(self, net: Network) -> bool:
        return True

    def masquerade(self, net: Network) -> bool:
        return False  # the other plugin's (the reference bridge's ipMasq)

    def host_binding_ip(self, net: Network) -> str | None:
        return None

    def join(self, h: HostHandles, sandbox: Netlink, net: Network, ep: Endpoint, first: bool,
             fresh: bool = False) -> None:
        pass  # the other plugin plugged it in

    def leave(self, h: HostHandles, sandbox: Netlink | None, net: Network,
              ep: Endpoint) -> None:
        pass  # the other plugin unplugs it

    def endpoint_present(self, h: HostHandles, net: Network, ep: Endpoint) -> bool:
        return True  # not shoal's to make again

    def repair(self, h: HostHandles, net: Network) -> str | None:
        return None

    def gc(self, h: HostHandles, nets: list[Network], live: list[Endpoint]) -> list[str]:
        return []

    def foreign_root(self, h: HostHandles) -> str | None:
        return None

    def diagnose(self, h: HostHandles, net: Network, ep: Endpoint | None,
                 who: str) -> list[Check]:
        if ep is not None:
            return []
        assert net.bridge is not None
        link = links.get_link(h.host, net.bridge)
        if link is None:
            return [Check(FAIL, f"network {net.name}: its bridge {net.bridge}, made by "
                                "another plugin, is missing",
                          f"run that plugin again, or shoal network rm {net.name}")]
        return [Check(OK, f"network {net.name}: bridge {net.bridge} (another plugin's) is "
                          f"{'up' if link.up else 'down'}")]
