"""The supervisor of a detached container (`shoal run -d`): a small process in its own
session that starts the container's command, tells the `shoal run` that launched it whether
the start worked, waits for the command to exit, and records the exit (removing the
container with --rm).

Started (internal) by `Engine.run_detached` in isolated mode, from "/", with argv
ROOT RUN_DIR CONTAINER_ID FD LOG; see engine.SUPERVISOR_BOOT. It inherits the sockets that
hold the container's published host ports and keeps them until the container exits.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import sys


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


def main(argv: list[str]) -> int:
    root, run_dir, cid, fd, log = argv
    held = inherited_sockets(int(fd))
    report = os.fdopen(int(fd), "w")
    from ..engine import Engine
    from ..errors import ShoalError
    from . import process

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        engine = Engine(root, run_dir)
        engine.cgroups.join_supervisors()
        if held:
            engine.held[cid] = held
        # before the start records this process as the container's: from then on a
        # disconnect asks it (SIGUSR1) to close the sockets of the ports it unpublished
        engine.handle_port_releases()
        engine._handling.add(cid)  # this process starts it, whoever created it
        ctr = engine.store.container_by_id(cid)
        if ctr is None:
            raise ShoalError(f"container {cid[:12]} was removed before it started")
        # never through a symlink (the container's directory was made by shoal, see shoal.dirs)
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW,
                      0o600)
        proc = engine.start_process(ctr, process.DEVNULL, out, out, new_session=True)
        os.close(out)
        if held:  # a disconnect while the container was being created did not ask this process
            engine.release_unpublished(cid)
    except process.CommandError as e:
        report.write(f"cmd\t{e.exit_code}\t{e}")
        report.close()
        return e.exit_code
    except ShoalError as e:
        report.write(f"err\t{e}")
        report.close()
        return 1
    except Exception as e:  # report anything, never leave `shoal run -d` waiting
        report.write(f"err\tsupervisor failed: {e!r}")
        report.close()
        return 1
    report.write(f"ok\t{proc.pid}")
    report.close()
    code = process.wait_status(proc)
    engine.finish(cid, proc.pid, code)
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
