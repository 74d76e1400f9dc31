"""Links, addresses and routes: the few rtnetlink operations shoal's drivers are built from."""

from __future__ import annotations

import _socket as socket  # (as netlink.py: not socket.py, for its imports)
import errno
import os
from functools import cache
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)

from ..errors import KernelError
from ..records import Record
from . import netlink as nl
from . import sysctl
from .netlink import Netlink, attr, attr_str, attr_u8, attr_u32, ifinfomsg, nested

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..model import IPAddress, IPInterface, IPNetwork

# address family (4 or 6, as `version` gives it) -> the kernel's
AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_LENGTH = {socket.AF_INET: 4, socket.AF_INET6: 16}


def _decode(family: int, raw: bytes | None) -> IPAddress | None:
    """An address attribute (IFA_ADDRESS, RTA_DST, RTA_GATEWAY...) of a message of this
    family; None for another family or a malformed one."""
    if raw is None or _LENGTH.get(family) != len(raw):
        return None
    return IPv4Address(raw) if family == socket.AF_INET else IPv6Address(raw)


def _wanted(family: int | None) -> int:
    """The family a dump asks the kernel for: one (4 or 6), or every one (None)."""
    return socket.AF_UNSPEC if family is None else AF[family]


@cache
def ipv6_enabled() -> bool:
    return os.path.exists("/proc/sys/net/ipv6")


def no_autoconf() -> bytes:
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
    mac: str | None = None  # IFLA_ADDRESS, as aa:bb:cc:dd:ee:ff


def parse_link(body: bytes) -> Link:
    """A Link from an RTM_NEWLINK message's body."""
    msg = nl.IfInfo(body)
    attrs = msg.attrs
    master = attrs.get(nl.IFLA_MASTER)
    alias = attrs.get(nl.IFLA_IFALIAS)
    hwaddr = attrs.get(nl.IFLA_ADDRESS)
    kind = None
    if nl.IFLA_LINKINFO in attrs:
        info = nl.parse_attrs(attrs[nl.IFLA_LINKINFO])
        if nl.IFLA_INFO_KIND in info:
            kind = nl.text(info[nl.IFLA_INFO_KIND])
    return Link(
        index=msg.index,
        name=nl.text(attrs.get(nl.IFLA_IFNAME, b"")),
        up=bool(msg.flags & nl.IFF_UP),
        master=nl.u32(master) if master else None,
        kind=kind,
        alias=nl.text(alias) if alias else None,
        mac=":".join(f"{b:02x}" for b in hwaddr) if hwaddr else None,
    )


def get_link(sock: Netlink, name: str) -> Link | None:
    body = sock.get(nl.RTM_GETLINK, ifinfomsg() + attr_str(nl.IFLA_IFNAME, name), f"find {name}")
    return parse_link(body) if body else None


def list_links(sock: Netlink) -> list[Link]:
    return [parse_link(b) for b in sock.dump(nl.RTM_GETLINK, ifinfomsg(), "list links")]


def _set_up(index: int = 0, name: str | None = None, master: int | None = None) -> bytes:
    body = ifinfomsg(index, nl.IFF_UP, nl.IFF_UP)
    if name is not None:
        body += attr_str(nl.IFLA_IFNAME, name)
    if master is not None:
        body += attr_u32(nl.IFLA_MASTER, master)
    return body


def create_bridge(sock: Netlink, name: str, gateway: IPInterface,
                  alias: str | None = None, mac: str | None = None,
                  mtu: int | None = None) -> int:
    """A bridge holding the gateway address, up, without IPv6 autoconfiguration and without
    multicast snooping, its alias set to `alias` (shoal's mark of its root).

    With snooping on, the kernel re-arms the multicast timers of every port each time a port
    is added (br_port_state_selection), so each attach costs more the more containers the
    bridge has: 2 ms more at 1,000 here. Without it, multicast is flooded to the ports like
    broadcast, which is what a bridge without a multicast querier does anyway.

    With `mac`, the bridge's address is fixed (the kernel marks it as set): otherwise a bridge
    takes the lowest MAC of its ports, and the gateway's MAC changes when that port goes.
    With `mtu`, the bridge's MTU is fixed too (IFLA_MTU; else the kernel's 1500)."""
    body = ifinfomsg() + attr_str(nl.IFLA_IFNAME, name)
    if mac is not None:
        body += attr(nl.IFLA_ADDRESS, nl.mac_bytes(mac))
    if mtu is not None:
        body += attr_u32(nl.IFLA_MTU, mtu)
    body += nested(nl.IFLA_LINKINFO, attr_str(nl.IFLA_INFO_KIND, "bridge"),
                   nested(nl.IFLA_INFO_DATA, attr_u8(nl.IFLA_BR_MCAST_SNOOPING, 0)))
    sock.call((nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL, body, f"create bridge {name}"))
    link = get_link(sock, name)
    assert link is not None
    reqs = []
    if ipv6_enabled():
        reqs.append((nl.RTM_SETLINK, 0, ifinfomsg(link.index) + no_autoconf(), "no autoconf"))
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


