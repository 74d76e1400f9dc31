"""`shoal` command: Docker's verbs and flags, calling the engine."""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

USAGE_EXIT = 2

# shoal's messages are English. argparse looks every one of its strings up in the locale's
# message catalogues as it builds a parser (gettext finds no catalogue and caches nothing: about
# 200 stat calls, a tenth of `shoal network ls`); use its strings as they are.
argparse._ = lambda message: message  # type: ignore[attr-defined]
argparse.ngettext = (  # type: ignore[attr-defined]
    lambda singular, plural, n: singular if n == 1 else plural
)


class Formatter(argparse.HelpFormatter):
    """argparse's formatter without its `shutil` import (which also pulls in the compression
    modules): add_argument builds one formatter per argument, at every start."""

    def __init__(self, prog: str) -> None:
        width = int(os.environ.get("COLUMNS", "100") or 100)
        super().__init__(prog, width=max(width - 2, 40))


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other shoal error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"shoal: {message} (see: {self.prog} --help)\n")
        sys.exit(USAGE_EXIT)


def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not key or not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _filter(text: str) -> tuple[str, str]:
    return _kv(text)


def _format_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="output format (default: table)")


def _network_parser(net: Parser) -> None:
    nsub = net.add_subparsers(dest="network_command", required=True, parser_class=Parser)
    c = nsub.add_parser("create", help="create a network")
    c.add_argument("name")
    c.add_argument("-d", "--driver", default="bridge")
    c.add_argument("--subnet")
    c.add_argument("--gateway")
    c.add_argument("--ip-range")
    c.add_argument("--internal", action="store_true")
    c.add_argument("--label", action="append", type=_kv, default=[])
    c.add_argument("-o", "--opt", action="append", type=_kv, default=[])
    ls = nsub.add_parser("ls", aliases=["list"], help="list networks")
    _format_arg(ls)
    ls.add_argument("-f", "--filter", action="append", type=_filter, default=[])
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("--no-trunc", action="store_true")
    i = nsub.add_parser("inspect", help="show networks as JSON")
    i.add_argument("names", nargs="+")
    r = nsub.add_parser("rm", aliases=["remove"], help="remove networks")
    r.add_argument("names", nargs="+")
    nsub.add_parser("prune", help="remove unused networks").add_argument(
        "-f", "--force", action="store_true")
    cn = nsub.add_parser("connect", help="connect a container to a network")
    cn.add_argument("network")
    cn.add_argument("container")
    cn.add_argument("--ip")
    cn.add_argument("--alias", action="append", default=[])
    dc = nsub.add_parser("disconnect", help="disconnect a container from a network")
    dc.add_argument("network")
    dc.add_argument("container")
    dc.add_argument("-f", "--force", action="store_true")


def _run_parser(run: Parser) -> None:
    run.add_argument("--help", action="help", help="show this help and exit")
    run.add_argument("-d", "--detach", action="store_true")
    run.add_argument("-i", "--interactive", action="store_true")
    run.add_argument("--rm", action="store_true")
    run.add_argument("--name")
    run.add_argument("-h", "--hostname")
    run.add_argument("--network", "--net", default="bridge")
    run.add_argument("--ip")
    run.add_argument("--network-alias", action="append", default=[])
    run.add_argument("-e", "--env", action="append", default=[])
    run.add_argument("-w", "--workdir")
    run.add_argument("-p", "--publish", action="append", default=[])
    run.add_argument("-P", "--publish-all", action="store_true")
    run.add_argument("--expose", action="append", default=[])
    run.add_argument("cmd", nargs=argparse.REMAINDER)


def _ps_parser(ps: Parser) -> None:
    ps.add_argument("-a", "--all", action="store_true")
    ps.add_argument("-q", "--quiet", action="store_true")
    ps.add_argument("--no-trunc", action="store_true")
    _format_arg(ps)


def _exec_parser(ex: Parser) -> None:
    ex.add_argument("-i", "--interactive", action="store_true")
    ex.add_argument("-e", "--env", action="append", default=[])
    ex.add_argument("container")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)


