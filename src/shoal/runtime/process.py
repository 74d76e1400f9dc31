"""Start, enter, watch and signal container processes."""

from __future__ import annotations

import errno
import os
import signal

from ..errors import ShoalError
from ..kernel import ns
from ..records import Record
from .pids import alive, wait_gone
from .users import apply as become

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable

    from .users import Credentials

DEVNULL = -3  # as subprocess.DEVNULL: connect that stream to /dev/null


class Namespaces(Record):
    """Where a new container process goes."""

    netns: str | None  # a sandbox's namespace file; None for the host's namespace
    hostname: str | None  # a new UTS namespace with this hostname; None to keep the host's
    files: list[tuple[str, str]]  # (source, target) bind mounts: /etc/hosts, resolv.conf...
    hidden: list[str] = []  # shoal's state and run directories: an empty tmpfs over each


def _namespace_mounts() -> list[str]:
    """Mount points of namespace files (nsfs) in this mount namespace."""
    points = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            left, _, right = line.partition(b" - ")
            if right.startswith(b"nsfs "):
                points.append(_unescape(left.split()[4]))
    return [p.decode(errors="surrogateescape") for p in points]


def _unescape(raw: bytes) -> bytes:
    """mountinfo writes a space, tab, newline or backslash in a path as \\ooo (octal)."""
    parts = raw.split(b"\\")
    out = [parts[0]]
    for part in parts[1:]:
        code = part[:3]
        if len(code) == 3 and all(0x30 <= c <= 0x37 for c in code):
            out.append(bytes([int(code, 8) & 0xFF]) + part[3:])
        else:
            out.append(b"\\" + part)
    return b"".join(out)


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


