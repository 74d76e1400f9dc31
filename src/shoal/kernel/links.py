"""Links, addresses and routes: the few rtnetlink operations shoal's drivers are built from."""

from __future__ import annotations

import os
import socket
import struct
from functools import cache
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from ..records import Record
from . import netlink as nl
from . import sysctl
from .netlink import Netlink, attr, attr_str, attr_u8, attr_u32, ifinfomsg, nested


@cache
def ipv6_enabled() -> bool:
    return os.path.exists("/proc/sys/net/ipv6")


def _no_autoconf() -> bytes:
    """IFLA_AF_SPEC asking IPv6 to generate no link-local address on the link."""
    inet6 = nested(socket.AF_INET6, attr_u8(nl.IFLA_INET6_ADDR_GEN_MODE, nl.IN6_ADDR_GEN_MODE_NONE))
    return nested(nl.IFLA_AF_SPEC, inet6)


class Link(Record):
    index: int
    name: str
    up: bool
    master: int | None
    kind: str | None
    alias: str | None = None  # IFLA_IFALIAS: shoal's links carry their root's mark there


def _parse_link(body: bytes) -> Link:
    _fam, _type, index, flags, _change = nl._IFINFO.unpack_from(body)
    attrs = nl.parse_attrs(body, nl._IFINFO.size)
    master = attrs.get(nl.IFLA_MASTER)
    alias = attrs.get(nl.IFLA_IFALIAS)
    kind = None
    if nl.IFLA_LINKINFO in attrs:
        info = nl.parse_attrs(attrs[nl.IFLA_LINKINFO])
        if nl.IFLA_INFO_KIND in info:
            kind = info[nl.IFLA_INFO_KIND].rstrip(b"\0").decode()
    return Link(
        index=index,
        name=attrs.get(nl.IFLA_IFNAME, b"").rstrip(b"\0").decode(),
        up=bool(flags & nl.IFF_UP),
        master=struct.unpack("=I", master)[0] if master else None,
        kind=kind,
        alias=alias.rstrip(b"\0").decode(errors="replace") if alias else None,
    )


def get_link(sock: Netlink, name: str) -> Link | None:
    body = sock.get(nl.RTM_GETLINK, ifinfomsg() + attr_str(nl.IFLA_IFNAME, name), f"find {name}")
    return _parse_link(body) if body else None


def list_links(sock: Netlink) -> list[Link]:
    return [_parse_link(b) for b in sock.dump(nl.RTM_GETLINK, ifinfomsg(), "list links")]


def _set_up(index: int = 0, name: str | None = None, master: int | None = None) -> bytes:
    body = ifinfomsg(index, nl.IFF_UP, nl.IFF_UP)
    if name is not None:
        body += attr_str(nl.IFLA_IFNAME, name)
    if master is not None:
        body += attr_u32(nl.IFLA_MASTER, master)
    return body


def create_bridge(sock: Netlink, name: str, gateway: IPv4Interface,
                  alias: str | None = None, mac: str | None = None) -> int:
    """A bridge holding the gateway address, up, without IPv6 autoconfiguration and without
    multicast snooping, its alias set to `alias` (shoal's mark of its root).

    With snooping on, the kernel re-arms the multicast timers of every port each time a port
    is added (br_port_state_selection), so each attach costs more the more containers the
    bridge has: 2 ms more at 1,000 here. Without it, multicast is flooded to the ports like
    broadcast, which is what a bridge without a multicast querier does anyway.

    With `mac`, the bridge's address is fixed (the kernel marks it as set): otherwise a bridge
    takes the lowest MAC of its ports, and the gateway's MAC changes when that port goes."""
    body = ifinfomsg() + attr_str(nl.IFLA_IFNAME, name)
    if mac is not None:
        body += attr(nl.IFLA_ADDRESS, nl.mac_bytes(mac))
    body += nested(nl.IFLA_LINKINFO, attr_str(nl.IFLA_INFO_KIND, "bridge"),
                   nested(nl.IFLA_INFO_DATA, attr_u8(nl.IFLA_BR_MCAST_SNOOPING, 0)))
    sock.call((nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL, body, f"create bridge {name}"))
    link = get_link(sock, name)
    assert link is not None
    reqs = []
    if ipv6_enabled():
        reqs.append((nl.RTM_SETLINK, 0, ifinfomsg(link.index) + _no_autoconf(), "no autoconf"))
    reqs.append(_addr_request(link.index, gateway, f"add {gateway} to {name}"))
    if alias is not None:
        reqs.append(_alias_request(link.index, alias))
    reqs.append((nl.RTM_SETLINK, 0, _set_up(link.index), f"bring up {name}"))
    sock.call(*reqs)
    return link.index


def _alias_request(index: int, alias: str) -> tuple[int, int, bytes, str]:
    return (nl.RTM_SETLINK, 0, ifinfomsg(index) + attr_str(nl.IFLA_IFALIAS, alias),
            "set the alias")


def set_alias(sock: Netlink, index: int, alias: str) -> None:
    sock.call(_alias_request(index, alias))


