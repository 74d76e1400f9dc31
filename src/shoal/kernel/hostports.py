"""Host ports held with bound sockets, as Docker holds them.

A published port is DNATed before any socket of the host sees it, so nothing stops a host
process from binding the same port and then silently receiving nothing (or, once the
container stops, its traffic). shoal therefore binds a socket to every published (proto,
host address, host port) and keeps it for as long as the port is published, in the process
that answers for the container (the supervisor of a `run -d`, or the `shoal run` of a
foreground one):

- the bind is also the check: a port a host process has (listening, bound, even with
  SO_REUSEADDR) fails with EADDRINUSE before anything is made;
- shoal's sockets set neither SO_REUSEADDR nor SO_REUSEPORT, so a later bind by a host
  process fails whatever options it sets (both sockets would need them to share);
- TCP sockets are bound without listen(): that holds the port, accepts nothing and keeps
  the socket out of /proc/net/tcp.

Finding the process behind EADDRINUSE (/proc/net/* inode, then /proc/*/fd) is for the error
message only."""

from __future__ import annotations

import errno
import os
import socket

from .fds import out_of_the_way

SCTP = 132
_KINDS = {"tcp": (socket.SOCK_STREAM, 0), "udp": (socket.SOCK_DGRAM, 0),
          "sctp": (socket.SOCK_STREAM, SCTP)}
# sockets of the same protocol in /proc/net (IPv6 ones too: a dual-stack [::]:PORT listener
# holds the IPv4 port as well)
_PROC_FILES = {"tcp": ("tcp", "tcp6"), "udp": ("udp", "udp6"), "sctp": ()}


class PortInUse(OSError):
    """EADDRINUSE for one (proto, host address, port)."""

    def __init__(self, proto: str, host_ip: str, port: int) -> None:
        super().__init__(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))
        self.proto, self.host_ip, self.port = proto, host_ip, port


def hold(proto: str, host_ip: str, port: int) -> socket.socket | None:
    """A socket bound to (host_ip, port) for `proto`; PortInUse if something has the port.
    None when this kernel has no such protocol (SCTP without its module: no process can
    listen on it either)."""
    kind, number = _KINDS[proto]
    try:
        sock = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC, number)
    except OSError as e:
        if e.errno in (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EAFNOSUPPORT):
            return None
        raise
    try:
        if kind == socket.SOCK_DGRAM:
            # nothing should arrive (every packet for the port is translated), and what does
            # (for 127.0.0.0/8 from outside, never translated) must not pile up
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        sock.bind((host_ip, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise PortInUse(proto, host_ip, port) from None
        raise
    return out_of_the_way(sock)


def key(sock: socket.socket) -> tuple[str, str, int]:
    """(proto, host ip, port) a held socket is bound to."""
    if sock.type == socket.SOCK_DGRAM:
        proto = "udp"
    else:
        proto = "sctp" if sock.proto == SCTP else "tcp"
    ip, port = sock.getsockname()
    return proto, ip, port


# -- who has it (the error path) -----------------------------------------------------------------


LISTENING = {"tcp": "0A", "udp": "07"}  # /proc/net states: TCP LISTEN, UDP unconnected


def _inodes(proto: str, port: int, state: str | None = None) -> set[str]:
    """Inodes of this namespace's sockets bound to `port` (any address), in `state` only if
    given."""
    out = set()
    for name in _PROC_FILES[proto]:
        try:
            with open(f"/proc/net/{name}") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if (int(fields[1].rsplit(":", 1)[1], 16) == port and fields[9] != "0"
                            and state in (None, fields[3])):
                        out.add(fields[9])
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return out


def _command(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return "?"
    words = raw.rstrip(b"\0").split(b"\0")
    text = " ".join(w.decode(errors="replace") for w in words)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 80 else text[:77] + "..."


def owners(proto: str, port: int) -> list[tuple[int, str]]:
    """(pid, command) of the processes holding a socket bound to `port` in this namespace;
    empty if none can be found (a socket bound without listening, or another namespace's)."""
    wanted = {f"socket:[{inode}]" for inode in _inodes(proto, port)}
    if not wanted:
        return []
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                    found.append((int(pid), _command(pid)))
                    break
            except OSError:
                continue
    return sorted(found)


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets one process holds (doctor tells shoal's own from others)."""
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def listened_on_elsewhere(proto: str, port: int, mine: set[str]) -> bool:
    """Whether a socket other than those with inodes `mine` listens on `port` (TCP) or is
    bound to it (UDP)."""
    return proto in LISTENING and bool(_inodes(proto, port, LISTENING[proto]) - mine)


def in_use_message(err: PortInUse) -> str:
    who = owners(err.proto, err.port)
    by = ""
    if who:
        by = " by " + ", ".join(f"process {pid} ({cmd})" for pid, cmd in who[:3])
    return (f"cannot publish {err.host_ip}:{err.port}/{err.proto}: address already in use"
            f"{by}; stop it, or publish another host port")
