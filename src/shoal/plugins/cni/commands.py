"""ADD, DEL, CHECK, STATUS and GC on shoal's Engine, through its sandbox seam: the runtime's
namespace is a handed-in sandbox owned by `cni:<container id>`, and each attachment
(container id, ifname) is that sandbox's endpoint with that interface name on the network
named by the config. Everything lives in shoal's store, so `shoal network inspect`, `doctor`
and `system reconcile` see CNI attachments as they see containers.

Alone, shoal-cni is an interface plugin: shoal makes the veth on its own bridge network.
Chained after another interface plugin (a config with prevResult, e.g. after the reference
`bridge`), it is a drop-in for `portmap`: the endpoint only records the address that plugin
gave on an `external` network, and shoal adds its firewall (published ports through its
maps, isolation). Which network: see networks.py."""

from __future__ import annotations

import os
from contextlib import suppress

from ...errors import Conflict, InvalidArgument, ShoalError
from ...faults import crashpoint
from . import networks, result
from .config import NetConf
from .errors import (
    INVALID_ENVIRONMENT,
    NOT_AS_ADDED,
    NOT_AVAILABLE,
    REFUSED,
    UNKNOWN_CONTAINER,
    CniError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ...controller import Engine
    from ...model import Endpoint, Network, Sandbox

CNI_OWNER = "cni:"


class Attachment:
    """What the runtime names an attachment by (CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME)."""

    def __init__(self, container_id: str, netns: str, ifname: str) -> None:
        self.container_id, self.netns, self.ifname = container_id, netns, ifname

    @property
    def owner(self) -> str:
        return CNI_OWNER + self.container_id


def open_engine(conf: NetConf) -> Engine:
    """shoal's engine: root and run directory from SHOAL_ROOT/SHOAL_RUN_DIR in the runtime's
    environment, else the config's shoal.root/shoal.runDir, else shoal's defaults."""
    from ...controller import Engine

    root = None if "SHOAL_ROOT" in os.environ else conf.root
    run_dir = None if "SHOAL_RUN_DIR" in os.environ else conf.run_dir
    return Engine.open(root, run_dir)


# -- ADD -------------------------------------------------------------------------------------

def add(engine: Engine, conf: NetConf, att: Attachment) -> dict[str, Any]:
    """Attach; if a step fails, what this ADD made is undone before the error is raised."""
    from ...kernel import ns

    if not ns.is_netns(att.netns):
        raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {att.netns} is not a network "
                       "namespace: give the path of a namespace file (e.g. /run/netns/NAME), "
                       "not a symlink")
    store = engine.store
    with store.locked():
        chained = conf.prev_result is not None
        if chained:
            address, gateway, bridge = networks.from_previous(engine, conf, att.ifname)
            net, made_net = networks.ensure_external(engine, conf, bridge, address, gateway)
            ip, mac = str(address.ip), None
        else:
            net, made_net = networks.ensure_bridge(engine, conf)
            ip, mac = (str(conf.ip) if conf.ip else None), conf.mac
        sandbox, made_sandbox = None, False
        ep = None
        try:
            sandbox, made_sandbox = _sandbox(engine, att)
            crashpoint("cni-add:sandbox")
            if not chained:
                _check_free_ifname(engine, sandbox, att)
            ep = engine.connect_sandbox(sandbox.id, net.id, ip=ip, ifname=att.ifname, mac=mac)
            if conf.port_mappings:
                engine.publish_sandbox(sandbox.id, net.id, bindings(conf))
            crashpoint("cni-add:published")
        except BaseException:
            # each undo on its own: the error worth reporting is the first one
            if ep is not None and sandbox is not None:
                with suppress(ShoalError, OSError):
                    engine.disconnect_sandbox(sandbox.id, net.id)
            if made_sandbox and sandbox is not None:
                with suppress(ShoalError, OSError):
                    engine.remove_sandbox(sandbox.id)
            if made_net:
                with suppress(ShoalError, OSError):
                    engine.remove_network(net.id)
            raise
        if chained:
            assert conf.prev_result is not None
            return result.passed_through(conf.version, conf.prev_result)
        return _bridge_result(engine, conf, att, net, ep)


def bindings(conf: NetConf) -> list[Any]:
    from ipaddress import IPv4Address

    from ...ports import ANY, Binding

    return [Binding(container_port=m.container_port, proto=m.protocol,
                    host_ip=IPv4Address(m.host_ip) if m.host_ip else ANY,
                    host_port=m.host_port, ip_given=bool(m.host_ip))
            for m in conf.port_mappings]


