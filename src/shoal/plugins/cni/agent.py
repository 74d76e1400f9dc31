"""shoal-cni's agent: a process that keeps shoal's modules imported, so that an ADD, DEL or
CHECK costs a runtime the interpreter's start and the work, not the imports.

Why: a runtime executes the plugin for every attachment (Podman 4.3 runs VERSION twice, ADD
and DEL for each `podman run`). The Go reference plugins start in 3 ms; a Python process
starts in 15 ms here and an ADD imports about 60 modules (30 ms) to do 12 ms of work.

How:
- The executable forwards ADD, DEL and CHECK (the CNI_* and SHOAL_* variables, PATH and the
  config) over a unix socket, `<run dir>/cni/agent.sock`, and prints the agent's answer
  (stdout, stderr and exit code, exactly what it would have printed itself).
- No agent (none started yet, it went idle, it was killed): the executable does the work
  itself, as before, and then starts one in the background for the next call. An agent
  that dies in the middle of a request is the same as no agent: the executable does the
  work itself (its engine repairs what the agent left first, as after any crash).
- The agent serves one request at a time, each on a fresh engine (the store's lock orders
  it with every other shoal command), with the request's variables as its environment.
  An ADD whose caller is gone when the answer is ready (killed with its runtime) is undone
  with a DEL: the runtime never saw its result, as if the executable had died in it.
  It serves only requests from its own network and mount namespaces for its own root and
  run directory, and only while the code it imported is unchanged on disk; it declines
  anything else (the executable then does the work itself). It exits after AGENT_IDLE seconds
  without a request (SHOAL_CNI_AGENT_IDLE), and a flock on `agent.lock` (which holds its
  pid) keeps it the only one per run directory.
- Trust: the socket is in a directory of shoal's run directory (root only, reached
  without following symlinks, shoal.dirs), and the executable talks only to a peer whose
  SO_PEERCRED uid is 0. A request that names a crash point (SHOAL_CRASH_AT, the tests'
  fault injection) is never forwarded: the executable itself must die there.
  SHOAL_CNI_AGENT=0 turns the agent off.

The client's side imports only os, _socket, struct and shoal.jsonwire and shoal.dirs."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

AGENT_COMMANDS = ("ADD", "DEL", "CHECK")
DIRECTORY = "cni"
SOCKET = "agent.sock"
LOCK = "agent.lock"
AGENT_IDLE = 600.0  # seconds without a request before the agent exits
AGENT_TIMEOUT = 300.0  # an ADD of 65,535 ports takes seconds; a dead agent ends at once
SO_PEERCRED = 17
# What the agent's interpreter runs (as the supervisor's BOOT: isolated mode, the package
# that runs this command first on sys.path).
AGENT_BOOT = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
              "from shoal.plugins.cni.agent import serve; sys.exit(serve(sys.argv[1:]))")


def _env_of(env: Mapping[str, str]) -> dict[str, str]:
    """What of the runtime's environment a request carries: the CNI variables and what a
    supervisor gets (supervise.supervisor_env, which this side does not import: it would
    bring the controller along)."""
    return {k: v for k, v in env.items()
            if k.startswith(("CNI_", "SHOAL_")) or k in ("PATH", "LANG", "LC_ALL", "TZ")}


def directories(env: Mapping[str, str], data: bytes) -> tuple[str, str] | None:
    """(root, run directory) as the engine will take them: SHOAL_ROOT and SHOAL_RUN_DIR,
    else the config's shoal.root and shoal.runDir, else shoal's defaults. None when the
    config is not what a request can carry (the executable's own path reports it)."""
    from ... import jsonwire
    from ...dirs import DEFAULT_ROOT, DEFAULT_RUN_DIR

    try:
        conf = jsonwire.loads(data)
    except ValueError:
        return None
    extras = conf.get("shoal") if isinstance(conf, dict) else None
    extras = extras if isinstance(extras, dict) else {}
    found = []
    for var, key, default in (("SHOAL_ROOT", "root", DEFAULT_ROOT),
                              ("SHOAL_RUN_DIR", "runDir", DEFAULT_RUN_DIR)):
        value = env[var] if var in env else extras.get(key, default)
        if not isinstance(value, str) or not value:
            return None
        found.append(os.path.abspath(value))
    return found[0], found[1]


def wanted(env: Mapping[str, str]) -> bool:
    return (env.get("CNI_COMMAND") in AGENT_COMMANDS and env.get("SHOAL_CNI_AGENT", "1") != "0"
            and not env.get("SHOAL_CRASH_AT"))


def _namespaces() -> list[int]:
    return [os.stat(f"/proc/self/ns/{kind}").st_ino for kind in ("net", "mnt")]


def _open_directory(run_dir: str, create: bool) -> int | None:
    from ... import dirs
    from ...errors import ShoalError

    try:
        run_fd = dirs.open_dir(run_dir, "run directory", create=create)
    except (OSError, ShoalError):
        return None
    try:
        return dirs.subdir(run_fd, DIRECTORY, os.path.join(run_dir, DIRECTORY), create=create)
    except (OSError, ShoalError):
        return None
    finally:
        os.close(run_fd)


def running(run_dir: str) -> int | None:
    """The pid of the agent serving this run directory (holding its lock), or None."""
    import fcntl

    fd = _open_directory(run_dir, create=False)
    if fd is None:
        return None
    try:
        lock = os.open(LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # held: an agent lives
            text = os.read(lock, 64).decode(errors="replace").split()
            return int(text[0]) if text and text[0].isdigit() else None
        return None  # (not held: the pid written there is an old agent's)
    finally:
        os.close(lock)


# -- the executable's side ------------------------------------------------------------------

def forward(env: Mapping[str, str], data: bytes, where: tuple[str, str]
            ) -> tuple[int, str, str] | None:
    """The agent's answer to this request (exit code, stdout, stderr), or None when there
    is no agent, it declined, or it died before it answered. `where`: the request's
    (root, run directory), from `directories`."""
    import _socket
    import struct

    from ... import jsonwire

    fd = _open_directory(where[1], create=False)
    if fd is None:
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        try:
            sock.connect(f"/proc/self/fd/{fd}/{SOCKET}")
        except OSError:
            return None  # none listens (never started, went idle, killed)
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(_socket.SOL_SOCKET,
                                                              SO_PEERCRED, 12))
        if uid != 0:
            return None
        sock.settimeout(AGENT_TIMEOUT)
        head = {"root": where[0], "run_dir": where[1], "namespaces": _namespaces(),
                "env": _env_of(env)}
        sock.sendall(jsonwire.dumps(head).encode() + b"\n" + data)
        sock.shutdown(_socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    except OSError:
        return None  # it died or hung up: the work is done here
    finally:
        sock.close()
        os.close(fd)
    try:
        reply = jsonwire.loads(b"".join(chunks))
        return int(reply["rc"]), str(reply["stdout"]), str(reply["stderr"])
    except (ValueError, KeyError, TypeError):
        return None  # declined ({"declined": why}) or cut short


def start(env: Mapping[str, str], where: tuple[str, str]) -> None:
    """Start an agent for these (root, run directory) in the background (it exits at once
    if one runs). Never fails the request: a failure here leaves the next one in-process."""
    import sys

    from ...controller.supervise import package_parent, supervisor_env

    try:
        pid = os.fork()
    except OSError:
        return
    if pid == 0:  # the child: a grandchild of a session of its own becomes the agent
        try:
            os.setsid()
            if os.fork() == 0:
                null = os.open(os.devnull, os.O_RDWR)
                for target in (0, 1, 2):
                    os.dup2(null, target)
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))
                os.chdir("/")
                os.execve(sys.executable,
                          [sys.executable, "-I", "-c", AGENT_BOOT, package_parent(), *where],
                          supervisor_env(env))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


