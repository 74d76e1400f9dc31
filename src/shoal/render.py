"""Docker-shaped views of shoal's state: the JSON `inspect` prints and the rows `ls`/`ps`
show. Pure functions of the model."""

from __future__ import annotations

from .model import EXITED, RUNNING, Container, Endpoint, Network, PublishedPort, Sandbox
from .names import short_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any


def network_json(net: Network, members: list[tuple[Endpoint, Container]],
                 scope: str = "local",
                 handed_in: list[tuple[Endpoint, Sandbox]] | None = None) -> dict[str, Any]:
    """`handed_in`: endpoints of sandboxes other runtimes handed in, listed by sandbox id
    and named by their owner (cni:ID, docker:ENDPOINT-ID)."""
    config: list[dict[str, str]] = []
    if net.subnet is not None:
        entry = {"Subnet": str(net.subnet), "Gateway": str(net.gateway)}
        if net.ip_range is not None:
            entry["IPRange"] = str(net.ip_range)
        config.append(entry)
    containers = {}
    for ep, ctr in members:
        containers[ctr.id] = {
            "Name": ctr.name,
            "EndpointID": ep.id if ep.ip else "",
            "MacAddress": ep.mac or "",
            "IPv4Address": f"{ep.ip}/{net.subnet.prefixlen}" if ep.ip and net.subnet else "",
            "IPv6Address": "",
        }
    for ep, sb in handed_in or []:
        containers[sb.id] = {
            "Name": sb.owner or sb.id[:12],
            "EndpointID": ep.id,
            "MacAddress": ep.mac or "",
            "IPv4Address": f"{ep.ip}/{net.subnet.prefixlen}" if ep.ip and net.subnet else "",
            "IPv6Address": "",
        }
    return {
        "Name": net.name,
        "Id": net.id,
        "Created": net.created,
        "Scope": scope,
        "Driver": net.driver,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": net.internal,
        "Attachable": scope == "global",  # (overlays: any container may join, as --attachable)
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": dict(net.options),
        "Labels": dict(net.labels),
    }


def port_bindings(ctr: Container) -> dict[str, list[dict[str, str]]]:
    """HostConfig.PortBindings: the -p options as given."""
    out: dict[str, list[dict[str, str]]] = {}
    for port, proto, host_ip, host_port in ctr.publish:
        out.setdefault(f"{port}/{proto}", []).append({
            "HostIp": "" if host_ip == "0.0.0.0" else str(host_ip),
            "HostPort": "" if host_port is None else str(host_port),
        })
    return out


def published(ctr: Container, ports: list[PublishedPort]) -> dict[str, Any]:
    """NetworkSettings.Ports: every exposed port, with its host bindings while running."""
    out: dict[str, Any] = {f"{port}/{proto}": None for port, proto in ctr.expose}
    for p in sorted(ports, key=lambda p: (p.container_port, p.proto, p.host_port)):
        entry = {"HostIp": str(p.host_ip), "HostPort": str(p.host_port)}
        key = f"{p.container_port}/{p.proto}"
        out[key] = (out.get(key) or []) + [entry]
    return out


def port_row(p: PublishedPort) -> dict[str, Any]:
    """A published port as `port --format` sees it: {{.PrivatePort}} (a number), {{.Type}},
    {{.HostIp}} and {{.HostPort}} (text, as inspect's NetworkSettings.Ports has them)."""
    return {"PrivatePort": p.container_port, "Type": p.proto, "HostIp": str(p.host_ip),
            "HostPort": str(p.host_port)}


def ps_ports(ports: list[PublishedPort], exposed: list[tuple[int, str]] | None = None) -> str:
    """`ps`'s PORTS, as Docker's DisplayablePorts writes them: a port published on the same
    host port merged with its neighbours into ranges (0.0.0.0:9000-9002->9000-9002/tcp), an
    exposed port without a binding as 80/tcp, other mappings (0.0.0.0:8080->80/tcp) last."""
    # (private port, host ip, public port, type), sorted as Docker's comparePorts
    entries = sorted([(p.container_port, str(p.host_ip), p.host_port, p.proto) for p in ports]
                     + [(port, "", 0, proto) for port, proto in exposed or []
                        if not any(p.container_port == port and p.proto == proto
                                   for p in ports)])
    groups: dict[str, list[int]] = {}  # key: type or ip/type; value: [first, last]
    out, mappings = [], []
    for private, ip, public, proto in entries:
        key = proto
        if ip:
            if public != private:
                mappings.append(f"{ip}:{public}->{private}/{proto}")
                continue
            key = f"{ip}/{proto}"
        group = groups.get(key)
        if group is None:
            groups[key] = [private, private]
        elif private == group[1] + 1:
            group[1] = private
        else:
            out.append(_port_group(key, *group))
            groups[key] = [private, private]
    out += [_port_group(key, *g) for key, g in groups.items()]
    return ", ".join(out + mappings)


def _port_group(key: str, first: int, last: int) -> str:
    ip, _, proto = key.rpartition("/")
    ports = str(first) if first == last else f"{first}-{last}"
    return f"{ip}:{ports}->{ports}/{proto}" if ip else f"{ports}/{proto}"


def port_lines(ports: list[PublishedPort]) -> list[str]:
    """`shoal port` lines: 80/tcp -> 0.0.0.0:32768."""
    return [f"{p.container_port}/{p.proto} -> {p.host_ip}:{p.host_port}"
            for p in sorted(ports, key=lambda p: (p.container_port, p.proto, p.host_port))]


