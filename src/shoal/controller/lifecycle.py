"""The rest of a container's lifecycle, as Docker has it: kill, wait, rename, top and stats,
the restart policy (--restart: what the supervisor decides after an exit, Docker's backoff),
and bringing back the containers the policy keeps after the host rebooted. `start` and the
supervisor's restart live with create in containers.py (they share its sandbox-making)."""

from __future__ import annotations

import os
import time

from ..errors import Conflict, InvalidArgument, NotFound
from ..model import CREATED, EXITED, RUNNING, Container
from ..names import validate_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .containers import Containers
    from .context import Context

POLICIES = ("no", "on-failure", "always", "unless-stopped")
FIRST_DELAY, MAX_DELAY, RESET_AFTER = 0.1, 60.0, 10.0  # Docker's restart manager


def parse_restart(text: str) -> tuple[str, int]:
    """--restart no|on-failure[:N]|always|unless-stopped: (policy, maximum retries, 0 for
    no limit)."""
    name, sep, count = text.partition(":")
    if name not in POLICIES:
        raise InvalidArgument(f"invalid restart policy {text!r}: use no, on-failure[:N], "
                              "always or unless-stopped")
    if not sep:
        return name, 0
    if name != "on-failure":
        raise InvalidArgument(f"invalid restart policy {text!r}: only on-failure takes a "
                              "maximum retry count")
    if not (count.isascii() and count.isdigit()):
        raise InvalidArgument(f"invalid restart policy {text!r}: the maximum retry count "
                              "must be a number, 0 or more")
    return name, int(count)


def wants_restart(ctr: Container, exit_code: int) -> bool:
    """After its command exited: does the container's policy start it again? Never after a
    stop, kill or rm -f by the user."""
    if ctr.stopped_by_user or ctr.status != RUNNING:
        return False
    if ctr.restart_policy in ("always", "unless-stopped"):
        return True
    if ctr.restart_policy == "on-failure":
        return exit_code != 0 and (ctr.restart_max == 0 or ctr.restart_count < ctr.restart_max)
    return False


def back_after_boot(ctr: Container) -> bool:
    """Is the container started again after a host reboot? always: yes; unless-stopped:
    unless the user stopped it."""
    return ctr.restart_policy == "always" or (
        ctr.restart_policy == "unless-stopped" and not ctr.stopped_by_user)


class Backoff:
    """Docker's delay before each restart: 100 ms, doubling (at most a minute), back to
    100 ms after a run of 10 seconds or more."""

    def __init__(self) -> None:
        self.delay = FIRST_DELAY

    def next(self, ran_for: float) -> float:
        if ran_for >= RESET_AFTER:
            self.delay = FIRST_DELAY
        delay, self.delay = self.delay, min(self.delay * 2, MAX_DELAY)
        return delay


def parse_signal(text: str) -> int:
    """kill -s: a name with or without SIG (KILL, SIGTERM, term) or a number."""
    import signal

    if text.isascii() and text.isdigit():
        number = int(text)
        if not 0 < number < signal.NSIG:
            raise InvalidArgument(f"invalid signal: {text}")
        return number
    name = text.upper()
    try:
        return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except KeyError:
        raise InvalidArgument(f"invalid signal: {text} (give a name such as TERM or "
                              "SIGKILL, or a number)") from None


