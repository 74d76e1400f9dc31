"""Host-port allocation for published ports: the host ports a starting container asks for,
or free ones from the host's ephemeral range, checked against the ports shoal has published
(the local store) and against the host's processes (the bind of a holding socket is the
check: shoal.kernel.hostports). The kernel-facing part (binding, holding, naming a port's
owner) stays in shoal.kernel.hostports; this module decides which ports."""

from __future__ import annotations

import errno
from ipaddress import IPv4Address

from .. import ports as portspec
from ..errors import Conflict, InvalidArgument, ShoalError
from ..model import Network, PublishedPort

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

    from ..store.protocol import LocalStore


class HostPorts:
    """The host-port allocator of one host (`shoal.ipam.protocol.HostPortAllocator`), backed
    by the local store's published ports. Cost: one indexed look-up per fixed port (one scan
    beyond 64 of them), one range query for random ones, one bind per port; nothing grows
    with the ports already published."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store

    def allocate(self, sandbox_id: str, net: Network, dest_ip: IPv4Address,
                 bindings: list[portspec.Binding], host_addresses: set[IPv4Address],
                 sockets: list[socket.socket]) -> list[PublishedPort]:
        """Host ports for a sandbox (a starting container's, or one handed in), stored in
        the caller's transaction, each held by a bound socket appended to `sockets`
        (kernel/hostports.py).
        Conflicts (with shoal's ports, or a host process's) are reported before anything is
        created; on an error no socket is left open."""
        try:
            return self._allocate(sandbox_id, net, dest_ip, bindings, host_addresses, sockets)
        except BaseException:
            for sock in sockets:
                sock.close()
            sockets.clear()
            raise

    def _allocate(self, sandbox_id: str, net: Network, dest_ip: IPv4Address,
                  bindings: list[portspec.Binding], host_addresses: set[IPv4Address],
                  sockets: list[socket.socket]) -> list[PublishedPort]:
        from ..kernel import fds, hostports, sysctl

        if net.internal and bindings:
            raise InvalidArgument(
                f"network {net.name} is internal: its containers cannot publish ports "
                "(leave out -p/-P, or use a network without --internal)"
            )
        for b in bindings:
            if (b.host_ip != portspec.ANY and b.host_ip not in host_addresses
                    and not b.host_ip.is_loopback):
                raise InvalidArgument(
                    f"cannot publish on {b.host_ip}: it is not an address of this host"
                )
        fixed = [b for b in bindings if b.host_port is not None]
        # (proto, host port) -> host addresses holding it: published ones, then this request's
        held: dict[tuple[str, int], dict[IPv4Address, str]] = {}
        for proto, port, ip, owner_id in self.store.holders(
                [(b.proto, b.host_port or 0) for b in fixed]):
            held.setdefault((proto, port), {})[IPv4Address(ip)] = owner_id
        mine = object()
        for b in fixed:
            assert b.host_port is not None
            holders = held.setdefault((b.proto, b.host_port), {})
            clash = [ip for ip in holders if portspec.overlap(ip, b.host_ip)]
            if clash:
                owner_id = holders[clash[0]]
                if owner_id is mine:
                    raise Conflict(f"host port {b.host_port}/{b.proto} is given twice")
                raise Conflict(
                    f"host port {clash[0]}:{b.host_port}/{b.proto} is already published by "
                    f"{self._owner(owner_id)}"
                )
            holders[b.host_ip] = mine  # type: ignore[assignment]
        if len(bindings) > 64:
            fds.raise_open_file_limit(len(bindings))

        def hold(b: portspec.Binding, port: int) -> None:
            try:
                sock = hostports.hold(b.proto, str(b.host_ip), port)
            except hostports.PortInUse:
                raise
            except OSError as e:
                if e.errno == errno.EMFILE:
                    raise Conflict(
                        f"cannot hold {len(bindings)} host ports: a process may open only "
                        f"{fds.open_file_limit()} files here (ulimit -n); raise that "
                        "limit or publish fewer ports") from None
                raise ShoalError(f"cannot hold host port {b.host_ip}:{port}/{b.proto}: "
                                 f"{e.strerror}") from None
            if sock is not None:
                sockets.append(sock)

        for b in fixed:
            assert b.host_port is not None
            try:
                hold(b, b.host_port)
            except hostports.PortInUse as e:
                raise Conflict(hostports.in_use_message(e)) from None
        out = []
        random = [b for b in bindings if b.host_port is None]
        if random:
            port_range = portspec.parse_port_range(sysctl.read(sysctl.PORT_RANGE))
            reserved = portspec.parse_reserved(sysctl.read(sysctl.RESERVED_PORTS))
            unavailable = {(p, proto) for p in reserved for proto in portspec.PROTOCOLS}
            unavailable |= self.store.published_host_ports(*port_range)
            unavailable |= {(b.host_port or 0, b.proto) for b in fixed}
            for proto in portspec.PROTOCOLS:
                wanted = [b for b in random if b.proto == proto]
                candidates = portspec.free_ports(proto, port_range, unavailable)
                for b in wanted:
                    # the bind says whether a host process has the port: then the next one
                    for port in candidates:
                        try:
                            hold(b, port)
                        except hostports.PortInUse:
                            continue
                        fixed.append(b.replace(host_port=port))
                        break
                    else:
                        raise portspec.no_free_port(proto, port_range)
        for b in fixed:
            assert b.host_port is not None
            out.append(PublishedPort(sandbox_id=sandbox_id, network_id=net.id, proto=b.proto,
                                     host_ip=b.host_ip, host_port=b.host_port,
                                     container_port=b.container_port, dest_ip=dest_ip))
        self.store.add_ports(out)
        return out

    def _owner(self, sandbox_id: str) -> str:
        """Who publishes from a sandbox, for a conflict's message: a container, or the
        runtime that handed the sandbox in."""
        if (ctr := self.store.container_by_id(sandbox_id)) is not None:
            return f"container {ctr.name}"
        sandbox = self.store.sandbox_by_id(sandbox_id)
        return f"sandbox {sandbox.owner if sandbox and sandbox.owner else sandbox_id[:12]}"