def ensure_bridge_up(sock: Netlink, name: str, gateway: IPInterface,
                     alias: str | None = None, mac: str | None = None,
                     mtu: int | None = None) -> int:
    """The bridge's index; (re)creates it if missing, and if it was found down brings it up
    and restores its gateway address. A bridge without an alias (made by an older shoal)
    gets `alias`."""
    link = get_link(sock, name)
    if link is None:
        return create_bridge(sock, name, gateway, alias, mac, mtu)
    if alias is not None and link.alias is None:
        set_alias(sock, link.index, alias)
    if not link.up:
        if gateway.ip not in {a.ip for a in addresses(sock, link.index, gateway.version)}:
            sock.call(_addr_request(link.index, gateway, f"add {gateway} to {name}"))
        sock.call((nl.RTM_SETLINK, 0, _set_up(link.index), f"bring up {name}"))
    return link.index


def set_mac(sock: Netlink, name: str, mac: str) -> None:
    body = ifinfomsg() + attr_str(nl.IFLA_IFNAME, name) + attr(nl.IFLA_ADDRESS, nl.mac_bytes(mac))
    sock.call((nl.RTM_SETLINK, 0, body, f"set the address of {name}"))


def _route_request(gateway: IPAddress, oif: int) -> tuple[int, int, bytes, str]:
    route = (nl.rtmsg(family=AF[gateway.version]) + attr(nl.RTA_GATEWAY, gateway.packed)
             + attr_u32(nl.RTA_OIF, oif))
    return (nl.RTM_NEWROUTE, nl.NLM_F_CREATE | nl.NLM_F_EXCL, route, "default route")


def add_default_route(sock: Netlink, gateway: IPAddress, oif: int) -> None:
    sock.call(_route_request(gateway, oif))


def delete_link(sock: Netlink, name: str) -> bool:
    """Delete a link by name; False if there was none."""
    body = ifinfomsg() + attr_str(nl.IFLA_IFNAME, name)
    err = sock.batch([(nl.RTM_DELLINK, 0, body, f"delete {name}")])[0]
    if err is None:
        return True
    if err.errno in (errno.ENODEV, errno.ENOENT):
        return False
    raise err


def _addr_request(index: int, iface: IPInterface, desc: str) -> tuple[int, int, bytes, str]:
    ip = iface.ip.packed
    body = nl.ifaddrmsg(index, iface.network.prefixlen, AF[iface.version])
    body += attr(nl.IFA_LOCAL, ip) + attr(nl.IFA_ADDRESS, ip)
    if iface.version == 4:  # (IPv6 has no broadcast)
        body += attr(nl.IFA_BROADCAST, iface.network.broadcast_address.packed)
    return (nl.RTM_NEWADDR, nl.NLM_F_CREATE | nl.NLM_F_EXCL, body, desc)


def addresses(sock: Netlink, index: int | None = None, family: int | None = None
              ) -> list[IPInterface]:
    """Addresses of one link, or of every link in the namespace; of one family (4 or 6) or
    of every family (None)."""
    return [a for a, idx in address_entries(sock, family) if index is None or idx == index]


def routes(sock: Netlink, family: int | None = None) -> list[IPNetwork]:
    """Destinations of the unicast routes of every table, default routes excluded; of one
    family (4 or 6) or of every family (None)."""
    return [dst for dst, _ in route_entries(sock, family)]


def route_entries(sock: Netlink, family: int | None = None
                  ) -> list[tuple[IPNetwork, int | None]]:
    """(destination, output link index) of the unicast routes of every table, default
    routes excluded; of one family (4 or 6) or of every family (None)."""
    out: list[tuple[IPNetwork, int | None]] = []
    for body in sock.dump(nl.RTM_GETROUTE, nl.rtmsg(family=_wanted(family)), "list routes"):
        msg = nl.RtMsg(body)
        if msg.type != nl.RTN_UNICAST or msg.dst_len == 0:
            continue
        dst = _decode(msg.family, msg.attrs.get(nl.RTA_DST))
        if dst is None or (family is not None and dst.version != family):
            continue
        oif = msg.attrs.get(nl.RTA_OIF)
        net = (IPv4Network if dst.version == 4 else IPv6Network)(
            f"{dst}/{msg.dst_len}", strict=False)
        out.append((net, nl.u32(oif) if oif else None))
    return out


