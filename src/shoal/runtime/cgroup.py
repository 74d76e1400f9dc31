"""A container owns every process in it: one cgroup v2 per container, killed as a whole.

Why a cgroup rather than a PID namespace: the container's command keeps its ordinary signal
semantics (as PID 1 of a namespace, `sleep` would ignore `stop`'s SIGTERM and always wait for
the SIGKILL), `exec` needs no double fork into a PID namespace, /proc needs no remount, and
`cgroup.kill` (Linux 5.14) kills everything in the group at once, including processes that
double-forked or changed session. Nothing is limited: shoal enables no controller.

Each container's cgroup is <cgroup2>/shoal/<hash of the run directory>/<container id>: the
run directory names one shoal, so the cleanup of one shoal (reconcile, a test's teardown)
finds its own cgroups and never another's. <cgroup2> is where cgroup v2 is mounted (read from
/proc/self/mountinfo: /sys/fs/cgroup on a pure-v2 machine, /sys/fs/cgroup/unified on a
hybrid one); where none is mounted, shoal mounts one at <run-dir>/cgroup2.
"""

from __future__ import annotations

import errno
import os
import time

TOP = "shoal"
SUPERVISORS = "supervisors"  # the cgroup of the `run -d` supervisors (see join_supervisors)
KILL_TIMEOUT = 10.0  # seconds to wait for a killed group to empty (processes in D state)


def mount_point(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Where cgroup v2 is mounted in this mount namespace, if anywhere."""
    from .process import _unescape

    try:
        with open(mountinfo, "rb") as f:
            for line in f:
                left, _, right = line.partition(b" - ")
                if right.startswith(b"cgroup2 "):
                    return _unescape(left.split()[4]).decode(errors="surrogateescape")
    except OSError:
        pass
    return None


def scope_name(run_dir: str) -> str:
    """The directory of one shoal's cgroups under <cgroup2>/shoal: the 64-bit FNV-1a hash of
    its run directory's path, in hex (hashlib would cost `shoal run` 4 ms to import; the
    harness computes the same to clean up after a test)."""
    h = 0xCBF29CE484222325
    for byte in os.fsencode(os.path.abspath(run_dir)):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


class Cgroups:
    """The cgroups of the containers of one shoal (one run directory)."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self._scope: str | None = None
        self._looked = False

    @property
    def scope(self) -> str | None:
        """<cgroup2>/shoal/<hash>, or None where cgroup v2 cannot be had (then containers
        are not grouped: only their main process is stopped)."""
        if not self._looked:
            self._looked = True
            root = mount_point() or self._mount_own()
            if root is not None:
                self._scope = os.path.join(root, TOP, scope_name(self.run_dir))
        return self._scope

    def _mount_own(self) -> str | None:
        from ..errors import ShoalError
        from ..kernel import ns

        path = os.path.join(self.run_dir, "cgroup2")
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            if not ns.is_mountpoint(path):
                ns.mount("cgroup2", path, "cgroup2", ns.MS_NOSUID | ns.MS_NODEV | ns.MS_NOEXEC)
        except (OSError, ShoalError):  # no cgroup v2 in this kernel, or not allowed
            return None
        return path

    def path(self, container_id: str) -> str | None:
        return os.path.join(self.scope, container_id) if self.scope else None

    def create(self, container_id: str) -> int | None:
        """Make the container's cgroup; an fd of its cgroup.procs for the child to join it
        (write "0") between fork and exec. None if there is no cgroup v2."""
        path = self.path(container_id)
        if path is None:
            return None
        os.makedirs(path, exist_ok=True)
        return os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)

    def join_fd(self, container_id: str) -> int | None:
        """An fd of an existing container cgroup's cgroup.procs (for `exec`), or None."""
        path = self.path(container_id)
        if path is None:
            return None
        try:
            return os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # started by a shoal without cgroups
            return None

    def pids(self, container_id: str) -> list[int]:
        path = self.path(container_id)
        if path is None:
            return []
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return []

    def kill(self, container_id: str) -> bool:
        """Kill every process of the container, wait until the group is empty and remove it.
        True if the group is gone (or never was)."""
        path = self.path(container_id)
        return path is None or kill_path(path)

    def join_supervisors(self) -> None:
        """Move this process (a `run -d` supervisor) into <scope>/supervisors: the live
        supervisors are then one read of its cgroup.procs, which lists neither dead processes
        nor zombies, for the orphan check of every mutating command."""
        if self.scope is None:
            return
        path = os.path.join(self.scope, SUPERVISORS)
        os.makedirs(path, exist_ok=True)
        _write(path, "cgroup.procs", "0")

    def supervisors(self) -> set[int]:
        """The pids of the live `run -d` supervisors of this shoal."""
        if self.scope is None:
            return set()
        try:
            with open(os.path.join(self.scope, SUPERVISORS, "cgroup.procs"), "rb") as f:
                return {int(x) for x in f.read().split()}
        except FileNotFoundError:
            return set()

    def leftovers(self, keep: set[str]) -> list[str]:
        """Container ids of cgroups in this shoal's scope that are not in `keep`."""
        if self.scope is None:
            return []
        try:
            entries = list(os.scandir(self.scope))
        except FileNotFoundError:
            return []
        return [e.name for e in entries if e.name not in keep and e.name != SUPERVISORS
                and e.is_dir(follow_symlinks=False)]


def join(procs_fd: int) -> None:
    """In a forked child: move this process into the cgroup."""
    os.write(procs_fd, b"0")


def populated(path: str) -> bool:
    try:
        with open(os.path.join(path, "cgroup.events")) as f:
            return "populated 1" in f.read()
    except FileNotFoundError:
        return False


def kill_path(path: str, timeout: float = KILL_TIMEOUT) -> bool:
    """cgroup.kill, wait for "populated 0" in cgroup.events (which the kernel signals with
    POLLPRI), rmdir. True if the directory is gone."""
    try:
        fd = os.open(os.path.join(path, "cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        if populated(path):
            import select  # here: a group is empty by the time most containers finish

            from .pids import poll_until

            _write(path, "cgroup.kill", "1")
            if not poll_until(fd, select.POLLPRI, lambda: not populated(path), timeout):
                return False
    finally:
        os.close(fd)
    for _ in range(50):
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as e:  # EBUSY: the last exit is not quite accounted yet
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.01)
    return False


def _write(path: str, name: str, value: str) -> None:
    fd = os.open(os.path.join(path, name), os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
