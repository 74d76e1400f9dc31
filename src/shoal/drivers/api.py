"""The network driver protocol: what the controller asks of a kind of network.

Modelled on libnetwork's `driverapi.Driver` (CreateNetwork, DeleteNetwork, Join(sandbox key),
Leave) and netavark's `NetworkDriver` (validate, setup, teardown). A driver knows how its
networks and endpoints are made in the kernel; the controller knows the order of things
(intent recorded first, rollback on failure), the store, IPAM and the firewall. A new driver
is one module implementing `NetworkDriver` plus one line in `shoal.drivers.REGISTRY` (or
`shoal.drivers.register` at run time, as the tests' fake driver does).

Every method that touches the kernel gets a `HostHandles`: the host namespace's netlink
socket and descriptor, and the owner mark of this shoal root. A driver holds no state of its
own between calls: everything it needs is in the records it is given."""

from __future__ import annotations

from . import ENDPOINTS, GLOBAL, HOST, LOCAL, NONE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar, Protocol

    from ..checks import Check
    from ..controller.cluster import ClusterLink
    from ..kernel.netlink import Netlink
    from ..model import Endpoint, Network
else:
    Protocol = object

__all__ = ["ENDPOINTS", "GLOBAL", "HOST", "LOCAL", "NONE", "HostHandles", "NetworkDriver"]


class HostHandles(Protocol):
    """The kernel handles of the host namespace, as a driver needs them."""

    @property
    def host(self) -> Netlink: ...  # netlink in the host namespace

    @property
    def host_fd(self) -> int: ...  # the host namespace (veths are moved back into it)

    @property
    def mark(self) -> str: ...  # names.owner_mark(root): put on every link shoal makes

    @property
    def cluster(self) -> ClusterLink: ...  # the host's cluster (overlay networks only)


class NetworkDriver(Protocol):
    name: ClassVar[str]  # as given to `network create -d`
    scope: ClassVar[str]  # LOCAL or GLOBAL
    sandbox: ClassVar[str]  # ENDPOINTS, HOST or NONE
    user_networks: ClassVar[bool]  # may `network create` make more than the built-in one?
    addresses: ClassVar[bool]  # do its networks have a subnet and hand out addresses?
    # do its networks serve names by the embedded resolver (127.0.0.11 in their containers,
    # see controller/files.embedded_dns)? Docker's default `bridge` network never does
    names: ClassVar[bool]

    def validate(self, handles: HostHandles, net: Network, others: list[Network]) -> Network:
        """Check a network about to be created (its options, and that what it would make
        in the kernel is free) and return it completed with what the driver names (e.g. the
        bridge device). Called with the lock held, before anything is recorded; raises
        InvalidArgument or Conflict. Reads the kernel at most."""

    def builtin(self, net: Network) -> Network:
        """The built-in network of this driver (bridge's default `bridge`, `host`, `none`),
        completed as `validate` would."""

    def create_network(self, handles: HostHandles, net: Network) -> None:
        """Make the network in the kernel (its record is already in the store)."""

    def delete_network(self, handles: HostHandles, net: Network) -> None:
        """Remove what create_network made; a network already gone is not an error."""

    def max_endpoints(self, net: Network) -> tuple[int, str] | None:
        """(how many endpoints the network holds at most, the error past that), or None."""

    def port_name(self, ep: Endpoint) -> str | None:
        """The host-side interface of an endpoint, which the firewall names (icc off)."""

    def owns_link(self, name: str) -> bool:
        """Is a link of that name one the driver makes (never one of the host's own)?"""

    def icc(self, net: Network) -> bool:
        """May the containers of the network reach each other (Docker's enable_icc)?"""

    def masquerade(self, net: Network) -> bool:
        """Is what its containers send beyond the host masqueraded (Docker's
        enable_ip_masquerade)?"""

    def host_binding_ip(self, net: Network) -> str | None:
        """The host address a `-p` without one publishes on (Docker's host_binding_ipv4);
        None: every address."""

    def join(self, handles: HostHandles, sandbox: Netlink, net: Network, ep: Endpoint,
             first: bool, fresh: bool = False) -> None:
        """Plug an endpoint (address and MAC allocated) into a sandbox: `sandbox` is netlink
        inside its namespace. `first`: the sandbox's first endpoint (it gets the default
        route); `fresh`: the namespace was made just now."""

    def leave(self, handles: HostHandles, sandbox: Netlink | None, net: Network,
              ep: Endpoint) -> None:
        """Unplug an endpoint. With `sandbox` None (the namespace is gone or not ours to
        enter), remove what the driver made on the host's side only."""

    def endpoint_present(self, handles: HostHandles, net: Network, ep: Endpoint) -> bool:
        """Is the endpoint's kernel side still there (reconcile makes it again if not)?"""

    def repair(self, handles: HostHandles, net: Network) -> str | None:
        """Make a network's kernel side again if it went missing (a host restart, a hand
        deletion); one line saying what was done, or None."""

    def gc(self, handles: HostHandles, nets: list[Network], live: list[Endpoint]) -> list[str]:
        """Remove kernel objects carrying the driver's names that no record has (`nets`: its
        networks, `live`: the endpoints that are plugged in); one line per removal. Only
        this root's objects (by mark) are ever removed."""

    def foreign_root(self, handles: HostHandles) -> str | None:
        """Another shoal root whose objects of this driver's are in this namespace, if any."""

    def diagnose(self, handles: HostHandles, net: Network, ep: Endpoint | None,
                 who: str) -> list[Check]:
        """Checks of the network's kernel side (ep None) or of one endpoint's host side;
        `who` starts each line (a container's name)."""