def ensure_bridge_up(sock: Netlink, name: str, gateway: IPv4Interface,
                     alias: str | None = None, mac: str | None = None) -> int:
    """The bridge's index; (re)creates it if missing, and if it was found down brings it up
    and restores its gateway address. A bridge without an alias (made by an older shoal)
    gets `alias`."""
    link = get_link(sock, name)
    if link is None:
        return create_bridge(sock, name, gateway, alias, mac)
    if alias is not None and link.alias is None:
        set_alias(sock, link.index, alias)
    if not link.up:
        if gateway.ip not in {a.ip for a in addresses(sock, link.index)}:
            sock.call(_addr_request(link.index, gateway, f"add {gateway} to {name}"))
        sock.call((nl.RTM_SETLINK, 0, _set_up(link.index), f"bring up {name}"))
    return link.index


def set_mac(sock: Netlink, name: str, mac: str) -> None:
    body = ifinfomsg() + attr_str(nl.IFLA_IFNAME, name) + attr(nl.IFLA_ADDRESS, nl.mac_bytes(mac))
    sock.call((nl.RTM_SETLINK, 0, body, f"set the address of {name}"))


def add_default_route(sock: Netlink, gateway: IPv4Address, oif: int) -> None:
    route = nl.rtmsg() + attr(nl.RTA_GATEWAY, gateway.packed) + attr_u32(nl.RTA_OIF, oif)
    sock.call((nl.RTM_NEWROUTE, nl.NLM_F_CREATE | nl.NLM_F_EXCL, route, "default route"))


def delete_link(sock: Netlink, name: str) -> bool:
    """Delete a link by name; False if there was none."""
    body = ifinfomsg() + attr_str(nl.IFLA_IFNAME, name)
    err = sock.batch([(nl.RTM_DELLINK, 0, body, f"delete {name}")])[0]
    if err is None:
        return True
    if getattr(err, "errno", 0) in (19, 2):  # ENODEV, ENOENT
        return False
    raise err


def _addr_request(index: int, iface: IPv4Interface, desc: str) -> tuple[int, int, bytes, str]:
    ip = iface.ip.packed
    body = nl.ifaddrmsg(index, iface.network.prefixlen)
    body += attr(nl.IFA_LOCAL, ip) + attr(nl.IFA_ADDRESS, ip)
    body += attr(nl.IFA_BROADCAST, iface.network.broadcast_address.packed)
    return (nl.RTM_NEWADDR, nl.NLM_F_CREATE | nl.NLM_F_EXCL, body, desc)


def addresses(sock: Netlink, index: int | None = None) -> list[IPv4Interface]:
    """IPv4 addresses of one link, or of every link in the namespace."""
    out = []
    for body in sock.dump(nl.RTM_GETADDR, nl.ifaddrmsg(0, 0), "list addresses"):
        _fam, prefix, _flags, _scope, idx = nl._IFADDR.unpack_from(body)
        if index is not None and idx != index:
            continue
        attrs = nl.parse_attrs(body, nl._IFADDR.size)
        raw = attrs.get(nl.IFA_LOCAL) or attrs.get(nl.IFA_ADDRESS)
        if raw and len(raw) == 4:
            out.append(IPv4Interface(f"{IPv4Address(raw)}/{prefix}"))
    return out


def routes(sock: Netlink) -> list[IPv4Network]:
    """Destinations of the IPv4 unicast routes of every table, default routes excluded."""
    return [dst for dst, _ in route_entries(sock)]


def route_entries(sock: Netlink) -> list[tuple[IPv4Network, int | None]]:
    """(destination, output link index) of the IPv4 unicast routes of every table, default
    routes excluded."""
    out = []
    for body in sock.dump(nl.RTM_GETROUTE, nl.rtmsg(), "list routes"):
        _f, dst_len, _s, _t, _tab, _p, _sc, rtype, _fl = nl._RTMSG.unpack_from(body)
        if rtype != nl.RTN_UNICAST or dst_len == 0:
            continue
        attrs = nl.parse_attrs(body, nl._RTMSG.size)
        dst, oif = attrs.get(nl.RTA_DST), attrs.get(nl.RTA_OIF)
        if dst and len(dst) == 4:
            out.append((IPv4Network(f"{IPv4Address(dst)}/{dst_len}", strict=False),
                        struct.unpack("=I", oif)[0] if oif else None))
    return out


def address_entries(sock: Netlink) -> list[tuple[IPv4Interface, int]]:
    """(address, link index) of the IPv4 addresses of every link in the namespace."""
    out = []
    for body in sock.dump(nl.RTM_GETADDR, nl.ifaddrmsg(0, 0), "list addresses"):
        _fam, prefix, _flags, _scope, idx = nl._IFADDR.unpack_from(body)
        attrs = nl.parse_attrs(body, nl._IFADDR.size)
        raw = attrs.get(nl.IFA_LOCAL) or attrs.get(nl.IFA_ADDRESS)
        if raw and len(raw) == 4:
            out.append((IPv4Interface(f"{IPv4Address(raw)}/{prefix}"), idx))
    return out