class Child:
    """A container's process started by `spawn`: what shoal needs of subprocess.Popen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def wait(self) -> int:
        """Its exit status as Popen gives it: the code, or -N when killed by signal N."""
        while self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:  # reaped elsewhere: its status is lost
                self.returncode = 255
            else:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass


def spawn(
    cmd: list[str],
    spec: Namespaces,
    env: dict[str, str],
    cwd: str,
    stdin: int | None,
    stdout: int | None,
    stderr: int | None,
    new_session: bool,
    cgroup_fd: int | None = None,
    credentials: Credentials | None = None,
    tty: bool = False,
) -> Child:
    """Fork, enter the sandbox in the child and exec the command. A fork of our own rather
    than subprocess.Popen: importing subprocess (with threading, selectors, locale and re)
    costs `shoal run` about 10 ms, and a failure in the child comes back with its own
    message instead of Popen's "Exception occurred in preexec_fn".

    `tty`: stdin is a pty's slave side; it becomes the command's controlling terminal, in a
    session of its own (new_session is implied)."""
    if tty:
        from . import terminal  # (imported here: the child only calls it)

        new_session = True
    # the namespace's fd is opened for the fork and closed right after it: kept open, it would
    # hold the sandbox's namespace (and its veths) alive after the sandbox is removed
    netns_fd = os.open(spec.netns, os.O_RDONLY | os.O_CLOEXEC) if spec.netns else None
    if credentials is not None:
        # os.execvpe imports it (os.get_exec_path): after setuid, the -u user may not be
        # allowed to read Python's library
        import warnings  # noqa: F401
    enter = _enter_new(spec, netns_fd)
    workdir = cwd if os.path.isdir(cwd) else "/"
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _child(cmd, env, workdir, (stdin, stdout, stderr), new_session, enter, report_w,
                   cgroup_fd, credentials, terminal.make_controlling if tty else None)
    except BaseException:
        os.close(report_r)
        raise
    finally:
        if netns_fd is not None:
            os.close(netns_fd)
        os.close(report_w)
    with os.fdopen(report_r, "rb") as pipe:
        failure = pipe.read()  # empty: the exec closed the pipe
    if not failure:
        return Child(pid)
    os.waitpid(pid, 0)
    kind, _, message = failure.decode(errors="replace").partition("\t")
    if kind == "exec":
        number, _, text = message.partition("\t")
        if int(number) == errno.ENOENT:
            raise CommandError(127, f"cannot run {cmd[0]!r}: executable file not found")
        if int(number) == errno.EACCES:
            raise CommandError(126, f"cannot run {cmd[0]!r}: permission denied")
        raise CommandError(126, f"cannot run {cmd[0]!r}: {text.lower()}")
    if kind == "chdir":
        raise CommandError(126, f"cannot change to the working directory {message} (give -w "
                           "a directory the user may enter)")
    raise CommandError(126, f"cannot enter the container's namespaces: {message}")


def _child(cmd: list[str], env: dict[str, str], cwd: str, streams: tuple[int | None, ...],
           new_session: bool, enter: Callable[[], None], report: int,
           cgroup_fd: int | None = None, credentials: Credentials | None = None,
           controlling: Callable[[int], None] | None = None) -> None:
    """In the forked child: join the container's cgroup (first, so that whatever it starts
    is the container's too), wire the standard streams, enter the namespaces, become the
    user of -u (`credentials`), exec. Whatever fails is written to `report` ("enter",
    "chdir" or "exec", a tab, the message)."""
    stage = "enter"
    try:
        if cgroup_fd is not None:
            os.write(cgroup_fd, b"0")
        for target, fd in enumerate(streams):
            if fd == DEVNULL:
                fd = os.open(os.devnull, os.O_RDWR)
            if fd is not None and fd != target:
                os.dup2(fd, target)  # the copy is inheritable, the original is not
        # a command starts with every signal at its default: Python ignores SIGPIPE and
        # SIGXFSZ, the supervisor SIGHUP, and exec would keep them ignored
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        if new_session:
            os.setsid()
        if controlling is not None:  # (after setsid: a session leader takes a terminal)
            controlling(0)
        enter()
        # what exec must not inherit: any fd past 2 (the supervisor's report pipe among them)
        os.closerange(3, report)
        os.closerange(report + 1, os.sysconf("SC_OPEN_MAX"))
        if credentials is not None:
            become(credentials)
        stage = "chdir"  # (as the -u user, who may not be allowed in)
        os.chdir(cwd)
        stage = "exec"
        os.execvpe(cmd[0], cmd, env)
    except OSError as e:
        detail = {"exec": f"{e.errno}\t{e.strerror}",
                  "chdir": f"{cwd}: {(e.strerror or str(e)).lower()}"}.get(stage, str(e))
        os.write(report, f"{stage}\t{detail}".encode(errors="replace"))
    except BaseException as e:
        os.write(report, f"enter\t{e}".encode(errors="replace"))
    finally:
        os._exit(255)


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
    cgroup_fd: int | None = None,
    credentials: Credentials | None = None,
    strict_cwd: bool = False,
    new_session: bool = False,
    tty: bool = False,
) -> subprocess.Popen[bytes]:
    """Run a command inside the namespaces of a running container's process, and in its
    cgroup: what it starts ends with the container. As the user of `credentials` if given
    (set after the namespaces are entered, which needs root); in `cwd`, or "/" when it is
    missing unless `strict_cwd` (exec -w: a missing directory is an error). `tty`: stdin is
    a pty's slave side, made the command's controlling terminal in a session of its own."""
    fds = []
    try:
        for kind in ("net", "uts", "mnt"):
            fds.append(os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY))
    except OSError:
        for fd in fds:
            os.close(fd)
        raise ShoalError(f"the container's process {pid} is gone") from None

    controlling = None
    if tty:
        from .terminal import make_controlling as controlling

    def enter() -> None:
        if cgroup_fd is not None:
            os.write(cgroup_fd, b"0")
        if controlling is not None:  # (Popen has called setsid already)
            controlling(0)
        for fd, flag in zip(fds, (ns.CLONE_NEWNET, ns.CLONE_NEWUTS, ns.CLONE_NEWNS), strict=True):
            ns.setns(fd, flag)
        if credentials is not None:
            become(credentials)
        os.chdir(cwd if strict_cwd or os.path.isdir(cwd) else "/")

    import subprocess

    try:
        return subprocess.Popen(
            cmd, env=env, stdin=stdin, stdout=stdout, stderr=stderr, preexec_fn=enter,
            start_new_session=new_session or tty,
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


def wait_status(proc: Child | subprocess.Popen[bytes]) -> int:
    return _exit_status(proc.wait())


def terminate(pid: int, started: int | None, timeout: float) -> int | None:
    """SIGTERM, then SIGKILL after `timeout` seconds, as `docker stop` does (with no timeout,
    SIGKILL at once, as `docker rm -f` does). The signal after which the process was gone, or
    None if it was gone before the first."""
    steps = ((signal.SIGTERM, timeout),) if timeout > 0 else ()
    sent = None
    for sig, wait in (*steps, (signal.SIGKILL, 5.0)):
        if not alive(pid, started):
            return sent
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return sent
        sent = sig
        if wait_gone(pid, started, wait):
            return sent
    return sent
