"""The overlay driver: a network that spans the hosts of a cluster (issue 12).

On each host an overlay is what a bridge network is (a Linux bridge holding the gateway, a
veth pair per endpoint), plus one VXLAN device on that bridge carrying the network's VNI
between hosts (kernel/vxlan.py): static forwarding and neighbour entries for every remote
endpoint, written by the host's watcher, so nothing floods and no ARP crosses hosts.

Every host's bridge of an overlay holds the same gateway address with the same MAC (an
anycast gateway): a container's frames to its gateway stay on its own host, so what leaves
the overlay leaves through the container's own host, masqueraded there, and `-p` publishes
on the host it runs on, with the bridge's firewall elements as they are. Docker gives
each overlay container a second endpoint on docker_gwbridge for that instead; one interface
per container is simpler and its MTU is the overlay's. The VXLAN device never answers for the
gateway (it has no neighbour entry for it), so no host sees another's gateway.

Names: `ov-<id>` for the bridge, `vx-<id>` for the VXLAN device and `vov<endpoint id>` for a
veth's host end, so that neither the bridge driver's garbage collection nor this one's takes
the other's links. The cluster's side (the VNI, the host's underlay address, the remote
endpoints) comes through `HostHandles.cluster` (controller/cluster.py)."""

from __future__ import annotations

from contextlib import suppress

from ..checks import FAIL, OK, Check
from ..errors import Conflict, InvalidArgument, ShoalError
from ..kernel import links
from ..model import Endpoint, Network
from ..names import marked_root
from . import bridge
from .api import ENDPOINTS, GLOBAL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .api import HostHandles

BRIDGE_PREFIX, VXLAN_PREFIX, VETH_PREFIX = "ov-", "vx-", "vov"
DEFAULT_MTU = 1450  # a 1500-byte underlay less VXLAN's 50 (Docker's overlay default too)
ENCRYPTED_OPTION = "encrypted"


def vxlan_name(network_id: str) -> str:
    return VXLAN_PREFIX + network_id[:12]


def overlay_bridge_name(network_id: str) -> str:
    return BRIDGE_PREFIX + network_id[:12]


def vni(net: Network) -> int:
    from ..cluster.networks import vni_of

    return vni_of(net)


