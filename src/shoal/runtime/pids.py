"""Is a process still running? Light on imports: readers such as `shoal ps` use it."""

from __future__ import annotations

import os
import select
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def alive(pid: int | None, started: int | None) -> bool:
    """Is this exact process (not a later one that reused its pid) still running?"""
    if not pid:
        return False
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def wait_gone(pid: int, started: int | None, timeout: float) -> bool:
    """Wait up to `timeout` seconds for a process (not necessarily our child) to exit."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return not alive(pid, started)
    try:
        return poll_until(fd, select.POLLIN, lambda: not alive(pid, started), timeout)
    finally:
        os.close(fd)


def poll_until(fd: int, events: int, done: Callable[[], bool], timeout: float) -> bool:
    """Wait up to `timeout` seconds for `done()`, woken by `events` on `fd` (a pidfd, a
    cgroup.events file) and every 50 ms at the latest. True if it came true in time."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(fd, events)
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        poller.poll(min(left, 0.05) * 1000)
    return True


def kill_all_in(netns_path: str) -> None:
    """SIGKILL every process in the network namespace mounted at `netns_path` (a container
    whose start was interrupted before its process was recorded)."""
    import signal  # here, not above: it imports enum, which read-only commands never need

    try:
        inode = os.stat(netns_path, follow_symlinks=False).st_ino  # a symlink matches nothing
    except OSError:
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            link = os.readlink(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if link == f"net:[{inode}]":
            try:
                os.kill(int(entry), signal.SIGKILL)
            except ProcessLookupError:
                pass
