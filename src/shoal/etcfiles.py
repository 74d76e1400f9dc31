"""What a container's /etc/resolv.conf and /etc/hosts say, as Docker writes them: the run
options that shape them (--dns, --dns-search, --dns-option, --add-host), checked; the host's
resolv.conf, read without trusting it; and the files' text. Pure: no I/O here (the
controller's files.py reads the host's file and writes the container's).

What goes into a container's resolv.conf (`container_resolv_conf`):

- on a network whose driver serves names (the embedded resolver, controller/files.py's
  embedded_dns): the resolver's address only, the search domains (--dns-search, else the
  host's) and the options (--dns-option, else the host's) with Docker's `ndots:0` unless one
  of those sets ndots. The --dns servers are not written: the resolver forwards to them.
- otherwise (the default `bridge` network, `none`): --dns, or else the host's servers that a
  container can reach: never a loopback one (127.0.0.0/8, ::1: the container's own loopback
  has no server) nor an IPv6 one (shoal's networks are IPv4 only; Docker drops them too on a
  network without IPv6). Docker falls back to Google's public servers when none remains;
  shoal writes no server then, and a comment saying why.
- network mode host: the host's file itself, or rebuilt from it with the overrides given."""

from __future__ import annotations

from .errors import InvalidArgument
from .names import ALNUM, HOSTNAME_CHARS
from .records import Record

HOST_GATEWAY = "host-gateway"  # --add-host NAME:host-gateway (Docker's special value)
NDOTS_EMBEDDED = "ndots:0"  # what Docker's embedded DNS sets unless ndots is given
MAX_HOST_FILE = 64 * 1024  # read at most this much of the host's resolv.conf
OPTION_CHARS = ALNUM | frozenset("-_.:")  # of a resolv.conf option (ndots:2, no-aaaa)

DEFAULT_HOSTS = ("127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                 "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix",
                 "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters")


class HostResolv(Record):
    """What the host's resolv.conf says, as far as it could be read."""

    nameservers: list[str] = []
    search: list[str] = []
    options: list[str] = []


# -- checking the run options ---------------------------------------------------------------


def _ip(text: str) -> str | None:
    """The address in its usual spelling, or None if it is not one (no zone: "fe80::1%eth0"
    is refused, a zone may hold anything)."""
    from ipaddress import ip_address

    if "%" in text:
        return None
    try:
        return str(ip_address(text))
    except ValueError:
        return None


def is_domain(text: str, underscore: bool = False) -> bool:
    """A DNS name of RFC 1123 labels (letters, digits, '-' inside; `underscore` also allows
    '_', as host names in /etc/hosts often have), at most 253 characters, one final dot
    allowed; not all digits (that would be an address)."""
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > 253:
        return False
    allowed = HOSTNAME_CHARS | {"_"} if underscore else HOSTNAME_CHARS
    for label in name.split("."):
        if not (0 < len(label) <= 63 and allowed.issuperset(label)
                and label[0] != "-" and label[-1] != "-"):
            return False
    return not name.replace(".", "").isdigit()


def parse_dns_server(text: str) -> str:
    """--dns IP: an IPv4 or IPv6 address."""
    ip = _ip(text)
    if ip is None:
        raise InvalidArgument(f"invalid --dns {text!r}: give the IPv4 or IPv6 address of a "
                              "DNS server, e.g. --dns 192.0.2.53")
    return ip


def parse_dns_search(text: str) -> str:
    """--dns-search DOMAIN; "." means no search domain at all (Docker's spelling)."""
    if text == ".":
        return text
    if not is_domain(text):
        raise InvalidArgument(f"invalid --dns-search {text!r}: give a domain name of letters, "
                              "digits, '-' and '.', e.g. --dns-search example.com (or . for "
                              "none)")
    return text.rstrip(".")


def is_option(text: str) -> bool:
    return 0 < len(text) <= 64 and text[0] in ALNUM and OPTION_CHARS.issuperset(text)


def parse_dns_option(text: str) -> str:
    """--dns-option OPT: a resolv.conf option (resolv.conf(5): ndots:N, timeout:N, rotate,
    edns0, ...). Only its spelling is checked: it must be one word of the file."""
    if not is_option(text):
        raise InvalidArgument(f"invalid --dns-option {text!r}: give one resolv.conf option "
                              "such as ndots:2, timeout:1 or edns0")
    return text


def parse_extra_host(text: str) -> tuple[str, str]:
    """--add-host NAME:IP, NAME=IP or NAME:host-gateway -> (name, address or HOST_GATEWAY).
    An IPv6 address may be in brackets (NAME:[::1]), as Docker allows."""
    usage = "use NAME:IP or NAME:host-gateway"
    name, sep, value = text.partition("=")
    if not sep:
        name, sep, value = text.partition(":")
    if not sep or not name or not value:
        raise InvalidArgument(f"invalid --add-host {text!r}: {usage}")
    if not is_domain(name, underscore=True):
        raise InvalidArgument(f"invalid --add-host {text!r}: {name!r} is not a host name "
                              f"(letters, digits, '-', '_' and '.'); {usage}")
    if value == HOST_GATEWAY:
        return name, value
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    ip = _ip(value)
    if ip is None:
        raise InvalidArgument(f"invalid --add-host {text!r}: {value!r} is not an IP address; "
                              f"{usage}")
    return name, ip


