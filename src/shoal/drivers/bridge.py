"""The bridge driver: a Linux bridge per network, a veth pair per endpoint.

Everything the bridge knows lives here: its option names, its device names (`shoal0` for the
default network, `sh-<network id>` otherwise, `vsh<endpoint id>` for a veth's host end), its
port limit, and how reconcile and doctor find and check its links."""

from __future__ import annotations

import errno
from contextlib import suppress
from ipaddress import IPv4Interface

from ..checks import FAIL, OK, Check
from ..errors import Conflict, InvalidArgument, KernelError, ShoalError
from ..kernel import links
from ..model import Endpoint, Network
from ..names import marked_root, validate_ifname
from .api import ENDPOINTS, LOCAL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..kernel.netlink import Netlink
    from .api import HostHandles

# The names of the bridge's kernel objects: deterministic, so that reconcile finds what a
# crash left behind, and at most 15 bytes (IFNAMSIZ)
DEFAULT_BRIDGE = "shoal0"
BRIDGE_PREFIX = "sh-"
HOST_VETH_PREFIX = "vsh"
PEER_VETH_PREFIX = "psh"
# A Linux bridge numbers its ports 1 to 1023 (BR_MAX_PORTS is 1024); one more is refused with
# EXFULL ("Exchange full", the error Docker users meet on docker0).
MAX_PORTS = 1023
NAME_OPTION = "shoal.bridge.name"
ICC_OPTION = "shoal.bridge.enable_icc"
MASQUERADE_OPTION = "shoal.bridge.enable_ip_masquerade"
HOST_IP_OPTION = "shoal.bridge.host_binding_ipv4"
MTU_OPTION = "shoal.bridge.mtu"
OPTIONS = {NAME_OPTION, ICC_OPTION, MASQUERADE_OPTION, HOST_IP_OPTION, MTU_OPTION}
# Docker's names for the same options (`-o com.docker.network.bridge.name=br0`): either
# spelling is accepted, and kept as given (network inspect shows it)
DOCKER_OPTIONS = {
    "com.docker.network.bridge.name": NAME_OPTION,
    "com.docker.network.bridge.enable_icc": ICC_OPTION,
    "com.docker.network.bridge.enable_ip_masquerade": MASQUERADE_OPTION,
    "com.docker.network.bridge.host_binding_ipv4": HOST_IP_OPTION,
    "com.docker.network.driver.mtu": MTU_OPTION,
}
BOOLEAN_OPTIONS = {ICC_OPTION, MASQUERADE_OPTION}
# Go's strconv.ParseBool, which Docker parses these with
_TRUE, _FALSE = ("1", "t", "T", "TRUE", "true", "True"), ("0", "f", "F", "FALSE", "false", "False")
MIN_MTU, MAX_MTU = 68, 65535  # IPv4's minimum (RFC 791) and the largest the kernel takes


def option(net: Network, name: str) -> str | None:
    """The value of a bridge option, given in shoal's spelling or Docker's."""
    for key, value in net.options.items():
        if DOCKER_OPTIONS.get(key, key) == name:
            return value
    return None


def _boolean(net: Network, name: str) -> bool:
    return option(net, name) not in _FALSE


def mtu(net: Network) -> int | None:
    """The MTU of the network's bridge and veths; None: the kernel's default (1500)."""
    value = option(net, MTU_OPTION)
    return int(value) if value else None


def _check_option(key: str, value: str) -> None:
    name = DOCKER_OPTIONS.get(key, key)
    if name not in OPTIONS:
        known = sorted(OPTIONS | set(DOCKER_OPTIONS))
        raise InvalidArgument(f"unknown bridge option {key!r}: known options are "
                              + ", ".join(known))
    if name in BOOLEAN_OPTIONS and value not in _TRUE + _FALSE:
        raise InvalidArgument(f"option {key} must be true or false, not {value!r}")
    if name == MTU_OPTION and not (value.isascii() and value.isdigit()
                                   and MIN_MTU <= int(value) <= MAX_MTU):
        raise InvalidArgument(f"option {key} must be an MTU from {MIN_MTU} to {MAX_MTU}, "
                              f"not {value!r}")
    if name == HOST_IP_OPTION:
        from ipaddress import IPv4Address

        try:
            IPv4Address(value)
        except ValueError:
            raise InvalidArgument(f"option {key} must be an IPv4 address of the host, not "
                                  f"{value!r}") from None


