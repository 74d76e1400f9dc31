"""The one query layer: what the CLI, the Python client and (later) the Engine API read, in
Docker's shapes (the shapes themselves are pure functions in shoal.render). Nothing here
changes the state or touches the kernel, so reading commands stay fast: no driver module,
no kernel module, no ipaddress is imported."""

from __future__ import annotations

from .. import drivers
from ..model import RUNNING, Container, Endpoint, Network, PublishedPort, Sandbox

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .containers import Containers
    from .context import Context
    from .networks import Networks
    from .sandboxes import Sandboxes


class Queries:
    def __init__(self, ctx: Context, networks: Networks, containers: Containers,
                 sandboxes: Sandboxes) -> None:
        self.ctx, self.networks = ctx, networks
        self.containers, self.sandboxes = containers, sandboxes

    def network(self, ref: str) -> dict[str, Any]:
        """`network inspect`."""
        from ..render import network_json

        net = self.ctx.store.network(ref)
        running = [(ep, ctr) for ep, ctr in self.networks.members(net)
                   if self.containers.effective_status(ctr) == RUNNING]  # as Docker lists them
        return network_json(net, running, drivers.scope(net.driver), self._handed_in(net))

    def _handed_in(self, net: Network) -> list[tuple[Endpoint, Sandbox]]:
        """The plugged-in endpoints of sandboxes other runtimes handed in (CNI, dockerd)."""
        store = self.ctx.store
        out = []
        for ep in store.endpoints(network_id=net.id):
            sb = store.sandbox_by_id(ep.sandbox_id)
            if ep.ip is not None and sb is not None and not sb.owned:
                out.append((ep, sb))
        return out

    def container(self, ref: str) -> dict[str, Any]:
        """`inspect`."""
        from ..render import container_json

        store = self.ctx.store
        ctr = store.container(ref)
        eps = [(ep, store.network_by_id(ep.network_id))
               for ep in store.endpoints(sandbox_id=ctr.id)]
        status = self.containers.effective_status(ctr)
        data = container_json(ctr, status, eps, self.containers.mode_name(ctr),
                              store.ports(ctr.id), self.ctx.container_dir(ctr.id))
        if ctr.has_own_sandbox and status == RUNNING:
            data["NetworkSettings"]["SandboxKey"] = self.sandboxes.path(ctr.id)
        for key in FILE_PATHS:  # as Docker: empty for a file that is not there (yet)
            if data[key] and not _exists(data[key]):
                data[key] = ""
        return data

    def network_rows(self, filters: dict[str, list[str]] | None = None,
                     trunc: bool = True) -> list[dict[str, str]]:
        """`network ls`: one row per network."""
        return [network_row(n, trunc) for n in sorted(self.networks.list(filters),
                                                      key=lambda n: n.name)]

    def container_rows(self, all_: bool = False, trunc: bool = True,
                       filters: dict[str, list[str]] | None = None,
                       last: int = 0) -> list[dict[str, str]]:
        """`ps`: one row per running container (every one with all_, a status filter or
        `last`), newest first, those the filters (shoal.filters) keep, at most `last`."""
        from ..filters import ContainerFilter
        from ..render import ps_row

        store = self.ctx.store
        wanted = ContainerFilter(filters or {})
        rows = []
        for ctr in reversed(store.containers()):
            if last > 0 and len(rows) == last:
                break
            status = self.containers.effective_status(ctr)
            if status != RUNNING and not (all_ or last > 0 or wanted.wants_all):
                continue
            nets = [store.network_by_id(ep.network_id)
                    for ep in store.endpoints(sandbox_id=ctr.id)] if ctr.has_own_sandbox else []
            if ctr.network_mode in ("host", "none"):  # a mode: the built-in network of its name
                nets.append(store.network(ctr.network_mode))
            if not wanted.matches(ctr, status, nets):
                continue
            rows.append(ps_row(ctr, status, store.ports(ctr.id), trunc=trunc,
                               networks=[n.name for n in nets]))
        return rows

    def container_record(self, container_id: str) -> Container | None:
        """A container's record by id (None once it is removed), for those who wait on it."""
        return self.ctx.store.container_by_id(container_id)

    def ports(self, ref: str) -> list[PublishedPort]:
        """`port`: a container's published ports."""
        return self.ctx.store.ports(self.ctx.store.container(ref).id)

    def resolve(self, name: str, network: str | None = None) -> list[dict[str, str]]:
        """`resolve`: what the embedded resolver answers for a name, on each network (or on
        one), read from the state as the resolver reads it: one row per address."""
        from .resolver import remote_views, sandbox_view

        store = self.ctx.store
        only = store.network(network).id if network is not None else None
        wanted = name.rstrip(".").lower()
        rows = []
        for sb in store.sandboxes(owned=True):
            view = sandbox_view(store, sb.id)
            if view is None:
                continue
            ctr = store.container_by_id(sb.owner or sb.id)
            for entry in view.entries:
                if (only is None or entry.network_id == only) and wanted in (
                        n.lower() for n in entry.names):
                    rows.append({"Address": entry.ip, "Container": ctr.name if ctr else "",
                                 "Network": store.network_by_id(entry.network_id).name})
        # other hosts' containers on overlays (their first name is their container's)
        for network_id in sorted({ep.network_id for ep in store.remotes()}
                                 if only is None else {only}):
            for view in remote_views(store, network_id):
                entry = view.entries[0]
                if wanted in (n.lower() for n in entry.names):
                    rows.append({"Address": entry.ip, "Container": entry.ptr,
                                 "Network": store.network_by_id(network_id).name})
        rows.sort(key=lambda r: (r["Network"], r["Container"]))
        return rows


FILE_PATHS = ("ResolvConfPath", "HostnamePath", "HostsPath", "LogPath")


def _exists(path: str) -> bool:
    import os

    try:
        os.lstat(path)
    except OSError:
        return False
    return True


def network_row(net: Network, trunc: bool = True) -> dict[str, str]:
    return {"ID": net.id[:12] if trunc else net.id, "Name": net.name, "Driver": net.driver,
            "Scope": drivers.scope(net.driver), "IPv6": "false",
            "Internal": str(net.internal).lower(),
            "Labels": ",".join(f"{k}={v}" for k, v in net.labels.items()),
            "CreatedAt": net.created}
