"""VXLAN devices with static entries, on the real kernel, in a lab of network namespaces:
two 'hosts' joined by an underlay (a veth pair, 192.0.2.1 and 192.0.2.2), each with a bridge,
a VXLAN device made by shoal.kernel.vxlan on it, and a 'container' namespace whose veth is a
port of that bridge, both containers in one overlay subnet (10.77.0.0/24).

What crosses the underlay is captured there with an AF_PACKET socket in host A's namespace
and decoded here (outer IPv4, UDP to 4789, the VXLAN header, the inner Ethernet header), so
the tests see which frames were carried and which never left their host. Nothing here
touches the machine's own namespace; the namespaces, and with them every link, go at the
end, also when a test fails."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from shoal.errors import KernelError
from shoal.kernel import links, ns, vxlan
from shoal.kernel.netlink import Netlink

UNDERLAY = {"a": IPv4Address("192.0.2.1"), "b": IPv4Address("192.0.2.2")}
OVERLAY = {"a": IPv4Address("10.77.0.2"), "b": IPv4Address("10.77.0.3")}
MAC = {"a": "02:00:00:00:00:0a", "b": "02:00:00:00:00:0b"}
OTHER = {"a": "b", "b": "a"}
VNI = 42
ETH_P_ALL, ETH_P_IP, ETH_P_ARP = 0x0003, 0x0800, 0x0806


class Lab:
    """The namespaces of one test, the sockets opened in them, and their cleanup."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.paths: dict[str, str] = {}
        self.sockets: list[socket.socket | Netlink] = []
        self.nl: dict[str, Netlink] = {}
        self.index: dict[tuple[str, str], int] = {}  # (host, link name) -> index

    def netns(self, name: str) -> str:
        path = str(self.base / f"{name}.ns")
        Path(path).touch()
        self.paths[name] = path
        subprocess.run(["unshare", f"--net={path}", "true"], check=True)
        return path

    def run(self, where: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(["nsenter", f"--net={self.paths[where]}", *cmd],
                             capture_output=True, text=True, timeout=30)
        if check and res.returncode != 0:
            raise AssertionError(f"in {where}: {' '.join(cmd)}: {res.stderr.strip()}")
        return res

    def ip(self, where: str, *args: str) -> str:
        return self.run(where, "ip", *args).stdout

    def ip_json(self, where: str, *args: str) -> Any:
        return json.loads(self.ip(where, "-j", *args) or "[]")

    def ping(self, where: str, to: IPv4Address, *extra: str) -> bool:
        return self.run(where, "ping", "-c1", "-W2", *extra, str(to),
                        check=False).returncode == 0

    def netlink(self, where: str) -> Netlink:
        with ns.entered(self.paths[where]):
            sock = Netlink()
        self.sockets.append(sock)
        return sock

    def capture(self, where: str, ifname: str) -> socket.socket:
        """Every frame that crosses `ifname` in either direction from now on."""
        with ns.entered(self.paths[where]):
            cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sockets.append(cap)
        cap.bind((ifname, 0))
        cap.setblocking(False)
        return cap

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        for path in self.paths.values():
            ns.umount(path)
            os.unlink(path)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    if os.geteuid() != 0 or not shutil.which("nsenter") or not shutil.which("unshare"):
        pytest.skip("needs root and util-linux (nsenter, unshare)")
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()
        with open("/proc/self/mountinfo") as f:
            assert [line for line in f if str(tmp_path) in line] == []


def build(lab: Lab, vnis: dict[str, int] | None = None) -> None:
    """The two hosts and their containers, the VXLAN devices made by shoal; no entries yet."""
    for name in ("a", "b", "ctr-a", "ctr-b"):
        lab.netns(name)
    lab.ip("a", "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns",
           lab.paths["b"])
    for host in ("a", "b"):
        lab.ip(host, "addr", "add", f"{UNDERLAY[host]}/24", "dev", "u0")
        lab.ip(host, "link", "set", "u0", "up")
        lab.ip(host, "link", "add", "br0", "type", "bridge")
        lab.ip(host, "link", "set", "br0", "up")
        sock = lab.nl[host] = lab.netlink(host)
        make(lab, host, (vnis or {}).get(host, VNI))
        ctr = f"ctr-{host}"
        lab.ip(ctr, "link", "add", "eth0", "address", MAC[host], "mtu", "1450", "type",
               "veth", "peer", "name", "p0", "netns", lab.paths[host])
        lab.ip(ctr, "addr", "add", f"{OVERLAY[host]}/24", "dev", "eth0")
        lab.ip(ctr, "link", "set", "eth0", "up")
        lab.ip(host, "link", "set", "p0", "master", "br0", "up")
        for name in ("u0", "br0"):
            link = links.get_link(sock, name)
            assert link is not None
            lab.index[host, name] = link.index


def make(lab: Lab, host: str, vni: int) -> int:
    sock = lab.nl[host]
    bridge, underlay = links.get_link(sock, "br0"), links.get_link(sock, "u0")
    assert bridge is not None and underlay is not None
    index = vxlan.create_vxlan(sock, "vx0", vni, UNDERLAY[host], master=bridge.index,
                               mtu=vxlan.overlay_mtu(1500), link=underlay.index)
    lab.index[host, "vx0"] = index
    return index


def add_entries(lab: Lab, host: str) -> None:
    """On `host`'s VXLAN device: where the other container is, and its MAC for the proxy."""
    peer = OTHER[host]
    vxlan.add_remote(lab.nl[host], lab.index[host, "vx0"], MAC[peer], OVERLAY[peer],
                     UNDERLAY[peer])


def carried(cap: socket.socket) -> list[dict[str, Any]]:
    """The VXLAN packets (IPv4, UDP to port 4789) among the frames captured so far: each
    one's VNI, outer addresses, length and fragment bits, and inner Ethernet header."""
    out = []
    while True:
        try:
            frame = cap.recv(65535)
        except BlockingIOError:
            return out
        if len(frame) < 14 + 20 or struct.unpack_from("!H", frame, 12)[0] != ETH_P_IP:
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        total, frag, proto = struct.unpack_from("!H2xHxB", ip, 2)
        if proto != socket.IPPROTO_UDP or len(ip) < ihl + 8 + 8 + 14:
            continue
        _sport, dport = struct.unpack_from("!HH", ip, ihl)
        if dport != vxlan.VXLAN_PORT:
            continue
        head = ip[ihl + 8 : ihl + 16]  # flags (I: 0x08), reserved, VNI (24 bits), reserved
        inner = ip[ihl + 16 :]
        out.append({
            "vni": struct.unpack_from("!I", head, 4)[0] >> 8,
            "flags": head[0],
            "src": IPv4Address(ip[12:16]), "dst": IPv4Address(ip[16:20]),
            "length": total, "fragment": frag & 0x3FFF,  # MF and the offset
            "inner_dst": ":".join(f"{b:02x}" for b in inner[0:6]),
            "inner_src": ":".join(f"{b:02x}" for b in inner[6:12]),
            "inner_type": struct.unpack_from("!H", inner, 12)[0],
        })


def neighbour_of(lab: Lab, ctr: str, ip: IPv4Address) -> dict[str, Any] | None:
    """The container's own ARP entry for `ip` (what answered its ARP request)."""
    for entry in lab.ip_json(ctr, "neigh", "show", "dev", "eth0"):
        if entry["dst"] == str(ip):
            return entry
    return None


# -- the tests ------------------------------------------------------------------------------

def test_static_entries_carry_pings_and_no_arp_crosses_the_underlay(lab: Lab) -> None:
    build(lab)
    for host in ("a", "b"):
        add_entries(lab, host)

    # the devices read back as made, and as iproute2 reads them too
    got = vxlan.get_vxlan(lab.nl["a"], "vx0")
    assert got == vxlan.Vxlan(index=lab.index["a", "vx0"], name="vx0", vni=VNI,
                              local=UNDERLAY["a"], port=4789, learning=False, proxy=True,
                              link=lab.index["a", "u0"], master=lab.index["a", "br0"],
                              mtu=1450, up=True)
    assert vxlan.list_vxlans(lab.nl["b"]) == [vxlan.get_vxlan(lab.nl["b"], "vx0")]
    (shown,) = lab.ip_json("a", "-d", "link", "show", "vx0")
    data = shown["linkinfo"]["info_data"]
    assert (data["id"], data["local"], data["port"], data["learning"], data["proxy"],
            data["link"]) == (VNI, "192.0.2.1", 4789, False, True, "u0")
    assert shown["master"] == "br0" and shown["mtu"] == 1450 and "UP" in shown["flags"]
    if links.ipv6_enabled():
        assert shown["inet6_addr_gen_mode"] == "none"  # no IPv6 autoconfiguration on it

    # the dumps list exactly what was added: no all-zeros (default) entry, nothing learned
    for host in ("a", "b"):
        peer, index = OTHER[host], lab.index[host, "vx0"]
        assert vxlan.list_fdb(lab.nl[host], index) == [
            vxlan.FdbEntry(mac=MAC[peer], dst=UNDERLAY[peer], permanent=True)]
        assert vxlan.list_neighbours(lab.nl[host], index) == [
            vxlan.Neighbour(ip=OVERLAY[peer], mac=MAC[peer], permanent=True)]
        own = lab.ip_json(host, "neigh", "show", "dev", "vx0")
        assert [(e["dst"], e["lladdr"], e["state"]) for e in own] == [
            (str(OVERLAY[peer]), MAC[peer], ["PERMANENT"])]
        selfs = [e for e in json.loads(lab.run(host, "bridge", "-j", "fdb", "show", "dev",
                                               "vx0").stdout) if "self" in e["flags"]]
        assert [(e["mac"], e["dst"]) for e in selfs] == [(MAC[peer], str(UNDERLAY[peer]))]

    cap = lab.capture("a", "u0")
    assert neighbour_of(lab, "ctr-a", OVERLAY["b"]) is None  # its first ARP is yet to come
    assert lab.ping("ctr-a", OVERLAY["b"])
    assert lab.ping("ctr-b", OVERLAY["a"])
    # a full-size frame (1422 + 8 + 20 = 1450) crosses whole: 1450 + 50 fits the underlay
    assert lab.ping("ctr-a", OVERLAY["b"], "-M", "do", "-s", "1422")

    packets = carried(cap)
    # ARP was answered on each side from its own device's neighbour entry ...
    assert neighbour_of(lab, "ctr-a", OVERLAY["b"])["lladdr"] == MAC["b"]  # type: ignore[index]
    assert neighbour_of(lab, "ctr-b", OVERLAY["a"])["lladdr"] == MAC["a"]  # type: ignore[index]
    # ... and never crossed: every carried frame is IPv4 between the two containers, none
    # an ARP, none a broadcast or multicast (there is no default destination to flood to)
    assert packets, "no VXLAN packet crossed the underlay"
    assert [p for p in packets if p["inner_type"] == ETH_P_ARP] == []
    assert {(p["inner_src"], p["inner_dst"], p["inner_type"]) for p in packets} == {
        (MAC["a"], MAC["b"], ETH_P_IP), (MAC["b"], MAC["a"], ETH_P_IP)}
    assert {(p["vni"], p["flags"]) for p in packets} == {(VNI, 0x08)}
    assert {(p["src"], p["dst"]) for p in packets} == {
        (UNDERLAY["a"], UNDERLAY["b"]), (UNDERLAY["b"], UNDERLAY["a"])}
    assert max(p["length"] for p in packets) == 1500
    assert [p for p in packets if p["fragment"]] == []


def test_deleting_the_entries_cuts_the_overlay_and_deleting_again_is_fine(lab: Lab) -> None:
    build(lab)
    for host in ("a", "b"):
        add_entries(lab, host)
    assert lab.ping("ctr-a", OVERLAY["b"])
    sock, index = lab.nl["a"], lab.index["a", "vx0"]

    # without the forwarding entry, ARP is still answered but frames to B go nowhere
    assert vxlan.delete_fdb(sock, index, MAC["b"]) is True
    assert vxlan.delete_fdb(sock, index, MAC["b"]) is False
    assert vxlan.list_fdb(sock, index) == []
    lab.ip("ctr-a", "neigh", "flush", "dev", "eth0")
    cap = lab.capture("a", "u0")
    assert not lab.ping("ctr-a", OVERLAY["b"])
    assert neighbour_of(lab, "ctr-a", OVERLAY["b"])["lladdr"] == MAC["b"]  # type: ignore[index]
    assert carried(cap) == []

    # without the neighbour entry, ARP is not answered either
    assert vxlan.delete_neighbour(sock, index, OVERLAY["b"]) is True
    assert vxlan.delete_neighbour(sock, index, OVERLAY["b"]) is False
    assert vxlan.list_neighbours(sock, index) == []
    lab.ip("ctr-a", "neigh", "flush", "dev", "eth0")
    assert not lab.ping("ctr-a", OVERLAY["b"])
    entry = neighbour_of(lab, "ctr-a", OVERLAY["b"])
    assert entry is None or "lladdr" not in entry
    assert carried(cap) == []
    vxlan.delete_remote(sock, index, MAC["b"], OVERLAY["b"])  # both gone already: fine

    # and with them back, it works again (what failed was their absence)
    add_entries(lab, "a")
    assert lab.ping("ctr-a", OVERLAY["b"])
    vxlan.delete_remote(sock, index, MAC["b"], OVERLAY["b"])
    assert vxlan.list_fdb(sock, index) == [] and vxlan.list_neighbours(sock, index) == []
    assert not lab.ping("ctr-a", OVERLAY["b"])


def test_a_different_vni_on_one_side_carries_nothing(lab: Lab) -> None:
    build(lab, vnis={"a": VNI, "b": VNI + 1})
    for host in ("a", "b"):
        add_entries(lab, host)
    cap = lab.capture("a", "u0")
    assert not lab.ping("ctr-a", OVERLAY["b"])
    # A sent its frames with its VNI; B's device (another VNI) took none of them
    sent = carried(cap)
    assert sent and {(p["vni"], p["src"], p["inner_src"]) for p in sent} == {
        (VNI, UNDERLAY["a"], MAC["a"])}

    # the same VNI on B, and the same lab carries the ping
    assert vxlan.delete_vxlan(lab.nl["b"], "vx0") is True
    make(lab, "b", VNI)
    add_entries(lab, "b")
    assert lab.ping("ctr-a", OVERLAY["b"])


def test_the_kernels_refusals_are_kernel_errors_with_its_reasons(lab: Lab) -> None:
    build(lab)
    sock, bridge = lab.nl["a"], lab.index["a", "br0"]
    before = vxlan.get_vxlan(sock, "vx0")

    with pytest.raises(KernelError) as info:
        vxlan.create_vxlan(sock, "vx1", 1 << 24, UNDERLAY["a"], bridge, 1450)
    assert info.value.errno == 34  # ERANGE
    assert str(info.value).endswith(": VXLAN ID must be lower than 16777216")
    # one device per VNI and port in a namespace
    with pytest.raises(KernelError) as info:
        vxlan.create_vxlan(sock, "vx1", VNI, UNDERLAY["a"], bridge, 1450)
    assert info.value.errno == 17 and "VNI already exists" in str(info.value)  # EEXIST
    # a name that is taken: that link is left as it was
    with pytest.raises(KernelError) as info:
        vxlan.create_vxlan(sock, "br0", VNI + 1, UNDERLAY["a"], bridge, 1450)
    assert info.value.errno == 17
    br0 = links.get_link(sock, "br0")
    assert br0 is not None and br0.kind == "bridge" and br0.up
    # a bridge that is not there: the kernel takes back the device it had made
    with pytest.raises(KernelError):
        vxlan.create_vxlan(sock, "vx2", VNI + 2, UNDERLAY["a"], 9999, 1450)
    assert {lk.name for lk in links.list_links(sock)} == {"lo", "u0", "br0", "vx0", "p0"}
    assert vxlan.get_vxlan(sock, "vx0") == before

    with pytest.raises(KernelError) as info:
        vxlan.add_fdb(sock, 9999, MAC["b"], UNDERLAY["b"])
    assert info.value.errno == 19  # ENODEV
    assert vxlan.delete_fdb(sock, 9999, MAC["b"]) is False
    assert vxlan.delete_neighbour(sock, 9999, OVERLAY["b"]) is False

    assert vxlan.delete_vxlan(sock, "vx0") is True
    assert vxlan.delete_vxlan(sock, "vx0") is False
    assert vxlan.list_vxlans(sock) == []
