"""The supervisor of a detached container (`shoal run -d`): a small process in its own
session that starts the container's command, tells the `shoal run` that launched it whether
the start worked, waits for the command to exit, runs it again while its --restart policy
says so (_keep_policy), and records the last exit (removing the container with --rm).

Started by `Containers.run_detached` in isolated mode, from "/", with argv
ROOT RUN_DIR CONTAINER_ID FD LOG (see BOOT). It inherits the sockets that hold the
container's published host ports (runtime.supervisor.inherited_sockets) and keeps them until
the container exits. This is the controller's side; the runtime's side (descriptors,
processes) knows nothing of the controller."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# What the supervisor's interpreter runs: the directory that holds the shoal package comes
# first in argv and is put first on sys.path (isolated mode ignores PYTHONPATH).
BOOT = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from shoal.controller.supervise import main; sys.exit(main(sys.argv[1:]))")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def package_parent() -> str:
    """The directory holding the shoal package this process runs."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def supervisor_env(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The environment a supervisor starts with: PATH (the containers' commands are found
    through it, as they would be in the foreground) and shoal's own variables; nothing that
    changes how Python or the C library behave (PYTHON*, LD_*)."""
    env = {k: v for k, v in environ.items() if k.startswith("SHOAL_")}
    env["PATH"] = environ.get("PATH", DEFAULT_PATH)
    for key in ("LANG", "LC_ALL", "TZ"):
        if key in environ:
            env[key] = environ[key]
    return env


def main(argv: list[str]) -> int:
    import signal

    from ..runtime.supervisor import inherited_sockets

    root, run_dir, cid, fd, log = argv
    held = inherited_sockets(int(fd))
    report = os.fdopen(int(fd), "w")
    from ..errors import ShoalError
    from ..runtime import logs, process
    from ..runtime.attach import Streams
    from .engine import Engine

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        engine = Engine.open(root, run_dir)
        engine.cgroups.join_supervisors()
        if held:
            engine.held[cid] = held
        # before the start records this process as the container's: from then on a
        # disconnect asks it (SIGUSR1) to close the sockets of the ports it unpublished
        engine.handle_port_releases()
        engine.ctx.handling.add(cid)  # this process starts it, whoever created it
        ctr = engine.store.container_by_id(cid)
        if ctr is None:
            raise ShoalError(f"container {cid[:12]} was removed before it started")
        # the command's output comes through pipes this process copies to the log, as
        # records (runtime.logs); the log is never opened through a symlink
        streams = Streams(False, False, logs.open_log(log), tee=False)
        proc = engine.start_process(ctr, *streams.child, new_session=True)
        streams.started()
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
    last = _keep_policy(engine, cid, proc, streams, log)
    if last is not None:
        engine.finish(cid, *last[:2])
        last[2].drain()  # what processes it left wrote before the finish killed them
    engine.close()
    return 0


def _keep_policy(engine: Any, cid: str, proc: Any, streams: Any,
                 log: str) -> tuple[int, int, Any] | None:
    """Wait for the command to exit (copying its output to the log meanwhile) and, as long as
    the container's restart policy says so, run it again (after Docker's backoff) in the
    sandbox it keeps: its addresses, ports and names stay while it restarts. The last
    process's pid, exit code and streams, to record and drain; None if that is done already
    (the command could not start again)."""
    import time

    from ..runtime import logs, process
    from ..runtime.attach import Streams
    from .lifecycle import Backoff, wants_restart

    backoff = Backoff()
    while True:
        started = time.monotonic()
        code = streams.wait(proc, forward=False)
        ctr = engine.store.container_by_id(cid)
        if ctr is None or not wants_restart(ctr, code):
            return proc.pid, code, streams
        deadline = time.monotonic() + backoff.next(time.monotonic() - started)
        while (left := deadline - time.monotonic()) > 0:  # a stop meanwhile ends the wait
            time.sleep(min(left, 0.05))
            ctr = engine.store.container_by_id(cid)
            if ctr is None or ctr.stopped_by_user:
                return proc.pid, code, streams
        fresh = Streams(False, False, logs.open_log(log), tee=False)
        try:
            again = engine.container_ops.respawn(cid, *fresh.child)
        except process.CommandError:
            fresh.close()
            streams.drain()
            return None
        if again is None:
            fresh.close()
            return proc.pid, code, streams
        fresh.started()
        streams.drain()  # the last run's leftovers were killed by the respawn
        proc, streams = again, fresh