# -- the agent's side -----------------------------------------------------------------------

def serve(argv: list[str]) -> int:
    """The agent: `serve([root, run_dir])`."""
    import _socket
    import fcntl
    import select

    root, run_dir = (os.path.abspath(a) for a in argv)
    fd = _open_directory(run_dir, create=True)
    if fd is None:
        return 1
    lock = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                   dir_fd=fd)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another agent serves this run directory
    from ...runtime import pids

    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()} {pids.start_time(os.getpid()) or ''}\n".encode())
    agent = _Agent(root, run_dir)  # (imported, and its code's times noted, before it listens)
    from ... import dirs

    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    dirs.bind_socket(listener, fd, SOCKET)
    listener.listen(64)
    idle = float(os.environ.get("SHOAL_CNI_AGENT_IDLE") or AGENT_IDLE)
    poller = select.poll()
    poller.register(listener.fileno(), select.POLLIN)
    try:
        while not agent.stale and poller.poll(idle * 1000):
            conn, _ = listener._accept()  # (the C socket's accept: a descriptor)
            agent.answer(conn)
    finally:
        os.unlink(SOCKET, dir_fd=fd)  # (the lock is still held: no other agent bound it)
        listener.close()
    return 0


class _Agent:
    def __init__(self, root: str, run_dir: str) -> None:
        import sys

        from . import main

        self.root, self.run_dir = root, run_dir
        self.namespaces = _namespaces()
        self.main = main
        self._load()
        self.home = dict(os.environ)
        self.modules = {m.__file__: _mtime(m.__file__) for m in list(sys.modules.values())
                        if (m.__name__ or "").startswith("shoal") and getattr(m, "__file__",
                                                                                None)}
        self.stale = False

    @staticmethod
    def _load() -> None:
        """What an ADD, DEL and CHECK import, imported once."""
        from ...controller import Engine  # noqa: F401
        from ...drivers import bridge, external  # noqa: F401
        from ...kernel import conntrack, links, ns  # noqa: F401
        from . import commands, config, networks, result  # noqa: F401

    def changed(self) -> bool:
        """Has shoal's code changed on disk since it was imported (an upgrade)?"""
        return any(_mtime(path) != seen for path, seen in self.modules.items())

    def answer(self, fd: int) -> None:
        import _socket

        from ... import jsonwire

        conn = _socket.socket(fileno=fd)
        try:
            conn.settimeout(30)
            raw = b""
            while chunk := conn.recv(1 << 16):
                raw += chunk
            head, _, data = raw.partition(b"\n")
            request = jsonwire.loads(head)
            if self.changed():
                self.stale = True  # the code was upgraded: the next agent runs the new one
                reply: dict[str, Any] = {"declined": "shoal's code changed"}
            elif (request.get("root"), request.get("run_dir"), request.get("namespaces")) != (
                    self.root, self.run_dir, self.namespaces):
                reply = {"declined": "another root, run directory or namespace"}
            else:
                reply = self._run(request["env"], data)
        except (OSError, ValueError, KeyError, TypeError):
            conn.close()  # the caller is gone or sent nonsense: it does the work itself
            return
        try:
            conn.sendall(jsonwire.dumps(reply).encode())
        except OSError:
            # the caller died before it had the answer (killed with its runtime): an ADD
            # whose result the runtime never saw is undone, as when the executable dies in
            # the middle of one (the next command's repair rolls that back)
            if reply.get("rc") == 0 and request["env"].get("CNI_COMMAND") == "ADD":
                self._run({**request["env"], "CNI_COMMAND": "DEL"}, data)
        finally:
            conn.close()

    def _run(self, env: dict[str, str], data: bytes) -> dict[str, Any]:
        """The request as the executable would have run it: its environment, its stdin,
        what it writes to stdout and stderr, its exit code."""
        import io
        import sys

        out, err = io.StringIO(), io.StringIO()
        saved = sys.stdout, sys.stderr
        os.environ.clear()
        os.environ.update(env)
        sys.stdout, sys.stderr = out, err
        try:
            rc = self.main.execute(os.environ, io.BytesIO(data))
        finally:
            sys.stdout, sys.stderr = saved
            os.environ.clear()
            os.environ.update(self.home)
        return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue()}


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None
