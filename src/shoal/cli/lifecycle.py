"""The lifecycle commands' output, as Docker prints it: start, restart, kill, wait, rename,
top, stats, version."""

from __future__ import annotations

import sys

from .args import FLAG, REMAINDER, Arg, Command, Opt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .args import Args

VERSION_FIELDS = ("Version", "API version", "Python version", "OS/Arch")


# -- the grammar (registered in commands.py) -----------------------------------------------------


def _names(c: Command) -> None:
    c.args = [Arg("names", "+", "CONTAINER")]


def _restart(c: Command) -> None:
    from .commands import _seconds

    c.opts = [Opt("-t", "--time", default=10.0, convert=_seconds, metavar="SECONDS",
                  help="wait this long after SIGTERM, then SIGKILL")]
    _names(c)


def _kill(c: Command) -> None:
    c.opts = [Opt("-s", "--signal", default="KILL", metavar="SIGNAL",
                  help="a name (TERM, SIGHUP) or a number")]
    _names(c)


def _top(c: Command) -> None:
    c.args = [Arg("container"), Arg("ps_args", REMAINDER, "PS-OPTIONS")]


def _stats(c: Command) -> None:
    from .commands import _format  # (commands imports this module)

    c.opts = [Opt("--no-stream", kind=FLAG, help="one sample, then exit"),
              _format()]
    c.args = [Arg("names", "*", "CONTAINER")]


def _version(c: Command) -> None:
    c.opts = [Opt("-f", "--format", choices=("json",), metavar="json",
                  help="json: the fields as one JSON object")]


def commands() -> list[Command]:
    return [
        Command("start", "start stopped containers", build=_names),
        Command("restart", "restart containers", build=_restart),
        Command("kill", "send a signal to running containers (default KILL)", build=_kill),
        Command("wait", "wait until containers stop, print their exit codes", build=_names),
        Command("rename", "rename a container",
                build=lambda c: setattr(c, "args", [Arg("old", 1, "CONTAINER"),
                                                    Arg("new", 1, "NEW_NAME")])),
        Command("top", "the processes of a container", build=_top),
        Command("stats", "CPU, memory, network and block I/O of running containers",
                build=_stats),
        Command("version", "show shoal's version", build=_version),
    ]


# -- the handlers ---------------------------------------------------------------------------------


def dispatch(engine: Any, args: Args) -> int | None:
    """The exit status of a lifecycle command, or None if `args` names another command."""
    from .main import _each

    lc = engine.lifecycle
    match args.command:
        case "start":
            return _each(args.names, engine.start)
        case "restart":
            return _each(args.names, lambda n: engine.restart(n, args.time))
        case "kill":
            from ..controller.lifecycle import parse_signal

            sig = parse_signal(args.signal)
            return _each(args.names, lambda n: lc.kill(n, sig))
        case "wait":
            return _wait(lc, args.names)
        case "rename":
            lc.rename(args.old, args.new)
            return 0
        case "top":
            titles, rows = lc.top(args.container, args.ps_args)
            print(ps_table(titles, rows))
            return 0
        case "stats":
            return _stats_out(lc, args)
    return None


def _wait(lc: Any, names: list[str]) -> int:
    from ..errors import ShoalError

    status = 0
    for name in names:
        try:
            print(lc.wait(name), flush=True)
        except ShoalError as e:
            sys.stderr.write(f"shoal: {e}\n")
            status = 1
    return status


def ps_table(titles: list[str], rows: list[list[str]]) -> str:
    """As docker top prints: Go's tabwriter, cells at least 20 wide with a padding of 3."""
    widths = [max([20, len(t) + 3] + [len(r[i]) + 3 for r in rows if i < len(r)])
              for i, t in enumerate(titles)]
    lines = []
    for cells in [titles, *rows]:
        lines.append("".join(c.ljust(widths[i]) if i < len(cells) - 1 else c
                             for i, c in enumerate(cells)))
    return "\n".join(lines)


STATS_TITLES = {"ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
                "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
                "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
STATS_TABLE = "table " + "\t".join("{{." + field + "}}" for field in STATS_TITLES)


def _stats_out(lc: Any, args: Args) -> int:
    from ..listing import formatted

    while True:
        rows = lc.stats(args.names, interval=0.5 if args.no_stream else 1.0)
        text, error = formatted(args.format, rows, STATS_TITLES, STATS_TABLE, "stats")
        if error is not None:
            sys.stderr.write(f"shoal: {error}\n")
            return 1
        if args.no_stream:
            sys.stdout.write(text)
            return 0
        # streaming, as docker stats does: the screen cleared, then the table
        sys.stdout.write("\033[2J\033[H" + text)
        sys.stdout.flush()


def version_info() -> dict[str, str]:
    import platform

    from .. import __version__

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {"Version": __version__, "API version": "none (shoal has no daemon)",
            "Python version": platform.python_version(), "OS/Arch": f"linux/{arch}"}


def cmd_version(args: Args) -> int:
    """`shoal version`, shaped as `docker version`'s Client section; needs no root."""
    info = version_info()
    if getattr(args, "format", None) == "json":
        import json

        print(json.dumps({"Client": info}))
        return 0
    print("Client:")
    for key in VERSION_FIELDS:
        print(f" {key + ':':<19}{info[key]}")
    return 0


def short_version() -> str:
    """`shoal --version`, as `docker --version` prints it."""
    from .. import __version__

    return f"shoal version {__version__}"
