"""The runtime's side of a detached container's supervisor (see controller/supervise.py for
what the supervisor does): taking over the descriptors `shoal run -d` handed it."""

from __future__ import annotations

import os
import socket
import stat


def inherited_sockets(keep: int) -> list[socket.socket]:
    """The sockets `shoal run -d` handed over (every inherited descriptor past stderr but
    the report pipe `keep`): they hold the container's published host ports."""
    out = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2 or fd == keep:
            continue
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
        except OSError:  # (the descriptor of the directory listing itself)
            continue
        os.set_inheritable(fd, False)
        out.append(socket.socket(fileno=fd))
    return out