class Lifecycle:
    def __init__(self, ctx: Context, containers: Containers) -> None:
        self.ctx, self.containers = ctx, containers

    # -- kill ------------------------------------------------------------------------------

    def kill(self, ref: str, sig: int) -> Container:
        """Send a signal to a running container's main process, as `docker kill` does; the
        policy does not start it again. With SIGKILL, returns once its exit is recorded."""
        import signal

        from ..runtime import pids

        ops, store = self.containers, self.ctx.store
        cid = ops.get(ref).id
        self.ctx.handling.add(cid)  # (before the lock: its orphan check leaves it to this)
        try:
            with store.locked():
                ctr = ops._reap_if_orphaned(ops.get(cid))
                gone = not pids.alive(ctr.pid, ctr.pid_start)
                if ctr.status == RUNNING and gone and ctr.restart_policy != "no":
                    raise Conflict(f"cannot kill container: {ref}: container {ctr.id} is "
                                   "restarting, wait until it is running (or stop it)")
                if ctr.status != RUNNING or gone:
                    raise Conflict(f"cannot kill container: {ref}: container {ctr.id} is not "
                                   "running")
                ctr = ops._stopped_by_user(ctr)
            assert ctr.pid is not None
            if pids.alive(ctr.pid, ctr.pid_start):
                try:
                    os.kill(ctr.pid, sig)
                except ProcessLookupError:
                    pass
            supervised = pids.alive(ctr.supervisor_pid, ctr.supervisor_start)
            if sig == signal.SIGKILL or not supervised:
                # (unsupervised: this command records the exit, if the signal ended it)
                pids.wait_gone(ctr.pid, ctr.pid_start, 5.0 if sig == signal.SIGKILL else 0.5)
                ops._await_supervisor(ctr, sig)
        finally:
            self.ctx.handling.discard(cid)
        return ctr

    # -- wait ------------------------------------------------------------------------------

    def wait(self, ref: str) -> int:
        """Block until the container has exited; its exit code. Waits on its processes'
        pidfds (the main process and the one that records its exit), never spinning."""
        from ..runtime import pids

        store = self.ctx.store
        cid = self.containers.get(ref).id
        while True:
            ctr = store.container_by_id(cid)
            if ctr is None:
                raise NotFound(f"no such container: {ref} (it was removed)")
            if ctr.status == EXITED:
                return ctr.exit_code
            supervisor = (ctr.supervisor_pid, ctr.supervisor_start)
            if not pids.alive(*supervisor):
                # nobody will record its exit: the lock's orphan check of this command does
                with store.locked():
                    cur = store.container_by_id(cid)
                    if cur is not None and cur.status != EXITED:
                        self.containers.reap(cur)
                continue
            main_alive = ctr.status == RUNNING and pids.alive(ctr.pid, ctr.pid_start)
            watched = [supervisor] + ([(ctr.pid, ctr.pid_start)] if main_alive else [])
            # while the main process runs, sleep until it (or its supervisor) ends; once it
            # is gone, its exit is about to be recorded (or a restart is due): look again soon
            _wait_any(watched, 5.0 if main_alive and ctr.status != CREATED else 0.05)

    # -- rename ----------------------------------------------------------------------------

    def rename(self, ref: str, new: str) -> Container:
        """A new name; the embedded resolver answers it (and no longer the old one) when this
        returns: the store notes the rename as a change of the container's sandbox."""
        validate_name(new, "container")
        store = self.ctx.store
        with store.locked():
            ctr = self.containers.get(ref)
            if new == ctr.name:
                raise Conflict(f"renaming a container with the same name as its current "
                               f"name: {new}")
            if store.name_taken(new):
                raise Conflict(f"the container name {new} is already in use by another "
                               "container; remove or rename that one, or pick another name")
            with store.transaction():
                store.update_container(ctr.id, name=new)
            return ctr.replace(name=new)

    # -- top and stats ---------------------------------------------------------------------

    def running(self, ref: str) -> Container:
        ctr = self.containers.get(ref)
        if self.containers.effective_status(ctr) != RUNNING:
            raise Conflict(f"container {ctr.name} is not running")
        return ctr

    def top(self, ref: str, ps_args: list[str]) -> tuple[list[str], list[list[str]]]:
        """`ps ps_args` (default -ef) on the host, its rows kept for the processes of the
        container's cgroup, as Docker's top does: (titles, rows)."""
        import subprocess

        ctr = self.running(ref)
        wanted = set(self.ctx.cgroups.pids(ctr.id)) or {ctr.pid}
        args = ps_args or ["-ef"]
        try:
            out = subprocess.run(["ps", *args], capture_output=True, text=True, check=False,
                                 env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                      "LC_ALL": "C"})
        except FileNotFoundError:
            raise NotFound("ps is not installed: shoal top runs the host's ps") from None
        if out.returncode != 0:
            raise InvalidArgument(f"ps {' '.join(args)} failed: "
                                  f"{(out.stderr.strip().splitlines() or ['?'])[0]}")
        lines = out.stdout.splitlines()
        titles = lines[0].split() if lines else []
        if "PID" not in titles:
            raise InvalidArgument(f"ps {' '.join(args)}: its output has no PID column")
        col = titles.index("PID")
        rows = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > col and fields[col].isdigit() and int(fields[col]) in wanted:
                rows.append(fields)
        return titles, rows

    def stats(self, refs: list[str], interval: float = 0.5) -> list[dict[str, str]]:
        """One sample of each running container (all of them if none is named), in Docker's
        columns: CPU over `interval` seconds, memory, network and block I/O, pids."""
        ctrs = [self.running(r) for r in refs] if refs else self.containers.list()
        first = {c.id: (_cpu_usec(self.ctx, c), time.monotonic()) for c in ctrs}
        if ctrs:
            time.sleep(interval)
        rows = []
        total = _mem_total()
        for c in ctrs:
            usec, then = first[c.id]
            used = _cpu_usec(self.ctx, c)
            cpu = (used - usec) / 1e6 / max(time.monotonic() - then, 1e-6) * 100
            mem = _memory(self.ctx, c)
            rx, tx = _net_io(c)
            rd, wr = _block_io(self.ctx, c)
            rows.append({
                "ID": c.id[:12], "Container": c.id[:12], "Name": c.name,
                "CPUPerc": f"{cpu:.2f}%",
                "MemUsage": f"{bytes_size(mem)} / {bytes_size(total)}",
                "MemPerc": f"{mem / total * 100 if total else 0:.2f}%",
                "NetIO": f"{human_size(rx)} / {human_size(tx)}",
                "BlockIO": f"{human_size(rd)} / {human_size(wr)}",
                "PIDs": str(_threads(self.ctx, c)),
            })
        return rows

    # -- after a reboot --------------------------------------------------------------------

    def restore_after_boot(self) -> list[str]:
        """Start the containers their policy brings back after a host reboot (always, and
        unless-stopped ones the user had not stopped); a line for each."""
        from ..errors import ShoalError

        done = []
        for ctr in self.ctx.store.containers():
            if ctr.status != EXITED or not back_after_boot(ctr):
                continue
            try:
                self.containers.start(ctr.id)
            except ShoalError as e:
                done.append(f"container {ctr.name}: not started again after the reboot "
                            f"(--restart {ctr.restart_policy}): {e}")
                continue
            done.append(f"container {ctr.name}: started again after the reboot "
                        f"(--restart {ctr.restart_policy})")
        return done