def container_json(
    ctr: Container, status: str, endpoints: list[tuple[Endpoint, Network]], mode_name: str,
    ports: list[PublishedPort] | None = None, files_dir: str = "",
) -> dict[str, Any]:
    """`files_dir`: the container's directory, where its hostname, hosts, resolv.conf and
    log are (Docker's ResolvConfPath, HostnamePath, HostsPath, LogPath)."""
    networks = {}
    for ep, net in endpoints:
        networks[net.name] = {
            "NetworkID": net.id,
            "EndpointID": ep.id if ep.ip else "",
            "Gateway": str(net.gateway) if ep.ip and net.gateway else "",
            "IPAddress": str(ep.ip) if ep.ip else "",
            "IPPrefixLen": net.subnet.prefixlen if ep.ip and net.subnet else 0,
            "MacAddress": ep.mac or "",
            "Aliases": list(ep.aliases),
            "IPAMConfig": {"IPv4Address": str(ep.requested_ip)} if ep.requested_ip else None,
        }
    if mode_name in ("host", "none"):
        networks[mode_name] = {
            "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
            "IPPrefixLen": 0, "MacAddress": "", "Aliases": [], "IPAMConfig": None,
        }
    first = endpoints[0] if endpoints else None
    running = status == RUNNING
    return {
        "Id": ctr.id,
        "Created": ctr.created,
        "Path": ctr.cmd[0],
        "Args": ctr.cmd[1:],
        "State": {
            "Status": status,
            "Running": running,
            "Pid": ctr.pid if running and ctr.pid else 0,
            "ExitCode": ctr.exit_code if status == EXITED else 0,
            "Error": ctr.error,
            "StartedAt": ctr.started_at,
            "FinishedAt": ctr.finished_at,
        },
        "ResolvConfPath": f"{files_dir}/resolv.conf" if files_dir else "",
        "HostnamePath": f"{files_dir}/hostname" if files_dir else "",
        "HostsPath": f"{files_dir}/hosts" if files_dir else "",
        "LogPath": f"{files_dir}/log" if files_dir else "",
        "Name": "/" + ctr.name,
        "RestartCount": ctr.restart_count,
        "Config": {
            "Hostname": ctr.hostname,
            "ExposedPorts": {f"{port}/{proto}": {} for port, proto in ctr.expose},
            "Cmd": list(ctr.cmd),
            "Env": list(ctr.env),
            "WorkingDir": ctr.workdir,
            "Labels": dict(ctr.labels),
            "User": ctr.user,
        },
        "HostConfig": {"NetworkMode": mode_name, "AutoRemove": ctr.auto_remove,
                       "PortBindings": port_bindings(ctr),
                       # as Docker shows them: lists, ExtraHosts null when none
                       "Dns": list(ctr.dns), "DnsSearch": list(ctr.dns_search),
                       "DnsOptions": list(ctr.dns_options),
                       "ExtraHosts": list(ctr.extra_hosts) or None,
                       "RestartPolicy": {"Name": ctr.restart_policy,
                                         "MaximumRetryCount": ctr.restart_max}},
        "NetworkSettings": {
            "SandboxKey": "",
            "IPAddress": str(first[0].ip) if first and first[0].ip else "",
            "Gateway": str(first[1].gateway) if first and first[0].ip else "",
            "MacAddress": first[0].mac or "" if first else "",
            "Ports": published(ctr, ports or []),
            "Networks": networks,
        },
    }


def _ago(stamp: str, now: datetime | None = None) -> str:
    from datetime import UTC, datetime

    when = datetime.strptime(stamp[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    secs = int(((now or datetime.now(UTC)) - when).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if secs >= size:
            n = secs // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return "Less than a second" if secs < 1 else f"{secs} second{'s' if secs != 1 else ''}"


def status_text(ctr: Container, status: str) -> str:
    if status == RUNNING:
        return f"Up {_ago(ctr.started_at)}"
    if status == EXITED:
        if ctr.finished_at == Container.finished_at:  # gone, but its exit is not recorded yet
            return "Exited"
        return f"Exited ({ctr.exit_code}) {_ago(ctr.finished_at)} ago"
    return "Created"


def ps_row(ctr: Container, status: str, ports: list[PublishedPort] | None = None,
           trunc: bool = True, networks: list[str] | None = None) -> dict[str, str]:
    """A `ps` row, Docker's fields (`networks`: the names of the container's networks)."""
    import shlex

    cmd = printable(shlex.join(ctr.cmd))
    return {
        "ID": short_id(ctr.id) if trunc else ctr.id,
        "Command": cmd if len(cmd) <= 20 or not trunc else cmd[:19] + "…",
        "CreatedAt": ctr.created,
        "RunningFor": _ago(ctr.created) + " ago",
        "Status": status_text(ctr, status),
        "State": status,
        "Networks": ",".join(sorted(networks or [])),
        "Ports": ps_ports(ports or [], [(int(port), str(proto)) for port, proto in ctr.expose]
                          if status == RUNNING else []),
        "Names": ctr.name,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(ctr.labels.items())),
        "Mounts": "",
    }


def printable(text: str) -> str:
    """Control characters escaped as Go's strconv.Quote writes them (Docker quotes the
    command in `docker ps`): a multi-line command stays on one line of the table."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch.isprintable() or ch == " ":
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out)


_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
            "\t": "\\t", "\v": "\\v"}