def _port_parser(p: Parser) -> None:
    p.add_argument("container")
    p.add_argument("private", nargs="?", help="PORT[/PROTO]")


def _system_parser(p: Parser) -> None:
    sub = p.add_subparsers(dest="system_command", required=True, parser_class=Parser)
    sub.add_parser("reload-firewall", help="re-apply shoal's firewall rules from its state")
    sub.add_parser("firewall", help="print the firewall rules shoal owns")
    sub.add_parser("reconcile", help="repair what a crash, a restart or a hand left behind")
    sub.add_parser("prune", help="remove stopped containers and unused networks").add_argument(
        "-f", "--force", action="store_true")


def _doctor_parser(p: Parser) -> None:
    p.add_argument("container", nargs="?")
    p.add_argument("--to", metavar="HOST:PORT", help="also try a TCP connection to HOST:PORT")


def _stop_parser(st: Parser) -> None:
    st.add_argument("-t", "--time", type=float, default=10.0)
    st.add_argument("names", nargs="+")


def _rm_parser(rm: Parser) -> None:
    rm.add_argument("-f", "--force", action="store_true")
    rm.add_argument("names", nargs="+")


# command: (help, builder of its arguments, whether it has its own -h/--help)
COMMANDS = {
    "network": ("manage networks", _network_parser, True),
    "run": ("run a command in a new container", _run_parser, False),
    "ps": ("list containers", _ps_parser, True),
    "inspect": ("show containers as JSON",
                lambda p: p.add_argument("names", nargs="+"), True),
    "exec": ("run a command in a running container", _exec_parser, True),
    "logs": ("show a container's output", lambda p: p.add_argument("container"), True),
    "port": ("list a container's published ports", _port_parser, True),
    "stop": ("stop running containers", _stop_parser, True),
    "rm": ("remove containers", _rm_parser, True),
    "system": ("firewall maintenance, reconcile, prune", _system_parser, True),
    "doctor": ("explain why a container can't reach where it should", _doctor_parser, True),
}
GLOBAL_OPTIONS = ("--root", "--run-dir", "--firewall-backend", "--ip-forward")