def bridge_name(network_id: str) -> str:
    """Bridge device of a user-defined network: 'sh-' + 12 hex digits = 15 bytes."""
    return BRIDGE_PREFIX + network_id[:12]


def host_veth_name(endpoint_id: str) -> str:
    """Host-side end of an endpoint's veth pair: 'vsh' + 12 hex digits = 15 bytes."""
    return HOST_VETH_PREFIX + endpoint_id[:12]


def peer_veth_name(endpoint_id: str) -> str:
    """The other end of a handed-off endpoint's pair, until its runtime moves it into the
    sandbox and renames it: 'psh' + 12 hex digits."""
    return PEER_VETH_PREFIX + endpoint_id[:12]


def is_reserved(name: str) -> bool:
    """Is this a name the bridge driver gives its own links (which reconcile removes when no
    record has them)?"""
    return name == DEFAULT_BRIDGE or name.startswith((HOST_VETH_PREFIX, BRIDGE_PREFIX))


def check_user_bridge_name(name: str) -> str:
    """A bridge name given with -o shoal.bridge.name: not one of the names shoal gives its
    own links."""
    if is_reserved(name):
        raise InvalidArgument(
            f"bridge name {name!r} is reserved: shoal names its own links "
            f"{DEFAULT_BRIDGE}, {BRIDGE_PREFIX}* and {HOST_VETH_PREFIX}* (and removes stale "
            f"ones); pick another -o {NAME_OPTION}")
    return name


def bridge_mac(net: Network) -> str:
    """The bridge's own, fixed MAC: derived from the gateway address as the endpoints' are
    from theirs (02:42 and the address's four bytes), so no endpoint has it. Docker fixes its
    bridges' MAC too: without it, a bridge takes its ports' lowest MAC, and when that
    container stops, the gateway's MAC changes under the other containers' ARP caches."""
    from ..ipam import mac_for

    assert net.gateway is not None
    return mac_for(net.gateway)


def full_message(net: Network) -> str:
    return (f"network {net.name} is full: its Linux bridge {net.bridge} holds at most "
            f"{MAX_PORTS} ports; put further containers on another network "
            "(shoal network create)")


def _ensure(h: HostHandles, net: Network) -> int:
    """The bridge's index, re-creating the bridge if it went missing (deleted by hand, or a
    host restart)."""
    return _ensure_with_mtu(h, net, mtu(net))


def _ensure_with_mtu(h: HostHandles, net: Network, size: int | None) -> int:
    assert net.bridge is not None
    return links.ensure_bridge_up(h.host, net.bridge, net.gateway_interface, h.mark,
                                  bridge_mac(net), size)


