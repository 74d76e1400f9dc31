"""Making the kernel, the store and the allocations agree again: after a crash, a host
restart, or someone deleting shoal's objects by hand. `shoal system reconcile` runs it on
demand; the engine runs it by itself when it finds a new run directory (first use, or the
host restarted: the run directory is on a tmpfs).

It only ever removes kernel objects that carry shoal's names (`sh-*` bridges, `vsh*` veths,
namespace files in shoal's run directory) and that the store does not know."""

from __future__ import annotations

import os
import stat
from contextlib import suppress

from .drivers import bridge as bridge_driver
from .errors import ShoalError
from .kernel import links, ns
from .model import CREATED, EXITED, RUNNING
from .names import BRIDGE_PREFIX, HOST_VETH_PREFIX, host_veth_name, is_id, marked_root
from .runtime import cgroup, pids

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .engine import Engine


def reconcile(engine: Engine) -> list[str]:
    """Repair what can be repaired; returns one line per repair. Call with the lock held."""
    done: list[str] = []
    store = engine.store
    engine.check_namespace_owner()  # another root's objects: change nothing at all
    # 1. containers whose supervisor is gone: those whose process died while nobody watched
    #    are marked exited, those still running are killed (nobody would record their exit),
    #    half-made ones are rolled back (see Engine._reap)
    for ctr in store.containers():
        if ctr.status in (RUNNING, CREATED) and (line := engine._reap(ctr)):
            done.append(line)
    #    sandboxes kept for the containers that shared them, once none of those runs
    for ctr in store.containers():
        if ctr.status == EXITED and ctr.has_own_sandbox and engine._release_shared(ctr.id):
            done.append(f"container {ctr.name}: no running container shares its sandbox; "
                        "its addresses were released")
    # 2. running containers whose namespace mount is gone (the run directory was deleted):
    #    mounted again from their process, which still holds the namespace
    for ctr in store.containers():
        if ctr.status != RUNNING or not ctr.has_own_sandbox or not ctr.pid:
            continue
        path = engine.sandbox_path(ctr.id)
        if ns.is_mountpoint(path) or not pids.alive(ctr.pid, ctr.pid_start):
            continue
        engine._prepare_netns_dir()
        with suppress(FileNotFoundError):
            os.unlink(path)
        open(path, "x").close()
        ns.mount(f"/proc/{ctr.pid}/ns/net", path, None, ns.MS_BIND)
        engine._write_container_files(ctr)
        done.append(f"container {ctr.name}: its namespace mount was gone; mounted again "
                    "from its process")
    # 3. endpoints whose veth is missing. The state is the truth: the veth is made again
    #    (deleted by hand, or by a host-side mishap), unless its `network connect` was
    #    interrupted (its pending marker is still there): that half-made connection is
    #    rolled back
    for ctr in store.containers():
        if ctr.status != RUNNING or not ctr.has_own_sandbox:
            continue
        for ep in store.endpoints(container_id=ctr.id):
            pending = store.get_meta(engine.pending_key(ep.id)) is not None
            if ep.ip is None or (links.get_link(engine.host, host_veth_name(ep.id))
                                 and not pending):
                if pending and ep.ip is None:
                    with store.transaction():
                        store.delete_meta(engine.pending_key(ep.id))
                continue
            net = store.network_by_id(ep.network_id)
            with suppress(ShoalError, OSError), engine._sandbox(ctr.id) as sandbox:
                links.delete_link(sandbox, ep.ifname)
            if pending:
                with store.transaction():
                    store.delete_ports(ctr.id, net.id)
                    store.delete_endpoint(ep.id)
                    store.delete_meta(engine.pending_key(ep.id))
                done.append(f"container {ctr.name}: its connection to network {net.name} was "
                            "half-made; rolled back")
                continue
            with engine._sandbox(ctr.id) as sandbox:
                first = links.default_route(sandbox, family=4) is None
                bridge_driver.attach(sandbox, engine.host, engine.host_fd, net, ep, first)
            done.append(f"container {ctr.name}: its endpoint {ep.ifname} on network {net.name} "
                        "was missing; created again")
    # 4. networks: bridges missing (host restart, deleted by hand) are made again
    known_bridges = set()
    for net in store.networks():
        if net.driver != "bridge" or net.bridge is None:
            continue
        known_bridges.add(net.bridge)
        if links.get_link(engine.host, net.bridge) is None:
            bridge_driver.ensure(engine.host, net, engine.mark)
            done.append(f"network {net.name}: bridge {net.bridge} was missing; created again")
        else:  # a bridge made before bridges had a fixed MAC: fixed now (idempotent)
            bridge_driver.fix_mac(engine.host, net)
    # 5. kernel objects with shoal's names that the store does not know
    live_veths = {host_veth_name(ep.id) for ep in store.endpoints() if ep.ip is not None}
    for link in links.list_links(engine.host):
        name = link.name
        owner = marked_root(link.alias)
        if owner is not None and owner != marked_root(engine.mark):
            continue  # another root's (or that root was renamed): never shoal's to delete
        if name in known_bridges and link.alias is None:  # an older shoal's: mark it now
            links.set_alias(engine.host, link.index, engine.mark)
        stale_veth = name.startswith(HOST_VETH_PREFIX) and name not in live_veths
        stale_bridge = (name.startswith(BRIDGE_PREFIX) and name not in known_bridges
                        and link.kind == "bridge")
        if stale_veth or stale_bridge:
            with suppress(ShoalError):
                links.delete_link(engine.host, name)
                done.append(f"removed {'veth' if stale_veth else 'bridge'} {name}: "
                            "no container or network of shoal's has it")
    wanted = {c.id for c in store.containers()
              if c.has_own_sandbox and (c.status in (RUNNING, CREATED)
                                        or store.sharing_sandbox(c.id))}
    done += _remove_stale_namespaces(engine, wanted)
    #    cgroups of containers that no longer run (their processes are killed)
    alive = {c.id for c in store.containers() if c.status in (RUNNING, CREATED)}
    for cid in engine.cgroups.leftovers(alive):
        path = engine.cgroups.path(cid)
        assert path is not None
        had = cgroup.populated(path)
        if cgroup.kill_path(path):
            done.append(f"removed cgroup {cid[:12]}" + (" and killed its processes" if had
                                                        else "") + ": no running container "
                        "of shoal's has it")
    # 6. the firewall, from the state
    engine.netfilter.ensure_forwarding()
    engine.netfilter.reload()
    return done


def _remove_stale_namespaces(engine: Engine, wanted: set[str]) -> list[str]:
    """Namespace files of shoal's that no container has: only entries named as shoal names
    them (a container id) that are regular files or namespace mounts, in a `netns` directory
    that is not a symlink. Nothing else there is touched, nothing is followed."""
    from .dirs import O_DIR

    try:
        fd = os.open("netns", O_DIR, dir_fd=engine.run_fd)
    except FileNotFoundError:
        return []
    except OSError:  # a symlink (or a file) in place of shoal's directory: not shoal's
        return [f"left {engine.netns_dir} alone: it is not a directory shoal made (a "
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
            ns.remove_netns(os.path.join(engine.netns_dir, entry))
            done.append(f"removed namespace {entry[:12]}: no container of shoal's has it")
    finally:
        os.close(fd)
    return done

