"""The bridge driver: a Linux bridge per network, a veth pair per endpoint."""

from __future__ import annotations

import errno
from ipaddress import IPv4Interface

from ..errors import Conflict, KernelError
from ..kernel import links
from ..kernel.netlink import Netlink
from ..model import Endpoint, Network
from ..names import host_veth_name

# A Linux bridge numbers its ports 1 to 1023 (BR_MAX_PORTS is 1024); one more is refused with
# EXFULL ("Exchange full", the error Docker users meet on docker0).
MAX_PORTS = 1023


def bridge_mac(net: Network) -> str:
    """The bridge's own, fixed MAC: derived from the gateway address as the endpoints' are
    from theirs (02:42 and the address's four bytes), so no endpoint has it. Docker fixes its
    bridges' MAC too: without it, a bridge takes its ports' lowest MAC, and when that
    container stops, the gateway's MAC changes under the other containers' ARP caches."""
    from ..ipam import mac_for

    assert net.gateway is not None
    return mac_for(net.gateway)


def create(host: Netlink, net: Network, mark: str | None = None) -> None:
    """The network's bridge, carrying `mark` (names.owner_mark: which root made it)."""
    assert net.bridge is not None
    links.create_bridge(host, net.bridge, net.gateway_interface, mark, bridge_mac(net))


def ensure(host: Netlink, net: Network, mark: str | None = None) -> int:
    """The bridge's index, re-creating the bridge if it went missing (deleted by hand, or a
    host restart)."""
    assert net.bridge is not None
    return links.ensure_bridge_up(host, net.bridge, net.gateway_interface, mark,
                                  bridge_mac(net))


def fix_mac(host: Netlink, net: Network) -> None:
    """Give an existing bridge its fixed MAC (one made by an older shoal)."""
    assert net.bridge is not None
    links.set_mac(host, net.bridge, bridge_mac(net))


def delete(host: Netlink, net: Network) -> None:
    assert net.bridge is not None
    links.delete_link(host, net.bridge)


def attach(
    sandbox: Netlink, host: Netlink, host_ns_fd: int, net: Network, ep: Endpoint, first: bool,
    fresh: bool = False, mark: str | None = None,
) -> None:
    """Plug an endpoint into the network. Only the first endpoint of a container gets the
    default route, as in Docker, and an internal network gives none."""
    assert ep.ip is not None and ep.mac is not None and net.subnet is not None
    bridge_index = ensure(host, net, mark)
    try:
        links.add_veth_endpoint(
            sandbox,
            host,
            host_ns_fd,
            inside=ep.ifname,
            outside=host_veth_name(ep.id),
            mac=ep.mac,
            iface=IPv4Interface(f"{ep.ip}/{net.subnet.prefixlen}"),
            gateway=net.gateway if first and not net.internal else None,
            bridge_index=bridge_index,
            first=first,
            fresh=fresh,
            alias=mark,
        )
    except KernelError as e:
        if e.errno == errno.EXFULL:  # ports someone else plugged in count too
            raise Conflict(full_message(net)) from None
        raise


def full_message(net: Network) -> str:
    return (f"network {net.name} is full: its Linux bridge {net.bridge} holds at most "
            f"{MAX_PORTS} ports; put further containers on another network "
            "(shoal network create)")


def detach(sandbox: Netlink, ep: Endpoint) -> None:
    """Delete the endpoint's veth pair (deleting one end removes both)."""
    links.delete_link(sandbox, ep.ifname)
