"""The network configuration a CNI runtime sends on stdin, parsed and checked: the reference
`bridge` plugin's keys as they are (so that a bridge network switches by changing its
`type`), `ipam` of type host-local, the runtime's capability arguments (`runtimeConfig`:
portMappings, ips, mac, dns), `args.cni` and CNI_ARGS, and shoal's own extras under `shoal`.

Pure: no I/O. Every refusal is a CniError naming the key, its value and the fix."""

from __future__ import annotations

from contextlib import suppress
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, ip_address, ip_interface

from ... import jsonwire as json  # (json's text and values, without its imports)
from ...ports import PROTOCOLS
from ...records import Record
from .errors import (
    DECODING_FAILURE,
    INCOMPATIBLE_VERSION,
    INVALID_CONFIG,
    INVALID_ENVIRONMENT,
    UNSUPPORTED_FIELD,
    CniError,
)
from .versions import LATEST, SUPPORTED_VERSIONS  # noqa: F401 (what config users read)

# what each command needs at least (libcni and the reference plugins' skel agree)
MIN_VERSION = {"CHECK": "0.4.0", "GC": "1.1.0", "STATUS": "1.1.0"}
# keys of the reference bridge plugin whose behaviour shoal does not have: refused when set
# to anything but their default, so that a config never silently means less than it says
UNSUPPORTED_BRIDGE = {"promiscMode": False, "vlan": 0, "vlanTrunk": None,
                      "preserveDefaultVlan": False, "macspoofchk": False,
                      "disableContainerInterface": False}
SHOAL_KEYS = ("root", "runDir", "icc", "internal")


class PortMapping(Record):
    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""  # "" : every address of the host


class NetConf(Record):
    version: str
    name: str
    bridge: str | None = None
    subnet: IPv4Network | None = None  # None: shoal chooses a free one
    gateway: IPv4Address | None = None
    ip_range: IPv4Network | None = None
    ip_masq: bool = False  # the reference plugin's default
    mtu: int | None = None
    icc: bool = True
    internal: bool = False
    root: str | None = None
    run_dir: str | None = None
    ip: IPv4Address | None = None  # the address asked for (runtimeConfig.ips, args, CNI_ARGS)
    mac: str | None = None
    port_mappings: list[PortMapping] = []
    dns: dict[str, object] = {}
    prev_result: dict[str, object] | None = None
    valid_attachments: list[tuple[str, str]] = []


def version_of(data: object) -> str:
    """The config's cniVersion (libcni's default, 0.1.0, when it has none)."""
    version = data.get("cniVersion", "0.1.0") if isinstance(data, dict) else "0.1.0"
    if not isinstance(version, str):
        raise CniError(DECODING_FAILURE, f"cniVersion must be a string, not {version!r}")
    return version or "0.1.0"


def _key(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split("."))
    except ValueError:
        return (0,)


def check_version(version: str, command: str) -> None:
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, f"incompatible CNI versions: the config's "
                       f"cniVersion is {version!r}; shoal-cni supports "
                       f"{', '.join(SUPPORTED_VERSIONS)}",
                       "set cniVersion to one of those in the network config list")
    least = MIN_VERSION.get(command)
    if least and _key(version) < _key(least):
        raise CniError(INCOMPATIBLE_VERSION, f"config version {version} does not allow "
                       f"{command}: it needs cniVersion {least} or later")


def decode(data: bytes) -> dict[str, object]:
    try:
        conf = json.loads(data)
    except ValueError as e:
        raise CniError(DECODING_FAILURE, f"the network config on stdin is not JSON: {e}",
                       "the runtime must send the plugin's config as a JSON object") from None
    if not isinstance(conf, dict):
        raise CniError(DECODING_FAILURE, "the network config on stdin must be a JSON object, "
                       f"not {type(conf).__name__}")
    return conf


def parse(data: bytes, command: str, cni_args: str = "") -> NetConf:
    raw = decode(data)
    version = version_of(raw)
    check_version(version, command)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise CniError(INVALID_CONFIG, "the network config has no name: give \"name\", the "
                       "network's name (shoal's network of that name is used, or made)")
    from ...errors import InvalidArgument
    from ...names import validate_name

    try:
        validate_name(name, "network")
    except InvalidArgument as e:
        raise CniError(INVALID_CONFIG, str(e)) from None
    conf = NetConf(version=version, name=name)
    _shoal_keys(raw, conf)  # where shoal's state is: needed by every command
    prev = raw.get("prevResult")
    if prev is not None:
        if not isinstance(prev, dict):
            raise CniError(DECODING_FAILURE, "prevResult must be a JSON object")
        conf.prev_result = prev
    if command == "GC":
        conf.valid_attachments = _attachments(raw.get("cni.dev/valid-attachments"))
        return conf
    if command == "DEL":
        # best effort, as the spec asks: DEL needs only the attachment and the network's
        # name, and must not fail on a setting that made the ADD fail
        with suppress(CniError):
            _options(raw, conf, command, cni_args)
        return conf
    _options(raw, conf, command, cni_args)
    return conf


