"""Namespaces and mounts through the C library: create a network namespace in-process,
bind-mount it so it outlives processes, enter it, and unmount it again."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..errors import KernelError

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

_libc = ctypes.CDLL(None, use_errno=True)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs `shoal run` 5 ms to import
    from typing import TypeVar

    T = TypeVar("T")


def _check(rc: int, what: str) -> None:
    if rc != 0:
        code = ctypes.get_errno()
        raise KernelError(f"{what}: {os.strerror(code)}", code)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def mount(src: str | None, target: str, fstype: str | None, flags: int) -> None:
    _check(
        _libc.mount(
            src.encode() if src else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            None,
        ),
        f"mount {target}",
    )


def umount(target: str, flags: int = MNT_DETACH) -> bool:
    """Unmount; False if nothing was mounted there."""
    if _libc.umount2(target.encode(), flags) != 0:
        code = ctypes.get_errno()
        if code in (errno.EINVAL, errno.ENOENT):
            return False
        raise KernelError(f"unmount {target}: {os.strerror(code)}", code)
    return True


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def current_netns_fd() -> int:
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


@contextmanager
def entered(path: str) -> Iterator[None]:
    """Run a block with this thread inside the network namespace mounted at `path`."""
    home = current_netns_fd()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        os.close(home)
        raise
    try:
        setns(fd, CLONE_NEWNET)
        try:
            yield
        finally:
            setns(home, CLONE_NEWNET)
    finally:
        os.close(fd)
        os.close(home)


def create_netns(path: str, inside: Callable[[], T]) -> T:
    """Create a new network namespace, bind-mount it at `path`, and call `inside()` while this
    thread is in it (sockets opened there stay bound to it). The thread then returns home."""
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    os.close(fd)
    home = current_netns_fd()
    try:
        unshare(CLONE_NEWNET)
        try:
            mount("/proc/thread-self/ns/net", path, None, MS_BIND)
            return inside()
        finally:
            setns(home, CLONE_NEWNET)
    except BaseException:
        umount(path)
        os.unlink(path)
        raise
    finally:
        os.close(home)


def remove_netns(path: str) -> None:
    """Unmount a sandbox's namespace and remove its file. The kernel then destroys the
    namespace and its veths asynchronously once no process is left in it. A symlink there is
    neither followed nor removed."""
    umount(path, MNT_DETACH | UMOUNT_NOFOLLOW)
    try:
        if not os.path.islink(path):
            os.unlink(path)
    except FileNotFoundError:
        pass


NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file: its CLONE_NEW* type (Linux 4.11)


def is_netns(path: str) -> bool:
    """Is `path` a network namespace file (a bind mount of one, as `ip netns`, CNI runtimes
    and dockerd make them)? A symlink is not followed."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False
    finally:
        os.close(fd)


def is_mountpoint(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if line.split()[4] == real:
                return True
    return False


def ensure_private_mount(path: str) -> None:
    """Make `path` a private mount of itself, so that the namespace mounts under it neither
    propagate to other mount namespaces (where copies would keep namespaces alive) nor come
    back from them. A container's process unmounts the whole directory in its own copy."""
    if not is_mountpoint(path):
        mount(path, path, None, MS_BIND)
    mount(None, path, None, MS_PRIVATE)
