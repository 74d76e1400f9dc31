"""The remote network driver API's calls, each mapped onto the Engine.

dockerd's own IPAM chooses every address: CreateNetwork brings the pool and gateway (a
shoal bridge network `docker-<first 12 of the network id>` is made with them), and
CreateEndpoint the endpoint's address, which shoal records and later takes exactly. At Join
shoal makes the endpoint's veth pair in the host namespace (the host end on the bridge) and
names the peer; dockerd moves it into the container's namespace, renames it eth0, addresses
it and routes through the gateway. Nothing that matters is kept in memory: a restarted plugin
answers dockerd's later calls from shoal's store."""

from __future__ import annotations

from ...errors import InvalidArgument, NotFound, ShoalError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ...controller import Engine
    from ...model import Sandbox

GENERIC = "com.docker.network.generic"
INTERNAL = "com.docker.network.internal"
PORTMAP = "com.docker.network.portmap"
ID_LABEL = "com.docker.network.id"
NETWORK_PREFIX = "docker-"
DOCKER_OWNER = "docker:"
PEER_PREFIX = "eth"  # dockerd names the moved peer eth0, eth1, ...
PROTOCOL_NUMBERS = {6: "tcp", 17: "udp", 132: "sctp"}


class BadRequest(ShoalError):
    """A request whose body is not what the API defines (names the field)."""


def network_name(network_id: str) -> str:
    return NETWORK_PREFIX + network_id[:12]


def owner(endpoint_id: str) -> str:
    return DOCKER_OWNER + endpoint_id


def _field(req: dict[str, Any], name: str, kind: type = str, required: bool = True) -> Any:
    value = req.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (kind is str and not value):
        what = {str: "a non-empty string", dict: "an object", list: "a list"}.get(kind, kind)
        raise BadRequest(f"bad request: {name} must be {what}, not {value!r}")
    return value


def _without_mask(text: str, name: str) -> str:
    """'a.b.c.d/nn' (or a plain address) as dockerd sends addresses: the address."""
    if not isinstance(text, str) or not text:
        raise BadRequest(f"bad request: {name} must be an address (a.b.c.d/nn), not {text!r}")
    return text.split("/", 1)[0]


