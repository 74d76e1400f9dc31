"""The commands' side of the embedded resolver (the process is controller/resolver_main.py).

shoal has no daemon, so the resolver is a process of its own, as aardvark-dns is netavark's:
started when the first container joins a network whose driver serves names
(files.embedded_dns), ended when the last one leaves. It answers in every such container's
namespace at 127.0.0.11:53.

How a change reaches it: the store notes which sandboxes a command touched (their endpoints
or their container); when the command's outermost lock is about to be released, with its
transactions committed and the lock still held (store.on_unlocking), this module sends the
resolver one line over its control socket (run-dir/dns/control) naming them, and waits for
its answer. The resolver re-reads those sandboxes from the store and has made or closed
their listeners before it answers, so a name resolves the moment `run -d` returns and stops
the moment `rm` returns; no polling, and no signal that would make it drop its sockets
(aardvark-dns rebuilds its listeners on every SIGHUP: aardvark#389).

Other hosts' endpoints on an overlay (the store's remote endpoints, which this host's watcher
mirrors) take the same way: the store notes the networks whose remote endpoints changed, and
the same line names them; the resolver re-reads those networks' remote endpoints before it
answers. Their names resolve, on their network only, as a local container's do; they get no
listener (they are in no sandbox of this host), and they alone never make a resolver start:
it is needed once a local container is on a network with names, and then serves them too.

Supervision: its pid and start time are the store's meta row "resolver". Every mutating
command checks at its first lock that it is alive (store.on_locked, a /proc read) and
starts a new one at the end of the command if it died (killed -9, a host restart);
`system reconcile` does the same at once, and `doctor` asks it what it serves."""

from __future__ import annotations

from ..errors import ShoalError
from .services import alive as _alive

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..dns.table import View
    from ..model import Sandbox
    from ..store import Store
    from .context import Context

META = "resolver"
CONTROL = "control"  # the control socket, in the run directory's "dns"
START_TIMEOUT = 30.0
REPLY_TIMEOUT = 30.0
# What the resolver's interpreter runs (as the supervisor's BOOT: isolated mode, the
# package that runs this command first on sys.path).
RESOLVER_BOOT = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from shoal.controller.resolver_main import main; sys.exit(main(sys.argv[1:]))")


class ResolverLink:
    def __init__(self, ctx: Context) -> None:
        from .services import Service

        self.ctx = ctx
        self.process = Service(ctx, META, "dns", CONTROL, "the embedded resolver", RESOLVER_BOOT,
                               START_TIMEOUT, REPLY_TIMEOUT)
        self.restart = False  # found dead at this command's first lock
        self._serves_names: dict[str, bool] = {}  # network id -> files.embedded_dns

    # -- the store's hooks -------------------------------------------------------------------

    def check_alive(self) -> None:
        """At a command's first lock: is the resolver there if it should be? (One meta read
        and, if it runs, one /proc read.)"""
        record = self.record()
        if record is not None and not _alive(*record):
            self.restart = True

    def flush(self) -> None:
        """At a command's last unlock: tell the resolver what the command changed (or start
        it, or end it)."""
        touched = self.ctx.store.take_touched()
        remote = self.ctx.store.take_touched_remote()
        if not touched and not remote and not self.restart:
            return
        try:
            if self.restart:
                self.sync(None)
            else:
                self.sync(touched, remote)
        except (ShoalError, OSError) as e:
            # the change is made: say why names may not follow it, and how to repair
            self.ctx.repairs.append(f"the embedded resolver could not be updated: {e}; "
                                    "run shoal system reconcile")

    # -- operations --------------------------------------------------------------------------

    def sync(self, sandbox_ids: set[str] | None, remote: set[str] | None = None) -> None:
        """Bring the resolver up to date with the store: re-read these sandboxes and the
        remote endpoints of these networks (sandbox_ids None: everything), starting it if it
        is needed and not running, ending it if nothing needs it."""
        self.restart = False
        record = self.record()
        died = record is not None and not _alive(*record)
        if died:
            assert record is not None
            self._forget(record)
            record = None
        if record is None:
            # none ran, so none was needed: only what this command touched can need one now
            # (all of them if it died, or if all are asked for)
            # (remote endpoints alone need none: a resolver that starts reads them all)
            if self.needed() if died or sandbox_ids is None else self.needed_by(sandbox_ids):
                self.start()
            return
        message: dict[str, Any] = {"op": "sync", "ids": None, "resolv_conf": self.ctx.resolv_conf}
        if sandbox_ids is not None:
            message["ids"] = sorted(sandbox_ids)
            message["remote"] = sorted(remote or ())
        reply = self.request(message, record)
        if reply.get("listeners") == 0 and not self.needed():
            self.stop(record)

    def repair(self) -> str | None:
        """For `system reconcile`: the resolver runs if and only if something needs it, and
        serves everything the store has. A line saying what was wrong, or None."""

        self.restart = False
        self.ctx.store.take_touched()  # everything is synced below
        self.ctx.store.take_touched_remote()
        needed = self.needed()
        record = self.record()
        line = None
        if record is not None and not _alive(*record):
            self._forget(record)
            line = f"the embedded resolver (pid {record[0]}) had died"
            record = None
        elif record is not None:
            try:
                reply = self.request({"op": "sync", "ids": None,
                                      "resolv_conf": self.ctx.resolv_conf}, record)
            except ShoalError:
                self.process.kill_and_forget(record)
                line = f"the embedded resolver (pid {record[0]}) did not answer; killed it"
                record = None
            else:
                if not needed:
                    self.stop(record)
                    return "the embedded resolver ran with nothing to serve; stopped it"
                errors = reply.get("errors") or {}
                if errors:
                    sid, why = sorted(errors.items())[0]
                    return (f"the embedded resolver cannot serve {len(errors)} sandbox(es), "
                            f"{sid[:12]} first: {why}")
                return None
        if needed:
            self.start()
            return (line + "; started again") if line else (
                "the embedded resolver was not running; started it")
        return line

    def needed(self) -> bool:
        """Does any container's sandbox have an address on a network with names? (A sandbox
        another runtime handed in is not served: its runtime writes its resolv.conf.)"""
        from .files import embedded_dns

        store = self.ctx.store
        return any(ep.ip is not None and _owned(store.sandbox_by_id(ep.sandbox_id))
                   for net in store.networks() if embedded_dns(net) and store.plugged(net.id)
                   for ep in store.endpoints(network_id=net.id))

    def needed_by(self, sandbox_ids: set[str]) -> bool:
        """Does one of these sandboxes (of containers) have an address on a network with
        names?"""
        store = self.ctx.store
        return any(ep.ip is not None and self._names(ep.network_id)
                   for sid in sandbox_ids if _owned(store.sandbox_by_id(sid))
                   for ep in store.endpoints(sandbox_id=sid))

    def _names(self, network_id: str) -> bool:
        """files.embedded_dns of a network, remembered (a network's driver and name never
        change, and its id is never used again)."""
        known = self._serves_names.get(network_id)
        if known is None:
            from .files import embedded_dns

            known = embedded_dns(self.ctx.store.network_by_id(network_id))
            self._serves_names[network_id] = known
        return known

    def record(self) -> tuple[int, int | None] | None:
        return self.process.record()

    def status(self) -> dict[str, Any] | None:
        """What the running resolver serves ({"listeners": {sandbox id: [udp port, tcp port,
        "redirect" or "bound"]}, "remote": {network id: remote endpoints it names}, "stats",
        "upstreams", "resolv_conf"}), or None if none runs."""
        record = self.record()
        if record is None or not _alive(*record):
            return None
        return self.request({"op": "status"}, record)

    def start(self) -> None:
        """Start the resolver and wait until it serves every sandbox the store has."""
        ctx = self.ctx
        self.process.start([ctx.root, ctx.run_dir, ctx.resolv_conf])

    def stop(self, record: tuple[int, int | None] | None = None) -> None:
        self.process.stop(record)

    def request(self, message: dict[str, Any], record: tuple[int, int | None]
                ) -> dict[str, Any]:
        """One request over the control socket, and its answer."""
        return self.process.request(message, record)

    def _forget(self, record: tuple[int, int | None]) -> None:
        self.process.forget(record)