def address_entries(sock: Netlink, family: int | None = None) -> list[tuple[IPInterface, int]]:
    """(address, link index) of the addresses of every link in the namespace; of one family
    (4 or 6) or of every family (None)."""
    out: list[tuple[IPInterface, int]] = []
    for body in sock.dump(nl.RTM_GETADDR, nl.ifaddrmsg(0, 0, _wanted(family)),
                          "list addresses"):
        msg = nl.IfAddr(body)
        addr = _decode(msg.family, msg.attrs.get(nl.IFA_LOCAL) or msg.attrs.get(nl.IFA_ADDRESS))
        if addr is None or (family is not None and addr.version != family):
            continue
        iface = (IPv4Interface if addr.version == 4 else IPv6Interface)(
            f"{addr}/{msg.prefixlen}")
        out.append((iface, msg.index))
    return out


FRESH_INDEX = 2  # the first link made in a new network namespace, after lo
# what the kernel answers a create asking for an index another link holds: EEXIST from
# rtnl_newlink's lookup of the index (seen on 6.18), EBUSY from the index's reservation
INDEX_TAKEN = (errno.EEXIST, errno.EBUSY)

Request = tuple[int, int, bytes, str]


def _veth_create(index: int, inside: str, outside: str, mac: str, host_ns_fd: int,
                 mtu: int | None = None) -> Request:
    """`mtu`: of both ends (IFLA_MTU on each; else the kernel's 1500)."""
    size = attr_u32(nl.IFLA_MTU, mtu) if mtu is not None else b""
    peer = (ifinfomsg() + attr_str(nl.IFLA_IFNAME, outside)
            + attr_u32(nl.IFLA_NET_NS_FD, host_ns_fd) + size)
    linkinfo = nested(
        nl.IFLA_LINKINFO,
        attr_str(nl.IFLA_INFO_KIND, "veth"),
        nested(nl.IFLA_INFO_DATA, attr(nl.VETH_INFO_PEER, peer)),
    )
    body = attr_str(nl.IFLA_IFNAME, inside) + attr(nl.IFLA_ADDRESS, nl.mac_bytes(mac)) + size
    return (nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL, ifinfomsg(index) + body + linkinfo,
            f"create veth {inside}")


def _inside_requests(index: int, inside: str, iface: IPInterface,
                     gateway: IPAddress | None, first: bool, six: bool) -> list[Request]:
    """What is done to the sandbox's end once it exists. The links are named, not numbered,
    wherever the kernel allows it, so that in a batch whose create failed these find no link
    rather than another one; an address and a route can only be given an index."""
    reqs = []
    if six:
        reqs.append((nl.RTM_SETLINK, 0, ifinfomsg() + attr_str(nl.IFLA_IFNAME, inside)
                     + no_autoconf(), "no autoconf"))
    if first:
        reqs.append((nl.RTM_SETLINK, 0, _set_up(1), "bring up lo"))
    reqs.append((nl.RTM_SETLINK, 0, _set_up(0, inside), f"bring up {inside}"))
    reqs.append(_addr_request(index, iface, f"add {iface} to {inside}"))
    if gateway is not None:
        reqs.append(_route_request(gateway, index))
    return reqs


def _take_back(sandbox: Netlink, sent: list[Request], results: list[KernelError | None]) -> None:
    """After a numbered create failed because another link holds the index: delete the
    route and the address the rest of its batch gave that link (the link was not brought up,
    being asked for by name, so a route through it is normally refused already)."""
    undo = [(nl.RTM_DELROUTE if kind == nl.RTM_NEWROUTE else nl.RTM_DELADDR, 0, body,
             f"take back '{desc}' from the link at index {FRESH_INDEX}")
            for (kind, _flags, body, desc), err in zip(sent, results, strict=True)
            if err is None and kind in (nl.RTM_NEWADDR, nl.RTM_NEWROUTE)]
    if undo:
        sandbox.call(*reversed(undo))  # the route before the address it goes through