def _options(raw: dict[str, object], conf: NetConf, command: str, cni_args: str) -> None:
    """The bridge's keys, ipam (alone only: chained, the previous plugin's), the runtime's
    capability arguments, args.cni and CNI_ARGS."""
    _bridge_keys(raw, conf)
    if conf.prev_result is None or command not in ("ADD", "CHECK"):
        _ipam(raw.get("ipam"), conf)
    runtime = _object(raw.get("runtimeConfig"), "runtimeConfig")
    args = _object(_object(raw.get("args"), "args").get("cni"), "args.cni")
    env_args = parse_cni_args(cni_args)
    conf.port_mappings = _port_mappings(runtime.get("portMappings"))
    ips = runtime.get("ips") or args.get("ips") or (
        [env_args["IP"]] if env_args.get("IP") else [])
    conf.ip = _requested_ip(ips)
    conf.mac = _mac(runtime.get("mac") or args.get("mac") or env_args.get("MAC"))
    conf.dns = _dns(raw.get("dns"), runtime.get("dns"))


def parse_cni_args(text: str) -> dict[str, str]:
    """CNI_ARGS: "K=V;K2=V2" (unknown keys are ignored, as the reference plugins do)."""
    out = {}
    for pair in filter(None, text.split(";")):
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_ARGS: {pair!r} is not KEY=VALUE",
                           "CNI_ARGS holds KEY=VALUE pairs separated by ';'")
        out[key] = value
    return out


def _object(value: object, what: str) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CniError(INVALID_CONFIG, f"{what} must be a JSON object, not {value!r}")
    return value


def _boolean(raw: dict[str, object], key: str, default: bool, where: str = "") -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise CniError(INVALID_CONFIG, f"{where}{key} must be true or false, not {value!r}")
    return value


def _unsupported(key: str, value: object, why: str) -> CniError:
    return CniError(UNSUPPORTED_FIELD, f"unsupported field {key}={json.dumps(value)}: {why}")


def _bridge_keys(raw: dict[str, object], conf: NetConf) -> None:
    from ...errors import InvalidArgument
    from ...names import validate_ifname

    bridge = raw.get("bridge")
    if bridge is not None:
        if not isinstance(bridge, str):
            raise CniError(INVALID_CONFIG, f"bridge must be an interface name, not {bridge!r}")
        try:
            conf.bridge = validate_ifname(bridge, "bridge")
        except InvalidArgument as e:
            raise CniError(INVALID_CONFIG, str(e)) from None
    for key in ("isGateway", "isDefaultGateway", "hairpinMode", "forceAddress"):
        _boolean(raw, key, False)  # checked; shoal's bridge always holds the gateway, and
        # hairpins: see README's CNI section
    conf.ip_masq = _boolean(raw, "ipMasq", False)
    mtu = raw.get("mtu")
    if mtu not in (None, 0):
        if not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 65535:
            raise CniError(INVALID_CONFIG, f"mtu must be a number from 68 to 65535, not {mtu!r}")
        conf.mtu = mtu
    for key, default in UNSUPPORTED_BRIDGE.items():
        if raw.get(key) not in (default, None, []):
            raise _unsupported(key, raw[key], "shoal's bridge networks do not have it; "
                                              "remove the key (or use the reference bridge "
                                              "plugin with shoal-cni chained after it)")
    if _boolean(raw, "portIsolation", False):
        conf.icc = False  # the bridge's ports cannot reach each other: Docker's icc=false


def _shoal_keys(raw: dict[str, object], conf: NetConf) -> None:
    extras = _object(raw.get("shoal"), "shoal")
    unknown = sorted(set(extras) - set(SHOAL_KEYS))
    if unknown:
        raise _unsupported(f"shoal.{unknown[0]}", extras[unknown[0]],
                           f"shoal's keys are {', '.join(SHOAL_KEYS)}")
    for key in ("root", "runDir"):
        value = extras.get(key)
        if value is not None and (not isinstance(value, str) or not value.startswith("/")):
            raise CniError(INVALID_CONFIG, f"shoal.{key} must be an absolute directory, not "
                           f"{value!r}")
    conf.root, conf.run_dir = extras.get("root"), extras.get("runDir")  # type: ignore[assignment]
    conf.icc = _boolean(extras, "icc", conf.icc, "shoal.")
    conf.internal = _boolean(extras, "internal", False, "shoal.")


