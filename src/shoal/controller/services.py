"""shoal's own long-running processes, as the commands see them: the embedded resolver
(controller/resolver.py) and the cluster watcher (controller/cluster.py). shoal has no
daemon, so each is a process a command starts on demand and every later command checks:

- its pid and start time are a meta row of the store ("PID START"), so a dead one (killed,
  a host restart) or a pid used again is told apart with one /proc read;
- it is started isolated (`python -I`, from "/", with only shoal's own variables, the
  package that runs the command first on sys.path) and reports "ok" or "err\\tWHY" on a pipe
  once it serves, which the starter waits for;
- it answers one JSON line with one JSON line on a unix socket in a directory of the run
  directory, reached through that directory's descriptor (no path component is looked up
  again, and no symlink followed)."""

from __future__ import annotations

import os

from ..errors import ShoalError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .context import Context

Record = tuple[int, "int | None"]


class Service:
    def __init__(self, ctx: Context, meta: str, directory: str, socket_name: str, who: str,
                 boot: str, start_timeout: float = 30.0, reply_timeout: float = 30.0) -> None:
        self.ctx, self.meta, self.directory, self.socket_name = ctx, meta, directory, socket_name
        self.who, self.boot = who, boot  # e.g. "the embedded resolver"; its -c code
        self.start_timeout, self.reply_timeout = start_timeout, reply_timeout

    def record(self) -> Record | None:
        value = self.ctx.store.get_meta(self.meta)
        if not value:
            return None
        pid, _, start = value.partition(" ")
        return int(pid), int(start) if start.isdigit() else None

    def running(self) -> Record | None:
        """Its record, if that process is alive."""
        record = self.record()
        return record if record is not None and alive(*record) else None

    def start(self, args: list[str]) -> int:
        """Start it with `args` (after the package's parent directory) and the report's
        descriptor last; wait for its report and record it. Its pid."""
        import subprocess
        import sys

        from ..runtime import pids
        from .supervise import package_parent, supervisor_env

        os.close(self.dir())
        read_end, write_end = os.pipe()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", self.boot, package_parent(), *args,
                 str(write_end)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(write_end,), start_new_session=True, close_fds=True, cwd="/",
                env=supervisor_env(os.environ))
        finally:
            os.close(write_end)
        with os.fdopen(read_end) as pipe:
            report = read_report(pipe, self.start_timeout, self.who)
        if not report.startswith("ok"):
            kill(proc.pid)
            proc.wait()
            raise ShoalError(report.partition("\t")[2] or f"{self.who} died while starting")
        with self.ctx.store.transaction():
            self.ctx.store.set_meta(self.meta, f"{proc.pid} {pids.start_time(proc.pid) or ''}")
        return proc.pid

    def stop(self, record: Record | None = None) -> None:
        """Ask it to stop (killed if it does not answer or take its time), and forget it."""
        from ..runtime import pids

        record = record or self.record()
        if record is None:
            return
        if alive(*record):
            try:
                self.request({"op": "stop"}, record)
            except (ShoalError, OSError):
                kill(record[0])
            if not pids.wait_gone(record[0], record[1], 5.0):
                kill(record[0])
                pids.wait_gone(record[0], record[1], 5.0)
        self.forget(record)

    def kill_and_forget(self, record: Record) -> None:
        from ..runtime import pids

        kill(record[0])
        pids.wait_gone(record[0], record[1], 5.0)
        self.forget(record)

    def request(self, message: dict[str, Any], record: Record,
                timeout: float | None = None) -> dict[str, Any]:
        """One request over its control socket, and its answer."""
        import json
        import socket

        fd = self.dir()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(timeout if timeout is not None else self.reply_timeout)
            # through the directory's descriptor: no component of the path is looked up again
            sock.connect(f"/proc/self/fd/{fd}/{self.socket_name}")
            sock.sendall(json.dumps(message).encode() + b"\n")
            data = read_line(sock)
        except OSError as e:
            raise ShoalError(f"{self.who} (pid {record[0]}) does not answer: "
                             f"{e.strerror or e}") from None
        finally:
            sock.close()
            os.close(fd)
        try:
            reply = json.loads(data)
        except ValueError:
            raise ShoalError(f"{self.who} (pid {record[0]}) gave no answer") from None
        if not reply.get("ok"):
            raise ShoalError(reply.get("error") or f"{self.who} refused the request")
        return reply

    def forget(self, record: Record) -> None:
        with self.ctx.store.transaction():
            if self.record() == record:
                self.ctx.store.delete_meta(self.meta)

    def dir(self) -> int:
        """Its directory in the run directory (made if missing), as a descriptor."""
        from .. import dirs

        return dirs.subdir(self.ctx.run_fd, self.directory,
                           os.path.join(self.ctx.run_dir, self.directory))


def read_line(sock: Any, limit: int = 1 << 20) -> bytes:
    """One line of the control protocol from a connected socket (what came before the peer
    closed, if it sent no newline; at most about `limit` bytes)."""
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def alive(pid: int, start: int | None) -> bool:
    from ..runtime import pids

    return pids.alive(pid, start)


def kill(pid: int) -> None:
    import signal

    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def read_report(pipe: Any, timeout: float, who: str) -> str:
    import select

    ready, _, _ = select.select([pipe], [], [], timeout)
    if not ready:
        return f"err\t{who} did not start within {timeout:.0f} s"
    return pipe.read()
