"""Which shoal network a CNI network is. Alone, shoal-cni's network is a shoal bridge network
of the CNI network's name, made at the first ADD with the config's settings and labelled
shoal.cni.network=<name>; one that exists already (made by an earlier ADD, or by `shoal
network create`) is used if it agrees with the config. Chained after another interface
plugin, it is an `external` network on that plugin's bridge, with the subnet of the address
the plugin gave (found in prevResult).

Callers hold the store's lock, so that concurrent first ADDs make the network once."""

from __future__ import annotations

from contextlib import suppress

from .errors import INVALID_CONFIG, REFUSED, CniError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ...controller import Engine
    from ...model import Network
    from .config import NetConf

LABEL = "shoal.cni.network"  # on the networks shoal-cni made: their CNI network's name


def ensure_bridge(engine: Engine, conf: NetConf) -> tuple[Network, bool]:
    """The shoal network named as the CNI network: made with the config's settings at the
    first ADD; one that exists must agree with the config's subnet and bridge."""
    from ...drivers.bridge import DOCKER_OPTIONS, ICC_OPTION, MASQUERADE_OPTION, MTU_OPTION
    from ...drivers.bridge import NAME_OPTION as BRIDGE_NAME

    found = named(engine, conf.name)
    if found is not None:
        if found.driver != "bridge":
            raise CniError(REFUSED, f"shoal network {found.name} has driver {found.driver}, "
                           "not bridge: name the CNI network differently, or chain shoal-cni "
                           "after the plugin that made it")
        _agrees(found, conf)
        return found, False
    if conf.bridge:
        _bridge_free(engine, conf.bridge)
    options = {BRIDGE_NAME: conf.bridge} if conf.bridge else {}
    options[MASQUERADE_OPTION] = str(conf.ip_masq).lower()
    options[ICC_OPTION] = str(conf.icc).lower()
    if conf.mtu:
        options[MTU_OPTION] = str(conf.mtu)
    assert all(o not in DOCKER_OPTIONS for o in options)
    net = engine.create_network(
        conf.name, "bridge", str(conf.subnet) if conf.subnet else None,
        str(conf.gateway) if conf.gateway else None,
        str(conf.ip_range) if conf.ip_range else None, internal=conf.internal,
        labels={LABEL: conf.name}, options=options)
    return net, True


def _bridge_free(engine: Engine, bridge: str) -> None:
    """The config's bridge is shoal's to make: not a link of the host or another plugin's
    (the reference bridge plugin's cni0, when a network switches to shoal-cni)."""
    from ...kernel import links

    if any(n.bridge == bridge for n in engine.store.networks()):
        return  # the network that has it is named in create_network's refusal
    if links.get_link(engine.host, bridge) is not None:
        raise CniError(REFUSED, f"a link named {bridge} already exists on the host (another "
                       "plugin's bridge?): give shoal-cni another \"bridge\", or chain "
                       "shoal-cni after the plugin that made it")


def _agrees(net: Network, conf: NetConf) -> None:
    if conf.subnet is not None and net.subnet != conf.subnet:
        raise CniError(REFUSED, f"shoal network {net.name} has subnet {net.subnet}, but the "
                       f"config says {conf.subnet}: make them agree, or remove the network "
                       f"(shoal network rm {net.name}) once nothing is attached")
    if conf.bridge is not None and net.bridge != conf.bridge:
        raise CniError(REFUSED, f"shoal network {net.name} has bridge {net.bridge}, but the "
                       f"config says {conf.bridge}: make them agree")


def named(engine: Engine, name: str) -> Network | None:
    return next((n for n in engine.store.networks() if n.name == name), None)


def from_previous(engine: Engine, conf: NetConf, ifname: str) -> tuple[Any, Any, str]:
    """(address with prefix, gateway, bridge) of the container's interface in prevResult."""
    from ipaddress import IPv4Interface, ip_address, ip_interface

    from ...kernel import links

    prev = conf.prev_result or {}
    interfaces = prev.get("interfaces") or []
    mine = next((i for i, itf in enumerate(interfaces) if isinstance(itf, dict)
                 and itf.get("name") == ifname and itf.get("sandbox")), None)
    address = gateway = None
    for ip in prev.get("ips") or []:
        if not isinstance(ip, dict) or (mine is not None and "interface" in ip
                                        and ip["interface"] != mine):
            continue
        with suppress(ValueError, TypeError):
            candidate = ip_interface(ip.get("address"))
            if isinstance(candidate, IPv4Interface):
                address = candidate
                gateway = ip_address(ip["gateway"]) if ip.get("gateway") else None
                break
    if address is None:
        raise CniError(INVALID_CONFIG, f"prevResult has no IPv4 address for {ifname}: chain "
                       "shoal-cni after the plugin that makes the interface (e.g. bridge)")
    bridge = conf.bridge
    if bridge is None:
        for itf in interfaces:
            if isinstance(itf, dict) and not itf.get("sandbox") and itf.get("name"):
                link = links.get_link(engine.host, str(itf["name"]))
                if link is not None and link.kind == "bridge":
                    bridge = link.name
                    break
    if bridge is None:
        raise CniError(INVALID_CONFIG, "prevResult names no bridge on the host: give \"bridge\" in "
                       "shoal-cni's config, the bridge the previous plugin plugs into")
    return address, gateway, bridge


def ensure_external(engine: Engine, conf: NetConf, bridge: str, address: Any,
                     gateway: Any) -> tuple[Network, bool]:
    from ...drivers.external import BRIDGE_OPTION

    found = named(engine, conf.name)
    if found is not None:
        if found.driver != "external" or found.bridge != bridge:
            raise CniError(REFUSED, f"shoal network {found.name} is not an external network "
                           f"on bridge {bridge} (driver {found.driver}, bridge "
                           f"{found.bridge}): name the CNI network differently")
        if address.ip not in found.subnet:
            raise CniError(REFUSED, f"the previous plugin gave {address}, outside shoal "
                           f"network {found.name}'s subnet {found.subnet}")
        return found, False
    subnet = str(address.network) if gateway is not None else None
    net = engine.create_network(conf.name, "external", subnet,
                                str(gateway) if gateway is not None else None,
                                labels={LABEL: conf.name}, options={BRIDGE_OPTION: bridge})
    return net, True
