"""The embedded resolver's process: shoal's state turned into the name table of
shoal.dns, one listener per sandbox that has an address on a network with names, and the
control socket the commands talk to (controller/resolver.py is their side).

Started by ResolverLink.start with argv ROOT RUN_DIR RESOLV_CONF FD: it reads every sandbox
from the store, makes their listeners, opens run-dir/dns/control, writes "ok" to FD and
closes it, then serves until told to stop. It runs in the host's network namespace (so it
forwards from there: a loopback resolver of the host such as systemd-resolved's 127.0.0.53
works, which Docker's containers often cannot reach: moby#48266), in shoal's supervisors'
cgroup, with the store opened read-only in spirit: it never takes the write lock.

Control requests, one JSON line each, one JSON line back:
  {"op": "sync", "ids": [sandbox id, ...] or null for all, "resolv_conf": path,
   "remote": [network id, ...]}
      -> {"ok": true, "listeners": n}       (after the table and the listeners follow)
      "remote" (optional, only with a list of ids): re-read these networks' remote endpoints
      (other hosts' containers: names, no listener); "ids": null re-reads every network's.
  {"op": "status"} -> {"ok": true, "listeners": {id: [udp port, tcp port, mode]},
                       "remote": {network id: endpoints named}, ...}
  {"op": "stop"}   -> {"ok": true}, then the process exits"""

from __future__ import annotations

import json
import os
import socket

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..dns.forward import HostServers
    from ..dns.listen import Listener, Nft
    from ..dns.server import Server
    from ..dns.table import NameTable, View
    from ..store import Store


class Service:
    def __init__(self, store: Store, netns_fd: int, home_fd: int,
                 server: Server, table: NameTable, host_servers: HostServers, nft: Nft
                 ) -> None:
        self.store, self.netns_fd, self.home_fd = store, netns_fd, home_fd
        self.server, self.table, self.host_servers, self.nft = server, table, host_servers, nft
        self.listeners: dict[str, Listener] = {}
        self.errors: dict[str, str] = {}  # sandbox id -> why it has no listener
        self.remote: dict[str, set[str]] = {}  # network id -> its remote endpoints' table keys

    # -- the state -----------------------------------------------------------------------

    def view(self, sandbox_id: str) -> View | None:
        from .resolver import sandbox_view

        return sandbox_view(self.store, sandbox_id)

    def sync(self, ids: list[str] | None, remote: list[str] | None = None) -> None:
        """Re-read these sandboxes and these networks' remote endpoints (ids None: all of
        both, and forget what the store no longer has)."""
        if ids is None:  # everything: what the store has, and what it no longer has
            ids = sorted({sb.id for sb in self.store.sandboxes(owned=True)} | set(self.listeners))
            remote = sorted({ep.network_id for ep in self.store.remotes()} | set(self.remote))
        for sandbox_id in ids:
            self._sync_one(sandbox_id)
        for network_id in remote or ():
            self._sync_remote(network_id)
        self.server.changed()

    def _sync_remote(self, network_id: str) -> None:
        from .resolver import remote_views

        views = remote_views(self.store, network_id)
        keys = {view.sandbox_id for view in views}
        for gone in self.remote.pop(network_id, set()) - keys:
            held = self.table.view(gone)
            # (unless it was put again on another network since: an id names one endpoint)
            if held is not None and all(e.network_id == network_id for e in held.entries):
                self.table.drop(gone)
        for view in views:
            if self.table.view(view.sandbox_id) != view:  # (unchanged: keeps its place)
                self.table.put(view)
        if keys:
            self.remote[network_id] = keys

    def _sync_one(self, sandbox_id: str) -> None:
        view = self.view(sandbox_id)
        if view is None:
            self.table.drop(sandbox_id)
            self.errors.pop(sandbox_id, None)
            if sandbox_id in self.listeners:
                self.server.remove_listener(sandbox_id)  # closes them: the netns may go
                del self.listeners[sandbox_id]
            return
        self.table.put(view)
        if sandbox_id not in self.listeners:
            from ..dns.listen import listen_in, open_netns

            try:
                fd = open_netns(self.netns_fd, sandbox_id)
                try:
                    listener = listen_in(fd, self.home_fd, self.nft)
                finally:
                    os.close(fd)
            except OSError as e:
                self.errors[sandbox_id] = str(e.strerror or e)
                return
            self.errors.pop(sandbox_id, None)
            self.listeners[sandbox_id] = listener
            self.server.add_listener(sandbox_id, listener.udp, listener.tcp)

    def status(self) -> dict[str, Any]:
        return {"listeners": {sid: [*ln.ports, ln.mode] for sid, ln in self.listeners.items()},
                "remote": {nid: len(keys) for nid, keys in self.remote.items()},
                "errors": self.errors, "stats": self.server.stats(), "pid": os.getpid()}

    # -- the control socket ----------------------------------------------------------------

    def handle(self, conn: socket.socket) -> None:
        from .services import read_line

        conn.settimeout(5.0)  # the commands send their line at once; nobody else may connect
        try:
            data = read_line(conn)
            try:
                request = json.loads(data)
                reply = self.answer(request)
            except Exception as e:  # a bad request gets its error, the resolver goes on
                request, reply = {}, {"ok": False, "error": f"resolver: {e}"}
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            return
        finally:
            conn.close()
        if request.get("op") == "stop":
            self.server.stop()

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "sync":
            if request.get("resolv_conf"):
                self.host_servers.set_path(request["resolv_conf"])
            ids = request.get("ids")
            self.sync(ids, [] if ids is None else list(request.get("remote") or ()))
            return {"ok": True, "listeners": len(self.listeners), "errors": self.errors}
        if op == "status":
            servers = self.host_servers.servers()
            return {"ok": True, **self.status(),
                    "upstreams": [f"{ip}:{port}" for ip, port in servers],
                    "resolv_conf": self.host_servers.path}
        if op == "stop":
            return {"ok": True}
        return {"ok": False, "error": f"unknown request {op!r}"}


