"""The controller: the one place that sequences the store, the drivers, the kernel and the
runtime, and rolls back when a step fails. Everything above (CLI, Python API) calls this."""

from __future__ import annotations

import os

from .errors import Conflict, InvalidArgument, NotFound, ShoalError
from .faults import crashpoint
from .lazy import LazyModule
from .model import (
    BUILTIN_NETWORKS,
    CREATED,
    EXITED,
    RUNNING,
    Container,
    Endpoint,
    Network,
    PublishedPort,
    now,
)
from .names import (
    DEFAULT_BRIDGE,
    bridge_name,
    check_user_bridge_name,
    host_veth_name,
    is_hostname,
    marked_root,
    new_id,
    owner_mark,
    random_name,
    validate_ifname,
    validate_name,
)
from .records import Record
from .store import Store

# The kernel and process modules are imported where they are used, not here: commands that
# only read the state (`shoal network ls`, `ps`, `inspect`) then start in a fraction of the
# time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    import subprocess
    from ipaddress import IPv4Address, IPv4Network
    from typing import Any

    from . import drivers, ipam, rules
    from . import netfilter as netfilter_module
    from . import ports as portspec
    from .kernel.netlink import Netlink
    from .netfilter import Netfilter
    from .runtime import pids
    from .runtime.cgroup import Cgroups
    from .runtime.process import Child, Namespaces
else:  # what only changes of state need, imported on first use
    drivers = LazyModule("shoal.drivers")
    ipam = LazyModule("shoal.ipam")
    netfilter_module = LazyModule("shoal.netfilter")
    portspec = LazyModule("shoal.ports")
    rules = LazyModule("shoal.rules")
    pids = LazyModule("shoal.runtime.pids")

DEFAULT_ROOT = "/var/lib/shoal"
DEFAULT_RUN_DIR = "/run/shoal"
BOOT_MARKER = "boot-id"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21
BRIDGE_OPTIONS = {"shoal.bridge.name", "shoal.bridge.enable_icc"}


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


class RunSpec(Record):
    """What `shoal run` asks for."""

    cmd: list[str]
    name: str | None = None
    hostname: str | None = None
    network: str = "bridge"
    ip: str | None = None
    aliases: list[str] = []
    env: list[str] = []
    auto_remove: bool = False
    workdir: str = "/"
    publish: list[str] = []  # -p specs
    publish_all: bool = False  # -P
    expose: list[str] = []  # --expose specs


