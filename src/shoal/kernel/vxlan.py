"""VXLAN devices and the static entries that steer them: the kernel half of overlay networks.

The data plane, per overlay and per host: a Linux bridge (as for a bridge network) whose
ports are the host's containers and one VXLAN device. A frame the bridge sends to the VXLAN
device is wrapped in UDP (port 4789) from the host's underlay address, carrying the overlay's
VNI, and sent to the host that the device's forwarding database (FDB) names for the frame's
destination MAC; the receiving host's VXLAN device of that VNI unwraps it onto its bridge.

Nothing is learned or flooded. shoal knows where every endpoint is, so it writes it down:
- the device is made with learning off (the source of a received frame adds no FDB entry)
  and proxy on (the device answers ARP requests itself, from its own neighbour table);
- for each remote endpoint, an FDB entry on the device, the endpoint's MAC -> its host's
  underlay address, and a neighbour entry, the endpoint's IP -> its MAC, both permanent.
There is no all-zeros FDB entry (no default destination), so a broadcast or an unknown MAC
has nowhere to go: the device drops it. An ARP request from a container is answered on its
own host from the neighbour entry (or dropped where there is none), and never crosses the
underlay. This is what Docker's overlay driver sets up too.

Adding is add-or-replace (NLM_F_CREATE | NLM_F_REPLACE), so a reconcile can write an entry
again; deleting an entry that is not there is not an error, so it can delete again too.
IPv4 underlays and overlays only (IFLA_VXLAN_LOCAL, AF_INET neighbours)."""

from __future__ import annotations

import errno
import socket
import struct
from ipaddress import IPv4Address

from ..errors import KernelError
from ..records import Record
from . import netlink as nl
from .links import Request, delete_link, get_link, ipv6_enabled, no_autoconf
from .netlink import Netlink, attr, attr_str, attr_u8, attr_u32, ifinfomsg, nested

VXLAN_PORT = 4789  # IANA's VXLAN port (the kernel's default is Linux's old 8472)
# what VXLAN adds to an overlay frame on an IPv4 underlay: the outer IPv4 (20) and UDP (8)
# headers, the VXLAN header (8) and the inner Ethernet header (14)
VXLAN_OVERHEAD_V4 = 50
MIN_IPV4_MTU = 68

# linux/if_link.h, inside IFLA_INFO_DATA of a link of kind "vxlan"
IFLA_VXLAN_ID = 1  # u32, the VNI
IFLA_VXLAN_LINK = 3  # u32, the underlay link's index
IFLA_VXLAN_LOCAL = 4  # 4 bytes, the source address of the UDP packets
IFLA_VXLAN_LEARNING = 7  # u8
IFLA_VXLAN_PROXY = 11  # u8
IFLA_VXLAN_PORT = 15  # be16, the destination UDP port

_BE16 = struct.Struct("!H")
_NOT_THERE = (errno.ENOENT, errno.ENODEV)  # what a delete of something not there is answered


def overlay_mtu(underlay_mtu: int) -> int:
    """The MTU of an overlay's VXLAN device (and its containers) over an IPv4 underlay of
    this MTU: encapsulated frames then fit the underlay without fragments."""
    mtu = underlay_mtu - VXLAN_OVERHEAD_V4
    if mtu < MIN_IPV4_MTU:
        raise ValueError(f"an underlay MTU of {underlay_mtu} leaves {mtu} for the overlay, "
                         f"less than IPv4's minimum of {MIN_IPV4_MTU}")
    return mtu


def _v4(address: IPv4Address, what: str) -> bytes:
    # the kernel reads only the first 4 bytes of a longer address attribute, so an IPv6
    # address must not get as far as the kernel
    if not isinstance(address, IPv4Address):
        raise ValueError(f"{what} must be an IPv4 address, not {address!r}")
    return address.packed


def _mac(mac: str) -> bytes:
    raw = nl.mac_bytes(mac)
    if len(raw) != 6:  # (the neighbour table takes the first 6 bytes of a longer one)
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


# -- the device -----------------------------------------------------------------------------

class Vxlan(Record):
    """A VXLAN device as the kernel reports it."""

    index: int
    name: str
    vni: int
    local: IPv4Address | None  # None: no IPv4 source address set
    port: int
    learning: bool
    proxy: bool
    link: int | None  # the underlay link's index, if one was given
    master: int | None  # the bridge it is plugged into
    mtu: int
    up: bool


