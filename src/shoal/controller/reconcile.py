"""Making the kernel, the store and the allocations agree again: after a crash, a host
restart, or someone deleting shoal's objects by hand. `shoal system reconcile` runs it on
demand; the engine runs it by itself when it finds a new run directory (first use, or the
host restarted: the run directory is on a tmpfs), and when a command finds that an earlier
one was interrupted.

It works through the controller's public operations and the drivers' protocol, and only
ever removes kernel objects that carry shoal's names (each driver knows its own: for the
bridge, `sh-*` bridges and `vsh*` veths), namespace files in shoal's run directory, and
cgroups of shoal's, that the store does not know."""

from __future__ import annotations

import os
import stat
from contextlib import suppress

from .. import drivers
from ..errors import ShoalError
from ..kernel import ns
from ..model import CREATED, EXITED, RUNNING
from ..names import is_id
from ..runtime import cgroup, pids
from . import files
from .sandboxes import pending_key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .containers import Containers
    from .context import Context
    from .networks import Networks
    from .sandboxes import Sandboxes


def reconcile(ctx: Context, networks: Networks, sandboxes: Sandboxes,
              containers: Containers) -> list[str]:
    """Repair what can be repaired; returns one line per repair. Call with the lock held."""
    done: list[str] = []
    store = ctx.store
    networks.check_namespace_owner()  # another root's objects: change nothing at all
    # 1. containers whose supervisor is gone: those whose process died while nobody watched
    #    are marked exited, those still running are killed (nobody would record their exit),
    #    half-made ones are rolled back (see Containers.reap)
    for ctr in store.containers():
        if ctr.status in (RUNNING, CREATED) and (line := containers.reap(ctr)):
            done.append(line)
    #    sandboxes kept for the containers that shared them, once none of those runs
    for ctr in store.containers():
        if ctr.status == EXITED and ctr.has_own_sandbox and containers.release_shared(ctr.id):
            done.append(f"container {ctr.name}: no running container shares its sandbox; "
                        "its addresses were released")
    # 2. running containers whose namespace mount is gone (the run directory was deleted):
    #    mounted again from their process, which still holds the namespace
    for ctr in store.containers():
        if ctr.status != RUNNING or not ctr.has_own_sandbox or not ctr.pid:
            continue
        path = sandboxes.path(ctr.id)
        if ns.is_mountpoint(path) or not pids.alive(ctr.pid, ctr.pid_start):
            continue
        ctx.prepare_netns_dir()
        with suppress(FileNotFoundError):
            os.unlink(path)
        open(path, "x").close()
        ns.mount(f"/proc/{ctr.pid}/ns/net", path, None, ns.MS_BIND)
        files.write_container_files(ctx, ctr)
        done.append(f"container {ctr.name}: its namespace mount was gone; mounted again "
                    "from its process")
    # 3. endpoints whose kernel side is missing. The state is the truth: it is made again
    #    (deleted by hand, or by a host-side mishap), unless its join was interrupted (its
    #    pending marker is still there): that half-made connection is rolled back
    joined = [(c.id, f"container {c.name}") for c in store.containers()
            if c.status == RUNNING and c.has_own_sandbox]
    handed_off = {sb.id for sb in store.sandboxes(owned=False) if sandboxes.handed_off(sb.id)}
    joined += [(sb.id, f"sandbox {sb.owner or sb.id[:12]}") for sb in store.sandboxes(owned=False)
             if sb.id not in handed_off and ns.is_netns(sb.path)]
    for sandbox_id, label in joined:
        for ep in store.endpoints(sandbox_id=sandbox_id):
            pending = store.get_meta(pending_key(ep.id)) is not None
            net = store.network_by_id(ep.network_id)
            driver = drivers.get(net.driver)
            if ep.ip is None or (driver.endpoint_present(ctx, net, ep) and not pending):
                if pending and ep.ip is None:
                    with store.transaction():
                        store.delete_meta(pending_key(ep.id))
                continue
            with suppress(ShoalError, OSError), sandboxes.enter(sandbox_id) as sock:
                driver.leave(ctx, sock, net, ep)
            if pending:
                with store.transaction():
                    store.delete_ports(sandbox_id, net.id)
                    store.delete_endpoint(ep.id)
                    store.delete_meta(pending_key(ep.id))
                done.append(f"{label}: its connection to network {net.name} was half-made; "
                            "rolled back")
                continue
            from ..kernel import links

            with sandboxes.enter(sandbox_id) as sock:
                first = links.default_route(sock, family=4) is None
                driver.join(ctx, sock, net, ep, first)
            done.append(f"{label}: its endpoint {ep.ifname} on network {net.name} was "
                        "missing; created again")
    #    handed-in sandboxes whose namespace is gone (its runtime removed it without telling
    #    shoal): their endpoints and records go, and their addresses with them
    #    handed-off endpoints (dockerd's) whose host end is gone (their container's namespace
    #    went, taking the pair with it) or whose hand-off was interrupted: their addresses
    #    and ports are released; the records stay for the runtime's own leave and delete.
    #    One being set up is left alone: its pair is in the host namespace until the
    #    runtime moves the peer, and its namespace may not exist yet
    for sb in store.sandboxes(owned=False):
        if sb.id in handed_off:
            done += _release_handed_off(ctx, sandboxes, sb)
    for sb in store.sandboxes(owned=False):
        if sb.id in handed_off or ns.is_netns(sb.path):
            continue
        eps = store.endpoints(sandbox_id=sb.id)
        released = [str(ep.ip) for ep in eps if ep.ip is not None]
        with store.transaction():
            store.delete_sandbox(sb.id)
        ctx.flush_conntrack(released, [])
        done.append(f"sandbox {sb.owner or sb.id[:12]}: its namespace {sb.path} is gone; "
                    f"its {len(eps)} endpoint(s) were released")
    # 4. networks whose kernel side is missing (host restart, deleted by hand): made again
    nets = store.networks()
    for net in nets:
        if line := drivers.get(net.driver).repair(ctx, net):
            done.append(line)
    # 5. kernel objects with a driver's names that the store does not know
    live = [ep for ep in store.endpoints() if ep.ip is not None]
    by_driver: dict[str, list] = {name: [] for name in drivers.names()}
    for net in nets:
        by_driver.setdefault(net.driver, []).append(net)
    for name, own in by_driver.items():
        ids = {n.id for n in own}
        done += drivers.get(name).gc(ctx, own, [ep for ep in live if ep.network_id in ids])
    wanted = {c.id for c in store.containers()
              if c.has_own_sandbox and (c.status in (RUNNING, CREATED)
                                        or store.sharing_sandbox(c.id))}
    done += _remove_stale_namespaces(ctx, wanted)
    #    cgroups of containers that no longer run (their processes are killed)
    alive = {c.id for c in store.containers() if c.status in (RUNNING, CREATED)}
    for cid in ctx.cgroups.leftovers(alive):
        path = ctx.cgroups.path(cid)
        assert path is not None
        had = cgroup.populated(path)
        if cgroup.kill_path(path):
            done.append(f"removed cgroup {cid[:12]}" + (" and killed its processes" if had
                                                        else "") + ": no running container "
                        "of shoal's has it")
    # 6. the firewall, from the state
    ctx.netfilter.ensure_forwarding()
    ctx.netfilter.reload()
    # 7. the embedded resolver: running if anything needs it, serving all of the state
    try:
        if line := ctx.resolver.repair():
            done.append(line)
    except (ShoalError, OSError) as e:
        done.append(f"the embedded resolver could not be repaired: {e}")
    # 8. a host in a cluster: its watcher runs and has synced everything again
    try:
        if line := ctx.cluster.repair():
            done.append(line)
    except (ShoalError, OSError) as e:
        done.append(f"the cluster watcher could not be repaired: {e}")
    return done


