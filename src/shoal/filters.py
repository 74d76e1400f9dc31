"""`ps --filter KEY=VALUE`, with the Docker daemon's semantics. Pure: a container's record,
its status and its networks in, yes or no out.

- name: a regular expression searched in the name, with or without its leading `/`
  (so `web` matches `web` and `webapp`; `^/web$` only `web`);
- id: a regular expression searched in the full ID (a prefix, in practice);
- label: `KEY` (the label is there) or `KEY=VALUE` (with that value);
- status: created, restarting, running, removing, paused, exited or dead; a status filter
  lists stopped containers without `-a`, as in Docker;
- network: a network's name, or a prefix of its ID;
- publish / expose: `PORT[/PROTO]` or `START-END[/PROTO]` (tcp when no PROTO), a container
  port published with -p (publish), or exposed with --expose, -p or -P (expose).

Values of one key are or'ed (label's are and'ed), keys are and'ed, as in Docker."""

from __future__ import annotations

from .errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .model import Container, Network

KEYS = ("name", "id", "label", "status", "network", "publish", "expose")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


class ContainerFilter:
    """Filters checked once (a bad one: InvalidArgument naming it and the fix)."""

    def __init__(self, filters: dict[str, list[str]]) -> None:
        for key, values in filters.items():
            if key not in KEYS:
                raise InvalidArgument(f"invalid filter {key!r}: use "
                                      + ", ".join(f"{k}=" for k in KEYS))
            for value in values if key == "status" else ():
                if value not in STATUSES:
                    raise InvalidArgument(f"invalid filter 'status={value}': use one of "
                                          + ", ".join(STATUSES))
        self.filters = filters
        self.patterns: dict[str, list[Any]] = {"name": [], "id": []}
        if "name" in filters or "id" in filters:
            import re  # (only then: `ps` without filters stays quick to start)

            try:
                self.patterns = {key: [re.compile(v) for v in filters.get(key, [])]
                                 for key in ("name", "id")}
            except re.error as e:
                raise InvalidArgument(f"invalid filter: {e.pattern!r} is not a regular "
                                      f"expression ({e})") from None
        self.ports = {key: {p for v in filters.get(key, []) for p in port_set(key, v)}
                      for key in ("publish", "expose")}

    @property
    def wants_all(self) -> bool:
        """A status filter looks at stopped containers too (Docker sets --all for it)."""
        return "status" in self.filters

    def matches(self, ctr: Container, status: str, networks: list[Network]) -> bool:
        f = self.filters
        if self.patterns["name"] and not any(p.search(ctr.name) or p.search("/" + ctr.name)
                                             for p in self.patterns["name"]):
            return False
        if self.patterns["id"] and not any(p.search(ctr.id) for p in self.patterns["id"]):
            return False
        if "label" in f and not all(_label_matches(ctr.labels, v) for v in f["label"]):
            return False
        if "status" in f and status not in f["status"]:
            return False
        if "network" in f and not any(n.name == v or n.id.startswith(v)
                                      for v in f["network"] for n in networks):
            return False
        published = {(int(port), str(proto)) for port, proto, _ip, _hp in ctr.publish}
        if "publish" in f and not published & self.ports["publish"]:
            return False
        exposed = {(int(port), str(proto)) for port, proto in ctr.expose} | published
        return not ("expose" in f and not exposed & self.ports["expose"])


def _label_matches(labels: dict[str, str], wanted: str) -> bool:
    """Docker's MatchKVList: every label filter must hold (they are and'ed)."""
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


def port_set(key: str, text: str) -> set[tuple[int, str]]:
    """The (port, proto) of `PORT[/PROTO]` or `START-END[/PROTO]`."""
    if ":" in text:
        raise InvalidArgument(f"filter for '{key}' should not contain ':': {text}")
    ports, _, proto = text.partition("/")
    first, dash, last = ports.partition("-")
    try:
        start, end = int(first), int(last) if dash else int(first)
    except ValueError:
        start = end = -1
    if not 0 < start <= end <= 65535 or proto not in ("", "tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid filter '{key}={text}': use PORT[/PROTO] or "
                              "START-END[/PROTO], e.g. 80/tcp or 8000-8080")
    return {(p, proto or "tcp") for p in range(start, end + 1)}
