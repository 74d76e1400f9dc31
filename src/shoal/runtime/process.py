"""Start, enter, watch and signal container processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable

from ..errors import ShoalError
from ..kernel import ns
from ..records import Record
from .pids import alive, wait_gone


class Namespaces(Record):
    """Where a new container process goes."""

    netns: str | None  # a sandbox's namespace file; None for the host's namespace
    hostname: str | None  # a new UTS namespace with this hostname; None to keep the host's
    files: list[tuple[str, str]]  # (source, target) bind mounts: /etc/hosts, /etc/hostname
    hidden: list[str] = []  # shoal's state and run directories: an empty tmpfs over each


def _namespace_mounts() -> list[str]:
    """Mount points of namespace files (nsfs) in this mount namespace."""
    points = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            left, _, right = line.partition(b" - ")
            if right.startswith(b"nsfs "):
                raw = left.split()[4]
                points.append(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), raw))
    return [p.decode(errors="surrogateescape") for p in points]


def _enter_new(spec: Namespaces, netns_fd: int | None) -> Callable[[], None]:
    """The function a forked child runs before exec: join the sandbox, make its own mount
    (and UTS) namespace, mount its own /etc/hosts and /etc/hostname.

    The new mount namespace starts as a copy of the host's, including every bind-mounted
    network namespace (shoal's sandboxes, `ip netns` ones). A copy keeps a namespace alive
    after its owner unmounts it, so the container unmounts them all in its own copy: removing
    any other container then still destroys its namespace and veths at once."""
    def enter() -> None:
        if netns_fd is not None:
            ns.setns(netns_fd, ns.CLONE_NEWNET)
        ns.unshare(ns.CLONE_NEWNS | (ns.CLONE_NEWUTS if spec.hostname else 0))
        ns.mount(None, "/", None, ns.MS_REC | ns.MS_SLAVE)
        for path in _namespace_mounts():
            ns.umount(path)
        if spec.hostname:
            ns.sethostname(spec.hostname)
        for src, dst in spec.files:
            if os.path.exists(dst):
                ns.mount(src, dst, None, ns.MS_BIND)
        for path in spec.hidden:  # after the binds above, which keep their files
            if os.path.isdir(path):
                ns.mount("shoal-hidden", path, "tmpfs", ns.MS_NOSUID | ns.MS_NODEV | ns.MS_NOEXEC)

    return enter


def _exit_status(code: int) -> int:
    """Docker's convention: killed by signal N exits 128+N."""
    return 128 - code if code < 0 else code


def spawn(
    cmd: list[str],
    spec: Namespaces,
    env: dict[str, str],
    cwd: str,
    stdin: int | None,
    stdout: int | None,
    stderr: int | None,
    new_session: bool,
) -> subprocess.Popen[bytes]:
    # the namespace's fd is opened for the fork and closed right after it: kept open, it would
    # hold the sandbox's namespace (and its veths) alive after the sandbox is removed
    netns_fd = os.open(spec.netns, os.O_RDONLY | os.O_CLOEXEC) if spec.netns else None
    try:
        return subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd if os.path.isdir(cwd) else "/",
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            preexec_fn=_enter_new(spec, netns_fd),
            start_new_session=new_session,
        )
    except FileNotFoundError:
        raise CommandError(127, f"cannot run {cmd[0]!r}: executable file not found") from None
    except PermissionError:
        raise CommandError(126, f"cannot run {cmd[0]!r}: permission denied") from None
    except subprocess.SubprocessError as e:
        raise CommandError(126, f"cannot enter the container's namespaces: {e}") from None
    finally:
        if netns_fd is not None:
            os.close(netns_fd)


class CommandError(ShoalError):
    """The container's command could not be started; exit_code follows Docker (126/127)."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exec_in(
    pid: int,
    cmd: list[str],
    env: dict[str, str],
    cwd: str,
    stdin: int | None = None,
    stdout: int | None = None,
    stderr: int | None = None,
) -> subprocess.Popen[bytes]:
    """Run a command inside the namespaces of a running container's process."""
    fds = []
    try:
        for kind in ("net", "uts", "mnt"):
            fds.append(os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY))
    except OSError:
        for fd in fds:
            os.close(fd)
        raise ShoalError(f"the container's process {pid} is gone") from None

    def enter() -> None:
        for fd, flag in zip(fds, (ns.CLONE_NEWNET, ns.CLONE_NEWUTS, ns.CLONE_NEWNS), strict=True):
            ns.setns(fd, flag)
        os.chdir(cwd if os.path.isdir(cwd) else "/")

    try:
        return subprocess.Popen(
            cmd, env=env, stdin=stdin, stdout=stdout, stderr=stderr, preexec_fn=enter
        )
    except FileNotFoundError:
        raise CommandError(127, f"cannot run {cmd[0]!r}: executable file not found") from None
    except PermissionError:
        raise CommandError(126, f"cannot run {cmd[0]!r}: permission denied") from None
    except subprocess.SubprocessError as e:
        raise CommandError(126, f"cannot enter the container's namespaces: {e}") from None
    finally:
        for fd in fds:
            os.close(fd)


def wait_status(proc: subprocess.Popen[bytes]) -> int:
    return _exit_status(proc.wait())


def terminate(pid: int, started: int | None, timeout: float) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds, as `docker stop` does."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if not alive(pid, started):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if wait_gone(pid, started, wait):
            return