def _sandbox(engine: Engine, att: Attachment) -> tuple[Sandbox, bool]:
    """The container's sandbox (one per container id, shared by its attachments), and
    whether this call recorded it. A container has one namespace: a record left for another
    one (the runtime made a new namespace for the same container without a DEL, after a
    crash) is stale, and goes first with its attachments."""
    import sys

    store = engine.store
    found = store.sandbox_by_owner(att.owner)
    if found is not None and found.path != att.netns:
        sys.stderr.write(f"shoal-cni: container {att.container_id} moved from namespace "
                         f"{found.path} to {att.netns}: its attachments there are removed\n")
        engine.remove_sandbox(found.id)
        found = None
    return engine.add_sandbox(att.netns, att.owner), found is None


def _check_free_ifname(engine: Engine, sandbox: Sandbox, att: Attachment) -> None:
    from ...kernel import links

    if any(e.ifname == att.ifname for e in engine.store.endpoints(sandbox_id=sandbox.id)):
        return  # connect_sandbox names the clash
    with engine.enter_sandbox(sandbox.id) as sock:
        if links.get_link(sock, att.ifname) is not None:
            raise CniError(REFUSED, f"an interface {att.ifname} already exists in "
                           f"{att.netns}: give another CNI_IFNAME, or DEL the attachment "
                           "that made it")


def _bridge_result(engine: Engine, conf: NetConf, att: Attachment, net: Network,
                   ep: Endpoint) -> dict[str, Any]:
    from ...drivers.bridge import host_veth_name, mtu
    from ...kernel import links

    assert net.bridge is not None and net.subnet is not None and ep.ip is not None
    bridge = links.get_link(engine.host, net.bridge)
    veth = links.get_link(engine.host, host_veth_name(ep.id))
    size = mtu(net)
    interfaces = [result.interface(net.bridge, bridge.mac if bridge else None, mtu=size),
                  result.interface(host_veth_name(ep.id), veth.mac if veth else None, mtu=size),
                  result.interface(att.ifname, ep.mac, att.netns, size)]
    return result.add_result(conf.version, interfaces, f"{ep.ip}/{net.subnet.prefixlen}",
                             str(net.gateway), 2, not net.internal, conf.dns)


# -- DEL -------------------------------------------------------------------------------------

def delete(engine: Engine, conf: NetConf, att: Attachment) -> None:
    """Idempotent: an unknown container, a gone namespace or a second DEL succeed; the
    records, the address and the ports go in any case."""
    store = engine.store
    with store.locked():
        sandbox = store.sandbox_by_owner(att.owner)
        if sandbox is None:
            return
        for ep in _attached(engine, sandbox, conf.name, att.ifname):
            engine.disconnect_sandbox(sandbox.id, ep.network_id)
        crashpoint("cni-del:endpoint")
        if not store.endpoints(sandbox_id=sandbox.id):
            engine.remove_sandbox(sandbox.id)


def _attached(engine: Engine, sandbox: Sandbox, network: str, ifname: str) -> list[Endpoint]:
    store = engine.store
    return [ep for ep in store.endpoints(sandbox_id=sandbox.id)
            if ep.ifname == ifname and store.network_by_id(ep.network_id).name == network]


# -- CHECK -----------------------------------------------------------------------------------