def create_vxlan(sock: Netlink, name: str, vni: int, local: IPv4Address, master: int,
                 mtu: int, link: int | None = None, port: int = VXLAN_PORT) -> int:
    """Create a VXLAN device plugged into bridge `master`, up, and return its index.

    VNI `vni`, UDP packets from `local` to `port`, MTU `mtu` (see overlay_mtu), learning
    off, proxy on, no default destination, no IPv6 autoconfiguration. `link` is the
    underlay link (IFLA_VXLAN_LINK), which the kernel keeps for a default destination and
    reports back; the packets of the static entries leave by the route to their host (see
    fdb_add_request). Three round trips: the create (with its MTU and its bridge), the
    look-up of its index, and one batch that turns IPv6 autoconfiguration off and brings it
    up, both by index. The kernel refuses IFLA_AF_SPEC in a create (EAFNOSUPPORT, seen on
    6.18), and a request naming the link in the create's batch would, were the create
    refused because the name is taken, change that other link. On an error nothing is left
    (a link of that name that was there before is left alone) and the KernelError carries
    the kernel's reason (a VNI of 2^24 or more: "VXLAN ID must be lower than 16777216")."""
    if not 0 < port < 1 << 16 or vni < 0:  # (the kernel says why for a VNI too large)
        raise ValueError(f"create vxlan {name}: VNI {vni} or port {port} out of range")
    data = attr_u32(IFLA_VXLAN_ID, vni) + attr(IFLA_VXLAN_LOCAL, _v4(local, "local"))
    if link is not None:
        data += attr_u32(IFLA_VXLAN_LINK, link)
    data += (attr(IFLA_VXLAN_PORT, _BE16.pack(port)) + attr_u8(IFLA_VXLAN_LEARNING, 0)
             + attr_u8(IFLA_VXLAN_PROXY, 1))
    body = (ifinfomsg() + attr_str(nl.IFLA_IFNAME, name) + attr_u32(nl.IFLA_MTU, mtu)
            + attr_u32(nl.IFLA_MASTER, master)
            + nested(nl.IFLA_LINKINFO, attr_str(nl.IFLA_INFO_KIND, "vxlan"),
                     nested(nl.IFLA_INFO_DATA, data)))
    sock.call((nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL, body, f"create vxlan {name}"))
    try:
        made = get_link(sock, name)
        if made is None:
            raise KernelError(f"create vxlan {name}: gone right after it was made",
                              errno.ENODEV)
        reqs: list[Request] = []
        if ipv6_enabled():  # before it comes up: no link-local address, no IPv6 chatter
            reqs.append((nl.RTM_SETLINK, 0, ifinfomsg(made.index) + no_autoconf(),
                         f"no autoconf on {name}"))
        reqs.append((nl.RTM_SETLINK, 0, ifinfomsg(made.index, nl.IFF_UP, nl.IFF_UP),
                     f"bring up {name}"))
        sock.call(*reqs)
        return made.index
    except BaseException:
        delete_link(sock, name)
        raise


def delete_vxlan(sock: Netlink, name: str) -> bool:
    """Delete a VXLAN device (and with it every entry on it); False if there was none."""
    return delete_link(sock, name)


def parse_vxlan(body: bytes) -> Vxlan | None:
    """A Vxlan from an RTM_NEWLINK message's body; None for a link of another kind."""
    msg = nl.IfInfo(body)
    info = nl.parse_attrs(msg.attrs.get(nl.IFLA_LINKINFO, b""))
    if nl.text(info.get(nl.IFLA_INFO_KIND, b"")) != "vxlan":
        return None
    data = nl.parse_attrs(info.get(nl.IFLA_INFO_DATA, b""))
    local = data.get(IFLA_VXLAN_LOCAL)
    underlay = data.get(IFLA_VXLAN_LINK)
    master = msg.attrs.get(nl.IFLA_MASTER)
    return Vxlan(
        index=msg.index,
        name=nl.text(msg.attrs.get(nl.IFLA_IFNAME, b"")),
        vni=nl.u32(data[IFLA_VXLAN_ID]) if IFLA_VXLAN_ID in data else 0,
        local=IPv4Address(local) if local is not None and len(local) == 4 else None,
        port=_BE16.unpack_from(data[IFLA_VXLAN_PORT])[0] if IFLA_VXLAN_PORT in data else 0,
        learning=data.get(IFLA_VXLAN_LEARNING, b"\0")[:1] != b"\0",
        proxy=data.get(IFLA_VXLAN_PROXY, b"\0")[:1] != b"\0",
        link=nl.u32(underlay) if underlay else None,
        master=nl.u32(master) if master else None,
        mtu=nl.u32(msg.attrs[nl.IFLA_MTU]) if nl.IFLA_MTU in msg.attrs else 0,
        up=bool(msg.flags & nl.IFF_UP),
    )


