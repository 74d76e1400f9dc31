"""The standard streams of a container's command, as `run` and `exec` attach them: the
descriptors the command gets, and what this process does with the other ends while the
command runs (copy its output to the log and the terminal, a pty's input from the
terminal; pass signals on).

- with a tty (`-t`): stdin, stdout and stderr are one pty's slave side; its master is
  copied to our stdout (and the log), and with `-i` our stdin (in raw mode) to the master;
- without, and with a log: stdout and stderr are pipes copied to our own and to the log;
  stdin is ours with `-i`, else /dev/null;
- without either (`exec` without -t): the command gets our own streams."""

from __future__ import annotations

import os

from . import logs
from .process import DEVNULL, wait_status

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess

    from .process import Child

FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP")  # what we get is the command's, as docker does


class Streams:
    def __init__(self, tty: bool, interactive: bool, log_fd: int | None = None,
                 tee: bool = True) -> None:
        """`log_fd`: the log to write (None: no log); `tee`: copy to our stdout/stderr too
        (the supervisor of a detached container only logs)."""
        self.tty, self.interactive = tty, interactive
        self.copier: logs.Copier | None = None
        self.master: int | None = None
        self.child_ends: list[int] = []
        log = logs.LogWriter(log_fd) if log_fd is not None else None
        self.log_fd = log_fd
        if tty:
            from .terminal import copy_size, open_pty, user_terminal

            self.master, slave = open_pty()
            self.child_ends = [slave]
            copy_size(user_terminal(), self.master)
            self.child: tuple[int | None, int | None, int | None] = (slave, slave, slave)
            self.copier = logs.Copier(log)
            self.copier.add_output(self.master, logs.STDOUT, 1 if tee else None)
            if interactive:
                self.copier.set_input(0, self.master)
        elif log is not None:
            out_r, out_w = logs.pipe()
            err_r, err_w = logs.pipe()
            self.child_ends = [out_w, err_w]
            self.child = (None if interactive else DEVNULL, out_w, err_w)
            self.copier = logs.Copier(log)
            self.copier.add_output(out_r, logs.STDOUT, 1 if tee else None)
            self.copier.add_output(err_r, logs.STDERR, 2 if tee else None)
        else:
            self.child = (None if interactive else DEVNULL, None, None)

    def started(self) -> None:
        """The command has its copies: ours of its ends go (else its output never ends)."""
        for fd in self.child_ends:
            os.close(fd)
        self.child_ends = []

    def wait(self, proc: Child | subprocess.Popen[bytes], forward: bool = True) -> int:
        """Copy until the command exits; its exit status (Docker's: 128+N if killed by
        signal N). Signals this process gets meanwhile are the command's (`forward`)."""
        import signal

        previous = {}
        if forward:
            for name in FORWARDED:
                sig = getattr(signal, name)
                previous[sig] = signal.signal(sig, lambda s, _f: proc.send_signal(s))
        try:
            if self.copier is not None:
                if self.tty:
                    from .terminal import Attached

                    assert self.master is not None
                    with Attached(self.master, raw=self.interactive):
                        self.copier.run(proc.pid)
                else:
                    self.copier.run(proc.pid)
            return wait_status(proc)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def drain(self, limit: float = 1.0) -> None:
        """After the container's processes were killed: what is left in the pipes, then
        everything closes."""
        if self.copier is not None:
            if limit > 0:
                self.copier.run(None, limit=limit)
            self.copier.close()
            self.copier = None
        self.close()

    def close(self) -> None:
        for fd in self.child_ends:
            os.close(fd)
        self.child_ends = []
        if self.copier is not None:
            self.copier.close()
            self.copier = None
        if self.log_fd is not None:
            os.close(self.log_fd)
            self.log_fd = None
