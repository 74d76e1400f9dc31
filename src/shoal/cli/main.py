"""`shoal` command: Docker's verbs and flags, calling the engine."""

from __future__ import annotations

import os
import sys

from .args import USAGE_EXIT, Args, Command
from .commands import root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["USAGE_EXIT", "build_parser", "main"]


def build_parser() -> Command:
    """The command line's grammar (each command's flags are built when it is used)."""
    return root()


def _print_json_list(items: list[Any]) -> None:
    import json

    print(json.dumps(items, indent=4))


# Docker's column titles of each listing's fields, and the default table of each
PS_TITLES = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
             "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
             "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Names": "NAMES",
             "Labels": "LABELS", "Mounts": "MOUNTS", "LocalVolumes": "LOCAL VOLUMES",
             "Networks": "NETWORKS"}
PS_TABLE = "table {{.ID}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
NETWORK_TITLES = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
                  "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
                  "CreatedAt": "CREATED AT"}
NETWORK_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
PORT_TITLES = {"PrivatePort": "PRIVATE PORT", "Type": "TYPE", "HostIp": "HOST IP",
               "HostPort": "HOST PORT"}
PORT_TABLE = "table {{.PrivatePort}}\t{{.Type}}\t{{.HostIp}}\t{{.HostPort}}"


def _print_rows(rows: list[dict[str, Any]], fmt: str, titles: dict[str, str], default: str,
                type_name: str, quiet: bool = False) -> int:
    """A listing as `-q` (the IDs; with the default format only, as Docker), or as
    `--format` asks (shoal.listing). A bad template: one line on stderr, exit 1."""
    if quiet and fmt == "table":
        for r in rows:
            print(r["ID"])
        return 0
    from ..listing import formatted

    text, error = formatted(fmt, rows, titles, default, type_name)
    if error is not None:
        sys.stderr.write(f"shoal: {error}\n")
        return 1
    sys.stdout.write(text)
    return 0


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


def cmd_network(engine: Any, args: Args) -> int:
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
        rows = engine.queries.network_rows(filters, trunc=not args.no_trunc)
        return _print_rows(rows, args.format, NETWORK_TITLES, NETWORK_TABLE,
                           "*formatter.networkContext", args.quiet)
    elif sub == "inspect":
        return _inspect(args.names, engine.queries.network, args.format)
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


def _inspect(names: list[str], query: Any, template: str | None = None) -> int:
    """Objects as a JSON list, or with a template (`-f`) each through it, a line each, as
    `docker inspect -f` prints them. A template that does not parse or execute: exit 1."""
    from ..errors import NotFound

    parsed = None
    if template is not None:
        from ..gotemplate import TemplateError, parse

        try:
            parsed = parse(template)
        except TemplateError as e:
            sys.stderr.write(f"shoal: template parsing error: {e}\n")
            return 1
    out, status = [], 0
    for name in names:
        try:
            obj = query(name)
        except NotFound as e:
            sys.stderr.write(f"shoal: {e}\n")
            status = 1
            continue
        if parsed is None:
            out.append(obj)
            continue
        try:
            print(parsed.execute(obj))
        except TemplateError as e:
            sys.stderr.write(f"shoal: {e}\n")
            return 1
    if parsed is None:
        _print_json_list(out)
    return status


def cmd_run(engine: Any, args: Args) -> int:
    from ..controller import RunSpec
    from ..errors import InvalidArgument

    if args.network == "host" and (args.publish or args.publish_all):
        from ..controller.containers import HOST_PORTS_DISCARDED

        # Docker's CLI says it first, and the ports are dropped
        sys.stderr.write(f"WARNING: {HOST_PORTS_DISCARDED}\n")
        args.publish, args.publish_all = [], False
    spec = RunSpec(
        cmd=args.cmd, name=args.name, hostname=args.hostname,
        network=args.network, ip=args.ip, aliases=args.network_alias,
        env=_env(args), user=args.user or "",
        auto_remove=args.rm, workdir=args.workdir or os.getcwd(),
        publish=args.publish, publish_all=args.publish_all, expose=args.expose,
        dns=args.dns, dns_search=args.dns_search, dns_options=args.dns_option,
        extra_hosts=args.add_host, labels=_labels(args.label_file, args.label),
        restart=args.restart,
    )
    if args.restart != "no" and not args.detach:
        raise InvalidArgument("--restart needs -d: the policy is kept by a detached "
                              "container's supervisor")
    if args.detach:
        if args.tty:
            raise InvalidArgument("run -d -t is not supported (shoal has no attach): run "
                                  "-it in the foreground, or -d without -t")
        ctr = engine.run_detached(spec)
        print(ctr.id)
        return 0
    if not _tty_usable(args):
        return 1
    return engine.run_foreground(spec, interactive=args.interactive, tty=args.tty)


