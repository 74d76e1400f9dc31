"""Unit tests for shoal.runtime.terminal on real ptys (no root needed): a command on a pty
has it as its controlling terminal with the size given, the size follows the user's
terminal on SIGWINCH, and raw mode is undone however the attachment ends."""

from __future__ import annotations

import os
import signal
import subprocess
import termios

import pytest

from shoal.runtime import terminal
from shoal.runtime.logs import STDOUT, Copier


def test_size_round_trip() -> None:
    master, slave = terminal.open_pty()
    try:
        terminal.set_size(master, 24, 80)
        assert terminal.get_size(slave) == (24, 80)
        terminal.set_size(master, 50, 132)
        assert terminal.get_size(master) == (50, 132)
        r, w = os.pipe()
        assert terminal.get_size(r) is None  # not a terminal
        os.close(r)
        os.close(w)
    finally:
        os.close(master)
        os.close(slave)


def test_the_pty_is_close_on_exec_and_not_our_controlling_terminal() -> None:
    master, slave = terminal.open_pty()
    try:
        assert not os.get_inheritable(master) and not os.get_inheritable(slave)
        assert os.ttyname(slave).startswith("/dev/pts/")
    finally:
        os.close(master)
        os.close(slave)


def _on_pty(cmd: str, rows: int = 33, cols: int = 77) -> bytes:
    """Run sh -c CMD on a fresh pty as shoal runs a -t command; what the master shows."""
    master, slave = terminal.open_pty()
    terminal.set_size(master, rows, cols)
    proc = subprocess.Popen(["sh", "-c", cmd], stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True,
                            preexec_fn=lambda: terminal.make_controlling(0))
    os.close(slave)
    out_r, out_w = os.pipe()
    copier = Copier(None)
    copier.add_output(master, STDOUT, out_w)
    copier.run(proc.pid)
    proc.wait()
    copier.run(None, limit=0.5)
    copier.close()
    os.close(out_w)
    with os.fdopen(out_r, "rb") as f:
        return f.read()


def test_a_command_on_the_pty_has_it_as_controlling_terminal_with_the_size() -> None:
    shown = _on_pty("tty; stty size; ps -o sid=,tty= -p $$; echo $$").decode()
    lines = [line.strip() for line in shown.split("\r\n") if line.strip()]
    assert lines[0].startswith("/dev/pts/")
    assert lines[1] == "33 77"
    sid, tty = lines[2].split()
    assert sid == lines[3] and tty == lines[0][len("/dev/"):]  # its session, its terminal


def test_attached_sets_raw_mode_follows_the_size_and_restores() -> None:
    user_master, user_slave = terminal.open_pty()  # the user's terminal
    master, slave = terminal.open_pty()  # the command's
    try:
        terminal.set_size(user_master, 40, 100)
        before = termios.tcgetattr(user_slave)
        assert before[3] & termios.ICANON  # cooked to start with
        with pytest.raises(RuntimeError):
            with terminal.Attached(master, raw=True, stdin=user_slave, stdout=user_slave):
                assert terminal.get_size(master) == (40, 100)
                now = termios.tcgetattr(user_slave)
                assert not now[3] & (termios.ICANON | termios.ECHO | termios.ISIG)
                terminal.set_size(user_master, 45, 110)
                os.kill(os.getpid(), signal.SIGWINCH)  # as the kernel sends it
                assert terminal.get_size(master) == (45, 110)
                raise RuntimeError("any way out")
        assert termios.tcgetattr(user_slave) == before
        assert signal.getsignal(signal.SIGWINCH) in (signal.SIG_DFL, None)
        # without raw (run -t without -i): the terminal is left as it is
        with terminal.Attached(master, raw=False, stdin=user_slave, stdout=user_slave):
            assert termios.tcgetattr(user_slave) == before
    finally:
        for fd in (user_master, user_slave, master, slave):
            os.close(fd)


def test_the_user_terminal_is_stdin_or_stdout() -> None:
    master, slave = terminal.open_pty()
    r, w = os.pipe()
    try:
        assert terminal.user_terminal((r, slave)) == slave
        assert terminal.user_terminal((r, w)) is None
    finally:
        for fd in (master, slave, r, w):
            os.close(fd)
