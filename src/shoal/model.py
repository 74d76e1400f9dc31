"""The Container Network Model as plain records: networks, sandboxes, the endpoints that join
sandboxes to networks, and containers (a sandbox plus processes). No I/O here; the store
persists these and the controller changes them."""

from __future__ import annotations

import time

from .records import Parsed, Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipaddress import (
        IPv4Address,
        IPv4Interface,
        IPv4Network,
        IPv6Address,
        IPv6Interface,
        IPv6Network,
    )

    # an address, subnet or interface of either family: records carry their family (the
    # `version` of each, 4 or 6); what shoal accepts from users is IPv4 only for now
    # (shoal.ipam and shoal.ports refuse IPv6 input with a one-line error)
    IPAddress = IPv4Address | IPv6Address
    IPNetwork = IPv4Network | IPv6Network
    IPInterface = IPv4Interface | IPv6Interface

BUILTIN_NETWORKS = ("bridge", "host", "none")
DEFAULT_NETWORK = "bridge"  # where a container goes without --network (Docker's docker0)

# Container states, as Docker names them.
CREATED, RUNNING, EXITED = "created", "running", "exited"


def _address(text: str) -> IPAddress:
    from ipaddress import ip_address

    return ip_address(text)


def _network(text: str) -> IPNetwork:
    from ipaddress import ip_network

    return ip_network(text)


def now() -> str:
    """A timestamp in Docker's format (RFC 3339, UTC, nanoseconds)."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


class Network(Record):
    id: str
    name: str
    driver: str
    created: str
    # addresses may be given as text (the store does), parsed when first read: listing
    # networks then never imports ipaddress
    subnet: IPNetwork | None = Parsed(_network, None)
    gateway: IPAddress | None = Parsed(_address, None)
    ip_range: IPNetwork | None = Parsed(_network, None)
    internal: bool = False
    labels: dict[str, str] = {}
    options: dict[str, str] = {}
    bridge: str | None = None  # the Linux bridge device, for driver 'bridge'
    last_ip: IPAddress | None = Parsed(_address, None)  # where the allocator continues

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN_NETWORKS

    @property
    def family(self) -> int | None:
        """4 or 6: the family of the subnet (None for host and none)."""
        return self.subnet.version if self.subnet is not None else None

    @property
    def gateway_interface(self) -> IPInterface:
        from ipaddress import ip_interface

        assert self.gateway is not None and self.subnet is not None
        return ip_interface(f"{self.gateway}/{self.subnet.prefixlen}")


class Sandbox(Record):
    """CNM's sandbox: a network namespace that endpoints join. A container's own sandbox is
    made by shoal (`owned`), has the container's id and lives at netns/<id> under the run
    directory (the deterministic name reconcile finds it by). One handed in by another
    runtime (a CNI runtime, dockerd) is not owned: shoal joins and leaves endpoints in it,
    but never creates or removes the namespace itself."""

    id: str
    path: str  # the namespace file; '' for an owned one: netns/<id> under the run directory
    owned: bool
    created: str
    owner: str = ""  # who holds it: the container's id, or e.g. "cni:<container id>"


class Endpoint(Record):
    """A sandbox's attachment to a network (for the bridge driver: a veth pair)."""

    id: str
    sandbox_id: str
    network_id: str
    ifname: str  # eth0, eth1, ... inside the sandbox
    ip: IPAddress | None = Parsed(_address)  # None while the container is not running
    mac: str | None
    aliases: list[str] = []
    requested_ip: IPAddress | None = Parsed(_address, None)  # --ip, kept across restarts

    @property
    def family(self) -> int | None:
        """4 or 6: the family of its address (None while it has none)."""
        return self.ip.version if self.ip is not None else None


class RemoteEndpoint(Record):
    """An endpoint of another host on an overlay network, as the global store announced it
    (cluster/endpoints.py) and this host's watcher mirrored it: what the VXLAN device's
    static entries (kernel/vxlan.add_remote) and the embedded resolver's names need."""

    id: str
    network_id: str
    host: str  # the host id that runs it
    address: IPAddress = Parsed(_address)  # that host's underlay address
    ip: IPAddress = Parsed(_address)
    mac: str
    names: list[str] = []  # its container's name, short id, hostname and aliases


class Container(Record):
    id: str
    name: str
    created: str
    hostname: str
    cmd: list[str]
    env: list[str]
    network_mode: str  # 'bridge'/<network name>, 'host', 'none' or 'container:<id>'
    status: str = CREATED
    pid: int | None = None
    pid_start: int | None = None  # the process's start time, to tell a reused pid apart
    supervisor_pid: int | None = None
    supervisor_start: int | None = None
    exit_code: int = 0
    started_at: str = "0001-01-01T00:00:00Z"
    finished_at: str = "0001-01-01T00:00:00Z"
    auto_remove: bool = False
    error: str = ""
    workdir: str = "/"
    publish: list[list[object]] = []  # -p as given: [container_port, proto, host_ip, host_port]
    expose: list[list[object]] = []  # --expose and -P: [port, proto]
    dns: list[str] = []  # --dns: where the embedded resolver forwards (or resolv.conf's servers)
    dns_search: list[str] = []  # --dns-search
    dns_options: list[str] = []  # --dns-option
    extra_hosts: list[str] = []  # --add-host NAME:IP, as given (host-gateway resolved)
    labels: dict[str, str] = {}  # --label and --label-file
    user: str = ""  # -u user|uid[:group|gid] as given ("": root), resolved at each start
    restart_policy: str = "no"  # --restart: no, on-failure, always or unless-stopped
    restart_max: int = 0  # on-failure:N (0: no limit), Docker's MaximumRetryCount
    restart_count: int = 0  # restarts by the policy since the last start by the user
    stopped_by_user: bool = False  # stop, kill or rm -f: the policy does not undo it

    @property
    def shares_sandbox_of(self) -> str | None:
        if self.network_mode.startswith("container:"):
            return self.network_mode.split(":", 1)[1]
        return None

    @property
    def has_own_sandbox(self) -> bool:
        return self.network_mode != "host" and self.shares_sandbox_of is None

    @property
    def sandbox_id(self) -> str | None:
        """The sandbox the container's processes run in: its own (which has its id), the one
        it shares (--network container:X), or None in the host's namespace."""
        if self.network_mode == "host":
            return None
        return self.shares_sandbox_of or self.id


class PublishedPort(Record):
    """A host port published for a running sandbox: (proto, host_ip, host_port) is DNATed
    to (dest_ip, container_port), dest_ip being its address on network_id. Both addresses
    are of one family (`family`); host_ip is that family's unspecified address (0.0.0.0)
    for a port published on every address of the host."""

    sandbox_id: str
    network_id: str
    proto: str
    host_ip: IPAddress = Parsed(_address)
    host_port: int
    container_port: int
    dest_ip: IPAddress = Parsed(_address)

    @property
    def family(self) -> int:
        """4 or 6, the family of its addresses."""
        return self.dest_ip.version