def _wait_any(procs: list[tuple[int | None, int | None]], timeout: float) -> None:
    """Sleep until one of the processes (pid, start time) ends, or `timeout` seconds."""
    import select

    from ..runtime import pids

    fds = []
    try:
        for pid, start in procs:
            if not pid:
                continue
            try:
                fd = os.pidfd_open(pid)
            except OSError:  # gone already
                return
            fds.append(fd)
            if not pids.alive(pid, start):  # (the pid was reused, or it just ended)
                return
        if fds:
            select.select(fds, [], [], timeout)
        else:
            time.sleep(timeout)
    finally:
        for fd in fds:
            os.close(fd)


# -- what stats reads ----------------------------------------------------------------------------


def _cgroup_file(ctx: Context, ctr: Container, name: str) -> str | None:
    path = ctx.cgroups.path(ctr.id)
    if path is None:
        return None
    try:
        with open(os.path.join(path, name)) as f:
            return f.read()
    except OSError:
        return None


def _cpu_usec(ctx: Context, ctr: Container) -> int:
    text = _cgroup_file(ctx, ctr, "cpu.stat") or ""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value)
    return 0


def _memory(ctx: Context, ctr: Container) -> int:
    """memory.current where the memory controller is on; else the resident memory of the
    cgroup's processes."""
    text = _cgroup_file(ctx, ctr, "memory.current")
    if text is not None:
        return int(text)
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in ctx.cgroups.pids(ctr.id):
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            pass
    return total


def _threads(ctx: Context, ctr: Container) -> int:
    text = _cgroup_file(ctx, ctr, "pids.current")
    if text is not None:
        return int(text)
    threads = _cgroup_file(ctx, ctr, "cgroup.threads")
    return len(threads.split()) if threads is not None else 0


def _block_io(ctx: Context, ctr: Container) -> tuple[int, int]:
    read = written = 0
    for line in (_cgroup_file(ctx, ctr, "io.stat") or "").splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key == "rbytes":
                read += int(value)
            elif key == "wbytes":
                written += int(value)
    return read, written


def _net_io(ctr: Container) -> tuple[int, int]:
    """Bytes received and sent on the interfaces of the container's namespace but lo, from
    /proc/PID/net/dev (which shows the namespace of that process)."""
    if ctr.network_mode == "host" or not ctr.pid:
        return 0, 0
    try:
        with open(f"/proc/{ctr.pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return 0, 0
    rx = tx = 0
    for line in lines:
        name, _, counters = line.partition(":")
        if name.strip() == "lo":
            continue
        fields = counters.split()
        rx, tx = rx + int(fields[0]), tx + int(fields[8])
    return rx, tx


def _mem_total() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def human_size(n: float) -> str:
    """Docker's decimal sizes (go-units HumanSizeWithPrecision, 3 digits): 648B, 1.23kB."""
    return _size(n, 1000.0, ("B", "kB", "MB", "GB", "TB", "PB"), 3)


def bytes_size(n: float) -> str:
    """Docker's binary sizes (go-units BytesSize, 4 digits): 1.504MiB / 7.667GiB."""
    return _size(n, 1024.0, ("B", "KiB", "MiB", "GiB", "TiB", "PiB"), 4)


def _size(n: float, base: float, units: tuple[str, ...], digits: int) -> str:
    i = 0
    while n >= base and i < len(units) - 1:
        n /= base
        i += 1
    return f"{n:.{digits}g}{units[i]}"
