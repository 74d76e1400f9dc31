"""The resolver's sockets inside a sandbox: where a container's queries to 127.0.0.11:53 go.

As Docker's embedded DNS does, the resolver listens at 127.0.0.11 on a random port of the
container's own namespace and nftables rules there turn the container's queries to port 53
into queries to that port. So the container may run its own DNS server on port 53
(0.0.0.0:53 does not collide), and the host's port 53 is never touched (aardvark-dns binds
the gateway's port 53 in the host's namespace and collides with a DNS server there:
podman#15452). Where nftables is not available the sockets bind 127.0.0.11:53 itself (and
say so: `mode` "bound").

The rules (table `ip shoal_dns`, a chain on output at the raw priority) rewrite the ports
without state: a query to 127.0.0.11:53 gets the resolver's port as its destination, an
answer from the resolver's port gets 53 as its source, and neither is tracked. Docker's
DNAT does the same through conntrack, which costs every query a lookup and a translation
both ways: measured once with dnsperf through one namespace against this resolver, the
stateless rewrite answered about 105,000 queries/s where the DNAT answered 86,000-90,000.

A socket belongs to the namespace it was made in, whatever namespace its process is in
later: the calling thread enters the sandbox, makes the sockets and the rule, and comes
back. A socket also keeps its namespace alive, which is why the resolver closes a
sandbox's sockets in the same command that removes the sandbox."""

from __future__ import annotations

import os
import socket

from ..kernel import fds, ns

ADDRESS = "127.0.0.11"
DNS_TABLE = "shoal_dns"


class Listener:
    """A sandbox's listening sockets: UDP and TCP, non-blocking."""

    def __init__(self, udp: socket.socket, tcp: socket.socket, mode: str) -> None:
        self.udp, self.tcp, self.mode = udp, tcp, mode

    @property
    def ports(self) -> tuple[int, int]:
        return self.udp.getsockname()[1], self.tcp.getsockname()[1]

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


def redirect_script(udp_port: int, tcp_port: int) -> str:
    """The sandbox's rules, replaced whole in one transaction (a restarted resolver has new
    ports): port 53 of 127.0.0.11 to the resolver's ports and back, stateless."""
    t = f"ip {DNS_TABLE}"
    lines = [f"add table {t}", f"flush table {t}",
             f"add chain {t} output {{ type filter hook output priority raw; }}"]
    for proto, port in (("udp", udp_port), ("tcp", tcp_port)):
        lines += [f"add rule {t} output ip daddr {ADDRESS} {proto} dport 53 notrack "
                  f"{proto} dport set {port}",
                  f"add rule {t} output ip saddr {ADDRESS} {proto} sport {port} notrack "
                  f"{proto} sport set 53"]
    return "\n".join(lines) + "\n"


class Nft:
    """libnftables, loaded once. A context's netlink socket is made when the context is, in
    the namespace of the thread that makes it: one context per sandbox, made inside it."""

    def __init__(self) -> None:
        from ..firewall.nftables import LibContext

        try:
            LibContext()  # loads the library (and checks that it is there)
            self.available = True
        except OSError:
            self.available = False

    def run_here(self, script: str) -> str | None:
        """Run a script in the current namespace; None, or nft's error."""
        from ..firewall.nftables import LibContext

        lib = LibContext()
        try:
            rc, _out, err = lib.run(script)
        finally:
            lib.close()
        return None if rc == 0 else (err.strip().splitlines() or ["failed"])[0]


def listen_in(netns_fd: int, home_fd: int, nft: Nft | None) -> Listener:
    """Make a sandbox's listener: enter its namespace (netns_fd), make the sockets (and the
    port 53 rules if nft is given and available), come back (home_fd). OSError if it cannot."""
    ns.setns(netns_fd, ns.CLONE_NEWNET)
    try:
        return _make(nft)
    finally:
        ns.setns(home_fd, ns.CLONE_NEWNET)


def _make(nft: Nft | None) -> Listener:
    redirect = nft is not None and nft.available
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK
                        | socket.SOCK_CLOEXEC)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                        | socket.SOCK_CLOEXEC)
    try:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # a large receive buffer: queries that arrive while the resolver updates its table
        # wait in it instead of being dropped
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        port = 0 if redirect else 53
        udp.bind((ADDRESS, port))
        tcp.bind((ADDRESS, port))
        tcp.listen(128)
        mode = "bound"
        if redirect:
            assert nft is not None
            error = nft.run_here(redirect_script(udp.getsockname()[1],
                                                 tcp.getsockname()[1]))
            if error is not None:
                raise OSError(f"nftables refused the redirect of 127.0.0.11:53: {error}")
            mode = "redirect"
        # moved above FD_SETSIZE: libnftables waits with select(), which aborts the process
        # on a higher descriptor, and 500 sandboxes' sockets would get there (kernel/fds.py)
        return Listener(fds.out_of_the_way(udp), fds.out_of_the_way(tcp), mode)
    except BaseException:
        udp.close()
        tcp.close()
        raise


def raise_open_files() -> None:
    """Raise the resolver's limit of open files to its hard limit: each sandbox costs it two
    descriptors."""
    import resource

    fds.raise_open_file_limit(resource.getrlimit(resource.RLIMIT_NOFILE)[1])


def open_netns(dir_fd: int, name: str) -> int:
    """A sandbox's namespace file under the netns directory, never through a symlink."""
    return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