class DockerDriver:
    """The handlers: `handle(path, request)` returns the response body or raises
    ShoalError (its message becomes the response's Err)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.routes: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "/Plugin.Activate": self.activate,
            "/NetworkDriver.GetCapabilities": self.capabilities,
            "/NetworkDriver.CreateNetwork": self.create_network,
            "/NetworkDriver.DeleteNetwork": self.delete_network,
            "/NetworkDriver.CreateEndpoint": self.create_endpoint,
            "/NetworkDriver.DeleteEndpoint": self.delete_endpoint,
            "/NetworkDriver.EndpointOperInfo": self.endpoint_info,
            "/NetworkDriver.Join": self.join,
            "/NetworkDriver.Leave": self.leave,
            "/NetworkDriver.DiscoverNew": self.nothing,
            "/NetworkDriver.DiscoverDelete": self.nothing,
            "/NetworkDriver.ProgramExternalConnectivity": self.program_external,
            "/NetworkDriver.RevokeExternalConnectivity": self.revoke_external,
        }

    def handle(self, path: str, req: dict[str, Any]) -> dict[str, Any]:
        handler = self.routes.get(path)
        if handler is None:
            raise NotFound(f"unknown call {path}: shoal implements /Plugin.Activate and the "
                           "NetworkDriver calls")
        return handler(req)

    # -- the plugin ---------------------------------------------------------------------

    def activate(self, _req: dict[str, Any]) -> dict[str, Any]:
        return {"Implements": ["NetworkDriver"]}

    def capabilities(self, _req: dict[str, Any]) -> dict[str, Any]:
        return {"Scope": "local", "ConnectivityScope": "local"}

    def nothing(self, _req: dict[str, Any]) -> dict[str, Any]:
        return {}  # DiscoverNew/DiscoverDelete: nodes and datastores mean nothing locally

    # -- networks -------------------------------------------------------------------------

    def create_network(self, req: dict[str, Any]) -> dict[str, Any]:
        nid = _field(req, "NetworkID")
        options = _field(req, "Options", dict, required=False) or {}
        generic = options.get(GENERIC) or {}
        if not isinstance(generic, dict):
            raise BadRequest(f"bad request: Options[{GENERIC}] must be an object")
        if req.get("IPv6Data"):
            raise InvalidArgument("IPv6 is not supported by the shoal driver yet: create the "
                                  "network without --ipv6")
        pools = _field(req, "IPv4Data", list)
        if len(pools) != 1 or not isinstance(pools[0], dict):
            raise InvalidArgument("the shoal driver takes exactly one IPv4 subnet per "
                                  f"network, not {len(pools)}: give one --subnet")
        pool = _field(pools[0], "Pool")
        gateway = pools[0].get("Gateway")
        if (pools[0].get("AuxAddresses") or {}) != {}:
            raise InvalidArgument("the shoal driver does not support --aux-address")
        name = network_name(nid)
        try:
            net = self.engine.network(name)
        except NotFound:
            net = None
        if net is not None:  # asked again (dockerd retrying): the same network is fine
            if net.labels.get(ID_LABEL) == nid and str(net.subnet) == pool:
                return {}
            raise InvalidArgument(f"shoal already has a network {name} of another Docker "
                                  "network; remove it (shoal network rm) first")
        opts = {str(k): v if isinstance(v, str) else str(v).lower()
                for k, v in generic.items()}
        self.engine.create_network(
            name, "bridge", subnet=pool,
            gateway=_without_mask(gateway, "Gateway") if gateway else None,
            internal=bool(options.get(INTERNAL)), labels={ID_LABEL: nid}, options=opts)
        return {}

    def delete_network(self, req: dict[str, Any]) -> dict[str, Any]:
        name = network_name(_field(req, "NetworkID"))
        try:
            net = self.engine.network(name)
        except NotFound:
            return {}  # gone already (a retried call)
        # dockerd deletes a network only once it has no endpoints: any of its sandboxes
        # still recorded are ones whose DeleteEndpoint was lost
        with self.engine.store.locked():
            for ep in self.engine.store.endpoints(network_id=net.id):
                sb = self.engine.store.sandbox_by_id(ep.sandbox_id)
                if sb is not None and sb.owner.startswith(DOCKER_OWNER):
                    self.engine.remove_sandbox(sb.id)
            self.engine.remove_network(net.id)
        return {}

    # -- endpoints ----------------------------------------------------------------------

    def _sandbox(self, req: dict[str, Any]) -> Sandbox | None:
        return self.engine.handed_in_sandbox(owner(_field(req, "EndpointID")))

    def create_endpoint(self, req: dict[str, Any]) -> dict[str, Any]:
        name = network_name(_field(req, "NetworkID"))
        eid = _field(req, "EndpointID")
        iface = _field(req, "Interface", dict, required=False) or {}
        if iface.get("AddressIPv6"):
            raise InvalidArgument("IPv6 is not supported by the shoal driver yet")
        if not iface.get("Address"):
            raise InvalidArgument("dockerd gave the endpoint no IPv4 address: the shoal "
                                  "driver needs dockerd's IPAM to choose one")
        ip = _without_mask(iface["Address"], "Interface.Address")
        mac = iface.get("MacAddress") or None
        _sb, ep = self.engine.add_handed_off_endpoint(owner(eid), name, ip, mac)
        return {"Interface": {}} if mac else {"Interface": {"MacAddress": ep.mac}}

    def delete_endpoint(self, req: dict[str, Any]) -> dict[str, Any]:
        sb = self._sandbox(req)
        if sb is not None:
            self.engine.remove_sandbox(sb.id)
        return {}

    def endpoint_info(self, req: dict[str, Any]) -> dict[str, Any]:
        sb = self._sandbox(req)
        if sb is None:
            raise NotFound(f"no endpoint {req.get('EndpointID')} in shoal")
        eps = self.engine.store.endpoints(sandbox_id=sb.id)
        value = {"ip": str(eps[0].ip)} if eps and eps[0].ip else {}
        return {"Value": value}

    def join(self, req: dict[str, Any]) -> dict[str, Any]:
        name = network_name(_field(req, "NetworkID"))
        key = _field(req, "SandboxKey")
        sb = self._sandbox(req)
        if sb is None:
            raise NotFound(f"no endpoint {req['EndpointID']} in shoal (was it created "
                           "through another plugin?); recreate the container")
        _ep, peer = self.engine.hand_off_endpoint(sb.id, name, key)
        net = self.engine.network(name)
        out: dict[str, Any] = {"InterfaceName": {"SrcName": peer, "DstPrefix": PEER_PREFIX}}
        if not net.internal and net.gateway is not None:
            out["Gateway"] = str(net.gateway)
        return out

    def leave(self, req: dict[str, Any]) -> dict[str, Any]:
        name = network_name(_field(req, "NetworkID"))
        sb = self._sandbox(req)
        if sb is not None:
            try:
                self.engine.take_back_endpoint(sb.id, name)
            except NotFound:
                pass  # its network is gone: so is its endpoint
        return {}

    # -- published ports ------------------------------------------------------------------

    def program_external(self, req: dict[str, Any]) -> dict[str, Any]:
        from ...ports import ANY, Binding

        name = network_name(_field(req, "NetworkID"))
        options = _field(req, "Options", dict, required=False) or {}
        portmap = options.get(PORTMAP) or []
        if not isinstance(portmap, list):
            raise BadRequest(f"bad request: Options[{PORTMAP}] must be a list")
        sb = self._sandbox(req)
        if sb is None:
            raise NotFound(f"no endpoint {req.get('EndpointID')} in shoal")
        fixed: list[Binding] = []
        ranges: list[tuple[Binding, int, int]] = []
        for entry in portmap:
            if not isinstance(entry, dict):
                raise BadRequest(f"bad request: a port binding must be an object: {entry!r}")
            proto = PROTOCOL_NUMBERS.get(entry.get("Proto", 6))
            if proto is None:
                raise InvalidArgument(f"unknown protocol number {entry.get('Proto')!r}: "
                                      "tcp (6), udp (17) or sctp (132)")
            port = entry.get("Port")
            lo, hi = entry.get("HostPort") or 0, entry.get("HostPortEnd") or 0
            if not all(isinstance(p, int) and 0 <= p <= 65535 for p in (port, lo, hi)) \
                    or not port or (hi and hi < lo):
                raise InvalidArgument(f"bad port binding {entry!r}: Port 1-65535, HostPort "
                                      "0-65535 (0: any) and HostPortEnd not below it")
            text = entry.get("HostIP") or ""
            if ":" in text:
                if text == "::":
                    continue  # dockerd's IPv6 twin of a 0.0.0.0 binding: no IPv6 yet
                raise InvalidArgument(f"cannot publish on {text}: IPv6 is not supported yet")
            from ...ipam import parse_address

            host_ip = parse_address(text, "HostIP") if text and text != "0.0.0.0" else ANY
            b = Binding(container_port=port, proto=proto, host_ip=host_ip,
                        host_port=lo or None, ip_given=bool(text))
            if lo and hi > lo:
                ranges.append((b, lo, hi))
            else:
                fixed.append(b)
        # the port map is the endpoint's whole set (dockerd sends it once per join): what a
        # retried call published before is replaced, and a failed call leaves none
        self.engine.unpublish_sandbox(sb.id, name)
        try:
            self.engine.publish_sandbox(sb.id, name, fixed)
            for b, lo, hi in ranges:  # one free host port of the range, as dockerd takes
                self._publish_one_of(sb.id, name, b, lo, hi)
        except BaseException:
            self.engine.unpublish_sandbox(sb.id, name)
            raise
        return {}

    def _publish_one_of(self, sandbox_id: str, name: str, b: Any, lo: int, hi: int) -> None:
        from ...errors import Conflict

        for port in range(lo, hi + 1):
            try:
                self.engine.publish_sandbox(sandbox_id, name, [b.replace(host_port=port)])
                return
            except Conflict:
                continue
        raise Conflict(f"no free host port in {lo}-{hi}/{b.proto} for container port "
                       f"{b.container_port}: unpublish some or give another range")

    def revoke_external(self, req: dict[str, Any]) -> dict[str, Any]:
        name = network_name(_field(req, "NetworkID"))
        sb = self._sandbox(req)
        if sb is not None:
            try:
                self.engine.unpublish_sandbox(sb.id, name)
            except NotFound:
                pass
        return {}