def add_veth_endpoint(
    sandbox: Netlink,
    host: Netlink,
    host_ns_fd: int,
    inside: str,
    outside: str,
    mac: str,
    iface: IPInterface,
    gateway: IPAddress | None,
    bridge_index: int,
    first: bool,
    fresh: bool = False,
    alias: str | None = None,
    mtu: int | None = None,
) -> None:
    """Create a veth pair from inside the sandbox, handing its peer to the host namespace, then
    address it, route through the gateway and plug the peer into the bridge.

    Creating the pair inside the sandbox and moving only the peer out is the cheap way round:
    no interface has to be moved and renamed afterwards. IPv6 address generation is turned
    off on both ends before they come up, so attaching does not flood the bridge with
    multicast (which makes each attach slower the more containers a bridge has).

    In a `fresh` sandbox (a new namespace) the veth is created with index 2, so everything
    done inside goes to the kernel in one batch with its creation: one round trip instead of
    three (create, look its index up, the rest). Where ipip or sit is loaded, a new
    namespace already holds tunl0 or sit0 at index 2: the create is refused, what the rest of
    the batch did to that link is taken back, and the veth is created unnumbered."""
    six = ipv6_enabled()
    if fresh:
        rest = _inside_requests(FRESH_INDEX, inside, iface, gateway, first, six)
        create = _veth_create(FRESH_INDEX, inside, outside, mac, host_ns_fd, mtu)
        results = sandbox.batch([create, *rest])
        err = results[0]
        if err is not None and err.errno in INDEX_TAKEN:
            _take_back(sandbox, rest, results[1:])
            fresh = False
        else:
            for err in results:
                if err is not None:
                    raise err
    if not fresh:
        sandbox.call(_veth_create(0, inside, outside, mac, host_ns_fd, mtu))
        link = get_link(sandbox, inside)
        assert link is not None
        sandbox.call(*_inside_requests(link.index, inside, iface, gateway, first, six))
    if six:
        # the bridge port needs no IPv6 at all: with it, bringing the port up adds a multicast
        # route to the host's IPv6 table, one per port in one list, which makes every attach
        # slower the more containers the host has
        sysctl.write(f"net/ipv6/conf/{outside}/disable_ipv6", "1")
    # hairpin mode: a frame the bridge sends back out of the port it came in on is delivered
    # (with bridge netfilter on, a container's connection to its own published port through
    # the host's address is DNATed back to it while still being bridged)
    _plug(host, outside, bridge_index, alias)


def _plug(host: Netlink, outside: str, bridge_index: int, alias: str | None) -> None:
    """Plug a veth's host end into a bridge and bring it up, in hairpin mode, with shoal's
    mark as its alias."""
    hairpin = ifinfomsg() + attr_str(nl.IFLA_IFNAME, outside) + nested(
        nl.IFLA_LINKINFO, attr_str(nl.IFLA_INFO_SLAVE_KIND, "bridge"),
        nested(nl.IFLA_INFO_SLAVE_DATA, attr_u8(nl.IFLA_BRPORT_MODE, 1)))
    plug = _set_up(0, outside, bridge_index)
    if alias is not None:  # the host end carries shoal's mark too, in the same message
        plug += attr_str(nl.IFLA_IFALIAS, alias)
    host.call((nl.RTM_NEWLINK, 0, plug, f"plug {outside} into bridge"),
              (nl.RTM_NEWLINK, 0, hairpin, f"hairpin mode on {outside}"))


def add_veth_pair(host: Netlink, outside: str, peer: str, mac: str, bridge_index: int,
                  alias: str | None = None, mtu: int | None = None) -> None:
    """A veth pair left whole in the host namespace, for a runtime that moves and configures
    the peer itself (dockerd after a network plugin's Join): `outside` is plugged into the
    bridge and up; `peer` (with `mac`) stays down, with no address. Deleting either end
    removes both; on an error nothing is left."""
    size = attr_u32(nl.IFLA_MTU, mtu) if mtu is not None else b""
    other = ifinfomsg() + attr_str(nl.IFLA_IFNAME, outside) + size
    linkinfo = nested(
        nl.IFLA_LINKINFO,
        attr_str(nl.IFLA_INFO_KIND, "veth"),
        nested(nl.IFLA_INFO_DATA, attr(nl.VETH_INFO_PEER, other)),
    )
    body = attr_str(nl.IFLA_IFNAME, peer) + attr(nl.IFLA_ADDRESS, nl.mac_bytes(mac)) + size
    host.call((nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL, ifinfomsg() + body + linkinfo,
               f"create veth pair {outside}/{peer}"))
    try:
        if ipv6_enabled():
            sysctl.write(f"net/ipv6/conf/{outside}/disable_ipv6", "1")
        _plug(host, outside, bridge_index, alias)
    except BaseException:
        delete_link(host, outside)
        raise


def bring_up_lo(sandbox: Netlink) -> None:
    sandbox.call((nl.RTM_SETLINK, 0, _set_up(1), "bring up lo"))


def default_route(sock: Netlink, family: int | None = None
                  ) -> tuple[IPAddress | None, int | None] | None:
    """(gateway, output link index) of the main table's default route, if any: of one family
    (4 or 6), or the first of any family (None)."""
    for body in sock.dump(nl.RTM_GETROUTE, nl.rtmsg(family=_wanted(family)), "list routes"):
        msg = nl.RtMsg(body)
        if msg.type != nl.RTN_UNICAST or msg.dst_len != 0 or msg.table != nl.RT_TABLE_MAIN:
            continue
        if msg.family not in _LENGTH or (family is not None and msg.family != AF[family]):
            continue
        gw = _decode(msg.family, msg.attrs.get(nl.RTA_GATEWAY))
        oif = msg.attrs.get(nl.RTA_OIF)
        return (gw, nl.u32(oif) if oif else None)
    return None