class Engine:
    def __init__(self, root: str | None = None, run_dir: str | None = None,
                 firewall_backend: str | None = None, ip_forward: str | None = None,
                 other_firewalls: str | None = None) -> None:
        from . import dirs

        check_privileges()
        # an empty --root or SHOAL_ROOT is an error, not the default (see shoal.dirs for the
        # checks on the directories and every one above them)
        root = _setting(root, "--root", "SHOAL_ROOT", DEFAULT_ROOT)
        run_dir = _setting(run_dir, "--run-dir", "SHOAL_RUN_DIR", DEFAULT_RUN_DIR)
        self.root, self.run_dir = os.path.abspath(root), os.path.abspath(run_dir)
        self.run_fd = dirs.open_dir(self.run_dir, "run directory (--run-dir)")
        try:
            self.store = Store(self.root, dirs.open_dir(self.root, "state directory (--root)"),
                               processes=pids)
        except BaseException:
            os.close(self.run_fd)
            raise
        marker = os.path.join(self.run_dir, BOOT_MARKER)
        if not dirs.exists(self.run_fd, BOOT_MARKER, marker):
            # a new run directory: before anything is made, can shoal write there at all
            # (--run-dir /proc)?
            try:
                dirs.probe_writable(self.run_fd)
            except OSError as e:
                self.store.close()
                os.close(self.run_fd)
                raise ShoalError(f"cannot use the run directory {self.run_dir}: "
                                 f"{e.strerror or e}; give --run-dir a directory on a "
                                 "writable filesystem") from None
        self.netns_dir = os.path.join(self.run_dir, "netns")
        self.mark = owner_mark(self.root)  # on the links shoal makes: which root made them
        self._host: Netlink | None = None
        self._host_fd: int | None = None
        self._netns_dir_ready = False
        self.repairs: list[str] = []
        self._netfilter: Netfilter | None = None
        # container id -> the sockets holding its published host ports, while this process
        # answers for the container (see kernel/hostports.py)
        self.held: dict[str, list[socket.socket]] = {}
        self._cgroups: Cgroups | None = None
        self._handling: set[str] = set()  # containers this command finishes itself
        self._firewall_args = (firewall_backend, ip_forward, other_firewalls)
        if (firewall_backend or ip_forward or other_firewalls
                or os.environ.get("SHOAL_FIREWALL_BACKEND") or os.environ.get("SHOAL_IP_FORWARD")
                or os.environ.get("SHOAL_OTHER_FIREWALLS")):
            self.netfilter  # noqa: B018  # check the firewall options now, for every command
        if self.store.get_meta("builtins") is None:
            self._create_builtin_networks()
        self.store.on_interrupted = self._repair_interrupted
        self.store.on_locked = self._reap_orphans
        if self.store.interrupted():
            with self.store.locked():  # repairs, see _repair_interrupted
                pass
        if not dirs.exists(self.run_fd, BOOT_MARKER, marker):
            # a new run directory: first use, or the host restarted (it is on a tmpfs)
            from .reconcile import reconcile

            with self.store.locked():
                if not dirs.exists(self.run_fd, BOOT_MARKER, marker):
                    self.repairs += reconcile(self)
                    dirs.write_file(self.run_fd, BOOT_MARKER, _boot_id().encode(), marker)
        if self._netfilter is not None and self.netfilter.switch_needed():
            with self.store.locked():
                if self.netfilter.switch_needed():
                    self.netfilter.switch_backend()
        elif self.store.get_meta("firewall_backend") is None:  # state from before the firewall
            with self.store.locked():
                if self.store.get_meta("firewall_backend") is None:
                    self.netfilter.reload()

    def _repair_interrupted(self) -> None:
        """A previous mutating command died half-way (killed, crashed): complete or roll back
        what it left, before doing anything else."""
        from .reconcile import reconcile

        self.repairs += reconcile(self)

    @property
    def netfilter(self) -> Netfilter:
        """The firewall's side of the engine, made on first use (reading the state never
        needs it)."""
        if self._netfilter is None:
            self._netfilter = netfilter_module.Netfilter(self.store, *self._firewall_args)
        return self._netfilter

    @property
    def cgroups(self) -> Cgroups:
        """The containers' cgroups (see runtime/cgroup.py: why a cgroup, and where)."""
        if self._cgroups is None:
            from .runtime.cgroup import Cgroups

            self._cgroups = Cgroups(self.run_dir)
        return self._cgroups

    def _reap_orphans(self) -> None:
        """At the first lock of every mutating command: containers whose supervisor died
        (killed, OOM; a foreground `run` whose CLI was killed) are finished now rather than
        at the next `system reconcile`, so that their addresses and ports are free for this
        very command. Cheap: one query for the distinct supervisors of running and created
        containers and one read of the supervisors' cgroup (the live `run -d` supervisors);
        only a supervisor not in it (a foreground `run`, a creating command, or a dead one)
        is looked up in /proc, by its pid. (A signal 0 would not do: a dead supervisor may
        stay a zombie for a while, and a pid can be reused.)"""
        rows = self.store.supervisors()
        me = os.getpid()
        rows = [(pid, start) for pid, start in rows if pid != me]
        if not rows:
            return
        live = self.cgroups.supervisors()
        dead = [pid for pid, start in rows if pid not in live and not pids.alive(pid, start)]
        for pid in dead:
            for cid in self.store.supervised_by(pid):
                ctr = self.store.container_by_id(cid)
                if ctr is not None and ctr.id not in self._handling:
                    if line := self._reap(ctr):
                        self.repairs.append(line)

    def _reap(self, ctr: Container) -> str:
        """Finish a container whose supervisor is gone (checked by the caller); one line
        saying what was done, or "" if it is supervised after all.

        Nobody would record its exit, honour --rm, or hold its published ports' sockets, so
        a container whose main process still runs is killed (everything in its cgroup) and
        marked exited 137, as Docker does with its containers when the daemon goes without
        live-restore."""
        if pids.alive(ctr.supervisor_pid, ctr.supervisor_start):
            return ""
        if ctr.status == CREATED:
            if ctr.has_own_sandbox:  # a command may have started in it, its pid unrecorded
                pids.kill_all_in(self.sandbox_path(ctr.id))
            self._finish(ctr.id, None, 255, error="its creation was interrupted")
            self._delete_container(ctr)
            return f"container {ctr.name}: its creation was interrupted; rolled back"
        if ctr.status != RUNNING:
            return ""
        if pids.alive(ctr.pid, ctr.pid_start):
            self._kill_main(ctr)
            self._finish(ctr.id, ctr.pid, 137, error="its supervisor died; killed")
            what = "its supervisor died; killed and marked exited"
        else:
            self._finish(ctr.id, ctr.pid, 255, error="process exited while unsupervised")
            what = "its process is gone; marked exited"
        gone = self.store.container_by_id(ctr.id) is None
        return f"container {ctr.name}: {what}" + (" and removed (--rm)" if gone else "")

    def _kill_main(self, ctr: Container) -> None:
        import signal

        if ctr.pid and pids.alive(ctr.pid, ctr.pid_start):
            try:
                os.kill(ctr.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            pids.wait_gone(ctr.pid, ctr.pid_start, 5.0)

    @property
    def warnings(self) -> list[str]:
        """Things the user should know that did not stop the command."""
        return self._netfilter.warnings if self._netfilter is not None else []

    def close(self) -> None:
        for cid in list(self.held):
            self._release_held(cid)
        if self._host is not None:
            self._host.close()
            self._host = None
        if self._host_fd is not None:
            os.close(self._host_fd)
            self._host_fd = None
        self.store.close()
        if self.run_fd >= 0:
            os.close(self.run_fd)
            self.run_fd = -1

    # -- kernel handles -----------------------------------------------------------------------

    @property
    def host(self) -> Netlink:
        """A netlink socket in the host namespace (the one shoal was started in)."""
        from .kernel.netlink import Netlink

        if self._host is None:
            self._host = Netlink()
        return self._host

    @property
    def host_fd(self) -> int:
        from .kernel import ns

        if self._host_fd is None:
            self._host_fd = ns.current_netns_fd()
        return self._host_fd

    def check_namespace_owner(self) -> None:
        """Refuse to work in a network namespace whose shoal objects another shoal root owns:
        the default bridge carries the mark of the root that made it. One netlink request,
        made when a root bootstraps (its built-in networks, a new run directory) and at each
        reconcile; an unmarked bridge (an older shoal's) is taken as this root's."""
        from .kernel import links

        link = links.get_link(self.host, DEFAULT_BRIDGE)
        other = marked_root(link.alias if link else None)
        if other is not None and other != marked_root(self.mark):
            raise Conflict(
                f"another shoal root, {other}, owns this network namespace's shoal objects "
                f"(bridge {DEFAULT_BRIDGE} carries its mark): use --root {other} with its "
                "--run-dir, or run this root in a network namespace of its own")

    def sandbox_path(self, container_id: str) -> str:
        return os.path.join(self.netns_dir, container_id)

    def container_dir(self, container_id: str) -> str:
        return os.path.join(self.run_dir, "containers", container_id)

    def _prepare_netns_dir(self) -> None:
        from . import dirs
        from .kernel import ns

        if not self._netns_dir_ready:
            # made here, never through a symlink; the mount below then uses the path, which
            # nobody else can change (the run directory is root's alone, see shoal.dirs)
            os.close(dirs.subdir(self.run_fd, "netns", self.netns_dir))
            if not ns.is_mountpoint(self.netns_dir):
                ns.ensure_private_mount(self.netns_dir)
            self._netns_dir_ready = True

    def _sandbox(self, container_id: str) -> Netlink:
        """A netlink socket inside an existing sandbox (closed when its `with` ends)."""
        from .kernel import ns
        from .kernel.netlink import Netlink

        with ns.entered(self.sandbox_path(container_id)):
            return Netlink()

    # -- networks ------------------------------------------------------------------------------

    def _taken_subnets(self) -> list[tuple[IPv4Network, str]]:
        """Subnets already used: by shoal's networks, and by the host's addresses and routes."""
        from .kernel import links

        taken = [(n.subnet, f"network {n.name}") for n in self.store.networks() if n.subnet]
        taken += [(a.network, f"host address {a}") for a in links.addresses(self.host)]
        taken += [(r, f"host route {r}") for r in links.routes(self.host)]
        return taken

    def _check_host_overlap(self, subnet: IPv4Network) -> None:
        """An explicit subnet may hold none of the host's addresses, nor overlap a route of
        the host's (default routes aside): the bridge would take that link's traffic, as
        when a network on 198.51.100.0/24 took the uplink's 198.51.100.1. Docker refuses
        overlapping routes too."""
        from .kernel import links

        names = {link.index: link.name for link in links.list_links(self.host)}
        for iface, index in links.address_entries(self.host):
            if iface.ip in subnet:
                raise Conflict(
                    f"subnet {subnet} holds the host's address {iface} on "
                    f"{names.get(index, index)}; choose another --subnet")
        for dst, oif in links.route_entries(self.host):
            if dst.overlaps(subnet):
                via = f" on {names.get(oif, oif)}" if oif is not None else ""
                raise Conflict(f"subnet {subnet} overlaps the host's route to {dst}{via}; "
                               "choose another --subnet")

    def _create_builtin_networks(self) -> None:
        from .drivers import bridge as bridge_driver

        with self.store.locked():
            if self.store.get_meta("builtins") is not None:
                return
            self.check_namespace_owner()  # before anything is made or changed
            subnet = ipam.choose_subnet(t for t, _ in self._taken_subnets())
            _, gateway, _ = ipam.network_config(subnet, None, None)
            created = now()
            default = Network(
                id=new_id(), name="bridge", driver="bridge", created=created, subnet=subnet,
                gateway=gateway, bridge=DEFAULT_BRIDGE,
                options={"shoal.bridge.name": DEFAULT_BRIDGE,
                         "shoal.bridge.default_bridge": "true"},
            )
            with self.store.transaction():
                self.store.add_network(default)
                self.store.add_network(Network(new_id(), "host", "host", created))
                self.store.add_network(Network(new_id(), "none", "null", created))
                self.store.set_meta("builtins", "1")
            bridge_driver.ensure(self.host, default, self.mark)
            self.netfilter.ensure_forwarding()
            self.netfilter.reload()

    def create_network(
        self,
        name: str,
        driver: str = "bridge",
        subnet: str | None = None,
        gateway: str | None = None,
        ip_range: str | None = None,
        internal: bool = False,
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
    ) -> Network:
        from .drivers import bridge as bridge_driver
        from .kernel import links

        validate_name(name, "network")
        drivers.check_driver(driver)
        if driver != "bridge":
            raise Conflict(
                f"only one instance of the {driver!r} network is allowed: use the built-in "
                f"network '{'host' if driver == 'host' else 'none'}'"
            )
        options = dict(options or {})
        for key, value in options.items():
            if key not in BRIDGE_OPTIONS:
                raise InvalidArgument(
                    f"unknown bridge option {key!r}: known options are "
                    + ", ".join(sorted(BRIDGE_OPTIONS))
                )
            if key == "shoal.bridge.enable_icc" and value not in ("true", "false"):
                raise InvalidArgument(f"option {key} must be true or false, not {value!r}")
        if (gateway or ip_range) and not subnet:
            raise InvalidArgument("--gateway and --ip-range need --subnet")
        net_subnet = ipam.parse_subnet(subnet) if subnet else None
        if net_subnet is not None:
            ipam.check_usable(net_subnet)
        net_gw = ipam.parse_address(gateway, "gateway") if gateway else None
        net_range = ipam.parse_subnet(ip_range, "ip-range") if ip_range else None
        if net_subnet:
            ipam.network_config(net_subnet, net_gw, net_range)
        net_id = new_id()
        bridge = options.get("shoal.bridge.name") or bridge_name(net_id)
        validate_ifname(bridge, "bridge")
        if "shoal.bridge.name" in options:
            check_user_bridge_name(bridge)

        with self.store.locked():
            if any(n.name == name for n in self.store.networks()):
                raise Conflict(f"network with name {name} already exists")
            for other in self.store.networks():
                if other.bridge == bridge:
                    raise Conflict(f"bridge {bridge} is already used by network {other.name}")
            if links.get_link(self.host, bridge) is not None:
                raise Conflict(
                    f"a link named {bridge} already exists on the host; "
                    "pick another -o shoal.bridge.name"
                )
            if net_subnet is None:
                net_subnet = ipam.choose_subnet(t for t, _ in self._taken_subnets())
            else:
                for other in self.store.networks():
                    if other.subnet and other.subnet.overlaps(net_subnet):
                        raise Conflict(
                            f"subnet {net_subnet} overlaps network {other.name} "
                            f"({other.subnet}); choose another --subnet"
                        )
                self._check_host_overlap(net_subnet)
            net_subnet, net_gw, net_range = ipam.network_config(net_subnet, net_gw, net_range)
            net = Network(
                id=net_id, name=name, driver=driver, created=now(), subnet=net_subnet,
                gateway=net_gw, ip_range=net_range, internal=internal,
                labels=dict(labels or {}), options=options, bridge=bridge,
            )
            with self.store.transaction():
                self.store.add_network(net)
            crashpoint("network-create:row")
            try:
                bridge_driver.create(self.host, net, self.mark)
                crashpoint("network-create:bridge")
                self.netfilter.set_route_localnet(bridge)
                if self.netfilter.ensure_forwarding():
                    self.netfilter.reload()
                else:
                    self.netfilter.apply(added=self.netfilter.network_elements(net))
            except BaseException:
                links.delete_link(self.host, bridge)
                with self.store.transaction():
                    self.store.delete_network(net.id)
                raise
            return net

    def network(self, ref: str) -> Network:
        return self.store.network(ref)

    def networks(self, filters: dict[str, list[str]] | None = None) -> list[Network]:
        nets = self.store.networks()
        for key, wanted in (filters or {}).items():
            nets = [n for n in nets if any(_network_matches(n, key, w) for w in wanted)]
        return nets

    def remove_network(self, ref: str) -> None:
        from .drivers import bridge as bridge_driver

        with self.store.locked():
            net = self.store.network(ref)
            if net.builtin:
                raise Conflict(f"{net.name} is a pre-defined network and cannot be removed")
            active = []
            for ep in self.store.endpoints(network_id=net.id):
                ctr = self.store.container_by_id(ep.container_id)
                if ctr is not None and ctr.status == RUNNING:
                    active.append(ctr.name)
            if active:
                raise Conflict(
                    f"network {net.name} has active endpoints ({', '.join(sorted(active))}); "
                    "stop those containers or disconnect them first"
                )
            with self.store.transaction():
                self.store.delete_network(net.id)
                self.netfilter.apply(removed=self.netfilter.network_elements(net))
            crashpoint("network-rm:row")
            bridge_driver.delete(self.host, net)

    def prune_networks(self) -> list[str]:
        removed = []
        with self.store.locked():
            for net in self.store.networks():
                if not net.builtin and not self.store.endpoints(network_id=net.id):
                    self.remove_network(net.id)
                    removed.append(net.name)
        return removed

    def network_members(self, net: Network) -> list[tuple[Endpoint, Container]]:
        out = []
        for ep in self.store.endpoints(network_id=net.id):
            ctr = self.store.container_by_id(ep.container_id)
            if ctr is not None:
                out.append((ep, ctr))
        # host and none have no endpoints: their members are the containers in that mode
        if net.name in ("host", "none"):
            out += [(Endpoint(ctr.id, ctr.id, net.id, "", None, None), ctr)
                    for ctr in self.store.containers() if ctr.network_mode == net.name]
        return out

    # -- addresses -----------------------------------------------------------------------------

    def _allocate(self, net: Network, requested: IPv4Address | None) -> IPv4Address:
        from .drivers import bridge as bridge_driver

        assert net.subnet is not None and net.gateway is not None
        if self.store.plugged(net.id) >= bridge_driver.MAX_PORTS:
            raise Conflict(bridge_driver.full_message(net))
        return ipam.StoreAddresses(self.store).allocate(net, requested)

    @staticmethod
    def _next_ifname(endpoints: list[Endpoint]) -> str:
        used = {ep.ifname for ep in endpoints}
        n = 0
        while f"eth{n}" in used:
            n += 1
        return f"eth{n}"

    # -- containers ----------------------------------------------------------------------------

    def container(self, ref: str) -> Container:
        return self.store.container(ref)

    def containers(self, all_: bool = False) -> list[Container]:
        ctrs = self.store.containers()
        return ctrs if all_ else [c for c in ctrs if self.effective_status(c) == RUNNING]

    def effective_status(self, ctr: Container) -> str:
        """The status as the kernel sees it: a 'running' container whose process is gone is
        reported as exited even before its supervisor has recorded it."""
        if ctr.status == RUNNING and not pids.alive(ctr.pid, ctr.pid_start):
            return EXITED
        return ctr.status

    def _resolve_mode(self, spec: RunSpec) -> tuple[str, Network | None, Container | None]:
        """(network_mode, network to join or None, container whose sandbox to share)."""
        if spec.network.startswith("container:"):
            other = self.store.container(spec.network.split(":", 1)[1])
            while other.shares_sandbox_of:
                other = self.store.container(other.shares_sandbox_of)
            if other.network_mode == "host":
                return "host", None, None
            if self.effective_status(other) != RUNNING:
                raise Conflict(f"cannot join the network of container {other.name}: "
                               "it is not running")
            return f"container:{other.id}", None, other
        net = self.store.network(spec.network)
        if net.driver == "host":
            return "host", None, None
        if net.driver == "null":
            return "none", None, None
        return net.name, net, None

    def create_container(self, spec: RunSpec) -> Container:
        from .kernel import links

        if not spec.cmd:
            raise InvalidArgument("no command given: shoal run [OPTIONS] -- CMD [ARG...]")
        if spec.name is not None:
            validate_name(spec.name, "container")
        if spec.hostname is not None and not is_hostname(spec.hostname):
            raise InvalidArgument(
                f"invalid hostname {spec.hostname!r}: use letters, digits and '-', "
                "at most 63 characters"
            )
        env = _parse_env(spec.env)
        _check_workdir(spec.workdir)
        bindings = [b for text in spec.publish for b in portspec.parse_publish(text)]
        exposed = [e for text in spec.expose for e in portspec.parse_expose(text)]
        exposed += [(b.container_port, b.proto) for b in bindings
                    if (b.container_port, b.proto) not in exposed]
        if spec.publish_all:
            published = {(b.container_port, b.proto) for b in bindings}
            bindings += [portspec.Binding(container_port=port, proto=proto)
                         for port, proto in exposed if (port, proto) not in published]
        requested = ipam.parse_address(spec.ip, "--ip") if spec.ip else None
        for alias in spec.aliases:
            validate_name(alias, "alias")
        with self.store.locked():
            mode, net, shared = self._resolve_mode(spec)
            if net is None and (requested or spec.aliases):
                raise InvalidArgument(
                    f"--ip and --network-alias need a bridge network, not network mode {mode}"
                )
            if net is not None and net.name == "bridge" and (requested or spec.aliases):
                raise InvalidArgument(
                    "user-specified IP addresses and aliases are supported on user-defined "
                    "networks only; create one with shoal network create"
                )
            if bindings and net is None:
                raise InvalidArgument(
                    f"ports can only be published on a bridge network, not network mode {mode}"
                )
            if spec.hostname and (mode == "host" or shared):
                raise InvalidArgument(
                    f"conflicting options: --hostname and network mode {spec.network}"
                )
            name = spec.name or self._unused_name()
            if spec.name is not None and self.store.name_taken(spec.name):
                raise Conflict(
                    f"container name {spec.name} is already in use; remove that container "
                    "(shoal rm) or pick another --name"
                )
            cid = new_id()
            ctr = Container(
                id=cid, name=name, created=now(),
                hostname=spec.hostname or (os.uname().nodename if mode == "host" else cid[:12]),
                cmd=list(spec.cmd), env=env, network_mode=mode, auto_remove=spec.auto_remove,
                workdir=spec.workdir,
                publish=[[b.container_port, b.proto, str(b.host_ip), b.host_port]
                         for b in bindings],
                expose=[[port, proto] for port, proto in exposed],
                # until a supervisor takes over, the creating process answers for it: if that
                # dies before the start, reconcile rolls the half-made container back
                supervisor_pid=os.getpid(), supervisor_start=pids.start_time(os.getpid()),
            )
            endpoint = None
            published: list[PublishedPort] = []
            held: list[socket.socket] = []
            with self.store.transaction():
                self.store.add_container(ctr)
                if net is not None:
                    ip = self._allocate(net, requested)
                    endpoint = Endpoint(
                        id=new_id(), container_id=cid, network_id=net.id, ifname="eth0",
                        ip=ip, mac=ipam.mac_for(ip), aliases=list(spec.aliases),
                        requested_ip=requested,
                    )
                    self.store.add_endpoint(endpoint)
                    if bindings:
                        host_ips = ({a.ip for a in links.addresses(self.host)}
                                    if any(b.host_ip != portspec.ANY for b in bindings) else set())
                        published = ipam.HostPorts(self.store).allocate(ctr, net, ip, bindings,
                                                                        host_ips, held)
            if held:
                self.held[cid] = held
            crashpoint("run:rows")
            try:
                self._build_sandbox(ctr, [(endpoint, net)] if endpoint and net else [], shared)
                crashpoint("run:sandbox")
                if net is not None and self.netfilter.ensure_forwarding():
                    self.netfilter.reload()
                elif bindings or (net is not None and not netfilter_module.net_rule(net).icc):
                    # otherwise the container adds nothing to the firewall's sets
                    self.netfilter.apply(added=self.netfilter.container_elements(ctr))
                # a client already sending to a port now published keeps the entry that sent
                # its packets to the host: flushed, its next packet is translated
                self._flush_conntrack([], [(p.proto, str(p.host_ip), p.host_port)
                                           for p in published])
                crashpoint("run:firewall")
            except BaseException:
                self._release_held(cid)
                self._destroy_sandbox(ctr)
                if endpoint is not None:  # the kernel would remove its veth only later
                    from contextlib import suppress

                    with suppress(ShoalError, OSError):
                        links.delete_link(self.host, host_veth_name(endpoint.id))
                with self.store.transaction():
                    self.store.delete_container(cid)
                self._remove_container_dir(cid)
                raise
            return ctr

    def _unused_name(self) -> str:
        attempt = 0
        while self.store.name_taken(name := random_name(attempt)):
            attempt += 1
        return name

    def _build_sandbox(
        self, ctr: Container, endpoints: list[tuple[Endpoint, Network]], shared: Container | None
    ) -> None:
        """The sandbox (namespace + endpoints) and the container's own /etc files."""
        from .drivers import bridge as bridge_driver
        from .kernel import links, ns
        from .kernel.netlink import Netlink

        self._write_container_files(ctr, shared, [ep.ip for ep, _ in endpoints if ep.ip])
        if ctr.network_mode == "host" or shared is not None:
            return
        self._prepare_netns_dir()
        sandbox = ns.create_netns(self.sandbox_path(ctr.id), Netlink)
        try:
            if not endpoints:
                links.bring_up_lo(sandbox)
            for i, (ep, net) in enumerate(endpoints):
                bridge_driver.attach(sandbox, self.host, self.host_fd, net, ep, first=i == 0,
                                     fresh=i == 0, mark=self.mark)
        finally:
            sandbox.close()

    def _write_container_files(self, ctr: Container, shared: Container | None = None,
                               ips: list[IPv4Address] | None = None) -> None:
        """The container's own /etc/hostname and /etc/hosts, in its directory (made and
        written without following a symlink)."""

        cdir = self.container_dir(ctr.id)
        try:
            self._write_files_in(cdir, ctr, shared, ips)
        except OSError as e:  # a full disk, most likely: a clear line, not a bare errno
            raise ShoalError(f"cannot write the container's files in {cdir}: "
                             f"{e.strerror or e}") from None

    def _write_files_in(self, cdir: str, ctr: Container, shared: Container | None,
                        ips: list[IPv4Address] | None) -> None:
        from . import dirs

        ctrs_fd = dirs.subdir(self.run_fd, "containers", os.path.dirname(cdir))
        try:
            fd = dirs.subdir(ctrs_fd, ctr.id, cdir)
        finally:
            os.close(ctrs_fd)
        try:
            dirs.write_file(fd, "hostname", (ctr.hostname + "\n").encode(),
                            os.path.join(cdir, "hostname"))
            if ctr.network_mode == "host":
                with open("/etc/hosts", "rb") as f:
                    hosts = f.read()
            elif shared is not None:
                src = dirs.open_file(self.run_fd, f"containers/{shared.id}/hosts",
                                     os.O_RDONLY, 0, self.container_dir(shared.id) + "/hosts")
                with os.fdopen(src, "rb") as f:
                    hosts = f.read()
            else:
                if ips is None:
                    ips = [ep.ip for ep in self.store.endpoints(container_id=ctr.id) if ep.ip]
                hosts = _hosts_text(ctr.hostname, ips).encode()
            dirs.write_file(fd, "hosts", hosts, os.path.join(cdir, "hosts"))
        finally:
            os.close(fd)

    def _destroy_sandbox(self, ctr: Container) -> None:
        """Unmount the sandbox's namespace; the kernel removes it and its veths once the last
        process in it is gone. Its addresses go back to the pool."""
        from .kernel import ns

        if ctr.has_own_sandbox:
            ns.remove_netns(self.sandbox_path(ctr.id))

    def _namespaces(self, ctr: Container) -> Namespaces:
        from .runtime.process import Namespaces

        cdir = self.container_dir(ctr.id)
        netns = None
        if ctr.shares_sandbox_of:
            netns = self.sandbox_path(ctr.shares_sandbox_of)
        elif ctr.network_mode != "host":
            netns = self.sandbox_path(ctr.id)
        return Namespaces(
            netns=netns,
            hostname=None if ctr.network_mode == "host" else ctr.hostname,
            files=[(os.path.join(cdir, "hosts"), "/etc/hosts"),
                   (os.path.join(cdir, "hostname"), "/etc/hostname")],
            # the container's processes see neither shoal's state nor its run directory
            hidden=[self.root, self.run_dir],
        )

    def _process_env(self, ctr: Container) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", DEFAULT_PATH), "HOSTNAME": ctr.hostname,
               "HOME": "/root"}
        for item in ctr.env:
            key, _, value = item.partition("=")
            env[key] = value
        return env

    def start_process(
        self,
        ctr: Container,
        stdin: int | None,
        stdout: int | None,
        stderr: int | None,
        new_session: bool,
    ) -> Child:
        """Start the container's command in its sandbox and record it as running. If it cannot
        start, the container is finished with Docker's exit code (126/127) and the error is
        raised."""
        from .runtime import process

        with self.store.locked():
            current = self.store.container_by_id(ctr.id)
            if current is None or current.status != CREATED:
                raise NotFound(f"container {ctr.name} was removed before it started")
            procs_fd = self.cgroups.create(ctr.id)
            try:
                proc = process.spawn(
                    ctr.cmd, self._namespaces(ctr), self._process_env(ctr), ctr.workdir,
                    stdin, stdout, stderr, new_session, procs_fd,
                )
            except process.CommandError as e:
                self._finish(ctr.id, None, e.exit_code, error=str(e))
                raise
            finally:
                if procs_fd is not None:
                    os.close(procs_fd)
            crashpoint("run:spawned")
            me = os.getpid()
            with self.store.transaction():
                self.store.update_container(
                    ctr.id, status=RUNNING, pid=proc.pid, pid_start=pids.start_time(proc.pid),
                    supervisor_pid=me, supervisor_start=pids.start_time(me), started_at=now(),
                )
            return proc

    def finish(self, container_id: str, pid: int | None, exit_code: int) -> None:
        """Record that a container's process exited and release its sandbox."""
        with self.store.locked():
            self._finish(container_id, pid, exit_code)

    def _finish(self, container_id: str, pid: int | None, exit_code: int, error: str = "") -> None:
        ctr = self.store.container_by_id(container_id)
        if ctr is None or ctr.status == EXITED or (pid is not None and ctr.pid != pid):
            return
        # Everything that runs in the container ends with it (its cgroup is killed), before
        # its network is released: no process of it may keep an address handed out again.
        self.cgroups.kill(ctr.id)
        # A sandbox that other running containers share (--network container:NAME) lives
        # until the last of them stops, and its addresses with it; its ports go now.
        keep = (ctr.has_own_sandbox and ctr.status == RUNNING
                and bool(self.store.sharing_sandbox(ctr.id)))
        # The rules go in the same transaction that releases the ports and addresses (a backend
        # that rewrites whole chains reads the state inside it); if the firewall refuses,
        # nothing is released. The sandbox goes last: a DNAT rule never outlives its address.
        released_ports = [(proto, host_ip, int(host_port)) for proto, host_ip, host_port, _d, _p
                          in self.store.port_rows(ctr.id)]
        released_ips: list[str] = []
        with self.store.transaction():
            removed = self.netfilter.container_elements(ctr, ports_only=keep)
            self.store.delete_ports(ctr.id)
            if not keep:
                for ep in self.store.endpoints(container_id=ctr.id):
                    if ep.ip is not None:
                        released_ips.append(str(ep.ip))
                    self.store.update_endpoint(ep.id, ip=None, mac=None)
            self.store.update_container(
                ctr.id, status=EXITED, exit_code=exit_code, finished_at=now(), error=error
            )
            self.netfilter.apply(removed=removed)
        crashpoint("stop:released")
        if not keep:
            self._destroy_sandbox(ctr)
        # connections tracked to its addresses and ports would otherwise keep going there,
        # and reach the next container given the address
        self._flush_conntrack(released_ips, released_ports)
        self._release_held(ctr.id)
        if keep:
            return
        if ctr.auto_remove:
            self._delete_container(ctr)
        if ctr.shares_sandbox_of:
            self._release_shared(ctr.shares_sandbox_of)

    def _release_shared(self, owner_id: str) -> bool:
        """Release the sandbox of an exited container once no running container shares it
        any more (its addresses, then its namespace; --rm is honoured then). True if it was
        released."""
        owner = self.store.container_by_id(owner_id)
        if owner is None or owner.status != EXITED or self.store.sharing_sandbox(owner.id):
            return False
        held = [ep for ep in self.store.endpoints(container_id=owner.id) if ep.ip is not None]
        with self.store.transaction():
            removed = self.netfilter.container_elements(owner)
            for ep in held:
                self.store.update_endpoint(ep.id, ip=None, mac=None)
            self.netfilter.apply(removed=removed)
        self._destroy_sandbox(owner)
        self._flush_conntrack([str(ep.ip) for ep in held], [])
        if owner.auto_remove:
            self._delete_container(owner)
        return bool(held)

    def _delete_container(self, ctr: Container) -> None:
        self.cgroups.kill(ctr.id)  # (gone already, unless it never started)
        with self.store.transaction():
            self.store.delete_container(ctr.id)
        self._remove_container_dir(ctr.id)

    def _remove_container_dir(self, container_id: str) -> None:
        from . import dirs

        try:
            fd = os.open("containers", dirs.O_DIR, dir_fd=self.run_fd)
        except OSError:
            return
        try:
            dirs.remove_tree(fd, container_id)
        finally:
            os.close(fd)

    def _reap_if_orphaned(self, ctr: Container) -> Container:
        """A running container whose process and supervisor are both gone (killed while no
        shoal command ran) is marked exited; its exit code is unknown (Docker uses 255)."""
        if (ctr.status == RUNNING and not pids.alive(ctr.pid, ctr.pid_start)
                and not pids.alive(ctr.supervisor_pid, ctr.supervisor_start)):
            self._finish(ctr.id, ctr.pid, 255, error="process exited while unsupervised")
            return self.store.container_by_id(ctr.id) or ctr.replace(status=EXITED)
        return ctr

    def run_detached(self, spec: RunSpec) -> Container:
        """Create the container and hand it to a supervisor process that starts the command,
        records its exit and, with --rm, removes it. Returns once the command runs."""
        import subprocess
        import sys

        from .runtime import process

        ctr = self.create_container(spec)
        log = os.path.join(self.container_dir(ctr.id), "log")
        read_end, write_end = os.pipe()
        # the supervisor inherits the sockets holding the published ports and adopts them
        held = tuple(sock.fileno() for sock in self.held.get(ctr.id, ()))
        try:
            # Isolated (-I: no PYTHON* variables, no user site, neither the caller's directory
            # nor the script's on sys.path), started in "/", with only the variables shoal
            # itself reads: nothing of the caller's directory or environment runs as root.
            # The package that runs now is the one the supervisor imports.
            supervisor = subprocess.Popen(
                [sys.executable, "-I", "-c", SUPERVISOR_BOOT, _package_parent(), self.root,
                 self.run_dir, ctr.id, str(write_end), log],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(write_end, *held), start_new_session=True, close_fds=True, cwd="/",
                env=supervisor_env(os.environ),
            )
        except BaseException:
            os.close(write_end)
            os.close(read_end)
            self.remove_container(ctr.id, force=True)
            raise
        os.close(write_end)
        self._release_held(ctr.id)  # this process's copies: the supervisor holds the ports
        # the supervisor answers for the container from now on, even if this command dies
        # before the start (the orphan check of the next command must not roll it back)
        with self.store.transaction():
            self.store.hand_over(ctr.id, supervisor.pid, pids.start_time(supervisor.pid), CREATED)
        with os.fdopen(read_end) as pipe:
            report = pipe.read()
        status, _, detail = report.partition("\t")
        if status == "ok":
            return self.store.container_by_id(ctr.id) or ctr
        if status == "cmd":
            code, _, message = detail.partition("\t")
            raise process.CommandError(int(code), message)
        # the supervisor died (or failed) while starting the command: a process may run in
        # the sandbox without its pid recorded, and would keep the namespace and veths alive
        pids.kill_all_in(self.sandbox_path(ctr.id))
        self.remove_container(ctr.id, force=True)
        raise ShoalError(detail or "the container's supervisor died before starting it")

    def run_foreground(self, spec: RunSpec, interactive: bool = False) -> int:
        """Run the container attached to this terminal; returns the command's exit status."""
        import signal

        from .runtime import process

        # this process holds the container's published ports: a disconnect elsewhere asks
        # it to let go of those no longer published
        previous_usr1 = self.handle_port_releases()
        try:
            ctr = self.create_container(spec)
            try:
                proc = self.start_process(
                    ctr, None if interactive else process.DEVNULL, None, None, new_session=False
                )
            except process.CommandError:
                raise
            except BaseException:
                self.remove_container(ctr.id, force=True)
                raise
            forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
            previous = {s: signal.signal(s, lambda sig, _f: proc.send_signal(sig))
                        for s in forwarded}
            try:
                code = process.wait_status(proc)
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)
            self.finish(ctr.id, proc.pid, code)
            return code
        finally:
            if previous_usr1 is not None:
                signal.signal(signal.SIGUSR1, previous_usr1)

    def stop(self, ref: str, timeout: float = 10.0) -> Container:
        from .runtime import process

        ctr = self.store.container(ref)
        if ctr.status == RUNNING:
            self._handling.add(ctr.id)
            try:
                sig = process.terminate(ctr.pid or 0, ctr.pid_start, timeout)
                self._await_supervisor(ctr, sig)
            finally:
                self._handling.discard(ctr.id)
        return self.store.container_by_id(ctr.id) or ctr

    def _await_supervisor(self, ctr: Container, sig: int | None) -> None:
        """After the process is gone, give its supervisor a moment to record the exit; finish
        the container here if the supervisor is gone too. Its exit status is then not ours to
        read (it is not our child): 128 + the signal that ended it, as far as shoal knows
        (SIGTERM: 143, SIGKILL: 137; a process that handled SIGTERM and exited with a code of
        its own is recorded as 143 too), or 255 if it was gone before shoal signalled it."""
        code = 128 + sig if sig else 255
        deadline = 50
        while deadline:
            cur = self.store.container_by_id(ctr.id)
            if cur is None or cur.status != RUNNING:
                return
            if not pids.alive(cur.supervisor_pid, cur.supervisor_start):
                break
            pids.wait_gone(cur.supervisor_pid or 0, cur.supervisor_start, 0.05)
            deadline -= 1
        with self.store.locked():
            cur = self.store.container_by_id(ctr.id)
            if cur is not None and cur.status == RUNNING and not pids.alive(
                cur.pid, cur.pid_start
            ):
                self._finish(cur.id, cur.pid, code,
                             error="" if sig else "process exited while unsupervised")

    def remove_container(self, ref: str, force: bool = False) -> None:
        from .runtime import process

        ctr = self.store.container(ref)
        # before anything is stopped (only a running container can be joined)
        users = (self.store.sharing_sandbox(ctr.id)
                 if ctr.has_own_sandbox and ctr.status == RUNNING else [])
        if users:
            raise Conflict(
                f"container {ctr.name} shares its network with running containers "
                f"({', '.join(users)}); remove those first"
            )
        if ctr.status == RUNNING:
            if not force and pids.alive(ctr.pid, ctr.pid_start):
                raise Conflict(
                    f"container {ctr.name} is running: stop it first (shoal stop {ctr.name}) "
                    "or remove it with -f"
                )
            self._handling.add(ctr.id)
            try:
                sig = process.terminate(ctr.pid or 0, ctr.pid_start, 0)
                self._await_supervisor(ctr, sig)
            finally:
                self._handling.discard(ctr.id)
        with self.store.locked():
            cur = self.store.container_by_id(ctr.id)
            if cur is None:
                return
            users = self.store.sharing_sandbox(cur.id)
            if users:
                raise Conflict(
                    f"container {cur.name} shares its network with running containers "
                    f"({', '.join(users)}); remove those first"
                )
            if cur.status != EXITED:  # created but never started: release what it holds
                self._finish(cur.id, None, 0)
            elif cur.has_own_sandbox:  # a sandbox kept for containers that shared it
                self._release_shared(cur.id)
            if self.store.container_by_id(cur.id) is not None:
                self._delete_container(cur)

    def exec(self, ref: str, cmd: list[str], env: list[str] | None = None,
             stdin: int | None = None, stdout: int | None = None,
             stderr: int | None = None) -> subprocess.Popen[bytes]:
        from .runtime import process

        if not cmd:
            raise InvalidArgument("no command given: shoal exec NAME -- CMD [ARG...]")
        ctr = self.store.container(ref)
        if self.effective_status(ctr) != RUNNING:
            raise Conflict(f"container {ctr.name} is not running")
        assert ctr.pid is not None
        proc_env = self._process_env(ctr.replace(env=ctr.env + _parse_env(env or [])))
        # the command joins the container's cgroup: what it leaves running ends with it
        procs_fd = self.cgroups.join_fd(ctr.id)
        try:
            return process.exec_in(ctr.pid, cmd, proc_env, ctr.workdir, stdin, stdout, stderr,
                                   procs_fd)
        finally:
            if procs_fd is not None:
                os.close(procs_fd)

    def log_path(self, ref: str) -> str:
        return os.path.join(self.container_dir(self.store.container(ref).id), "log")

    # -- held host ports -----------------------------------------------------------------------

    def _release_held(self, container_id: str) -> None:
        for sock in self.held.pop(container_id, ()):
            sock.close()

    def release_unpublished(self, container_id: str | None = None) -> None:
        """Close the held sockets of ports no longer published (after a disconnect)."""
        from .kernel import hostports

        for cid in [container_id] if container_id else list(self.held):
            socks = self.held.get(cid)
            if not socks:
                continue
            still = {(proto, host_ip, int(port))
                     for proto, host_ip, port, _d, _p in self.store.port_rows(cid)}
            keep = []
            for sock in socks:
                if hostports.key(sock) in still:
                    keep.append(sock)
                else:
                    sock.close()
            self.held[cid] = keep

    def handle_port_releases(self) -> Any:
        """Make SIGUSR1 close this process's sockets of ports no longer published; returns
        the previous handler (None if signals cannot be handled here: not the main thread)."""
        import signal

        try:
            return signal.signal(signal.SIGUSR1, lambda _s, _f: self.release_unpublished())
        except ValueError:
            return None

    def _release_elsewhere(self, ctr: Container, ports: list[tuple[str, str, int]]) -> None:
        """Ports of a running container were unpublished: have the process holding their
        sockets close them, and wait (briefly) until they are free."""
        import signal
        import time

        from .kernel import hostports

        if ctr.id in self.held:
            self.release_unpublished(ctr.id)
            return
        if ctr.status != RUNNING or not ctr.supervisor_pid or ctr.supervisor_pid == os.getpid() \
                or not pids.alive(ctr.supervisor_pid, ctr.supervisor_start) \
                or not _catches(ctr.supervisor_pid, signal.SIGUSR1):
            return  # (a process that does not handle it would be killed by it)
        try:
            os.kill(ctr.supervisor_pid, signal.SIGUSR1)
        except ProcessLookupError:
            return
        pending = list(ports)
        deadline = time.monotonic() + 2.0
        while pending and time.monotonic() < deadline:
            try:
                probe = hostports.hold(*pending[-1])
            except OSError:
                time.sleep(0.005)
                continue
            if probe is not None:
                probe.close()
            pending.pop()

    # -- firewall ------------------------------------------------------------------------------

    def _flush_conntrack(self, addresses: list[str], ports: list[tuple[str, str, int]]) -> None:
        """Delete the conntrack entries of released addresses and of published or released
        host ports ((proto, host ip, port)); a failure only warns (the change is made)."""
        if not addresses and not ports:
            return
        from .kernel import conntrack, links

        try:
            conntrack.flush(addresses, ports,
                            lambda: [str(a.ip) for a in links.addresses(self.host)])
        except (ShoalError, OSError) as e:
            self.netfilter.warnings.append(f"could not flush conntrack entries: {e}")

    def reload_firewall(self) -> None:
        """Re-apply shoal's whole ruleset from the state (after someone flushed it)."""
        with self.store.locked():
            self.netfilter.ensure_forwarding()
            self.netfilter.reload()

    def reconcile(self) -> list[str]:
        """Make the kernel, the store and the allocations agree; what was repaired."""
        from .reconcile import reconcile

        with self.store.locked():
            return reconcile(self)

    def prune(self) -> tuple[list[str], list[str]]:
        """Remove stopped containers, then networks no container uses (`system prune`)."""
        removed = []
        with self.store.locked():
            for ctr in self.store.containers():
                if self.effective_status(ctr) == EXITED:
                    self.remove_container(ctr.id, force=True)
                    removed.append(ctr.id)
            return removed, self.prune_networks()

    def firewall_text(self) -> str:
        return self.netfilter.show()

    def ports(self, ref: str) -> list[PublishedPort]:
        return self.store.ports(self.store.container(ref).id)

    # -- connect / disconnect ------------------------------------------------------------------

    def connect(self, net_ref: str, ctr_ref: str, ip: str | None = None,
                aliases: list[str] | None = None) -> Endpoint:
        from .drivers import bridge as bridge_driver

        requested = ipam.parse_address(ip, "--ip") if ip else None
        for alias in aliases or []:
            validate_name(alias, "alias")
        with self.store.locked():
            net = self.store.network(net_ref)
            ctr = self._reap_if_orphaned(self.store.container(ctr_ref))
            if net.driver != "bridge":
                raise Conflict(f"containers cannot be connected to network {net.name}; "
                               f"it is a network mode: use shoal run --network {net.name}")
            if not ctr.network_mode or ctr.network_mode in ("host", "none") or \
                    ctr.shares_sandbox_of:
                raise Conflict(
                    f"container {ctr.name} uses network mode {_mode_name(self, ctr)}; "
                    "it cannot be connected to other networks"
                )
            if net.name == "bridge" and (requested or aliases):
                raise InvalidArgument("user-specified IP addresses and aliases are supported on "
                                      "user-defined networks only")
            existing = self.store.endpoints(container_id=ctr.id)
            if any(ep.network_id == net.id for ep in existing):
                raise Conflict(f"container {ctr.name} is already connected to network {net.name}")
            running = ctr.status == RUNNING
            with self.store.transaction():
                addr = self._allocate(net, requested) if running else None
                if not running and requested is not None:
                    assert net.subnet is not None and net.gateway is not None
                    ipam.check_static(requested, net.subnet, net.gateway, [], net.name)
                ep = Endpoint(
                    id=new_id(), container_id=ctr.id, network_id=net.id,
                    ifname=self._next_ifname(existing), ip=addr,
                    mac=ipam.mac_for(addr) if addr else None, aliases=list(aliases or []),
                    requested_ip=requested,
                )
                self.store.add_endpoint(ep)
                if running:  # cleared once the kernel has the endpoint: see reconcile step 3
                    self.store.set_meta(self.pending_key(ep.id), "connect")
            crashpoint("connect:row")
            if running:
                first = not any(e.ip for e in existing)
                try:
                    with self._sandbox(ctr.id) as sandbox:
                        bridge_driver.attach(sandbox, self.host, self.host_fd, net, ep, first,
                                             mark=self.mark)
                    crashpoint("connect:attached")
                    if added := self.netfilter.endpoint_elements(net, ep.id):
                        self.netfilter.apply(added=added)
                except BaseException:
                    # undo the half-made endpoint; the error worth reporting is the first one
                    from contextlib import suppress

                    with suppress(ShoalError, OSError), self._sandbox(ctr.id) as sandbox:
                        bridge_driver.detach(sandbox, ep)
                    with self.store.transaction():
                        self.store.delete_endpoint(ep.id)
                        self.store.delete_meta(self.pending_key(ep.id))
                    raise
                with self.store.transaction():
                    self.store.delete_meta(self.pending_key(ep.id))
            return ep

    @staticmethod
    def pending_key(endpoint_id: str) -> str:
        """The meta row that marks an endpoint whose kernel side `network connect` is making:
        if it is still there when the veth is missing, the connect was interrupted."""
        return f"pending-connect:{endpoint_id}"

    def disconnect(self, net_ref: str, ctr_ref: str) -> None:
        from .drivers import bridge as bridge_driver

        with self.store.locked():
            net = self.store.network(net_ref)
            ctr = self._reap_if_orphaned(self.store.container(ctr_ref))
            ep = next((e for e in self.store.endpoints(container_id=ctr.id)
                       if e.network_id == net.id), None)
            if ep is None:
                raise Conflict(f"container {ctr.name} is not connected to network {net.name}")
            rows = self.store.port_rows(ctr.id, net.id)
            removed = self.netfilter.endpoint_elements(net, ep.id, rows,
                                                       plugged=ep.ip is not None)
            with self.store.transaction():
                self.store.delete_ports(ctr.id, net.id)
                self.store.delete_endpoint(ep.id)
                self.netfilter.apply(removed=removed)
            crashpoint("disconnect:row")
            if ctr.status == RUNNING and ep.ip is not None:
                with self._sandbox(ctr.id) as sandbox:
                    bridge_driver.detach(sandbox, ep)
                    self._ensure_default_route(sandbox, ctr)
                self._flush_conntrack([str(ep.ip)], [(proto, host_ip, int(port)) for
                                                     proto, host_ip, port, _d, _p in rows])
            if rows:
                self._release_elsewhere(ctr, [(proto, host_ip, int(port))
                                              for proto, host_ip, port, _d, _p in rows])

    def _ensure_default_route(self, sandbox: Netlink, ctr: Container) -> None:
        """A sandbox that lost its default route (its network was disconnected) gets one
        through the first of its remaining networks that is not internal, as Docker does."""
        from .kernel import links

        if links.default_route(sandbox) is not None:
            return
        for ep in self.store.endpoints(container_id=ctr.id):
            net = self.store.network_by_id(ep.network_id)
            if ep.ip is None or net.internal or net.gateway is None:
                continue
            link = links.get_link(sandbox, ep.ifname)
            if link is not None:
                links.add_default_route(sandbox, net.gateway, link.index)
                return