def extra_host_entry(name: str, ip: str) -> str:
    """How a container record keeps an --add-host (host-gateway resolved): NAME:IP."""
    return f"{name}:{ip}"


def split_extra_host(entry: str) -> tuple[str, str]:
    name, _, ip = entry.partition(":")
    return name, ip


# -- the host's resolv.conf -----------------------------------------------------------------


def parse_resolv_conf(data: bytes) -> HostResolv:
    """The servers, search domains and options of a resolv.conf, read as glibc reads it (the
    last `search` or `domain` line wins, `options` lines add up), keeping only what is
    well formed: this file is not shoal's, and what is taken from it goes into containers'
    files."""
    text = data[:MAX_HOST_FILE].decode("utf-8", errors="replace")
    servers: list[str] = []
    search: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        key, args = words[0], words[1:]
        if key == "nameserver" and args:
            ip = _ip(args[0])
            if ip is not None and ip not in servers:
                servers.append(ip)
        elif key in ("search", "domain"):
            search = [d.rstrip(".") for d in args if is_domain(d)]
            if key == "domain":
                search = search[:1]
        elif key == "options":
            for opt in args:
                if is_option(opt):
                    name = opt.partition(":")[0]
                    options = [o for o in options if o.partition(":")[0] != name] + [opt]
    return HostResolv(nameservers=servers, search=search, options=options)


def reachable_from_container(server: str) -> bool:
    """Can a container on a bridge network reach this server of the host? Not a loopback
    one (the container's loopback is its own), and not an IPv6 one (its networks are IPv4)."""
    from ipaddress import ip_address

    ip = ip_address(server)
    return not ip.is_loopback and ip.version == 4


# -- the files ---------------------------------------------------------------------------------


def resolv_conf_text(nameservers: list[str], search: list[str], options: list[str],
                     notes: list[str] | None = None) -> str:
    lines = ["# Generated by shoal for this container (rewritten when its networks change)."]
    lines += [f"nameserver {s}" for s in nameservers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    if notes:
        lines.append("")
        lines += [f"# {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _search(given: list[str], host: HostResolv) -> list[str]:
    if given:
        return [] if "." in given else list(given)
    return list(host.search)


def container_resolv_conf(host: HostResolv, source: str, embedded: str | None,
                          dns: list[str], search: list[str], options: list[str]) -> str:
    """A container's resolv.conf (not in network mode host). `source`: the host's file (for
    the notes); `embedded`: the embedded resolver's address if one of the container's
    networks serves names, else None; `dns`, `search`, `options`: the run options."""
    opts = list(options) if options else list(host.options)
    if embedded is not None:
        if not any(o.startswith("ndots:") for o in opts):
            opts.insert(0, NDOTS_EMBEDDED)
        upstream = (f"--dns {' '.join(dns)}" if dns else
                    f"{' '.join(host.nameservers) or 'no server'} (from {source})")
        notes = [f"{embedded}: shoal's embedded resolver; it answers the containers' names",
                 f"and forwards other queries to {upstream}"]
        return resolv_conf_text([embedded], _search(search, host), opts, notes)
    notes = []
    if dns:
        servers = list(dns)
    else:
        servers = [s for s in host.nameservers if reachable_from_container(s)]
        dropped = [s for s in host.nameservers if s not in servers]
        if dropped:
            notes.append(f"left out from {source}: {' '.join(dropped)} (loopback or IPv6: "
                         "not reachable from this container)")
        if not servers:
            notes += ["no nameserver: the host's file names none this container can reach,",
                      "and shoal puts no public server in their place; give --dns IP, or use",
                      "a user network (its embedded resolver forwards to the host's servers)"]
    return resolv_conf_text(servers, _search(search, host), opts, notes)


def host_mode_resolv_conf(raw: bytes, host: HostResolv, dns: list[str], search: list[str],
                          options: list[str]) -> bytes:
    """Network mode host: the host's file as it is, or with the overrides given (the host's
    loopback servers are the container's too)."""
    if not (dns or search or options):
        return raw
    return resolv_conf_text(list(dns) or list(host.nameservers), _search(search, host),
                            list(options) or list(host.options)).encode()


def hosts_text(hostname: str, ips: list[str], extra: list[tuple[str, str]]) -> str:
    """Docker's /etc/hosts: localhost and the IPv6 names, each --add-host (IP NAME), then
    the container's own addresses with its hostname."""
    lines = list(DEFAULT_HOSTS)
    lines += [f"{ip}\t{name}" for name, ip in extra]
    lines += [f"{ip}\t{hostname}" for ip in ips]
    return "\n".join(lines) + "\n"


def host_mode_hosts(raw: bytes, extra: list[tuple[str, str]]) -> bytes:
    """Network mode host: the host's /etc/hosts, with each --add-host after it."""
    if not extra:
        return raw
    if raw and not raw.endswith(b"\n"):
        raw += b"\n"
    return raw + "".join(f"{ip}\t{name}\n" for name, ip in extra).encode()