def main(argv: list[str]) -> int:
    import signal

    root, run_dir, resolv_conf, fd = argv
    report = os.fdopen(int(fd), "w")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        service, control = _open(root, run_dir, resolv_conf)
    except Exception as e:  # reported to the command that started it, which says it
        report.write(f"err\tthe embedded resolver could not start: {e}")
        report.close()
        return 1
    report.write("ok")
    report.close()

    def accept() -> None:
        while True:
            try:
                conn, _ = control.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(True)
            service.handle(conn)

    service.server.add_reader(control, accept)
    service.server.run()
    control.close()
    for listener in service.listeners.values():
        listener.close()
    return 0


def _open(root: str, run_dir: str, resolv_conf: str) -> tuple[Service, socket.socket]:
    from .. import dirs
    from ..dns.forward import HostServers
    from ..dns.listen import Nft, raise_open_files
    from ..dns.server import Server
    from ..dns.table import NameTable
    from ..kernel import ns
    from ..runtime import pids
    from ..runtime.cgroup import Cgroups
    from ..store import Store
    from .resolver import CONTROL

    raise_open_files()
    # out of the command's cgroup (a container's, if a supervisor started it): with the
    # supervisors, whose cgroup no container's end kills
    Cgroups(run_dir).join_supervisors()
    run_fd = dirs.open_dir(run_dir, "run directory (--run-dir)")
    store = Store(root, dirs.open_dir(root, "state directory (--root)"), processes=pids)
    netns_fd = dirs.subdir(run_fd, "netns", os.path.join(run_dir, "netns"))
    dns_fd = dirs.subdir(run_fd, "dns", os.path.join(run_dir, "dns"))
    home_fd = ns.current_netns_fd()
    table = NameTable()
    host_servers = HostServers(resolv_conf)
    server = Server(table, host_servers)
    service = Service(store, netns_fd, home_fd, server, table, host_servers, Nft())
    service.sync(None)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                            | socket.SOCK_CLOEXEC)
    dirs.bind_socket(control, dns_fd, CONTROL)
    control.listen(64)
    return service, control