def get_vxlan(sock: Netlink, name: str) -> Vxlan | None:
    """The VXLAN device of this name; None if there is no link of this name or it is not a
    VXLAN device (links.get_link tells which)."""
    body = sock.get(nl.RTM_GETLINK, ifinfomsg() + attr_str(nl.IFLA_IFNAME, name),
                    f"find {name}")
    return parse_vxlan(body) if body else None


def list_vxlans(sock: Netlink) -> list[Vxlan]:
    """Every VXLAN device of the namespace, from one link dump (for reconcile and doctor)."""
    out = []
    for body in sock.dump(nl.RTM_GETLINK, ifinfomsg(), "list links"):
        found = parse_vxlan(body)
        if found is not None:
            out.append(found)
    return out


# -- forwarding entries: remote MAC -> remote host --------------------------------------------

class FdbEntry(Record):
    """A forwarding entry of a VXLAN device: frames to `mac` go to the host at `dst`."""

    mac: str
    dst: IPv4Address | None  # None: an entry without an IPv4 destination (not shoal's)
    permanent: bool


def fdb_add_request(index: int, mac: str, dst: IPv4Address) -> Request:
    """Add or replace the entry of `mac` on VXLAN device `index`, sending to `dst` (a request
    for Netlink.call or batch, so that many go in one round trip). The entry names no
    underlay link (NDA_IFINDEX): the device's IFLA_VXLAN_LINK is not used for it, and its
    packets leave by the route to `dst`. The kernel does not check that `index` is a VXLAN
    device: a bridge takes the request as a local entry of its own."""
    body = (nl.ndmsg(nl.AF_BRIDGE, index, nl.NUD_PERMANENT, nl.NTF_SELF)
            + attr(nl.NDA_LLADDR, _mac(mac)) + attr(nl.NDA_DST, _v4(dst, "dst")))
    return (nl.RTM_NEWNEIGH, nl.NLM_F_CREATE | nl.NLM_F_REPLACE, body,
            f"add the forwarding entry {mac} -> {dst}")


def fdb_delete_request(index: int, mac: str) -> Request:
    """Delete the entry of `mac` on VXLAN device `index`, whatever its destination (with an
    NDA_DST, the kernel would delete only that destination, and do nothing, answering
    success, for another one)."""
    body = (nl.ndmsg(nl.AF_BRIDGE, index, 0, nl.NTF_SELF) + attr(nl.NDA_LLADDR, _mac(mac)))
    return (nl.RTM_DELNEIGH, 0, body, f"delete the forwarding entry of {mac}")


def add_fdb(sock: Netlink, index: int, mac: str, dst: IPv4Address) -> None:
    """Frames to `mac` on VXLAN device `index` go to the host at `dst` (permanent; replaces
    an entry of `mac` there)."""
    sock.call(fdb_add_request(index, mac, dst))


def delete_fdb(sock: Netlink, index: int, mac: str) -> bool:
    """Delete the forwarding entry of `mac`; False if there was none (not an error: deleting
    twice is fine), nor a device `index`."""
    return _deleted(sock, fdb_delete_request(index, mac))


def list_fdb(sock: Netlink, index: int) -> list[FdbEntry]:
    """The forwarding entries of VXLAN device `index` itself (NTF_SELF), one per destination
    in the kernel's order; not the bridge's entries for its port.

    The dump is asked with an ifinfomsg naming the device, which the kernel reads as a filter
    (rtnl_fdb_dump; an ndmsg would dump every device's); the answer is filtered here too."""
    out = []
    for body in sock.dump(nl.RTM_GETNEIGH, ifinfomsg(index, family=nl.AF_BRIDGE),
                          f"list the forwarding entries of link {index}"):
        msg = nl.NdMsg(body)
        if msg.family != nl.AF_BRIDGE or msg.index != index or not msg.flags & nl.NTF_SELF:
            continue
        mac = msg.attrs.get(nl.NDA_LLADDR)
        if mac is None:
            continue
        dst = msg.attrs.get(nl.NDA_DST)
        out.append(FdbEntry(mac=_mac_text(mac),
                            dst=IPv4Address(dst) if dst is not None and len(dst) == 4 else None,
                            permanent=bool(msg.state & nl.NUD_PERMANENT)))
    return out


