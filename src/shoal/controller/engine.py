"""The composition root: the one object the CLI, the Python client and the supervisor hold.
It builds the controller's parts on one Context and gives each front end its operations:

    networks.py    Networks    create, remove, prune, list; the built-in networks
    sandboxes.py   Sandboxes   sandboxes and endpoints: CNM's create endpoint, join, leave
    containers.py  Containers  a sandbox plus processes: create, start, finish, stop, rm, exec,
                               connect, disconnect
    lifecycle.py   Lifecycle   kill, wait, rename, top, stats; the restart policy's rules
    reconcile.py   reconcile   make the kernel, the store and the allocations agree
    queries.py     Queries     Docker-shaped reads for every front end

`Engine(...)` only takes the settings; `bootstrap()` (or `Engine.open(...)`, both at once)
checks privileges, opens the directories and the store, makes the built-in networks at a
root's first use, and repairs what an interrupted command or a host restart left."""

from __future__ import annotations

import os

from ..errors import InvalidArgument, ShoalError
from .containers import Containers, RunSpec
from .context import DEFAULT_ROOT, DEFAULT_RUN_DIR, Context
from .lifecycle import Lifecycle
from .networks import Networks
from .queries import Queries
from .sandboxes import Sandboxes, pending_key

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    import subprocess
    from typing import Any

    from ..kernel.netlink import Netlink
    from ..model import Container, Endpoint, Network, PublishedPort, Sandbox
    from ..netfilter import Netfilter
    from ..ports import Binding
    from ..runtime.cgroup import Cgroups
    from ..runtime.process import Child
    from ..store import Store

__all__ = ["Engine", "RunSpec"]

BOOT_MARKER = "boot-id"
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21


def check_privileges() -> None:
    """shoal needs CAP_NET_ADMIN and CAP_SYS_ADMIN (namespaces, links, mounts)."""
    with open("/proc/self/status") as f:
        caps = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    missing = [n for n, bit in (("CAP_NET_ADMIN", CAP_NET_ADMIN), ("CAP_SYS_ADMIN", CAP_SYS_ADMIN))
               if not caps & (1 << bit)]
    if missing:
        raise ShoalError(
            f"shoal must run as root: it lacks {' and '.join(missing)} (try: sudo shoal ...)"
        )