def _address(value: object, what: str) -> IPv4Address:
    try:
        addr = ip_address(value) if isinstance(value, str) else None
    except ValueError:
        addr = None
    if addr is None:
        raise CniError(INVALID_CONFIG, f"{what} {value!r} is not an IP address")
    if not isinstance(addr, IPv4Address):
        raise CniError(INVALID_CONFIG, f"{what} {value}: IPv6 is not supported by shoal yet; "
                       "use an IPv4 range")
    return addr


def _subnet(value: object, what: str) -> IPv4Network:
    try:
        net = IPv4Network(value, strict=False) if isinstance(value, str) else None
    except ValueError:
        net = None
    if net is None:
        try:
            six = isinstance(value, str) and ip_interface(value).version == 6
        except ValueError:
            six = False
        if six:
            raise CniError(INVALID_CONFIG, f"{what} {value}: IPv6 is not supported by shoal "
                           "yet; use an IPv4 subnet")
        raise CniError(INVALID_CONFIG, f"{what} {value!r} is not a subnet: give one in CIDR "
                       "notation, e.g. 10.88.0.0/16")
    if net.prefixlen > 30:
        raise CniError(INVALID_CONFIG, f"{what} {value} is too small: use a prefix of /30 or "
                       "shorter")
    return net


def _ipam(value: object, conf: NetConf) -> None:
    """host-local's keys: subnet (+ gateway, rangeStart, rangeEnd) or ranges; routes."""
    ipam = _object(value, "ipam")
    if not ipam:
        return  # shoal chooses (or keeps) the network's subnet
    kind = ipam.get("type")
    if kind != "host-local":
        raise CniError(INVALID_CONFIG, f"ipam type {kind!r} is not supported: shoal-cni "
                       "allocates the addresses itself; use \"type\": \"host-local\" with "
                       "\"subnet\" or \"ranges\", or leave ipam out")
    ranges = ipam.get("ranges")
    if ranges is not None:
        chosen = _ranges(ranges)
    elif "subnet" in ipam:
        chosen = ipam
    else:
        raise CniError(INVALID_CONFIG, "ipam of type host-local needs \"subnet\" or "
                       "\"ranges\"")
    conf.subnet = _subnet(chosen.get("subnet"), "ipam subnet")
    if chosen.get("gateway"):
        conf.gateway = _address(chosen["gateway"], "ipam gateway")
    start, end = chosen.get("rangeStart"), chosen.get("rangeEnd")
    if start or end:
        conf.ip_range = _range(conf.subnet, start, end)
    routes = ipam.get("routes") or []
    if not isinstance(routes, list):
        raise CniError(INVALID_CONFIG, f"ipam routes must be a list, not {routes!r}")
    for route in routes:
        if not isinstance(route, dict) or route.get("dst") not in ("0.0.0.0/0", "::/0"):
            raise _unsupported("ipam.routes", route, "shoal gives its containers the default "
                               "route through the gateway only; keep {\"dst\": \"0.0.0.0/0\"} "
                               "or leave routes out")


def _ranges(ranges: object) -> dict[str, object]:
    """The one IPv4 range of host-local's `ranges` (a list of range sets)."""
    if not isinstance(ranges, list) or not all(isinstance(s, list) for s in ranges):
        raise CniError(INVALID_CONFIG, "ipam ranges must be a list of lists of ranges, e.g. "
                       "[[{\"subnet\": \"10.88.0.0/16\"}]]")
    flat = [r for rangeset in ranges for r in rangeset]
    if not flat or not all(isinstance(r, dict) for r in flat):
        raise CniError(INVALID_CONFIG, "ipam ranges holds no range: give "
                       "[[{\"subnet\": \"10.88.0.0/16\"}]]")
    six = [r for r in flat if ":" in str(r.get("subnet", ""))]
    if six:
        raise CniError(INVALID_CONFIG, f"ipam range {six[0].get('subnet')}: IPv6 is not "
                       "supported by shoal yet; remove the IPv6 range set")
    if len(flat) > 1:
        raise _unsupported("ipam.ranges", ranges, "shoal gives each container one address "
                           "from one subnet per network; keep one range")
    return flat[0]


