"""`run -t`, `run -it`, `exec -t`, `exec -it` under a real terminal: the test holds the
master side of a pty whose slave is the shoal CLI's controlling terminal, types into it and
reads what the CLI shows, as a user at a terminal would."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from .harness import Host


class Terminal:
    """The shoal CLI running on a pty of the test's (its controlling terminal)."""

    def __init__(self, host: Host, *args: str, rows: int = 37, cols: int = 101) -> None:
        self.master, self.slave = os.openpty()
        self.resize(rows, cols)
        self.before = termios.tcgetattr(self.slave)
        slave = self.slave

        def controlling() -> None:  # (after start_new_session's setsid)
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

        cmd = ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal", "--root",
               host.root, "--run-dir", host.run_dir, *args]
        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave,
                                     env=host.env(), cwd=str(host.base),
                                     start_new_session=True, preexec_fn=controlling)
        self.seen = b""

    def resize(self, rows: int, cols: int) -> None:
        """A new window size: the kernel sends the CLI (the terminal's foreground) SIGWINCH."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, text: bytes, timeout: float = 15) -> bytes:
        """Read until `text` was shown; everything shown up to it."""
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {text!r}; seen {self.seen!r}")
            import select

            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"the terminal closed before {text!r}; seen "
                                         f"{self.seen!r}")
                self.seen += chunk
        upto = self.seen.index(text) + len(text)
        shown, self.seen = self.seen[:upto], self.seen[upto:]
        return shown

    def wait(self, timeout: float = 20) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def terminals() -> object:
    made: list[Terminal] = []

    def make(host: Host, *args: str, **kw: int) -> Terminal:
        made.append(Terminal(host, *args, **kw))
        return made[-1]

    yield make
    for t in made:
        t.close()


def _shell_session(term: Terminal, host: Host, name: str) -> None:
    """What the issue asks a pty to show: the tty, the size the user's terminal has, the
    shell as the container's main process (run) or a process of it (exec)."""
    # (the terminal echoes what is typed: a marker typed as RE""ADY shows as READY only
    # when the shell prints it)
    term.send(b"echo RE''ADY\n")
    term.expect(b"READY\r\n")
    # (ps pads the column: the spaces go, or the shell would split the word)
    term.send(b"tty; stty size; echo pid=$$ sid=$(ps -o sid= -p $$ | tr -d ' '); "
              b"echo EN''D\n")
    shown = term.expect(b"END\r\n").decode()
    # (the shell's prompt "# " may come after the echo of a line typed ahead of it, in
    # front of the command's first output)
    lines = [line.strip().removeprefix("# ") for line in shown.splitlines()]
    assert any(line.startswith("/dev/") for line in lines), shown
    tty = next(line for line in lines if line.startswith("/dev/"))
    assert tty.startswith("/dev/pts/")
    assert "37 101" in lines  # the size of the test's terminal, passed at the start
    pid_line = next(line for line in lines if line.startswith("pid="))
    pid, sid = (int(part.split("=")[1]) for part in pid_line.split())
    assert pid == sid  # a session of its own (whose controlling terminal the pty is)
    # a new window size reaches the command (SIGWINCH, TIOCSWINSZ)
    term.resize(50, 120)
    time.sleep(0.3)
    term.send(b"stty size\n")
    term.expect(b"50 120\r\n")
    # ^C goes through the pty as a byte: it interrupts the sleep inside, not the CLI
    term.send(b"sleep 30\n")
    time.sleep(0.5)
    started = time.monotonic()
    term.send(b"\x03")
    term.send(b"echo st''atus=$?\n")
    term.expect(b"status=130\r\n", timeout=10)  # the sleep died of SIGINT (128+2)
    assert time.monotonic() - started < 5
    term.send(b"exit 3\n")


def test_run_it_gives_the_shell_a_terminal_size_signals_and_its_exit_code(
        host: Host, terminals: object) -> None:
    term = terminals(host, "run", "-it", "--name", "box", "--", "sh")  # type: ignore[operator]
    _shell_session(term, host, "box")
    assert term.wait() == 3
    # the CLI's terminal is as it was before (raw mode undone)
    assert termios.tcgetattr(term.slave) == term.before
    data = host.shoal_json("inspect", "box")[0]
    assert data["State"]["ExitCode"] == 3
    # the session is in the container's log, as Docker's json-file keeps a tty's output
    assert "status=130\n" in host.shoal("logs", "box").stdout


def test_run_it_main_process_is_the_shell(host: Host, terminals: object) -> None:
    term = terminals(host, "run", "-it", "--name", "sh1", "--", "sh")  # type: ignore[operator]
    term.send(b"echo p''id=$$ EN''D\n")
    shown = term.expect(b" END\r\n", timeout=15)
    pid = int(shown.split(b"pid=")[-1].split()[0])
    assert host.shoal_json("inspect", "sh1")[0]["State"]["Pid"] == pid
    term.send(b"exit\n")
    assert term.wait() == 0