class OverlayDriver(bridge.BridgeDriver):
    name = "overlay"
    scope = GLOBAL
    sandbox = ENDPOINTS
    user_networks = True
    addresses = True
    names = True
    bridge_prefix, veth_prefix = BRIDGE_PREFIX, VETH_PREFIX

    def validate(self, h: HostHandles, net: Network, others: list[Network]) -> Network:
        from ..cluster.networks import VNI_OPTION, parse_vni

        for key, value in net.options.items():
            if key == ENCRYPTED_OPTION:
                raise InvalidArgument(
                    "encrypted overlays are not supported: shoal's overlay traffic is plain "
                    "VXLAN (as Docker's without --opt encrypted); leave out -o encrypted")
            if key == VNI_OPTION:
                parse_vni(value)
            elif bridge.DOCKER_OPTIONS.get(key, key) == bridge.MTU_OPTION:
                bridge._check_option(key, value)
            else:
                raise InvalidArgument(
                    f"unknown overlay option {key!r}: known options are {VNI_OPTION} (the "
                    f"VNI) and com.docker.network.driver.mtu")
        name = overlay_bridge_name(net.id)
        if links.get_link(h.host, name) is not None:
            raise Conflict(f"a link named {name} already exists on the host")
        return net.replace(bridge=name)

    def builtin(self, net: Network) -> Network:
        raise InvalidArgument("the overlay driver has no built-in network")

    def mtu(self, net: Network) -> int | None:
        return bridge.mtu(net) or DEFAULT_MTU

    def ensure(self, h: HostHandles, net: Network) -> int:
        """The bridge's index, with the VXLAN device on it and the remote endpoints' entries
        on that device; whatever of these went missing is made again."""
        from ..kernel import vxlan

        index = bridge._ensure_with_mtu(h, net, self.mtu(net))
        name = vxlan_name(net.id)
        if vxlan.get_vxlan(h.host, name) is None:
            cluster = h.cluster
            device = vxlan.create_vxlan(h.host, name, vni(net), cluster.address, index,
                                        self.mtu(net) or DEFAULT_MTU)
            try:
                links.set_alias(h.host, device, h.mark)
                for ep in cluster.remotes(net.id):
                    vxlan.add_remote(h.host, device, ep.mac, ep.ip, ep.address)
            except BaseException:
                with suppress(ShoalError, OSError):
                    vxlan.delete_vxlan(h.host, name)
                raise
        return index

    def create_network(self, h: HostHandles, net: Network) -> None:
        try:
            self.ensure(h, net)
        except BaseException:
            with suppress(ShoalError, OSError):
                self.delete_network(h, net)
            raise

    def delete_network(self, h: HostHandles, net: Network) -> None:
        from ..kernel import vxlan

        vxlan.delete_vxlan(h.host, vxlan_name(net.id))
        super().delete_network(h, net)

    def repair(self, h: HostHandles, net: Network) -> str | None:
        from ..kernel import vxlan

        assert net.bridge is not None
        missing = [what for what, gone in (
            (f"bridge {net.bridge}", links.get_link(h.host, net.bridge) is None),
            (f"VXLAN device {vxlan_name(net.id)}",
             vxlan.get_vxlan(h.host, vxlan_name(net.id)) is None)) if gone]
        self.ensure(h, net)
        if missing:
            return f"network {net.name}: {' and '.join(missing)} missing; created again"
        return None

    def owns_link(self, name: str) -> bool:
        return name.startswith((BRIDGE_PREFIX, VXLAN_PREFIX, VETH_PREFIX))

    def gc(self, h: HostHandles, nets: list[Network], live: list[Endpoint]) -> list[str]:
        known = {n.bridge for n in nets if n.bridge} | {vxlan_name(n.id) for n in nets}
        live_veths = {self.host_veth(ep.id) for ep in live}
        mine = marked_root(h.mark)
        done = []
        for link in links.list_links(h.host):
            name = link.name
            if marked_root(link.alias) != mine:
                continue  # unmarked or another root's: never ours to delete
            stale = ((name.startswith(VETH_PREFIX) and name not in live_veths)
                     or (name.startswith((BRIDGE_PREFIX, VXLAN_PREFIX)) and name not in known))
            if stale:
                with suppress(ShoalError):
                    links.delete_link(h.host, name)
                    done.append(f"removed {name}: no container or network of shoal's has it")
        return done

    def foreign_root(self, h: HostHandles) -> str | None:
        return None  # the bridge driver's default bridge tells the namespace's owner

    def diagnose(self, h: HostHandles, net: Network, ep: Endpoint | None,
                 who: str) -> list[Check]:
        if ep is not None:
            return super().diagnose(h, net, ep, who)
        from ..kernel import vxlan

        checks = self._diagnose_bridge(h, net)
        name = vxlan_name(net.id)
        device = vxlan.get_vxlan(h.host, name)
        bridge_link = links.get_link(h.host, net.bridge or "")
        if device is None:
            return [*checks, Check(FAIL, f"network {net.name}: its VXLAN device {name} is "
                                         "missing", "shoal system reconcile")]
        if bridge_link is None or device.master != bridge_link.index or not device.up:
            return [*checks, Check(FAIL, f"network {net.name}: VXLAN device {name} is not up "
                                         f"on bridge {net.bridge}", "shoal system reconcile")]
        remotes = h.cluster.remotes(net.id)
        fdb = {e.mac for e in vxlan.list_fdb(h.host, device.index)}
        lacking = [r for r in remotes if r.mac not in fdb]
        if lacking:
            return [*checks, Check(FAIL, f"network {net.name}: {len(lacking)} of "
                                         f"{len(remotes)} remote endpoints have no "
                                         f"forwarding entry on {name} ({lacking[0].ip} first)",
                                   "shoal system reconcile")]
        return [*checks, Check(OK, f"network {net.name}: VXLAN device {name} (VNI "
                                   f"{device.vni}, from {device.local}) carries "
                                   f"{len(remotes)} remote endpoint(s)")]