def _range(subnet: IPv4Network, start: object, end: object) -> IPv4Network:
    from ipaddress import summarize_address_range

    first = _address(start, "ipam rangeStart") if start else subnet.network_address + 1
    last = _address(end, "ipam rangeEnd") if end else subnet.broadcast_address - 1
    if first not in subnet or last not in subnet or first > last:
        raise CniError(INVALID_CONFIG, f"ipam range {first}-{last} is not inside subnet "
                       f"{subnet}")
    # shoal allocates from a CIDR block (its --ip-range): the range must be one, give or
    # take the network and broadcast addresses at its ends
    lo = first - 1 if first == subnet.network_address + 1 else first
    hi = last + 1 if last == subnet.broadcast_address - 1 else last
    blocks = list(summarize_address_range(lo, hi))
    if len(blocks) != 1:
        raise _unsupported("ipam.rangeStart/rangeEnd", f"{first}-{last}",
                           "shoal allocates from one CIDR block; give a range that is one "
                           "(e.g. 10.88.0.128-10.88.0.255 for 10.88.0.128/25)")
    return blocks[0]


def _requested_ip(ips: object) -> IPv4Address | None:
    if not ips:
        return None
    if not isinstance(ips, list) or not all(isinstance(i, str) for i in ips):
        raise CniError(INVALID_CONFIG, f"ips must be a list of addresses, not {ips!r}")
    four = []
    for text in ips:
        try:
            iface = ip_interface(text)
        except ValueError:
            raise CniError(INVALID_CONFIG, f"requested IP {text!r} is not an address") from None
        if not isinstance(iface, IPv4Interface):
            raise CniError(INVALID_CONFIG, f"requested IP {text}: IPv6 is not supported by "
                           "shoal yet")
        four.append(iface.ip)
    if len(four) > 1:
        raise _unsupported("ips", ips, "shoal gives a container one address per network")
    return four[0]


def _mac(value: object) -> str | None:
    if value in (None, ""):
        return None
    text = str(value).lower()
    parts = text.split(":")
    if not isinstance(value, str) or len(parts) != 6 or not all(
            len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise CniError(INVALID_CONFIG, f"mac {value!r} is not a MAC address such as "
                       "c2:11:22:33:44:55")
    if int(parts[0], 16) & 1:
        raise CniError(INVALID_CONFIG, f"mac {value} is a multicast address: an interface "
                       "needs a unicast one (first byte even)")
    return text


def _port_mappings(value: object) -> list[PortMapping]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise CniError(INVALID_CONFIG, f"runtimeConfig.portMappings must be a list, not "
                       f"{value!r}")
    out = []
    for entry in value:
        if not isinstance(entry, dict):
            raise CniError(INVALID_CONFIG, f"port mapping {entry!r} is not an object")
        ports = [entry.get("hostPort"), entry.get("containerPort")]
        if not all(isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535
                   for p in ports):
            raise CniError(INVALID_CONFIG, f"port mapping {json.dumps(entry)}: hostPort and "
                           "containerPort must be numbers from 1 to 65535")
        proto = str(entry.get("protocol") or "tcp").lower()
        if proto not in PROTOCOLS:
            raise CniError(INVALID_CONFIG, f"port mapping {json.dumps(entry)}: protocol must "
                           "be tcp, udp or sctp")
        host_ip = entry.get("hostIP") or ""
        if host_ip:
            try:
                addr = ip_address(host_ip)
            except ValueError:
                raise CniError(INVALID_CONFIG, f"port mapping {json.dumps(entry)}: hostIP "
                               f"{host_ip!r} is not an address") from None
            if addr.version != 4:
                raise _unsupported("portMappings.hostIP", host_ip, "IPv6 host addresses are "
                                   "not supported by shoal yet")
        out.append(PortMapping(ports[0], ports[1], proto, str(host_ip)))  # type: ignore[arg-type]
    return out


def _dns(config: object, runtime: object) -> dict[str, object]:
    """The result's dns: the config's well-known `dns`, overridden by the runtime's `dns`
    capability ({servers, searches, options})."""
    out = {k: v for k, v in _object(config, "dns").items()
           if k in ("nameservers", "domain", "search", "options") and v}
    given = _object(runtime, "runtimeConfig.dns")
    for theirs, ours in (("servers", "nameservers"), ("searches", "search"),
                         ("options", "options")):
        if given.get(theirs):
            out[ours] = given[theirs]
    return out


def _attachments(value: object) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(a, dict) for a in value):
        raise CniError(INVALID_CONFIG, "cni.dev/valid-attachments must be a list of "
                       "{\"containerID\", \"ifname\"} objects")
    return [(str(a.get("containerID", "")), str(a.get("ifname", ""))) for a in value]