def sandbox_view(store: Store, sandbox_id: str) -> View | None:
    """What the resolver's table holds of a sandbox: its container's names (name, short id,
    hostname, and each endpoint's aliases) at each address it has on a network that serves
    names. None if it has no such address (or is gone)."""
    from ..dns.table import Entry, View
    from .files import embedded_dns

    sandbox = store.sandbox_by_id(sandbox_id)
    if sandbox is None or not sandbox.owned:
        return None
    ctr = store.container_by_id(sandbox.owner or sandbox_id)
    if ctr is None:
        return None
    endpoints = [ep for ep in store.endpoints(sandbox_id=sandbox_id) if ep.ip is not None]
    nets = {ep.network_id: store.network_by_id(ep.network_id) for ep in endpoints}
    named = [ep for ep in endpoints if embedded_dns(nets[ep.network_id])]
    if not named:
        return None
    names = [ctr.name, ctr.id[:12], ctr.hostname]
    return View(
        sandbox_id=sandbox_id,
        entries=[Entry(network_id=ep.network_id, ip=str(ep.ip),
                       names=_unique(names + list(ep.aliases)), ptr=ctr.name)
                 for ep in named],
        networks=[ep.network_id for ep in named],
        # a container only on internal networks has no way out: nothing is forwarded
        forward=any(not nets[ep.network_id].internal for ep in endpoints),
        upstreams=list(ctr.dns),
    )


REMOTE_KEY = "remote:"  # the table's key of a remote endpoint: "remote:" + its id


def remote_views(store: Store, network_id: str) -> list[View]:
    """What the resolver's table holds of a network's remote endpoints (other hosts'
    containers): each one's names (its container's name, short id, hostname and aliases, as
    its host announced them) at its address on that network, its first name the PTR answer.
    Keyed REMOTE_KEY + id, and asking from no network: they are answered about, never asked
    from (their queries go to their own host's resolver). None on a network without names."""
    from ..dns.table import Entry, View
    from ..errors import NotFound
    from .files import embedded_dns

    try:
        net = store.network_by_id(network_id)
    except NotFound:  # removed: its remote endpoints went with it
        return []
    if not embedded_dns(net):
        return []
    views = []
    for ep in store.remotes(network_id):
        names = _unique(list(ep.names))
        if names:
            views.append(View(sandbox_id=REMOTE_KEY + ep.id,
                              entries=[Entry(network_id=network_id, ip=str(ep.ip), names=names,
                                             ptr=names[0])],
                              networks=[], forward=False))
    return views


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for name in names:
        if name and name.lower() not in seen:
            seen[name.lower()] = name
    return list(seen.values())


def _owned(sandbox: Sandbox | None) -> bool:
    return sandbox is None or sandbox.owned  # (None: a container's, not recorded yet)
