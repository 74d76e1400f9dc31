"""A process's descriptors: keeping the low ones free, and the limit of open files.

Code that waits with select() (libnftables does, for its netlink socket) can only watch
descriptors below FD_SETSIZE, and glibc aborts the process when it is handed a higher one.
A process that holds thousands of long-lived sockets (published host ports, the embedded
resolver's sockets in every sandbox) therefore moves them from HIGH_FDS up, leaving the low
numbers to short-lived descriptors."""

from __future__ import annotations

import fcntl
import socket

HIGH_FDS = 1024  # FD_SETSIZE: the descriptors select() can watch are below it


def out_of_the_way(sock: socket.socket) -> socket.socket:
    """The socket moved to a descriptor from HIGH_FDS up, where the limit allows, with the
    same blocking mode; as it was where it does not."""
    try:
        fd = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, HIGH_FDS)
    except OSError:  # (the soft limit is below HIGH_FDS, or full up there)
        return sock
    moved = socket.socket(sock.family, sock.type, sock.proto, fileno=fd)
    moved.setblocking(sock.getblocking())  # (a socket from a descriptor starts blocking)
    sock.close()
    return moved


def raise_open_file_limit(needed: int) -> None:
    """Let this process hold `needed` more descriptors, raising the soft RLIMIT_NOFILE up to
    the hard one if it has to (10,000 published ports need 10,000 sockets)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = HIGH_FDS + needed + 256  # above the select() range, and a margin
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def open_file_limit() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
