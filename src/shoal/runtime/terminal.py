"""Pseudo-terminals for `run -t`/`exec -t`, as Docker gives them: the command's stdin, stdout
and stderr are a pty's slave side and its controlling terminal, in a session of its own
(runtime.process makes it so in the child); the CLI copies between its own terminal and the
master side (runtime.logs.Copier), with its terminal in raw mode while it does (restored on
every way out), and passes the window size on at the start and on each SIGWINCH."""

from __future__ import annotations

import os
import struct

NOT_A_TTY = "the input device is not a TTY"  # Docker's words for `-it` from a pipe or file


def open_pty() -> tuple[int, int]:
    """(master, slave), both close-on-exec (the command gets the slave through dup2). The
    slave does not become this process's controlling terminal (openpty opens it O_NOCTTY)."""
    return os.openpty()


def get_size(fd: int) -> tuple[int, int] | None:
    """(rows, columns) of a terminal, or None if fd is not one."""
    import fcntl
    import termios

    try:
        raw = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None
    rows, cols, _x, _y = struct.unpack("HHHH", raw)
    return rows, cols


def set_size(fd: int, rows: int, cols: int) -> None:
    """The window size of a pty (its master side): the kernel tells the pty's foreground
    process group with a SIGWINCH when it changes."""
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def copy_size(src: int | None, master: int) -> None:
    """The size of the terminal `src` (if it is one) onto the pty."""
    size = get_size(src) if src is not None else None
    if size is not None and size != (0, 0):
        set_size(master, *size)


def user_terminal(fds: tuple[int, ...] = (0, 1)) -> int | None:
    """The CLI's own terminal, where its window size is read: stdin, else stdout, if
    either is one."""
    for fd in fds:
        if os.isatty(fd):
            return fd
    return None


def make_controlling(fd: int) -> None:
    """In a child that has just called setsid(): make the terminal `fd` its controlling
    terminal (TIOCSCTTY)."""
    import fcntl
    import termios

    fcntl.ioctl(fd, termios.TIOCSCTTY, 0)


class Attached:
    """The CLI's side of a command on a pty, as a context manager: on entry, the window size
    is copied and followed (SIGWINCH) and, with `raw`, the CLI's terminal (`stdin`) is put
    in raw mode; on exit (however it happens) both are undone."""

    def __init__(self, master: int, raw: bool, stdin: int = 0, stdout: int = 1) -> None:
        self.master = master
        self.raw = raw
        self.stdin = stdin
        self.user = user_terminal((stdin, stdout))
        self.saved: list[object] | None = None
        self.previous_winch: object = None

    def __enter__(self) -> Attached:
        import signal

        if self.user is not None:
            copy_size(self.user, self.master)
            self.previous_winch = signal.signal(
                signal.SIGWINCH, lambda _s, _f: self._resize())
        if self.raw and os.isatty(self.stdin):
            import termios
            import tty

            self.saved = termios.tcgetattr(self.stdin)
            tty.setraw(self.stdin, termios.TCSANOW)
        return self

    def _resize(self) -> None:
        try:
            copy_size(self.user, self.master)
        except OSError:  # the pty is gone
            pass

    def __exit__(self, *exc: object) -> None:
        import signal

        if self.saved is not None:
            import termios

            try:
                termios.tcsetattr(self.stdin, termios.TCSADRAIN, self.saved)
            except OSError:
                pass
            self.saved = None
        if self.user is not None:
            previous = self.previous_winch
            signal.signal(signal.SIGWINCH, previous if previous is not None  # type: ignore[arg-type]
                          else signal.SIG_DFL)