def _tty_usable(args: Args) -> bool:
    """`-it` needs a terminal to read from, as Docker says (-t alone does not)."""
    if args.tty and args.interactive and not os.isatty(0):
        from ..runtime.terminal import NOT_A_TTY

        sys.stderr.write(f"shoal: {NOT_A_TTY}\n")
        return False
    return True


def _labels(files: list[str], given: list[tuple[str, str]]) -> dict[str, str]:
    """--label-file's lines (KEY[=VALUE]; blank and # lines skipped), then --label: the last
    of a key wins, as in Docker."""
    from ..errors import InvalidArgument

    out: dict[str, str] = {}
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidArgument(f"cannot read --label-file {path}: {e}") from None
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                if not key.strip():
                    raise InvalidArgument(f"--label-file {path}:{n}: expected KEY[=VALUE]")
                out[key] = value
    out.update(given)
    return out


def cmd_ps(engine: Any, args: Args) -> int:
    filters: dict[str, list[str]] = {}
    for key, value in args.filter:
        filters.setdefault(key, []).append(value)
    last = 1 if args.latest else args.last or 0
    rows = engine.queries.container_rows(all_=args.all, trunc=not args.no_trunc,
                                         filters=filters, last=last)
    return _print_rows(rows, args.format, PS_TITLES, PS_TABLE, "*formatter.ContainerContext",
                       args.quiet)


def _env(args: Args) -> list[str]:
    """The --env-file entries, read here as the caller sees the files, then the -e ones;
    with -t, TERM=xterm first unless TERM is given, as Docker sets it."""
    if args.env_file:
        from ..envfile import combined

        env = combined(args.env_file, args.env)
    else:
        env = list(args.env)
    if args.tty and not any(e.partition("=")[0] == "TERM" for e in env):
        return ["TERM=xterm", *env]
    return env


def cmd_exec(engine: Any, args: Args) -> int:
    from ..runtime.process import DEVNULL

    if args.detach:  # Docker's exec -d: started, and left to run in the container
        if args.tty:
            from ..errors import InvalidArgument

            raise InvalidArgument("exec -d -t is not supported (shoal has no attach): "
                                  "exec -it in the foreground, or -d without -t")
        engine.exec(args.container, args.cmd, env=_env(args), stdin=DEVNULL, stdout=DEVNULL,
                    stderr=DEVNULL, user=args.user, workdir=args.workdir, detach=True)
        return 0
    if not _tty_usable(args):
        return 1
    return engine.exec_attached(args.container, args.cmd, env=_env(args),
                                interactive=args.interactive, tty=args.tty, user=args.user,
                                workdir=args.workdir)


def cmd_logs(engine: Any, args: Args) -> int:
    from ..runtime import logs

    since = until = None
    for flag, text in (("--since", args.since), ("--until", args.until)):
        if text is not None:
            try:
                when = logs.parse_time(text)
            except ValueError as e:
                from ..errors import InvalidArgument

                raise InvalidArgument(f"invalid value for {flag}: {e}") from None
            since, until = (when, until) if flag == "--since" else (since, when)
    ctr = engine.container(args.container)
    path = engine.log_path(ctr.id)
    try:  # never through a symlink: root would show the user whatever it points to
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    with os.fdopen(fd, "rb") as f:
        reader = logs.LogReader(f.fileno())
        printer = logs.Printer(sys.stdout.buffer, sys.stderr.buffer, args.timestamps,
                               since, until)
        if not printer.print(reader.read_tail(args.tail)) or not args.follow:
            return 0
        import time

        cid = ctr.id
        while True:
            # (looked at before the read: what was written before the end is printed)
            running = engine.output_may_come(engine.queries.container_record(cid))
            if not printer.print(reader.read()) or not running:
                return 0
            if until is not None and time.time_ns() > until:
                return 0  # as docker logs -f --until: following ends at that time
            time.sleep(0.1)


def cmd_port(engine: Any, args: Args) -> int:
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
    if args.format is not None:
        from ..render import port_row

        rows = [port_row(p) for p in sorted(ports, key=lambda p: (p.container_port, p.proto,
                                                                   p.host_port))]
        return _print_rows(rows, args.format, PORT_TITLES, PORT_TABLE, "*types.Port")
    if args.private:
        for p in ports:
            print(f"{p.host_ip}:{p.host_port}")
        return 0
    for line in port_lines(ports):
        print(line)
    return 0


