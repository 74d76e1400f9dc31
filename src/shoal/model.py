"""The Container Network Model as plain records: networks, sandboxes, the endpoints that join
sandboxes to networks, and containers (a sandbox plus processes). No I/O here; the store
persists these and the controller changes them."""

from __future__ import annotations

import time

from .records import Parsed, Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv4Interface, IPv4Network

BUILTIN_NETWORKS = ("bridge", "host", "none")

# Container states, as Docker names them.
CREATED, RUNNING, EXITED = "created", "running", "exited"


def _address(text: str) -> IPv4Address:
    from ipaddress import IPv4Address

    return IPv4Address(text)


def _network(text: str) -> IPv4Network:
    from ipaddress import IPv4Network

    return IPv4Network(text)


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
    subnet: IPv4Network | None = Parsed(_network, None)
    gateway: IPv4Address | None = Parsed(_address, None)
    ip_range: IPv4Network | None = Parsed(_network, None)
    internal: bool = False
    labels: dict[str, str] = {}
    options: dict[str, str] = {}
    bridge: str | None = None  # the Linux bridge device, for driver 'bridge'
    last_ip: IPv4Address | None = Parsed(_address, None)  # where the allocator continues

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN_NETWORKS

    @property
    def gateway_interface(self) -> IPv4Interface:
        from ipaddress import IPv4Interface

        assert self.gateway is not None and self.subnet is not None
        return IPv4Interface(f"{self.gateway}/{self.subnet.prefixlen}")


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
    ip: IPv4Address | None = Parsed(_address)  # None while the container is not running
    mac: str | None
    aliases: list[str] = []
    requested_ip: IPv4Address | None = Parsed(_address, None)  # --ip, kept across restarts


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
    to (dest_ip, container_port), dest_ip being its address on network_id."""

    sandbox_id: str
    network_id: str
    proto: str
    host_ip: IPv4Address
    host_port: int
    container_port: int
    dest_ip: IPv4Address