def _command_word(argv: list[str]) -> str | None:
    """The subcommand named in argv, skipping the global options before it."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in GLOBAL_OPTIONS:
            i += 2
        elif arg.startswith(tuple(f"{o}=" for o in GLOBAL_OPTIONS)):
            i += 1
        else:
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> Parser:
    """The parser; given argv, only the named command's arguments are built (the others are
    listed for --help but stay empty), which keeps every command's start-up short."""
    only = _command_word(argv) if argv is not None else None
    p = Parser(prog="shoal", description="Docker-style container networking on the Linux kernel")
    p.add_argument("--root", help="state directory (default /var/lib/shoal; env SHOAL_ROOT)")
    p.add_argument("--run-dir", help="runtime directory (default /run/shoal; env SHOAL_RUN_DIR)")
    p.add_argument("--firewall-backend", choices=("nftables", "iptables"),
                   help="nftables (default) or iptables; env SHOAL_FIREWALL_BACKEND")
    p.add_argument("--ip-forward", metavar="true|false",
                   help="turn on net.ipv4.ip_forward for bridge networks (default true; "
                        "env SHOAL_IP_FORWARD)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (text, build, own_help) in COMMANDS.items():
        cmd = sub.add_parser(name, help=text, add_help=own_help)
        if only is None or only == name:
            build(cmd)
    return p


def _strip_dashes(cmd: list[str]) -> list[str]:
    return cmd[1:] if cmd and cmd[0] == "--" else cmd


def _print_json_list(items: list[Any]) -> None:
    print(json.dumps(items, indent=4))


def _each(names: list[str], action: Any) -> int:
    """Apply an action to each name as Docker does: report failures, go on, exit 1."""
    from ..errors import ShoalError

    status = 0
    for name in names:
        try:
            action(name)
            print(name)
        except ShoalError as e:
            sys.stderr.write(f"shoal: {e}\n")
            status = 1
    return status


def cmd_network(engine: Any, args: argparse.Namespace) -> int:
    from ..engine import inspect_network
    from ..render import table

    sub = args.network_command
    if sub == "create":
        net = engine.create_network(
            args.name, driver=args.driver, subnet=args.subnet, gateway=args.gateway,
            ip_range=args.ip_range, internal=args.internal, labels=dict(args.label),
            options=dict(args.opt),
        )
        print(net.id)
    elif sub in ("ls", "list"):
        filters: dict[str, list[str]] = {}
        for key, value in args.filter:
            filters.setdefault(key, []).append(value)
        nets = engine.networks(filters)
        rows = [{"ID": n.id if args.no_trunc else n.id[:12], "Name": n.name, "Driver": n.driver,
                 "Scope": "local", "Internal": str(n.internal).lower(),
                 "Labels": ",".join(f"{k}={v}" for k, v in n.labels.items()),
                 "CreatedAt": n.created} for n in nets]
        if args.quiet:
            for r in rows:
                print(r["ID"])
        elif args.format == "json":
            for r in rows:
                print(json.dumps(r))
        else:
            print(table(rows, [("NETWORK ID", "ID"), ("NAME", "Name"), ("DRIVER", "Driver"),
                               ("SCOPE", "Scope")]))
    elif sub == "inspect":
        return _inspect(engine, args.names, inspect_network, "network")
    elif sub in ("rm", "remove"):
        return _each(args.names, engine.remove_network)
    elif sub == "prune":
        removed = engine.prune_networks()
        if removed:
            print("Deleted Networks:")
            print("\n".join(removed))
    elif sub == "connect":
        engine.connect(args.network, args.container, ip=args.ip, aliases=args.alias)
    elif sub == "disconnect":
        engine.disconnect(args.network, args.container)
    return 0


def _inspect(engine: Any, names: list[str], render: Any, what: str) -> int:
    from ..errors import NotFound

    out, status = [], 0
    for name in names:
        try:
            out.append(render(engine, name))
        except NotFound as e:
            sys.stderr.write(f"shoal: {e}\n")
            status = 1
    _print_json_list(out)
    return status


def cmd_run(engine: Any, args: argparse.Namespace) -> int:
    from ..engine import RunSpec

    spec = RunSpec(
        cmd=_strip_dashes(args.cmd), name=args.name, hostname=args.hostname,
        network=args.network, ip=args.ip, aliases=args.network_alias, env=args.env,
        auto_remove=args.rm, workdir=args.workdir or os.getcwd(),
        publish=args.publish, publish_all=args.publish_all, expose=args.expose,
    )
    if args.detach:
        ctr = engine.run_detached(spec)
        print(ctr.id)
        return 0
    return engine.run_foreground(spec, interactive=args.interactive)


def cmd_ps(engine: Any, args: argparse.Namespace) -> int:
    from ..render import ps_row, table

    rows = []
    for ctr in engine.containers(all_=args.all):
        row = ps_row(ctr, engine.effective_status(ctr), engine.store.ports(ctr.id))
        if args.no_trunc:
            row["ID"] = ctr.id
        rows.append(row)
    if args.quiet:
        for r in rows:
            print(r["ID"])
    elif args.format == "json":
        for r in rows:
            print(json.dumps(r))
    else:
        print(table(rows, [("CONTAINER ID", "ID"), ("COMMAND", "Command"),
                           ("CREATED", "RunningFor"), ("STATUS", "Status"), ("PORTS", "Ports"),
                           ("NAMES", "Names")]))
    return 0


def cmd_exec(engine: Any, args: argparse.Namespace) -> int:
    from ..runtime.process import wait_status

    proc = engine.exec(args.container, _strip_dashes(args.cmd), env=args.env,
                       stdin=None if args.interactive else -3)
    return wait_status(proc)


def cmd_logs(engine: Any, args: argparse.Namespace) -> int:
    path = engine.log_path(args.container)
    try:
        with open(path, "rb") as f:
            sys.stdout.buffer.write(f.read())
    except FileNotFoundError:
        pass
    return 0


def cmd_port(engine: Any, args: argparse.Namespace) -> int:
    from ..errors import NotFound
    from ..render import port_lines

    ports = engine.ports(args.container)
    if args.private:
        number, _, proto = args.private.partition("/")
        ports = [p for p in ports if str(p.container_port) == number
                 and p.proto == (proto or "tcp")]
        if not ports:
            raise NotFound(f"no public port {number}/{proto or 'tcp'} published for "
                           f"{args.container}")
        for p in ports:
            print(f"{p.host_ip}:{p.host_port}")
        return 0
    for line in port_lines(ports):
        print(line)
    return 0


def cmd_doctor(engine: Any, args: argparse.Namespace) -> int:
    from ..doctor import FAIL, doctor, render
    from ..errors import InvalidArgument

    if args.to and not args.container:
        raise InvalidArgument("--to needs a container: shoal doctor CONTAINER --to HOST:PORT")
    checks = doctor(engine, args.container, args.to)
    print(render(checks))
    return 1 if any(c.status == FAIL for c in checks) else 0


def cmd_system(engine: Any, args: argparse.Namespace) -> int:
    match args.system_command:
        case "reload-firewall":
            engine.reload_firewall()
            print(f"firewall re-applied ({engine.netfilter.backend_name})")
        case "firewall":
            sys.stdout.write(engine.firewall_text())
        case "reconcile":
            repairs = engine.repairs + engine.reconcile()
            print("\n".join(repairs) if repairs else "nothing to repair")
        case "prune":
            containers, networks = engine.prune()
            if containers:
                print("Deleted Containers:\n" + "\n".join(containers) + "\n")
            if networks:
                print("Deleted Networks:\n" + "\n".join(networks) + "\n")
    return 0


def dispatch(engine: Any, args: argparse.Namespace) -> int:
    from ..engine import inspect_container

    match args.command:
        case "network":
            return cmd_network(engine, args)
        case "run":
            return cmd_run(engine, args)
        case "ps":
            return cmd_ps(engine, args)
        case "inspect":
            return _inspect(engine, args.names, inspect_container, "container")
        case "exec":
            return cmd_exec(engine, args)
        case "logs":
            return cmd_logs(engine, args)
        case "port":
            return cmd_port(engine, args)
        case "system":
            return cmd_system(engine, args)
        case "doctor":
            return cmd_doctor(engine, args)
        case "stop":
            return _each(args.names, lambda n: engine.stop(n, args.time))
        case "rm":
            return _each(args.names, lambda n: engine.remove_container(n, force=args.force))
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    from ..errors import ShoalError

    try:
        from ..engine import Engine

        engine = Engine(args.root, args.run_dir, firewall_backend=args.firewall_backend,
                        ip_forward=args.ip_forward)
    except ShoalError as e:
        sys.stderr.write(f"shoal: {e}\n")
        return 125 if args.command == "run" else e.exit_code
    except (OSError, sqlite3.Error) as e:
        sys.stderr.write(f"shoal: cannot start: {e}\n")
        return 125 if args.command == "run" else 1
    try:
        return dispatch(engine, args)
    except ShoalError as e:
        sys.stderr.write(f"shoal: {e}\n")
        from ..runtime.process import CommandError

        if args.command == "run" and not isinstance(e, CommandError):
            return 125
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except (OSError, sqlite3.Error) as e:
        sys.stderr.write(f"shoal: {e}\n")
        return 1
    except Exception as e:  # never a traceback for the user; SHOAL_DEBUG=1 shows it
        if os.environ.get("SHOAL_DEBUG"):
            raise
        sys.stderr.write(f"shoal: internal error: {type(e).__name__}: {e} "
                         "(run with SHOAL_DEBUG=1 for the traceback, and please report it)\n")
        return 1
    finally:
        for warning in engine.warnings:
            sys.stderr.write(f"shoal: warning: {warning}\n")
        engine.close()