class BridgeDriver:
    name = "bridge"
    scope = LOCAL
    sandbox = ENDPOINTS
    user_networks = True
    addresses = True
    names = True  # user-defined bridge networks (not the default `bridge`)
    # the prefixes of its links' names (the overlay driver, a bridge too, has its own)
    bridge_prefix, veth_prefix = BRIDGE_PREFIX, HOST_VETH_PREFIX

    def host_veth(self, endpoint_id: str) -> str:
        return self.veth_prefix + endpoint_id[:12]

    def mtu(self, net: Network) -> int | None:
        return mtu(net)

    def ensure(self, h: HostHandles, net: Network) -> int:
        """The bridge's index, re-creating the bridge if it went missing (deleted by hand, or
        a host restart)."""
        return _ensure(h, net)

    def validate(self, h: HostHandles, net: Network, others: list[Network]) -> Network:
        seen: dict[str, str] = {}
        for key, value in net.options.items():
            _check_option(key, value)
            name = DOCKER_OPTIONS.get(key, key)
            if name in seen:
                raise InvalidArgument(f"options {seen[name]} and {key} are the same option: "
                                      "give one of them")
            seen[name] = key
        given = option(net, NAME_OPTION)
        bridge = given or bridge_name(net.id)
        validate_ifname(bridge, "bridge")
        if given:
            check_user_bridge_name(bridge)
        for other in others:
            if other.bridge == bridge:
                raise Conflict(f"bridge {bridge} is already used by network {other.name}")
        if links.get_link(h.host, bridge) is not None:
            raise Conflict(f"a link named {bridge} already exists on the host; "
                           f"pick another -o {NAME_OPTION}")
        return net.replace(bridge=bridge)

    def builtin(self, net: Network) -> Network:
        return net.replace(bridge=DEFAULT_BRIDGE,
                           options={NAME_OPTION: DEFAULT_BRIDGE,
                                    "shoal.bridge.default_bridge": "true"})

    def create_network(self, h: HostHandles, net: Network) -> None:
        """The network's bridge, carrying the root's mark (names.owner_mark)."""
        assert net.bridge is not None
        try:
            links.create_bridge(h.host, net.bridge, net.gateway_interface, h.mark,
                                bridge_mac(net), self.mtu(net))
        except BaseException:
            with suppress(ShoalError, OSError):
                links.delete_link(h.host, net.bridge)
            raise

    def delete_network(self, h: HostHandles, net: Network) -> None:
        assert net.bridge is not None
        links.delete_link(h.host, net.bridge)

    def max_endpoints(self, net: Network) -> tuple[int, str] | None:
        return MAX_PORTS, full_message(net)

    def port_name(self, ep: Endpoint) -> str | None:
        return self.host_veth(ep.id)

    def owns_link(self, name: str) -> bool:
        return is_reserved(name)

    def icc(self, net: Network) -> bool:
        return _boolean(net, ICC_OPTION)

    def masquerade(self, net: Network) -> bool:
        return _boolean(net, MASQUERADE_OPTION)

    def host_binding_ip(self, net: Network) -> str | None:
        value = option(net, HOST_IP_OPTION)
        return value if value and value != "0.0.0.0" else None

    def join(self, h: HostHandles, sandbox: Netlink, net: Network, ep: Endpoint, first: bool,
             fresh: bool = False) -> None:
        """Only the first endpoint of a sandbox gets the default route, as in Docker, and an
        internal network gives none."""
        assert ep.ip is not None and ep.mac is not None and net.subnet is not None
        bridge_index = self.ensure(h, net)
        try:
            links.add_veth_endpoint(
                sandbox, h.host, h.host_fd, inside=ep.ifname, outside=self.host_veth(ep.id),
                mac=ep.mac, iface=IPv4Interface(f"{ep.ip}/{net.subnet.prefixlen}"),
                gateway=net.gateway if first and not net.internal else None,
                bridge_index=bridge_index, first=first, fresh=fresh, alias=h.mark,
                mtu=self.mtu(net),
            )
        except KernelError as e:
            if e.errno == errno.EXFULL:  # ports someone else plugged in count too
                raise Conflict(full_message(net)) from None
            raise

    def peer_name(self, ep: Endpoint) -> str:
        """The name of the peer `hand_off` makes for an endpoint (before the runtime renames
        it)."""
        return peer_veth_name(ep.id)

    def hand_off(self, h: HostHandles, net: Network, ep: Endpoint) -> str:
        """Make an endpoint's veth pair in the host namespace for a runtime that moves the
        peer into its sandbox and configures it itself (dockerd): the host end plugged into
        the bridge and up, the peer down with the endpoint's MAC and no address. Returns
        the peer's name."""
        assert ep.mac is not None
        bridge_index = self.ensure(h, net)
        peer = peer_veth_name(ep.id)
        try:
            links.add_veth_pair(h.host, self.host_veth(ep.id), peer, ep.mac, bridge_index,
                                alias=h.mark, mtu=self.mtu(net))
        except KernelError as e:
            if e.errno == errno.EXFULL:
                raise Conflict(full_message(net)) from None
            raise
        return peer

    def leave(self, h: HostHandles, sandbox: Netlink | None, net: Network,
              ep: Endpoint) -> None:
        """Delete the endpoint's veth pair (deleting one end removes both)."""
        if sandbox is not None:
            links.delete_link(sandbox, ep.ifname)
        else:
            links.delete_link(h.host, self.host_veth(ep.id))

    def endpoint_present(self, h: HostHandles, net: Network, ep: Endpoint) -> bool:
        return links.get_link(h.host, self.host_veth(ep.id)) is not None

    def repair(self, h: HostHandles, net: Network) -> str | None:
        assert net.bridge is not None
        if links.get_link(h.host, net.bridge) is None:
            self.ensure(h, net)
            return f"network {net.name}: bridge {net.bridge} was missing; created again"
        # a bridge made before bridges had a fixed MAC: fixed now (idempotent)
        links.set_mac(h.host, net.bridge, bridge_mac(net))
        return None

    def gc(self, h: HostHandles, nets: list[Network], live: list[Endpoint]) -> list[str]:
        known_bridges = {n.bridge for n in nets if n.bridge}
        live_veths = {self.host_veth(ep.id) for ep in live}
        mine = marked_root(h.mark)
        done = []
        for link in links.list_links(h.host):
            name = link.name
            owner = marked_root(link.alias)
            if owner is not None and owner != mine:
                continue  # another root's (or that root was renamed): never ours to delete
            if name in known_bridges and link.alias is None:  # an older shoal's: mark it now
                links.set_alias(h.host, link.index, h.mark)
            stale_veth = name.startswith(self.veth_prefix) and name not in live_veths
            stale_bridge = (name.startswith(self.bridge_prefix) and name not in known_bridges
                            and link.kind == "bridge")
            if stale_veth or stale_bridge:
                with suppress(ShoalError):
                    links.delete_link(h.host, name)
                    done.append(f"removed {'veth' if stale_veth else 'bridge'} {name}: "
                                "no container or network of shoal's has it")
        return done

    def foreign_root(self, h: HostHandles) -> str | None:
        """The default bridge carries the mark of the root that made it; an unmarked one (an
        older shoal's) is taken as this root's."""
        link = links.get_link(h.host, DEFAULT_BRIDGE)
        other = marked_root(link.alias if link else None)
        return other if other is not None and other != marked_root(h.mark) else None

    def diagnose(self, h: HostHandles, net: Network, ep: Endpoint | None,
                 who: str) -> list[Check]:
        if ep is None:
            return self._diagnose_bridge(h, net)
        veth = self.host_veth(ep.id)
        peer = links.get_link(h.host, veth)
        bridge = links.get_link(h.host, net.bridge or "")
        if peer is None:
            return [Check(FAIL, f"{who}: the host end {veth} of {ep.ifname} is missing",
                          "shoal system reconcile (it creates the endpoint again)")]
        if bridge is None or peer.master != bridge.index:
            return [Check(FAIL, f"{who}: {veth} is not plugged into bridge {net.bridge}",
                          f"ip link set {veth} master {net.bridge} up")]
        if not peer.up:
            return [Check(FAIL, f"{who}: {veth} (host end of {ep.ifname}) is down",
                          f"ip link set {veth} up")]
        return [Check(OK, f"{who}: {veth} is up on bridge {net.bridge}")]

    @staticmethod
    def _diagnose_bridge(h: HostHandles, net: Network) -> list[Check]:
        assert net.bridge is not None
        link = links.get_link(h.host, net.bridge)
        if link is None:
            return [Check(FAIL, f"network {net.name}: its bridge {net.bridge} is missing",
                          "shoal system reconcile")]
        if not link.up:
            return [Check(FAIL, f"network {net.name}: bridge {net.bridge} is down",
                          f"ip link set {net.bridge} up")]
        if net.gateway not in {a.ip for a in links.addresses(h.host, link.index, family=4)}:
            return [Check(FAIL, f"network {net.name}: bridge {net.bridge} lacks its gateway "
                                f"address {net.gateway_interface}",
                          f"ip addr add {net.gateway_interface} dev {net.bridge}")]
        return [Check(OK, f"network {net.name}: bridge {net.bridge} is up with "
                          f"{net.gateway_interface}")]