# -- neighbour entries: remote IP -> remote MAC, for the device's ARP proxy -------------------

class Neighbour(Record):
    """A neighbour entry of a VXLAN device: `ip` is at `mac` (None: not resolved)."""

    ip: IPv4Address
    mac: str | None
    permanent: bool


def neighbour_add_request(index: int, ip: IPv4Address, mac: str) -> Request:
    """Add or replace the neighbour entry of `ip` on device `index`: at `mac`, permanent."""
    body = (nl.ndmsg(socket.AF_INET, index, nl.NUD_PERMANENT) + attr(nl.NDA_DST, _v4(ip, "ip"))
            + attr(nl.NDA_LLADDR, _mac(mac)))
    return (nl.RTM_NEWNEIGH, nl.NLM_F_CREATE | nl.NLM_F_REPLACE, body,
            f"add the neighbour entry {ip} -> {mac}")


def neighbour_delete_request(index: int, ip: IPv4Address) -> Request:
    body = nl.ndmsg(socket.AF_INET, index) + attr(nl.NDA_DST, _v4(ip, "ip"))
    return (nl.RTM_DELNEIGH, 0, body, f"delete the neighbour entry of {ip}")


def add_neighbour(sock: Netlink, index: int, ip: IPv4Address, mac: str) -> None:
    """ARP requests for `ip` reaching VXLAN device `index` are answered with `mac`."""
    sock.call(neighbour_add_request(index, ip, mac))


def delete_neighbour(sock: Netlink, index: int, ip: IPv4Address) -> bool:
    """Delete the neighbour entry of `ip`; False if there was none (not an error: deleting
    twice is fine), nor a device `index`."""
    return _deleted(sock, neighbour_delete_request(index, ip))


def list_neighbours(sock: Netlink, index: int) -> list[Neighbour]:
    """The IPv4 neighbour entries of device `index` (the kernel filters the dump by
    NDA_IFINDEX; the answer is filtered here too)."""
    out = []
    for body in sock.dump(nl.RTM_GETNEIGH, nl.ndmsg(socket.AF_INET)
                          + attr_u32(nl.NDA_IFINDEX, index),
                          f"list the neighbour entries of link {index}"):
        msg = nl.NdMsg(body)
        dst = msg.attrs.get(nl.NDA_DST)
        if msg.family != socket.AF_INET or msg.index != index or dst is None or len(dst) != 4:
            continue
        mac = msg.attrs.get(nl.NDA_LLADDR)
        out.append(Neighbour(ip=IPv4Address(dst), mac=_mac_text(mac) if mac else None,
                             permanent=bool(msg.state & nl.NUD_PERMANENT)))
    return out


# -- a remote endpoint: both entries in one round trip --------------------------------------

def add_remote(sock: Netlink, index: int, mac: str, ip: IPv4Address, host: IPv4Address) -> None:
    """Make a remote endpoint (`ip` at `mac`, on the host at underlay address `host`)
    reachable through VXLAN device `index`: its forwarding entry, then its neighbour entry,
    in one batch. So ARP for it is answered only where frames to it can go: if the kernel
    refuses the forwarding entry, the neighbour entry the same batch added is taken back
    and the forwarding entry's error raised."""
    fdb, neighbour = sock.batch([fdb_add_request(index, mac, host),
                                 neighbour_add_request(index, ip, mac)])
    if fdb is not None:
        if neighbour is None:
            _deleted(sock, neighbour_delete_request(index, ip))
        raise fdb
    if neighbour is not None:
        raise neighbour


def delete_remote(sock: Netlink, index: int, mac: str, ip: IPv4Address) -> None:
    """Forget a remote endpoint: its neighbour entry, then its forwarding entry, in one
    batch. Entries already gone are not an error."""
    for err in sock.batch([neighbour_delete_request(index, ip), fdb_delete_request(index, mac)]):
        if err is not None and err.errno not in _NOT_THERE:
            raise err


def _deleted(sock: Netlink, request: Request) -> bool:
    err = sock.batch([request])[0]
    if err is None:
        return True
    if err.errno in _NOT_THERE:
        return False
    raise err
