"""The sockets that hold a container's published host ports (see kernel/hostports.py: the
bind is the check, and the socket keeps anyone else off the port). The process answering
for a container holds them: the supervisor of a `run -d`, or the foreground `run`. A
disconnect elsewhere asks that process (SIGUSR1) to close those no longer published."""

from __future__ import annotations

import os

from ..model import RUNNING, Container

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .context import Context


def release_unpublished(ctx: Context, container_id: str | None = None) -> None:
    """Close the held sockets of ports no longer published (after a disconnect)."""
    from ..kernel import hostports

    for cid in [container_id] if container_id else list(ctx.held):
        socks = ctx.held.get(cid)
        if not socks:
            continue
        still = {(proto, host_ip, int(port))
                 for proto, host_ip, port, _d, _p in ctx.store.port_rows(cid)}
        keep = []
        for sock in socks:
            if hostports.key(sock) in still:
                keep.append(sock)
            else:
                sock.close()
        ctx.held[cid] = keep


def handle_port_releases(ctx: Context) -> Any:
    """Make SIGUSR1 close this process's sockets of ports no longer published; returns the
    previous handler (None if signals cannot be handled here: not the main thread)."""
    import signal

    try:
        return signal.signal(signal.SIGUSR1, lambda _s, _f: release_unpublished(ctx))
    except ValueError:
        return None


def release_elsewhere(ctx: Context, ctr: Container, ports: list[tuple[str, str, int]]) -> None:
    """Ports of a running container were unpublished: have the process holding their
    sockets close them, and wait (briefly) until they are free."""
    import signal
    import time

    from ..kernel import hostports
    from ..runtime import pids

    if ctr.id in ctx.held:
        release_unpublished(ctx, ctr.id)
        return
    if ctr.status != RUNNING or not ctr.supervisor_pid or ctr.supervisor_pid == os.getpid() \
            or not pids.alive(ctr.supervisor_pid, ctr.supervisor_start) \
            or not _catches(ctr.supervisor_pid, signal.SIGUSR1):
        return  # (a process that does not handle it would be killed by it)
    try:
        os.kill(ctr.supervisor_pid, signal.SIGUSR1)
    except ProcessLookupError:
        return
    pending = list(ports)
    deadline = time.monotonic() + 2.0
    while pending and time.monotonic() < deadline:
        try:
            probe = hostports.hold(*pending[-1])
        except OSError:
            time.sleep(0.005)
            continue
        if probe is not None:
            probe.close()
        pending.pop()


def _catches(pid: int, sig: int) -> bool:
    """Whether a process has a handler for a signal (SigCgt in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration, ValueError):
        return False
    return bool(caught & (1 << (sig - 1)))