def _catches(pid: int, sig: int) -> bool:
    """Whether a process has a handler for a signal (SigCgt in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration, ValueError):
        return False
    return bool(caught & (1 << (sig - 1)))


def _mode_name(engine: Engine, ctr: Container) -> str:
    if ctr.shares_sandbox_of:
        other = engine.store.container_by_id(ctr.shares_sandbox_of)
        return f"container:{other.name if other else ctr.shares_sandbox_of}"
    return ctr.network_mode


def _network_matches(net: Network, key: str, wanted: str) -> bool:
    if key == "name":
        return wanted in net.name
    if key == "id":
        return net.id.startswith(wanted)
    if key == "driver":
        return net.driver == wanted
    if key == "label":
        k, sep, v = wanted.partition("=")
        return k in net.labels and (not sep or net.labels[k] == v)
    if key == "type":
        return (wanted == "builtin") == (net.name in BUILTIN_NETWORKS)
    raise InvalidArgument(f"invalid filter {key!r}: use name=, id=, driver=, label= or type=")


def _parse_env(items: list[str]) -> list[str]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not key or "\0" in item:
            raise InvalidArgument(f"invalid environment variable {item!r}: use -e KEY=VALUE")
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        out.append(f"{key}={value}")
    return out


def _check_workdir(path: str) -> None:
    """The command's working directory must exist: shoal runs host commands, there is no image
    to make it in (Docker creates a missing -w in the container's filesystem)."""
    if not os.path.isabs(path):
        raise InvalidArgument(f"the working directory {path!r} is invalid: -w needs an "
                              "absolute path")
    if not os.path.isdir(path):
        raise InvalidArgument(f"the working directory {path} does not exist (or is not a "
                              "directory): create it, or give -w an existing one")


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


def _hosts_text(hostname: str, ips: list[IPv4Address]) -> str:
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix",
             "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
    lines += [f"{ip}\t{hostname}" for ip in ips]
    return "\n".join(lines) + "\n"


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


# What the supervisor's interpreter runs: the directory that holds the shoal package comes
# first in argv and is put first on sys.path (isolated mode ignores PYTHONPATH).
SUPERVISOR_BOOT = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
                   "from shoal.runtime.supervisor import main; sys.exit(main(sys.argv[1:]))")