def check(engine: Engine, conf: NetConf, att: Attachment) -> None:
    """The attachment is as ADD left it: shoal's records, the namespace, the interface with
    its address (for shoal's own bridge networks), the host side, the published ports."""
    from ...kernel import links, ns

    store = engine.store
    what = f"container {att.container_id}'s attachment {att.ifname} to network {conf.name}"
    sandbox = store.sandbox_by_owner(att.owner)
    eps = _attached(engine, sandbox, conf.name, att.ifname) if sandbox else []
    if sandbox is None or not eps:
        raise CniError(UNKNOWN_CONTAINER if sandbox is None else NOT_AS_ADDED,
                       f"{what} is unknown to shoal: DEL it and ADD it again")
    ep = eps[0]
    net = store.network_by_id(ep.network_id)
    if sandbox.path != att.netns:
        raise CniError(NOT_AS_ADDED, f"{what} is in namespace {sandbox.path}, not "
                       f"{att.netns}")
    if not ns.is_netns(att.netns):
        raise CniError(NOT_AS_ADDED, f"{what}: its namespace {att.netns} is gone")
    prev_ip = _previous_ip(conf)
    if prev_ip is not None and ep.ip is not None and prev_ip != str(ep.ip):
        raise CniError(NOT_AS_ADDED, f"{what} has address {ep.ip} in shoal's store, but "
                       f"prevResult says {prev_ip}")
    if net.driver == "bridge":
        with engine.enter_sandbox(sandbox.id) as sock:
            link = links.get_link(sock, att.ifname)
            have = {str(a.ip) for a in links.addresses(sock, link.index, family=4)} \
                if link is not None else set()
        if link is None:
            raise CniError(NOT_AS_ADDED, f"{what}: interface {att.ifname} is missing in "
                           f"{att.netns} (shoal system reconcile makes it again)")
        if str(ep.ip) not in have:
            raise CniError(NOT_AS_ADDED, f"{what}: {att.ifname} lacks its address {ep.ip}")
        if not link.up:
            raise CniError(NOT_AS_ADDED, f"{what}: {att.ifname} is down")
    from ...checks import FAIL
    from ...drivers import get

    for problem in get(net.driver).diagnose(engine.ctx, net, ep, what):
        if problem.status == FAIL:
            raise CniError(NOT_AS_ADDED, problem.what, problem.fix or "")
    published = {(proto, int(port), int(cport)) for proto, _h, port, _d, cport
                 in store.port_rows(sandbox.id, net.id)}
    for m in conf.port_mappings:
        if (m.protocol, m.host_port, m.container_port) not in published:
            raise CniError(NOT_AS_ADDED, f"{what}: host port {m.host_port}/{m.protocol} is "
                           f"not published to port {m.container_port}")


def _previous_ip(conf: NetConf) -> str | None:
    for ip in (conf.prev_result or {}).get("ips") or []:
        if isinstance(ip, dict) and isinstance(ip.get("address"), str) \
                and ":" not in ip["address"]:
            return ip["address"].split("/")[0]
    return None


# -- STATUS and GC ---------------------------------------------------------------------------

def status(conf: NetConf) -> None:
    """Ready if shoal can work: its directories open, its store writable (Engine.open
    checks both), and the network, if it exists, has room for another container."""
    try:
        engine = open_engine(conf)
    except (ShoalError, OSError) as e:
        raise CniError(NOT_AVAILABLE, f"shoal cannot serve ADD: {e}") from None
    try:
        with engine.store.locked():
            pass  # the lock and the store can be written
        net = networks.named(engine, conf.name)
        if net is not None and net.subnet is not None:
            from ...ipam import StoreAddresses

            try:
                _has_room(engine, net, StoreAddresses)
            except (Conflict, InvalidArgument):
                raise CniError(NOT_AVAILABLE, f"network {net.name} has no free address "
                               f"left in {net.subnet}") from None
    except (ShoalError, OSError) as e:
        raise CniError(NOT_AVAILABLE, f"shoal cannot serve ADD: {e}") from None
    finally:
        engine.close()


def _has_room(engine: Engine, net: Network, allocator: Any) -> None:
    """Raises Conflict if no address is free (allocating inside a rolled-back
    transaction leaves nothing)."""
    store = engine.store
    with store.locked():
        try:
            with store.transaction():
                allocator(store).allocate(net)
                raise _Rollback
        except _Rollback:
            pass


class _Rollback(Exception):
    pass


def gc(engine: Engine, conf: NetConf) -> None:
    """Remove every attachment of the network that is not in cni.dev/valid-attachments (and
    the sandboxes left without any); only CNI runtimes' sandboxes are ever touched."""
    store = engine.store
    valid = set(conf.valid_attachments)
    errors = []
    with store.locked():
        net = networks.named(engine, conf.name)
        eps = store.endpoints(network_id=net.id) if net is not None else []
        for ep in eps:
            sandbox = store.sandbox_by_id(ep.sandbox_id)
            if sandbox is None or sandbox.owned or not sandbox.owner.startswith(CNI_OWNER):
                continue
            if (sandbox.owner[len(CNI_OWNER):], ep.ifname) in valid:
                continue
            try:
                assert net is not None
                engine.disconnect_sandbox(sandbox.id, net.id)
            except (ShoalError, OSError) as e:
                errors.append(f"{sandbox.owner} {ep.ifname}: {e}")
        for sandbox in store.sandboxes(owned=False):
            if sandbox.owner.startswith(CNI_OWNER) and \
                    not store.endpoints(sandbox_id=sandbox.id):
                engine.remove_sandbox(sandbox.id)
    if errors:
        raise CniError(REFUSED, f"GC could not remove {len(errors)} attachment(s): "
                       f"{errors[0]}", "; ".join(errors))