def cmd_doctor(engine: Any, args: Args) -> int:
    from ..doctor import FAIL, doctor, render
    from ..errors import InvalidArgument

    if args.to and not args.container:
        raise InvalidArgument("--to needs a container: shoal doctor CONTAINER --to HOST:PORT")
    checks = doctor(engine, args.container, args.to)
    print(render(checks))
    return 1 if any(c.status == FAIL for c in checks) else 0


def cmd_resolve(engine: Any, args: Args) -> int:
    from ..errors import NotFound

    rows = engine.resolve(args.name, args.network)
    if not rows:
        where = f"network {args.network}" if args.network else "any network with names"
        raise NotFound(f"no container answers to {args.name} on {where} (the default bridge "
                       "network has no names: use a network from shoal network create)")
    for row in rows:
        print(f"{row['Address']}\t{row['Container']}\t{row['Network']}")
    return 0


def cmd_system(engine: Any, args: Args) -> int:
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


def cmd_plugin(engine: Any, args: Args) -> int:
    from ..plugins.docker.driver import DockerDriver
    from ..plugins.docker.server import serve

    # `serve`: until SIGTERM; "ready" on stderr once dockerd may connect
    serve(args.socket, DockerDriver(engine),
          ready=lambda: print(f"shoal: serving the Docker network plugin API at {args.socket}",
                              file=sys.stderr, flush=True))
    return 0


def dispatch(engine: Any, args: Args) -> int:
    match args.command:
        case "network":
            return cmd_network(engine, args)
        case "run":
            return cmd_run(engine, args)
        case "ps":
            return cmd_ps(engine, args)
        case "inspect":
            return _inspect(args.names, engine.queries.container, args.format)
        case "exec":
            return cmd_exec(engine, args)
        case "logs":
            return cmd_logs(engine, args)
        case "port":
            return cmd_port(engine, args)
        case "system":
            return cmd_system(engine, args)
        case "plugin":
            return cmd_plugin(engine, args)
        case "doctor":
            return cmd_doctor(engine, args)
        case "resolve":
            return cmd_resolve(engine, args)
        case "stop":
            return _each(args.names, lambda n: engine.stop(n, args.time))
        case "rm":
            return _each(args.names, lambda n: engine.remove_container(n, force=args.force))
    from .lifecycle import dispatch as lifecycle_dispatch

    code = lifecycle_dispatch(engine, args)
    if code is None:
        raise AssertionError(args.command)
    return code


def _broken_pipe() -> int:
    """The reader of our output went away (`shoal network inspect x | head -1`): exit as a
    process killed by SIGPIPE does (141, as docker and git do), without a message. What is
    left in stdout's buffer goes to /dev/null, so the interpreter's exit does not complain."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + 13  # SIGPIPE


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-v"], ["--version"]):  # (before the parser asks for a command)
        from .lifecycle import short_version

        print(short_version())
        return 0
    args = build_parser().parse_args(argv)
    if args.command == "version":  # needs neither root nor a store
        from .lifecycle import cmd_version

        return cmd_version(args)
    from ..errors import ShoalError
    from ..store import sqlite3

    try:
        from ..controller import Engine

        engine = Engine.open(args.root, args.run_dir, firewall_backend=args.firewall_backend,
                             ip_forward=args.ip_forward, other_firewalls=args.other_firewalls,
                             resolv_conf=args.resolv_conf, store=args.store,
                             advertise_addr=args.advertise_addr, join_cluster=True)
    except ShoalError as e:
        sys.stderr.write(f"shoal: {e}\n")
        return 125 if args.command == "run" else e.exit_code
    except (OSError, sqlite3.Error) as e:
        sys.stderr.write(f"shoal: cannot start: {e}\n")
        return 125 if args.command == "run" else 1
    try:
        code = dispatch(engine, args)
        sys.stdout.flush()  # here, where a closed pipe can still be answered quietly
        return code
    except BrokenPipeError:
        return _broken_pipe()
    except ShoalError as e:
        sys.stderr.write(f"shoal: {e}\n")
        from ..runtime.process import CommandError

        if args.command == "run" and not isinstance(e, CommandError):
            return 125
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except (OSError, sqlite3.Error) as e:
        # e.g. a full disk; for `run`, any error before the command runs is Docker's 125
        sys.stderr.write(f"shoal: {e}\n")
        return 125 if args.command == "run" else 1
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