def _release_handed_off(ctx: Context, sandboxes: Sandboxes, sb: Any) -> list[str]:
    store = ctx.store
    done = []
    for ep in store.endpoints(sandbox_id=sb.id):
        if ep.ip is None:
            continue
        net = store.network_by_id(ep.network_id)
        pending = store.get_meta(pending_key(ep.id)) is not None
        if not pending and drivers.get(net.driver).endpoint_present(ctx, net, ep):
            continue
        sandboxes.take_back(sb.id, net)
        what = "its hand-off was interrupted" if pending else "its veth pair is gone"
        done.append(f"sandbox {sb.owner or sb.id[:12]}: {what}; its address {ep.ip} on "
                    f"network {net.name} was released")
    return done


def _remove_stale_namespaces(ctx: Context, wanted: set[str]) -> list[str]:
    """Namespace files of shoal's that no container has: only entries named as shoal names
    them (a container id) that are regular files or namespace mounts, in a `netns` directory
    that is not a symlink. Nothing else there is touched, nothing is followed."""
    from ..dirs import O_DIR

    try:
        fd = os.open("netns", O_DIR, dir_fd=ctx.run_fd)
    except FileNotFoundError:
        return []
    except OSError:  # a symlink (or a file) in place of shoal's directory: not shoal's
        return [f"left {ctx.netns_dir} alone: it is not a directory shoal made (a "
                "symbolic link?); remove it"]
    done = []
    try:
        for entry in os.listdir(fd):
            if entry in wanted or not is_id(entry):
                continue
            try:
                st = os.stat(entry, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):  # a namespace mount is a regular file too
                continue
            ns.remove_netns(os.path.join(ctx.netns_dir, entry))
            done.append(f"removed namespace {entry[:12]}: no container of shoal's has it")
    finally:
        os.close(fd)
    return done