def test_exec_it_in_a_running_container(host: Host, terminals: object) -> None:
    host.shoal("run", "-d", "--name", "svc", "--", "sleep", "300")
    term = terminals(host, "exec", "-it", "svc", "sh")  # type: ignore[operator]
    _shell_session(term, host, "svc")
    assert term.wait() == 3
    assert termios.tcgetattr(term.slave) == term.before
    # the shell ran in the container (its hostname, its cgroup) and the container runs on
    assert host.shoal_json("inspect", "svc")[0]["State"]["Running"] is True


def test_sigterm_to_the_cli_is_forwarded_and_the_terminal_restored(
        host: Host, terminals: object) -> None:
    term = terminals(host, "run", "-it", "--rm", "--", "sh", "-c",  # type: ignore[operator]
                     "trap 'echo got-term; exit 7' TERM; echo ready; "
                     "while :; do sleep 0.1; done")
    term.expect(b"ready\r\n")
    term.proc.send_signal(signal.SIGTERM)
    term.expect(b"got-term")
    assert term.wait() == 7
    assert termios.tcgetattr(term.slave) == term.before


def _shoal(host: Host, *args: str, stdin: int | None = None
           ) -> subprocess.CompletedProcess[str]:
    """The CLI with its streams not a terminal; its output as it is (CRLF kept)."""
    cmd = ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal", "--root", host.root,
           "--run-dir", host.run_dir, *args]
    res = subprocess.run(cmd, stdin=stdin, capture_output=True, timeout=60,
                         env=host.env(), cwd=str(host.base))
    return subprocess.CompletedProcess(res.args, res.returncode, res.stdout.decode(),
                                       res.stderr.decode())


def test_it_from_a_pipe_is_refused_as_docker_refuses_it(host: Host) -> None:
    for args in (["run", "-it", "--rm", "--", "sh"], ["run", "-i", "-t", "--", "true"]):
        res = _shoal(host, *args, stdin=subprocess.PIPE)
        assert res.returncode == 1
        assert res.stderr == "shoal: the input device is not a TTY\n"
    assert host.shoal("ps", "-a", "-q").stdout == ""  # nothing was created
    host.shoal("run", "-d", "--name", "svc", "--", "sleep", "300")
    res = _shoal(host, "exec", "-it", "svc", "sh", stdin=subprocess.PIPE)
    assert res.returncode == 1 and res.stderr == "shoal: the input device is not a TTY\n"


def test_t_alone_from_a_pipe_gives_a_tty_for_output(host: Host) -> None:
    res = _shoal(host, "run", "-t", "--rm", "--", "sh", "-c",
                 "tty; echo out; echo err >&2; exit 5", stdin=subprocess.DEVNULL)
    assert res.returncode == 5
    lines = res.stdout.split("\r\n")
    # stdout and stderr are the one terminal, as with docker run -t; lines end in CRLF
    assert lines[0].startswith("/dev/pts/") and lines[1:] == ["out", "err", ""]
    assert res.stderr == ""
    host.shoal("run", "-d", "--name", "svc", "--", "sleep", "300")
    res = _shoal(host, "exec", "-t", "svc", "tty", stdin=subprocess.DEVNULL)
    assert res.returncode == 0 and res.stdout.startswith("/dev/pts/")
    # without -t, no terminal: `tty` says so and fails (exit 1)
    res = _shoal(host, "exec", "svc", "tty", stdin=subprocess.DEVNULL)
    assert res.returncode == 1 and res.stdout == "not a tty\n"


def test_t_sets_term_as_docker_does(host: Host) -> None:
    res = _shoal(host, "run", "-t", "--name", "term", "--", "sh", "-c", "echo $TERM",
                 stdin=subprocess.DEVNULL)
    assert res.stdout == "xterm\r\n"
    assert "TERM=xterm" in host.shoal_json("inspect", "term")[0]["Config"]["Env"]
    res = _shoal(host, "run", "-t", "--rm", "-e", "TERM=vt100", "--", "sh", "-c",
                 "echo $TERM", stdin=subprocess.DEVNULL)
    assert res.stdout == "vt100\r\n"
    res = _shoal(host, "run", "--rm", "--", "sh", "-c", "echo ${TERM-unset}",
                 stdin=subprocess.DEVNULL)
    assert res.stdout == "unset\n"
    host.shoal("run", "-d", "--name", "svc", "--", "sleep", "300")
    res = _shoal(host, "exec", "-t", "svc", "sh", "-c", "echo $TERM", stdin=subprocess.DEVNULL)
    assert res.stdout == "xterm\r\n"


def test_i_alone_keeps_stdin_open_without_a_tty(host: Host) -> None:
    res = subprocess.run(
        ["nsenter", f"--net={host.ns}", sys.executable, "-m", "shoal", "--root", host.root,
         "--run-dir", host.run_dir, "run", "-i", "--rm", "--", "sh", "-c",
         "tty; cat"], input="line one\nline two\n", capture_output=True, text=True,
        timeout=60, env=host.env())
    assert res.stdout == "not a tty\nline one\nline two\n"
    assert res.returncode == 0  # cat's; tty's failure is not the exit status


def test_run_d_t_is_refused_with_a_reason(host: Host) -> None:
    res = host.shoal("run", "-d", "-t", "--", "sleep", "1", check=False)
    assert res.returncode == 125 and "run -d -t is not supported" in res.stderr