FRESH_INDEX = 2  # the first link made in a new network namespace, after lo


def add_veth_endpoint(
    sandbox: Netlink,
    host: Netlink,
    host_ns_fd: int,
    inside: str,
    outside: str,
    mac: str,
    iface: IPv4Interface,
    gateway: IPv4Address | None,
    bridge_index: int,
    first: bool,
    fresh: bool = False,
    alias: str | None = None,
) -> None:
    """Create a veth pair from inside the sandbox, handing its peer to the host namespace, then
    address it, route through the gateway and plug the peer into the bridge.

    Creating the pair inside the sandbox and moving only the peer out is the cheap way round:
    no interface has to be moved and renamed afterwards. IPv6 address generation is turned
    off on both ends before they come up, so attaching does not flood the bridge with
    multicast (which makes each attach slower the more containers a bridge has).

    In a `fresh` sandbox (only lo, index 1) the veth is created with index 2, so everything
    done inside goes to the kernel in one batch with its creation."""
    peer = ifinfomsg() + attr_str(nl.IFLA_IFNAME, outside) + attr_u32(nl.IFLA_NET_NS_FD, host_ns_fd)
    linkinfo = nested(
        nl.IFLA_LINKINFO,
        attr_str(nl.IFLA_INFO_KIND, "veth"),
        nested(nl.IFLA_INFO_DATA, attr(nl.VETH_INFO_PEER, peer)),
    )
    body = attr_str(nl.IFLA_IFNAME, inside) + attr(nl.IFLA_ADDRESS, nl.mac_bytes(mac))
    create = (nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL,
              ifinfomsg(FRESH_INDEX if fresh else 0) + body + linkinfo, f"create veth {inside}")
    reqs = []
    if fresh:
        idx = FRESH_INDEX
        reqs.append(create)
    else:
        sandbox.call(create)
        link = get_link(sandbox, inside)
        assert link is not None
        idx = link.index
    six = ipv6_enabled()
    if six:
        reqs.append((nl.RTM_SETLINK, 0, ifinfomsg(idx) + _no_autoconf(), "no autoconf"))
    if first:
        reqs.append((nl.RTM_SETLINK, 0, _set_up(1), "bring up lo"))
    reqs.append((nl.RTM_SETLINK, 0, _set_up(idx), f"bring up {inside}"))
    reqs.append(_addr_request(idx, iface, f"add {iface} to {inside}"))
    if gateway is not None:
        route = nl.rtmsg() + attr(nl.RTA_GATEWAY, gateway.packed) + attr_u32(nl.RTA_OIF, idx)
        reqs.append((nl.RTM_NEWROUTE, nl.NLM_F_CREATE | nl.NLM_F_EXCL, route, "default route"))
    sandbox.call(*reqs)
    if six:
        # the bridge port needs no IPv6 at all: with it, bringing the port up adds a multicast
        # route to the host's IPv6 table, one per port in one list, which makes every attach
        # slower the more containers the host has
        sysctl.write(f"net/ipv6/conf/{outside}/disable_ipv6", "1")
    # hairpin mode: a frame the bridge sends back out of the port it came in on is delivered
    # (with bridge netfilter on, a container's connection to its own published port through
    # the host's address is DNATed back to it while still being bridged)
    hairpin = ifinfomsg() + attr_str(nl.IFLA_IFNAME, outside) + nested(
        nl.IFLA_LINKINFO, attr_str(nl.IFLA_INFO_SLAVE_KIND, "bridge"),
        nested(nl.IFLA_INFO_SLAVE_DATA, attr_u8(nl.IFLA_BRPORT_MODE, 1)))
    plug = _set_up(0, outside, bridge_index)
    if alias is not None:  # the host end carries shoal's mark too, in the same message
        plug += attr_str(nl.IFLA_IFALIAS, alias)
    host.call((nl.RTM_NEWLINK, 0, plug, f"plug {outside} into bridge"),
              (nl.RTM_NEWLINK, 0, hairpin, f"hairpin mode on {outside}"))


def bring_up_lo(sandbox: Netlink) -> None:
    sandbox.call((nl.RTM_SETLINK, 0, _set_up(1), "bring up lo"))


def default_route(sock: Netlink) -> tuple[IPv4Address | None, int | None] | None:
    """(gateway, output link index) of the main table's IPv4 default route, if any."""
    for body in sock.dump(nl.RTM_GETROUTE, nl.rtmsg(), "list routes"):
        _f, dst_len, _s, _t, table, _p, _sc, rtype, _fl = nl._RTMSG.unpack_from(body)
        if rtype != nl.RTN_UNICAST or dst_len != 0 or table != nl.RT_TABLE_MAIN:
            continue
        attrs = nl.parse_attrs(body, nl._RTMSG.size)
        gw = attrs.get(nl.RTA_GATEWAY)
        oif = attrs.get(nl.RTA_OIF)
        return (IPv4Address(gw) if gw else None,
                struct.unpack("=I", oif)[0] if oif else None)
    return None