class Engine:
    def __init__(self, root: str | None = None, run_dir: str | None = None,
                 firewall_backend: str | None = None, ip_forward: str | None = None,
                 other_firewalls: str | None = None, resolv_conf: str | None = None,
                 store: str | None = None, advertise_addr: str | None = None) -> None:
        """The settings only: nothing is opened, made or checked until bootstrap().
        `resolv_conf`: the host's resolv.conf (--resolv-conf, else SHOAL_RESOLV_CONF, else
        /etc/resolv.conf), only ever read. `store`: the cluster's global store to join
        (--store, else SHOAL_STORE; remembered once joined), `advertise_addr`: this host's
        underlay address in it (--advertise-addr; see controller/cluster.py)."""
        # an empty --root or SHOAL_ROOT is an error, not the default (see shoal.dirs for the
        # checks on the directories and every one above them)
        root = _setting(root, "--root", "SHOAL_ROOT", DEFAULT_ROOT)
        run_dir = _setting(run_dir, "--run-dir", "SHOAL_RUN_DIR", DEFAULT_RUN_DIR)
        self.ctx = Context(root, run_dir, (firewall_backend, ip_forward, other_firewalls),
                           resolv_conf, store, advertise_addr)
        self.network_ops = Networks(self.ctx)
        self.sandboxes = Sandboxes(self.ctx)
        self.container_ops = Containers(self.ctx, self.network_ops, self.sandboxes)
        self.queries = Queries(self.ctx, self.network_ops, self.container_ops, self.sandboxes)
        self.lifecycle = Lifecycle(self.ctx, self.container_ops)
        self.bootstrapped = False
        # the front ends (the CLI, the Python client) have the host's watcher running at
        # bootstrap; shoal's own processes (supervisors, the watcher, the plugins) never wait
        # for it there: a supervisor's command holds the lock a start of it would need
        self.join_cluster = False

    @classmethod
    def open(cls, root: str | None = None, run_dir: str | None = None,
             firewall_backend: str | None = None, ip_forward: str | None = None,
             other_firewalls: str | None = None, resolv_conf: str | None = None,
             store: str | None = None, advertise_addr: str | None = None,
             join_cluster: bool = False) -> Engine:
        """An engine, bootstrapped; with `join_cluster` (the front ends), joined to its
        cluster if `store` is given or the host is in one."""
        engine = cls(root, run_dir, firewall_backend, ip_forward, other_firewalls,
                     resolv_conf, store, advertise_addr)
        engine.join_cluster = join_cluster
        return engine.bootstrap()

    def bootstrap(self) -> Engine:
        from .. import dirs

        check_privileges()
        ctx = self.ctx
        ctx.open()
        try:
            self._bootstrap(dirs)
        except BaseException:
            ctx.close()
            raise
        self.bootstrapped = True
        return self

    def _bootstrap(self, dirs: Any) -> None:
        ctx, store = self.ctx, self.ctx.store
        marker = os.path.join(ctx.run_dir, BOOT_MARKER)
        if not dirs.exists(ctx.run_fd, BOOT_MARKER, marker):
            # a new run directory: before anything is made, can shoal write there at all
            # (--run-dir /proc)?
            try:
                dirs.probe_writable(ctx.run_fd)
            except OSError as e:
                raise ShoalError(f"cannot use the run directory {ctx.run_dir}: "
                                 f"{e.strerror or e}; give --run-dir a directory on a "
                                 "writable filesystem") from None
        if any(ctx.firewall_args) or any(os.environ.get(v) for v in (
                "SHOAL_FIREWALL_BACKEND", "SHOAL_IP_FORWARD", "SHOAL_OTHER_FIREWALLS")):
            ctx.netfilter  # noqa: B018  # check the firewall options now, for every command
        if store.get_meta("builtins") is None:
            self.network_ops.create_builtins()
        store.on_interrupted = self._repair_interrupted
        store.on_locked = self._on_locked
        # every command's changes reach the cluster's watcher and the embedded resolver
        # before its lock is released
        store.on_unlocking = self._on_unlocking
        if store.interrupted():
            with store.locked():  # repairs, see _repair_interrupted
                pass
        rebooted = False
        if not dirs.exists(ctx.run_fd, BOOT_MARKER, marker):
            # a new run directory: first use, or the host restarted (it is on a tmpfs)
            with store.locked():
                if not dirs.exists(ctx.run_fd, BOOT_MARKER, marker):
                    ctx.repairs += self._reconcile()
                    boot = _boot_id()
                    # the state's last boot: another one means the host rebooted
                    rebooted = store.get_meta(BOOT_MARKER) not in (None, boot)
                    with store.transaction():
                        store.set_meta(BOOT_MARKER, boot)
                    dirs.write_file(ctx.run_fd, BOOT_MARKER, boot.encode(), marker)
        if rebooted:  # unlocked: their supervisors take the lock to start them
            ctx.repairs += self.lifecycle.restore_after_boot()
        if self.join_cluster:  # a host in a cluster: its watcher runs
            ctx.cluster.join()
        if ctx.netfilter_made and ctx.netfilter.switch_needed():
            with store.locked():
                if ctx.netfilter.switch_needed():
                    ctx.netfilter.switch_backend()
        elif store.get_meta("firewall_backend") is None:  # state from before the firewall
            with store.locked():
                if store.get_meta("firewall_backend") is None:
                    ctx.netfilter.reload()

    def _on_unlocking(self) -> None:
        self.ctx.cluster.flush()
        self.ctx.resolver.flush()

    def _on_locked(self) -> None:
        self.container_ops.reap_orphans()
        self.ctx.resolver.check_alive()

    def _repair_interrupted(self) -> None:
        """A previous mutating command died half-way (killed, crashed): complete or roll back
        what it left, before doing anything else."""
        self.ctx.repairs += self._reconcile()

    def _reconcile(self) -> list[str]:
        from .reconcile import reconcile

        return reconcile(self.ctx, self.network_ops, self.sandboxes, self.container_ops)

    def close(self) -> None:
        self.ctx.close()

    # -- what the front ends and tests read ----------------------------------------------------

    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def netfilter(self) -> Netfilter:
        return self.ctx.netfilter

    @property
    def cgroups(self) -> Cgroups:
        return self.ctx.cgroups

    @property
    def host(self) -> Netlink:
        return self.ctx.host

    @property
    def host_fd(self) -> int:
        return self.ctx.host_fd

    @property
    def mark(self) -> str:
        return self.ctx.mark

    @property
    def root(self) -> str:
        return self.ctx.root

    @property
    def run_dir(self) -> str:
        return self.ctx.run_dir

    @property
    def run_fd(self) -> int:
        return self.ctx.run_fd

    @property
    def netns_dir(self) -> str:
        return self.ctx.netns_dir

    @property
    def held(self) -> dict[str, list[socket.socket]]:
        return self.ctx.held

    @property
    def repairs(self) -> list[str]:
        return self.ctx.repairs

    @property
    def warnings(self) -> list[str]:
        return self.ctx.warnings

    def sandbox_path(self, sandbox_id: str) -> str:
        return self.sandboxes.path(sandbox_id)

    def enter_sandbox(self, sandbox_id: str) -> Netlink:
        """Netlink inside a sandbox (`with engine.enter_sandbox(id) as sock:`)."""
        return self.sandboxes.enter(sandbox_id)

    def container_dir(self, container_id: str) -> str:
        return self.ctx.container_dir(container_id)

    pending_key = staticmethod(pending_key)

    def check_namespace_owner(self) -> None:
        self.network_ops.check_namespace_owner()

    # -- networks --------------------------------------------------------------------------

    def create_network(self, name: str, driver: str = "bridge", subnet: str | None = None,
                       gateway: str | None = None, ip_range: str | None = None,
                       internal: bool = False, labels: dict[str, str] | None = None,
                       options: dict[str, str] | None = None) -> Network:
        return self.network_ops.create(name, driver, subnet, gateway, ip_range, internal,
                                       labels, options)

    def network(self, ref: str) -> Network:
        return self.network_ops.get(ref)

    def networks(self, filters: dict[str, list[str]] | None = None) -> list[Network]:
        return self.network_ops.list(filters)

    def remove_network(self, ref: str) -> None:
        self.network_ops.remove(ref)

    def prune_networks(self) -> list[str]:
        return self.network_ops.prune(self._running, self.container_ops.disconnect)

    def _running(self, ctr: Container) -> bool:
        from ..model import RUNNING

        return self.container_ops.effective_status(ctr) == RUNNING

    def network_members(self, net: Network) -> list[tuple[Endpoint, Container]]:
        return self.network_ops.members(net)

    # -- containers ------------------------------------------------------------------------

    def container(self, ref: str) -> Container:
        return self.container_ops.get(ref)

    def containers(self, all_: bool = False) -> list[Container]:
        return self.container_ops.list(all_)

    def effective_status(self, ctr: Container) -> str:
        return self.container_ops.effective_status(ctr)

    def output_may_come(self, ctr: Container | None) -> bool:
        return self.container_ops.output_may_come(ctr)

    def create_container(self, spec: RunSpec) -> Container:
        return self.container_ops.create(spec)

    def start_process(self, ctr: Container, stdin: int | None, stdout: int | None,
                      stderr: int | None, new_session: bool, tty: bool = False) -> Child:
        return self.container_ops.start_process(ctr, stdin, stdout, stderr, new_session, tty)

    def finish(self, container_id: str, pid: int | None, exit_code: int) -> None:
        self.container_ops.finish(container_id, pid, exit_code)

    def run_detached(self, spec: RunSpec) -> Container:
        return self.container_ops.run_detached(spec)

    def run_foreground(self, spec: RunSpec, interactive: bool = False,
                       tty: bool = False) -> int:
        return self.container_ops.run_foreground(spec, interactive, tty)

    def stop(self, ref: str, timeout: float = 10.0) -> Container:
        return self.container_ops.stop(ref, timeout)

    def start(self, ref: str) -> Container:
        return self.container_ops.start(ref)

    def restart(self, ref: str, timeout: float = 10.0) -> Container:
        self.container_ops.stop(ref, timeout)
        return self.container_ops.start(ref)

    def remove_container(self, ref: str, force: bool = False) -> None:
        self.container_ops.remove(ref, force)

    def exec(self, ref: str, cmd: list[str], env: list[str] | None = None,
             stdin: int | None = None, stdout: int | None = None,
             stderr: int | None = None, user: str | None = None, workdir: str | None = None,
             detach: bool = False) -> subprocess.Popen[bytes]:
        return self.container_ops.exec(ref, cmd, env, stdin, stdout, stderr, user, workdir,
                                       detach)

    def exec_attached(self, ref: str, cmd: list[str], env: list[str] | None = None,
                      interactive: bool = False, tty: bool = False, user: str | None = None,
                      workdir: str | None = None) -> int:
        return self.container_ops.exec_attached(ref, cmd, env, interactive, tty, user, workdir)

    def log_path(self, ref: str) -> str:
        return self.container_ops.log_path(ref)

    def connect(self, net_ref: str, ctr_ref: str, ip: str | None = None,
                aliases: list[str] | None = None) -> Endpoint:
        return self.container_ops.connect(net_ref, ctr_ref, ip, aliases)

    def disconnect(self, net_ref: str, ctr_ref: str) -> None:
        self.container_ops.disconnect(net_ref, ctr_ref)

    def ports(self, ref: str) -> list[PublishedPort]:
        return self.queries.ports(ref)

    def resolve(self, name: str, network: str | None = None) -> list[dict[str, str]]:
        return self.queries.resolve(name, network)

    # -- sandboxes handed in by another runtime (CNM's create endpoint, join, leave) ---------

    def add_sandbox(self, path: str, owner: str) -> Sandbox:
        """A network namespace another runtime made (a CNI runtime, dockerd), recorded as a
        sandbox shoal joins endpoints to; `owner` names who holds it (cni:CONTAINER-ID)."""
        return self.sandboxes.add_external(path, owner)

    def connect_sandbox(self, sandbox_id: str, net_ref: str, ip: str | None = None,
                        aliases: list[str] | None = None, ifname: str | None = None,
                        mac: str | None = None) -> Endpoint:
        """An endpoint of a handed-in sandbox on a network, plugged in when this returns;
        `mac`: its interface's MAC (else the one derived from its address)."""
        from .. import ipam

        requested = ipam.parse_address(ip, "ip") if ip else None
        net = self.store.network(net_ref)
        return self.sandboxes.connect_external(sandbox_id, net, requested, list(aliases or []),
                                               ifname, mac)

    def disconnect_sandbox(self, sandbox_id: str, net_ref: str) -> None:
        self.sandboxes.disconnect_external(sandbox_id, self.store.network(net_ref))

    def publish_sandbox(self, sandbox_id: str, net_ref: str, bindings: list[Binding]
                        ) -> list[PublishedPort]:
        """Host ports DNATed to a handed-in sandbox's address on a network (checked against
        the host's processes, not held: see Sandboxes.publish_external); they go when the
        endpoint leaves, or with `unpublish_sandbox`."""
        return self.sandboxes.publish_external(sandbox_id, self.store.network(net_ref),
                                               bindings)

    def unpublish_sandbox(self, sandbox_id: str, net_ref: str) -> None:
        self.sandboxes.unpublish_external(sandbox_id, self.store.network(net_ref))

    def handed_in_sandbox(self, owner: str) -> Sandbox | None:
        """The handed-in sandbox an owner (cni:ID, docker:ENDPOINT-ID) has, if any."""
        return self.store.sandbox_by_owner(owner)

    def add_handed_off_endpoint(self, owner: str, net_ref: str, ip: str,
                                mac: str | None = None) -> tuple[Sandbox, Endpoint]:
        """CNM's create endpoint for a runtime that moves and configures the interface
        itself (dockerd's remote driver API): a sandbox for `owner` with one endpoint on the
        network that is to have exactly `ip` (the runtime's choice); nothing in the kernel
        yet. The same owner gets the same sandbox back."""
        from .. import ipam

        return self.sandboxes.add_handed_off(owner, self.store.network(net_ref),
                                             ipam.parse_address(ip, "ip"), mac)

    def hand_off_endpoint(self, sandbox_id: str, net_ref: str, path: str
                          ) -> tuple[Endpoint, str]:
        """CNM's join for such an endpoint: its veth pair made in the host namespace, the
        host end on the network's bridge, the peer (whose name is returned) left down and
        unaddressed for the runtime to move into `path` (which need not be a namespace
        yet); its firewall elements added. Reconcile leaves it alone while its host end is
        there."""
        return self.sandboxes.hand_off(sandbox_id, self.store.network(net_ref), path)

    def take_back_endpoint(self, sandbox_id: str, net_ref: str) -> None:
        """CNM's leave for a handed-off endpoint: its veth pair, ports and firewall
        elements go and its address is released; the record stays until remove_sandbox."""
        self.sandboxes.take_back(sandbox_id, self.store.network(net_ref))

    def remove_sandbox(self, sandbox_id: str) -> None:
        """Every endpoint of a handed-in sandbox leaves, and its record goes; the namespace
        is the runtime's and stays."""
        self.sandboxes.remove_external(sandbox_id)

    def prune(self) -> tuple[list[str], list[str]]:
        """Remove stopped containers, then networks no container uses (`system prune`)."""
        with self.store.locked():
            return self.container_ops.prune(), self.prune_networks()

    # -- held host ports -------------------------------------------------------------------

    def release_unpublished(self, container_id: str | None = None) -> None:
        from .held import release_unpublished

        release_unpublished(self.ctx, container_id)

    def handle_port_releases(self) -> Any:
        from .held import handle_port_releases

        return handle_port_releases(self.ctx)

    # -- the firewall and repairs ----------------------------------------------------------

    def reload_firewall(self) -> None:
        """Re-apply shoal's whole ruleset from the state (after someone flushed it)."""
        with self.store.locked():
            self.netfilter.ensure_forwarding()
            self.netfilter.reload()

    def reconcile(self) -> list[str]:
        """Make the kernel, the store and the allocations agree; what was repaired."""
        with self.store.locked():
            return self._reconcile()

    def firewall_text(self) -> str:
        return self.netfilter.show()


def _setting(given: str | None, flag: str, variable: str, default: str) -> str:
    """A directory from its option, else its variable, else the default; empty is refused."""
    value = given if given is not None else os.environ.get(variable)
    if value is None:
        return default
    if not value:
        source = flag if given is not None else variable
        raise InvalidArgument(f"{source} is empty: give a directory, or leave {source} out "
                              f"for the default {default}")
    return value


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""
