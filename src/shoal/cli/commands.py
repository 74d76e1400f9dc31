"""The command line's grammar: every shoal command with its flags and arguments, spelled as
Docker spells them. The flags of a command are only built when that command is used."""

from __future__ import annotations

from . import lifecycle
from .args import APPEND, FLAG, REMAINDER, Arg, Command, Opt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not key or not sep:
        raise ValueError("expected KEY=VALUE")
    return key, value


def _label(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    if not key.strip():
        raise ValueError("expected KEY[=VALUE] with a KEY")
    return key, value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("expected a whole number") from None
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise ValueError("expected a number of seconds, 0 or more")
    return value


def _format() -> Opt:
    return Opt("--format", default="table", metavar="FORMAT",
               help="table, json (a JSON object per line), a Go template ('{{.Names}}'), "
               "or table and a template ('table {{.ID}}\\t{{.Names}}')")


def _template() -> Opt:
    return Opt("-f", "--format", metavar="TEMPLATE",
               help="print each object through a Go template, e.g. '{{.Name}}'")


def _network(c: Command) -> None:
    c.sub_dest = "network_command"
    c.subs = [
        Command("create", "create a network", build=_network_create),
        Command("ls", "list networks", aliases=("list",), opts=[
            _format(),
            Opt("-f", "--filter", kind=APPEND, convert=_kv, metavar="KEY=VALUE",
                help="name=, driver= or label=KEY[=VALUE]"),
            Opt("-q", "--quiet", kind=FLAG, help="only the network IDs"),
            Opt("--no-trunc", kind=FLAG, help="full network IDs"),
        ]),
        Command("inspect", "show networks as JSON", opts=[_template()],
                args=[Arg("names", "+", "NETWORK")]),
        Command("rm", "remove networks", aliases=("remove",),
                args=[Arg("names", "+", "NETWORK")]),
        Command("prune", "remove unused networks",
                opts=[Opt("-f", "--force", kind=FLAG, help="do not ask (shoal never asks)")]),
        Command("connect", "connect a container to a network", opts=[
            Opt("--ip", metavar="IP", help="the container's address on the network"),
            Opt("--alias", kind=APPEND, metavar="NAME", help="another name on the network"),
        ], args=[Arg("network"), Arg("container")]),
        Command("disconnect", "disconnect a container from a network",
                opts=[Opt("-f", "--force", kind=FLAG, help="accepted for Docker's sake")],
                args=[Arg("network"), Arg("container")]),
    ]


def _network_create(c: Command) -> None:
    c.opts = [
        Opt("-d", "--driver", default="bridge", help="bridge (the default), or overlay: a "
            "network across the hosts of a cluster (needs --store); host and null are "
            "built in"),
        Opt("--subnet", metavar="CIDR", help="default: a free /16 from Docker's pools"),
        Opt("--gateway", metavar="IP", help="default: the subnet's first address"),
        Opt("--ip-range", metavar="CIDR", help="hand out container addresses from here"),
        Opt("--internal", kind=FLAG, help="no route out, no masquerade, no published ports"),
        Opt("--attachable", kind=FLAG, help="accepted for Docker's sake: every network's "
            "containers may join it (overlays are attachable)"),
        Opt("--label", kind=APPEND, convert=_kv, metavar="KEY=VALUE"),
        Opt("-o", "--opt", kind=APPEND, convert=_label, metavar="KEY=VALUE",
            help="a bridge option, in shoal's or Docker's name: bridge.name=NAME, "
            "bridge.enable_icc=false, bridge.enable_ip_masquerade=false, "
            "bridge.host_binding_ipv4=IP (after shoal. or com.docker.network.), "
            "shoal.bridge.mtu or com.docker.network.driver.mtu=68..65535; overlay: "
            "com.docker.network.driver.overlay.vxlanid_list=VNI and the MTU"),
    ]
    c.args = [Arg("name")]


def _run(c: Command) -> None:
    c.opts = [
        Opt("-d", "--detach", kind=FLAG, help="run in the background, print the container ID"),
        Opt("-i", "--interactive", kind=FLAG, help="keep standard input open"),
        Opt("-t", "--tty", kind=FLAG, help="give the command a pseudo-terminal"),
        Opt("--rm", kind=FLAG, help="remove the container when it exits"),
        Opt("--name"),
        Opt("-h", "--hostname"),
        Opt("--network", "--net", default="bridge",
            help="NETWORK, host, none or container:NAME"),
        Opt("--ip", metavar="IP", help="the container's address on its network"),
        Opt("--network-alias", kind=APPEND, metavar="NAME"),
        Opt("-e", "--env", kind=APPEND, metavar="KEY[=VALUE]",
            help="a variable (KEY alone: this shell's value); wins over --env-file"),
        Opt("--env-file", kind=APPEND, metavar="FILE",
            help="KEY=VALUE lines; # comments; KEY alone: this shell's value"),
        Opt("-u", "--user", metavar="USER[:GROUP]",
            help="run as this user or uid (and group or gid), from the host's passwd"),
        Opt("-w", "--workdir", metavar="DIR", help="default: the current directory"),
        Opt("-p", "--publish", kind=APPEND, metavar="[IP:][HOST:]PORT[/PROTO]",
            help="publish a container port on the host"),
        Opt("-P", "--publish-all", kind=FLAG, help="publish every --expose'd port"),
        Opt("--expose", kind=APPEND, metavar="PORT[/PROTO]"),
        Opt("--dns", kind=APPEND, metavar="IP",
            help="a DNS server (on a user network: where the embedded resolver forwards)"),
        Opt("--dns-search", kind=APPEND, metavar="DOMAIN", help="a search domain (. for none)"),
        Opt("--dns-option", "--dns-opt", kind=APPEND, metavar="OPT",
            help="a resolv.conf option, e.g. ndots:2"),
        Opt("--add-host", kind=APPEND, metavar="NAME:IP",
            help="a line of /etc/hosts; NAME:host-gateway: the gateway of its network"),
        Opt("-l", "--label", kind=APPEND, convert=_label, metavar="KEY[=VALUE]",
            help="a label on the container (ps --filter label=KEY[=VALUE] finds it)"),
        Opt("--label-file", kind=APPEND, metavar="FILE",
            help="labels from a file, a KEY[=VALUE] a line (# comments)"),
        Opt("--restart", default="no", metavar="POLICY",
            help="no, on-failure[:N], always or unless-stopped (with -d)"),
    ]
    c.args = [Arg("cmd", REMAINDER, "COMMAND")]


def _exec(c: Command) -> None:
    c.opts = [
        Opt("-d", "--detach", kind=FLAG, help="start the command in the background and return"),
        Opt("-i", "--interactive", kind=FLAG, help="keep standard input open"),
        Opt("-t", "--tty", kind=FLAG, help="give the command a pseudo-terminal"),
        Opt("-e", "--env", kind=APPEND, metavar="KEY[=VALUE]",
            help="a variable (KEY alone: this shell's value); wins over --env-file"),
        Opt("--env-file", kind=APPEND, metavar="FILE", help="KEY=VALUE lines, as for run"),
        Opt("-u", "--user", metavar="USER[:GROUP]",
            help="run as this user or uid (default: the container's)"),
        Opt("-w", "--workdir", metavar="DIR",
            help="an absolute path (default: the container's directory)"),
    ]
    c.args = [Arg("container"), Arg("cmd", REMAINDER, "COMMAND")]


def _tail(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit():
        raise ValueError("expected a number of lines or all")
    return int(text)


def _logs(c: Command) -> None:
    c.opts = [
        Opt("-f", "--follow", kind=FLAG, help="keep printing output until the container exits"),
        Opt("-n", "--tail", default=None, convert=_tail, metavar="N",
            help="only the last N lines (all: every line)"),
        Opt("-t", "--timestamps", kind=FLAG, help="prefix each line with its time (RFC3339Nano)"),
        Opt("--since", metavar="TIME", help="only lines since TIME: RFC3339, Unix seconds, "
            "or a duration before now (10m, 1h30m)"),
        Opt("--until", metavar="TIME", help="only lines before TIME (same forms as --since)"),
    ]
    c.args = [Arg("container")]


def _system(c: Command) -> None:
    c.sub_dest = "system_command"
    c.subs = [
        Command("reload-firewall", "re-apply shoal's firewall rules from its state"),
        Command("firewall", "print the firewall rules shoal owns"),
        Command("reconcile", "repair what a crash, a restart or a hand left behind"),
        Command("prune", "remove stopped containers and unused networks",
                opts=[Opt("-f", "--force", kind=FLAG, help="do not ask (shoal never asks)")]),
    ]


def _plugin(c: Command) -> None:
    c.sub_dest = "plugin_command"
    c.subs = [
        Command("serve", "serve Docker's remote network driver API (dockerd's driver "
                "`shoal` when the socket is /run/docker/plugins/shoal.sock)", opts=[
                    Opt("--socket", default="/run/docker/plugins/shoal.sock", metavar="PATH",
                        help="the unix socket to listen at; its directory must exist")]),
    ]


def _set(**fields: Any) -> Callable[[Command], None]:
    """A builder that sets fields of a command (for the commands small enough for a line)."""
    def build(c: Command) -> None:
        for key, value in fields.items():
            setattr(c, key, value)
    return build


def root() -> Command:
    """`shoal` itself: the global flags and every command."""
    return Command("shoal", "Docker-style container networking on the Linux kernel", opts=[
        Opt("--root", metavar="DIR", help="state directory (default /var/lib/shoal; "
            "env SHOAL_ROOT)"),
        Opt("--run-dir", metavar="DIR", help="runtime directory (default /run/shoal; "
            "env SHOAL_RUN_DIR)"),
        Opt("--firewall-backend", choices=("nftables", "iptables"), metavar="BACKEND",
            help="nftables (default) or iptables; env SHOAL_FIREWALL_BACKEND"),
        Opt("--ip-forward", metavar="true|false", help="turn on net.ipv4.ip_forward for "
            "bridge networks (default true; env SHOAL_IP_FORWARD)"),
        Opt("--other-firewalls", choices=("accept", "leave"), metavar="accept|leave",
            help="accept (default): add accepts for shoal's bridges to other firewalls' "
            "forward chains that drop (Docker, firewalld); leave: never touch them; "
            "remembered; env SHOAL_OTHER_FIREWALLS"),
        Opt("--resolv-conf", metavar="FILE", help="the host's resolv.conf, read for the "
            "containers' DNS servers (default /etc/resolv.conf; env SHOAL_RESOLV_CONF)"),
        Opt("--store", metavar="URL", help="join this host to the cluster whose global store "
            "this is, e.g. etcd://10.0.0.1:2379,10.0.0.2:2379 (for overlay networks; "
            "remembered; env SHOAL_STORE)"),
        Opt("--advertise-addr", metavar="IP", help="this host's address the other hosts of "
            "the cluster reach it at (default: its address toward the store; env "
            "SHOAL_ADVERTISE_ADDR)"),
        Opt("-v", "--version", kind=FLAG, help="print the version and exit"),
    ], sub_dest="command", subs=[
        Command("network", "manage networks", build=_network),
        Command("run", "run a command in a new container", help_flags=("--help",),
                build=_run),
        Command("ps", "list containers", build=_set(opts=[
            Opt("-a", "--all", kind=FLAG, help="also stopped containers"),
            Opt("-f", "--filter", kind=APPEND, convert=_kv, metavar="KEY=VALUE",
                help="name=, id=, label=KEY[=VALUE], status=, network=, publish=PORT[/PROTO] "
                "or expose=PORT[/PROTO] (ports or ranges, e.g. 8000-8080/tcp)"),
            Opt("-n", "--last", convert=_count, metavar="N",
                help="the N most recently created containers (any state)"),
            Opt("-l", "--latest", kind=FLAG, help="the most recently created container"),
            Opt("-q", "--quiet", kind=FLAG, help="only the container IDs"),
            Opt("--no-trunc", kind=FLAG, help="full container IDs"),
            _format(),
        ])),
        Command("inspect", "show containers as JSON",
                build=_set(opts=[_template()], args=[Arg("names", "+", "CONTAINER")])),
        Command("exec", "run a command in a running container", build=_exec),
        Command("logs", "show a container's output", build=_logs),
        Command("port", "list a container's published ports", build=_set(
            opts=[Opt("--format", metavar="TEMPLATE",
                      help="a Go template for each mapping: {{.PrivatePort}}, {{.Type}}, "
                      "{{.HostIp}}, {{.HostPort}}; or table and a template")],
            args=[Arg("container"), Arg("private", "?", "PORT[/PROTO]")])),
        Command("stop", "stop running containers", build=_set(
            opts=[Opt("-t", "--time", default=10.0, convert=_seconds, metavar="SECONDS",
                      help="wait this long after SIGTERM, then SIGKILL")],
            args=[Arg("names", "+", "CONTAINER")])),
        Command("rm", "remove containers", build=_set(
            opts=[Opt("-f", "--force", kind=FLAG, help="stop a running container first")],
            args=[Arg("names", "+", "CONTAINER")])),
        Command("resolve", "what a container name resolves to on the networks with names",
                build=_set(opts=[Opt("--network", metavar="NETWORK",
                                     help="only the answers on this network")],
                           args=[Arg("name")])),
        Command("system", "firewall maintenance, reconcile, prune", build=_system),
        Command("plugin", "shoal as another engine's network plugin (dockerd)",
                build=_plugin),
        Command("doctor", "explain why a container can't reach where it should", build=_set(
            opts=[Opt("--to", metavar="HOST:PORT",
                      help="also try a TCP connection to HOST:PORT")],
            args=[Arg("container", "?")])),
        *lifecycle.commands(),
    ])
