"""The shoal-cni executable, as a CNI runtime runs it: the command and the attachment in
CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME and CNI_ARGS, the config as JSON on
stdin; the result as JSON on stdout and exit 0, or the spec's error object on stdout and
exit 1. Logs go to stderr.

A runtime runs it for every ADD: only what a command needs is imported (the engine and the
kernel modules on ADD, DEL, CHECK and GC; nothing of them, and not even json, on the
VERSION libcni sends: see versions.py)."""

from __future__ import annotations

import os
import sys

from .errors import INVALID_ENVIRONMENT, IO_FAILURE, REFUSED, UNKNOWN, CniError
from .versions import LATEST

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
# the variables each command needs (CNI_PATH is not: shoal-cni delegates to no plugin)
REQUIRED = {"ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
            "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
            "DEL": ("CNI_CONTAINERID", "CNI_IFNAME")}


def main() -> int:
    command = os.environ.get("CNI_COMMAND")
    if command == "VERSION":
        from .versions import quick_answer

        data = _read_stdin()
        if data is None:
            return 1
        answer = quick_answer(data)
        if answer is not None:
            sys.stdout.write(answer + "\n")
            sys.stdout.flush()
            return 0
        return execute(os.environ, _replay(data))
    from . import agent

    if not agent.wanted(os.environ):
        return execute(os.environ, sys.stdin.buffer)
    data = _read_stdin()
    if data is None:
        return 1
    where = agent.directories(os.environ, data)
    reply = agent.forward(os.environ, data, where) if where is not None else None
    if reply is not None:  # the agent did it (agent.py)
        rc, out, err = reply
        sys.stderr.write(err)
        sys.stdout.write(out)
        sys.stdout.flush()
        return rc
    rc = execute(os.environ, _replay(data))
    sys.stdout.flush()
    if where is not None:
        agent.start(os.environ, where)  # for the next call
    return rc


def execute(env: Any, stdin: Any) -> int:
    """One command, its result or error on stdout; the exit code. (Also what the agent runs
    for a request, with the request's environment and stdin.)"""
    version = LATEST
    try:
        out, version = run(env, stdin)
    except CniError as e:
        _emit(e.result(e.version or version))
        return 1
    except Exception as e:  # (a ShoalError is turned into a CniError in run)
        import traceback

        traceback.print_exc(file=sys.stderr)
        _emit(CniError(UNKNOWN, f"shoal-cni failed: {e}", type(e).__name__).result(version))
        return 1
    if out is not None:
        _emit(out)
    return 0


def _read_stdin() -> bytes | None:
    """stdin's bytes; None (the error printed) if it cannot be read."""
    try:
        return sys.stdin.buffer.read()
    except OSError as e:
        _emit(_unreadable(e).result(LATEST))
        return None


def _unreadable(e: OSError) -> CniError:
    return CniError(IO_FAILURE, f"error reading the config from stdin: {e}")


def _replay(data: bytes) -> Any:
    """stdin's bytes once more, read already (by VERSION's quick look, or to forward)."""
    import io

    return io.BytesIO(data)


def _emit(obj: dict[str, Any]) -> None:
    from ... import jsonwire

    sys.stdout.write(jsonwire.dumps(obj) + "\n")
    sys.stdout.flush()


def run(env: Any, stdin: Any) -> tuple[dict[str, Any] | None, str]:
    """(the result to print or None, the version to answer in)."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CniError(INVALID_ENVIRONMENT, "required env variables [CNI_COMMAND] missing",
                       f"set CNI_COMMAND to one of {', '.join(COMMANDS)}")
    if command not in COMMANDS:
        raise CniError(INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {command}",
                       f"CNI_COMMAND is one of {', '.join(COMMANDS)}")
    try:
        data = stdin.read()
    except OSError as e:
        raise _unreadable(e) from None
    if command == "VERSION":
        from ... import jsonwire as json
        from . import result

        asked = None
        try:
            asked = json.loads(data).get("cniVersion") if data.strip() else None
        except (ValueError, AttributeError):
            pass
        return result.version_result(asked), LATEST
    missing = [v for v in REQUIRED.get(command, ()) if not env.get(v)]
    if missing:
        raise CniError(INVALID_ENVIRONMENT,
                       f"required env variables [{','.join(missing)}] missing")
    from . import config

    version = LATEST
    try:
        version = config.version_of(config.decode(data))
    except CniError:
        pass
    answer = version if version in config.SUPPORTED_VERSIONS else LATEST
    try:
        _check_attachment(env, command)
        conf = config.parse(data, command, env.get("CNI_ARGS", ""))
        return _dispatch(command, conf, env), answer
    except CniError as e:
        e.version = answer
        raise
    except _shoal_errors() as e:
        error = _from_shoal(e)
        error.version = answer
        raise error from None


def _check_attachment(env: Any, command: str) -> None:
    from ...errors import InvalidArgument
    from ...names import is_name, validate_ifname

    if command not in REQUIRED:
        return
    cid = env.get("CNI_CONTAINERID", "")
    if not is_name(cid):
        raise CniError(INVALID_ENVIRONMENT, f"CNI_CONTAINERID {cid!r} is invalid: it must "
                       "start with a letter or digit, followed by letters, digits, _ . or -")
    try:
        validate_ifname(env.get("CNI_IFNAME", ""), "CNI_IFNAME")
    except InvalidArgument as e:
        raise CniError(INVALID_ENVIRONMENT, str(e)) from None
    netns = env.get("CNI_NETNS", "")
    if netns and command != "DEL" and not os.path.isabs(netns):
        raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {netns!r} must be the absolute path "
                       "of a network namespace (e.g. /run/netns/NAME)")


def _shoal_errors() -> tuple[type[BaseException], ...]:
    from ...errors import ShoalError

    return (ShoalError,)


def _from_shoal(e: BaseException) -> CniError:
    """shoal's one-line error as the spec's: a config value shoal cannot take is an invalid
    config (7); a clash with the state (an address or port in use, a full network) is
    shoal's refusal (100); the kernel or the firewall failing is unknown (999)."""
    from ...errors import Conflict, InvalidArgument, NotFound

    if isinstance(e, InvalidArgument):
        code = 7
    elif isinstance(e, (Conflict, NotFound)):
        code = REFUSED
    else:
        code = UNKNOWN
    return CniError(code, str(e), type(e).__name__)


def _dispatch(command: str, conf: Any, env: Any) -> dict[str, Any] | None:
    from . import commands

    if command == "STATUS":
        commands.status(conf)
        return None
    att = commands.Attachment(env.get("CNI_CONTAINERID", ""), env.get("CNI_NETNS", ""),
                              env.get("CNI_IFNAME", ""))
    engine = commands.open_engine(conf)
    try:
        for line in engine.repairs:
            sys.stderr.write(f"shoal-cni: repaired: {line}\n")
        if command == "ADD":
            return commands.add(engine, conf, att)
        if command == "DEL":
            commands.delete(engine, conf, att)
        elif command == "CHECK":
            commands.check(engine, conf, att)
        elif command == "GC":
            commands.gc(engine, conf)
        return None
    finally:
        engine.close()
