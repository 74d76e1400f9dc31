"""The embedded resolver's names: what each sandbox may resolve. Pure, no I/O.

A sandbox's View is what the controller knows of it: its entries (one per address on a
network that serves names, with the names that resolve to it there), the networks it asks
from, whether its queries for other names may be forwarded, and where to. A name resolves
for an asker only on the networks they share, as in Docker and aardvark-dns: a container on
network A does not see one that is only on network B.

A view that asks from no network (networks=[]) is only answered about: an endpoint of
another host on an overlay (controller/resolver.remote_views) has its names here, and its
own host's resolver answers its queries.

Lookups are dict hits: the table keeps an index by (network id, lowercased name) and by
(network id, address), updated when a view is put or dropped."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Entry:
    """An address of a sandbox on one network, and the names that resolve to it there."""

    network_id: str
    ip: str
    names: list[str] = field(default_factory=list)
    ptr: str = ""  # the name its address resolves back to ("" if none)


@dataclass(frozen=True, slots=True)
class View:
    sandbox_id: str
    entries: list[Entry] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)  # the networks it asks from
    forward: bool = True  # may its queries for other names leave? (False: only --internal)
    upstreams: list[str] = field(default_factory=list)  # --dns: "IP" or "IP:PORT"; [] = host's


def normal(name: str) -> str:
    """A name as the table keys it: lowercased, without the trailing dot."""
    name = name.lower()
    return name[:-1] if name.endswith(".") else name


class NameTable:
    def __init__(self) -> None:
        self._views: dict[str, View] = {}
        # (network id, name) -> [(sandbox id, address)], in the order the views were put
        self._names: dict[tuple[str, str], list[tuple[str, str]]] = {}
        # (network id, address) -> [(sandbox id, ptr name)]
        self._addresses: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self._turns: dict[tuple[str, str], int] = {}  # (asker, name) -> lookups so far
        self.generation = 0  # counts the changes: the server's answers are of one generation

    # -- changes ------------------------------------------------------------------------------

    def put(self, view: View) -> None:
        """Replace what the table holds of a sandbox."""
        self._unindex(view.sandbox_id)
        self._views[view.sandbox_id] = view
        for entry in view.entries:
            for name in dict.fromkeys(normal(n) for n in entry.names if n):
                self._names.setdefault((entry.network_id, name), []).append(
                    (view.sandbox_id, entry.ip))
            if entry.ptr:
                self._addresses.setdefault((entry.network_id, entry.ip), []).append(
                    (view.sandbox_id, entry.ptr))
        self.generation += 1

    def drop(self, sandbox_id: str) -> None:
        self._unindex(sandbox_id)
        self._turns = {k: v for k, v in self._turns.items() if k[0] != sandbox_id}
        self.generation += 1

    def _unindex(self, sandbox_id: str) -> None:
        old = self._views.pop(sandbox_id, None)
        if old is None:
            return
        for entry in old.entries:
            for name in {normal(n) for n in entry.names if n}:
                _remove(self._names, (entry.network_id, name), sandbox_id)
            if entry.ptr:
                _remove(self._addresses, (entry.network_id, entry.ip), sandbox_id)

    # -- questions ----------------------------------------------------------------------------

    def view(self, sandbox_id: str) -> View | None:
        return self._views.get(sandbox_id)

    def views(self) -> list[View]:
        return list(self._views.values())

    def addresses(self, asker_id: str, name: str) -> list[str] | None:
        """Every address a name has on the networks the asker is on, in a stable order (no
        rotation); None if the table owns no such name for it."""
        asker = self._views.get(asker_id)
        if asker is None:
            return None
        key = normal(name)
        found: dict[str, None] = {}
        for network_id in asker.networks:
            for _sandbox, ip in self._names.get((network_id, key), ()):
                found[ip] = None
        return list(found) or None

    def lookup(self, asker_id: str, name: str) -> list[str] | None:
        """The A records of a name for an asker, rotated one place at each lookup (the
        round robin of Docker and aardvark-dns); None if the table owns no such name."""
        found = self.addresses(asker_id, name)
        if found is None or len(found) == 1:
            return found
        key = (asker_id, normal(name))
        turn = self._turns.get(key, 0)
        self._turns[key] = turn + 1
        turn %= len(found)
        return found[turn:] + found[:turn]

    def reverse(self, asker_id: str, ip: str) -> str | None:
        """The name an address resolves back to, if it is on a network the asker is on."""
        asker = self._views.get(asker_id)
        if asker is None:
            return None
        for network_id in asker.networks:
            for _sandbox, ptr in self._addresses.get((network_id, ip), ()):
                return ptr
        return None


def _remove(index: dict[tuple[str, str], list[tuple[str, str]]], key: tuple[str, str],
            sandbox_id: str) -> None:
    rest = [item for item in index.get(key, ()) if item[0] != sandbox_id]
    if rest:
        index[key] = rest
    else:
        index.pop(key, None)