def _package_parent() -> str:
    """The directory holding the shoal package this process runs."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def supervisor_env(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The environment a supervisor starts with: PATH (the containers' commands are found
    through it, as they would be in the foreground) and shoal's own variables; nothing that
    changes how Python or the C library behave (PYTHON*, LD_*)."""
    env = {k: v for k, v in environ.items() if k.startswith("SHOAL_")}
    env["PATH"] = environ.get("PATH", DEFAULT_PATH)
    for key in ("LANG", "LC_ALL", "TZ"):
        if key in environ:
            env[key] = environ[key]
    return env


def inspect_network(engine: Engine, ref: str) -> dict[str, object]:
    from .render import network_json

    net = engine.store.network(ref)
    return network_json(net, engine.network_members(net))


def inspect_container(engine: Engine, ref: str) -> dict[str, object]:
    from .render import container_json

    ctr = engine.store.container(ref)
    eps = [(ep, engine.store.network_by_id(ep.network_id))
           for ep in engine.store.endpoints(container_id=ctr.id)]
    data = container_json(ctr, engine.effective_status(ctr), eps, _mode_name(engine, ctr),
                          engine.store.ports(ctr.id))
    if ctr.has_own_sandbox and engine.effective_status(ctr) == RUNNING:
        data["NetworkSettings"]["SandboxKey"] = engine.sandbox_path(ctr.id)  # type: ignore[index]
    return data
